"""``@tilevm.kernel``: parameters, specialisation on compile-time constants, and launch.

Parameters are annotated with what they are:

- ``x: tilevm.Ptr[tilevm.float16]``: a tensor argument (torch tensor or numpy
  array), passed as a pointer to its elements;
- ``n: tilevm.int32`` (any DataType): a runtime scalar;
- ``BLOCK: tilevm.constexpr`` (or ``int``, ``float``, ``bool``, ``str``): a
  compile-time constant. Each distinct set of constants compiles its own
  program (cached).

``kernel[grid](*args, backend="cpu")`` launches it; ``grid`` is a tuple of up
to three ints or a callable of the arguments (a dict by name) returning one.
Without ``backend``, tensors on the CPU run on the interpreter.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..dtypes import DataType
from ..dtypes import dtype as as_dtype
from ..errors import TileVMError
from ..ir.builder import Builder
from ..ir.program import Program
from ..ir.verify import verify
from .errors import KernelCompileError
from .transpiler import KernelFunction, Source, Transpiler, _Return

if TYPE_CHECKING:
    from .launch import PreparedLaunch


class LaunchError(TileVMError, ValueError):
    """A kernel was launched with arguments or a grid it cannot take."""


@dataclass(frozen=True)
class PointerType:
    """The annotation ``Ptr[dtype]``: a tensor argument of that element type."""

    dtype: DataType

    def __repr__(self) -> str:
        return f"tilevm.Ptr[{self.dtype}]"


class _PtrFactory:
    def __getitem__(self, dtype: Any) -> PointerType:
        return PointerType(as_dtype(dtype))

    def __call__(self, dtype: Any) -> PointerType:
        return PointerType(as_dtype(dtype))


Ptr = _PtrFactory()


class _Constexpr:
    """The annotation of a compile-time constant parameter."""

    def __repr__(self) -> str:
        return "tilevm.constexpr"


constexpr = _Constexpr()


@dataclass(frozen=True)
class KernelParam:
    name: str
    kind: Literal["pointer", "scalar", "constexpr"]
    dtype: DataType | None
    default: Any = inspect.Parameter.empty


def _classify(fn: Callable[..., Any], scope: dict[str, Any] | None = None) -> list[KernelParam]:
    """The parameters of ``fn``; string annotations are evaluated in its module, then ``scope``."""
    signature = inspect.signature(fn)
    hints = dict(fn.__annotations__)
    params = []
    for p in signature.parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TileVMError(f"kernel {fn.__name__}: *args and **kwargs are not supported")
        hint = hints.get(p.name, inspect.Parameter.empty)
        if isinstance(hint, str):
            try:
                hint = eval(hint, fn.__globals__, scope)
            except Exception as err:
                raise TileVMError(
                    f"kernel {fn.__name__}: cannot evaluate the annotation of {p.name!r}: {err}"
                ) from None
        if isinstance(hint, PointerType):
            params.append(KernelParam(p.name, "pointer", hint.dtype, p.default))
        elif isinstance(hint, DataType):
            params.append(KernelParam(p.name, "scalar", hint, p.default))
        elif hint is constexpr or hint in (int, float, bool, str):
            params.append(KernelParam(p.name, "constexpr", None, p.default))
        else:
            raise TileVMError(
                f"kernel {fn.__name__}: annotate parameter {p.name!r} as tilevm.Ptr[dtype] (a "
                "tensor), a scalar type such as tilevm.int32, or tilevm.constexpr; got "
                f"{'nothing' if hint is inspect.Parameter.empty else repr(hint)}"
            )
    return params


class Kernel:
    """A thread-block program written as a Python function; see the module docs."""

    __tilevm_kernel__ = True

    def __init__(
        self, fn: Callable[..., Any], num_warps: int | str = 4, scope: dict[str, Any] | None = None
    ):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.params = _classify(fn, scope)
        self._signature = inspect.signature(fn)
        self._binder = ArgumentBinder(self._signature)  # binds on every launch
        constants = [p.name for p in self.params if p.kind == "constexpr"]
        if isinstance(num_warps, str):
            if num_warps not in constants:
                raise TileVMError(
                    f"{fn.__name__}: num_warps={num_warps!r} must name a constexpr parameter; "
                    f"the kernel has {constants}"
                )
        else:
            _check_warps(num_warps, "num_warps")
        self.num_warps = num_warps
        self._source: Source | None = None
        self._programs: dict[tuple, Program] = {}

    def __repr__(self) -> str:
        return f"<tilevm.kernel {self.__name__}>"

    # -- compiling -----------------------------------------------------------------------------
    def program(self, **constants: Any) -> Program:
        """The IR for the given compile-time constants (defaults fill in the rest)."""
        values = {}
        for p in self.params:
            if p.kind != "constexpr":
                continue
            if p.name in constants:
                values[p.name] = constants.pop(p.name)
            elif p.default is not inspect.Parameter.empty:
                values[p.name] = p.default
            else:
                raise LaunchError(f"{self.__name__}: constant {p.name!r} has no value")
        if constants:
            raise LaunchError(f"{self.__name__}: unknown constants {sorted(constants)}")
        # The type is part of the key: 1, 1.0 and True are equal but compile differently.
        key = tuple((k, type(v), _hashable(v)) for k, v in values.items())
        if key not in self._programs:
            try:
                self._programs[key] = self._compile(values)
            except KernelCompileError as err:
                raise err.with_traceback(None) from None
        return self._programs[key]

    def _compile(self, constants: dict[str, Any]) -> Program:
        if self._source is None:
            self._source = Source.of(self.fn)
        warps = self.num_warps
        if isinstance(warps, str):
            warps = constants[warps]
            _check_warps(warps, f"{self.__name__}: constant {self.num_warps} (the warp count)")
        b = Builder(self.__name__, warps)
        env: dict[str, Any] = {}
        for p in self.params:
            if p.kind == "pointer":
                env[p.name] = b.pointer(p.name, p.dtype)
            elif p.kind == "scalar":
                env[p.name] = b.scalar(p.name, p.dtype)
            else:
                env[p.name] = constants[p.name]
        t = Transpiler(b, self._source, env)
        try:
            t.run_body(self._source.tree.body)
        except _Return as ret:
            if ret.value is not None:
                raise KernelCompileError(
                    "a kernel returns nothing; store results", self._source.loc(ret.node)
                ) from None
        program = b.finish(constants=constants)
        verify(program)  # a frontend bug shows here, not as a wrong answer later
        return program

    # -- launching -----------------------------------------------------------------------------
    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, backend: str | None = None, **kwargs: Any) -> None:
            self.launch(grid, args, kwargs, backend)

        return launch

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...)")

    def prepare(self, grid: Any, device: Any = "cpu", **constants: Any) -> PreparedLaunch:
        """This kernel bound to its compile-time ``constants``, ``grid`` and ``device``.

        The result launches with the tensor and scalar arguments alone, in the
        kernel's order: ``prepare((4,), "cuda", BLOCK=128)(x, y, n)``. The
        program is made (and on a GPU, built and loaded) here, once; a launch
        then only checks and packs its arguments, a few microseconds of host
        time where ``kernel[grid](...)`` binds and looks up everything again.
        ``device`` is ``"cpu"`` (the interpreter) or a CUDA device (a
        ``torch.device``, ``"cuda"``, ``"cuda:1"``).
        """
        from .launch import PreparedLaunch

        grid = _grid(grid, self.__name__)
        return PreparedLaunch(self, self.program(**constants), grid, device)

    def launch(self, grid: Any, args: Sequence[Any], kwargs: dict[str, Any], backend: str | None):
        try:
            values = self._binder.bind(args, kwargs)
        except TypeError as err:
            raise LaunchError(f"{self.__name__}: {err}") from None
        if callable(grid):
            grid = grid(values)
        grid = _grid(grid, self.__name__)
        constants = {p.name: values[p.name] for p in self.params if p.kind == "constexpr"}
        program = self.program(**constants)
        from .launch import run_on_cpu, run_on_gpu, select_backend

        if select_backend(self, values, backend) == "cpu":
            run_on_cpu(self, program, grid, values)
        else:
            run_on_gpu(self, program, grid, values)


class ArgumentBinder:
    """``inspect.Signature.bind`` (or ``bind_partial``) then ``apply_defaults``, fast.

    A launch binds its arguments on every call, and ``inspect`` takes tens of
    microseconds. For the usual call (positional arguments, then keywords that
    name other parameters) this builds the same ordered dict directly; any
    other call goes to ``inspect``, which binds it or raises its usual
    ``TypeError``.
    """

    def __init__(self, signature: inspect.Signature):
        self.signature = signature
        self.names = tuple(signature.parameters)
        self.known = frozenset(self.names)
        self.defaults = {
            n: p.default for n, p in signature.parameters.items() if p.default is not p.empty
        }
        kinds = {p.kind for p in signature.parameters.values()}
        self.plain = kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD}

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any], partial: bool = False) -> dict:
        names = self.names
        if self.plain and len(args) <= len(names):
            given = dict(zip(names, args))
            if all(k in self.known and k not in given for k in kwargs):
                given.update(kwargs)
                values = {}
                for n in names:
                    if n in given:
                        values[n] = given[n]
                    elif n in self.defaults:
                        values[n] = self.defaults[n]
                    elif not partial:
                        break  # a missing argument: inspect says which
                else:
                    return values
        bound = (self.signature.bind_partial if partial else self.signature.bind)(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


def _check_warps(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32:
        raise TileVMError(f"{what} must be an int in 1..32; got {value!r}")


def _grid(grid: Any, name: str) -> tuple[int, ...]:
    if isinstance(grid, (int, np.integer)):
        grid = (grid,)
    if (
        not isinstance(grid, (tuple, list))
        or not 1 <= len(grid) <= 3
        or not all(
            isinstance(g, (int, np.integer)) and not isinstance(g, bool) and g >= 1 for g in grid
        )
    ):
        raise LaunchError(f"{name}: the grid must be 1 to 3 positive ints; got {grid!r}")
    return tuple(int(g) for g in grid)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def kernel(fn: Callable[..., Any] | None = None, *, num_warps: int | str = 4):
    """Decorate a thread-block program: ``@tilevm.kernel`` or ``@tilevm.kernel(num_warps=8)``.

    ``num_warps`` may also name a constexpr parameter (``num_warps="WARPS"``),
    so that each specialisation picks its own warp count.
    """
    # With postponed annotations (``from __future__ import annotations``) a kernel defined
    # inside a function may name that function's locals: keep them to evaluate the strings.
    caller = sys._getframe(1)
    scope = dict(caller.f_locals) if caller.f_locals is not caller.f_globals else None
    del caller
    if fn is None:
        return lambda f: Kernel(f, num_warps, scope)
    return Kernel(fn, num_warps, scope)


def func(fn: Callable[..., Any]) -> KernelFunction:
    """Decorate a helper that kernels call; it is inlined where it is called."""
    return KernelFunction(fn)
