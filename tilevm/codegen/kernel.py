"""What emission produces and what it may assume: the kernel, its arguments, its assumptions.

:class:`CudaKernel` is everything a launcher needs besides the cubin: the
source, the arguments in order with their C types, the block size, the shared
memory, and the :class:`Assumption` s to check on the arguments before each
launch. :class:`EmitOptions` says what the emitter may take for granted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..dtypes import DataType
from .values import elem_ctype


# -- the result ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KernelParam:
    """One argument of the generated kernel: a ``pointer`` to elements or a ``scalar`` value."""

    name: str
    kind: Literal["pointer", "scalar"]
    dtype: DataType
    ctype: str


@dataclass(frozen=True, slots=True)
class Assumption:
    """A fact the kernel relies on, which the launcher checks before each launch.

    ``kind="value"``: the scalar parameter ``param`` is a multiple of ``divisor``.
    ``kind="address"``: the pointer parameter ``param`` is ``divisor``-byte aligned.
    """

    param: str
    kind: Literal["value", "address"]
    divisor: int

    def __str__(self) -> str:
        if self.kind == "value":
            return f"{self.param} % {self.divisor} == 0"
        return f"address of {self.param} % {self.divisor} == 0"

    def check(self, values: Mapping[str, Any]) -> tuple[bool, str]:
        """Whether the launch arguments ``values`` (by parameter name) keep the fact; and why not.

        A pointer argument is a torch tensor (its ``data_ptr()``), a numpy array,
        or an integer address.
        """
        value = values[self.param]
        if self.kind == "value":
            ok = int(value) % self.divisor == 0
            return ok, "" if ok else (
                f"argument {self.param!r} = {int(value)} must be a multiple of {self.divisor}: "
                "the kernel was compiled assuming it (vector accesses along its rows); compile "
                "it with EmitOptions(speculate='guard') to accept any value"
            )
        address = _address(value)
        ok = address % self.divisor == 0
        return ok, "" if ok else (
            f"argument {self.param!r} must be {self.divisor}-byte aligned for the kernel's "
            f"vector accesses; its address is 0x{address:x} (a view at an offset into its "
            "storage? pass a copy)"
        )


@dataclass(frozen=True, slots=True)
class CudaKernel:
    """Generated CUDA C++ for one program.

    Attributes
    ----------
    name
        The ``extern "C"`` kernel's name (the program's).
    source
        The translation unit, compilable by :func:`tilevm.runtime.compile_cuda`.
    params
        The kernel's arguments in the program's order.
    num_threads
        Threads per block (1-D), ``32 * num_warps``.
    shared_bytes
        Shared memory per block; static unless ``dynamic_shared``, in which case
        the launch must pass it (and raise the function's limit past 48 KiB).
    assumptions
        Facts checked by the launcher; see :class:`Assumption`.
    dynamic_shared
        Whether the shared buffer is ``extern __shared__`` (over 48 KiB).
    """

    name: str
    source: str
    params: tuple[KernelParam, ...]
    num_threads: int
    shared_bytes: int
    assumptions: tuple[Assumption, ...] = ()
    dynamic_shared: bool = False

    @property
    def dynamic_shared_bytes(self) -> int:
        """The shared memory a launch must pass (0 when the buffer is static)."""
        return self.shared_bytes if self.dynamic_shared else 0


Speculate = Literal["guard", "assume", "off"]


@dataclass(frozen=True, slots=True)
class EmitOptions:
    """What the emitter may assume about the arguments.

    Attributes
    ----------
    speculate
        What to do with an access that is aligned only if a scalar parameter is a
        multiple of something: ``"guard"`` tests it in the kernel (a uniform branch
        to an element-wise path), ``"assume"`` records it as an :class:`Assumption`
        for the launcher, ``"off"`` does not vectorise the access.
    divisibility
        Known facts, ``(("k", 8),)``: parameter k is a multiple of 8 (trusted,
        neither tested nor recorded); :meth:`make` takes a mapping.
    pointer_alignment
        The alignment in bytes assumed of pointer arguments for vector accesses
        wider than one element (recorded as address assumptions).
    """

    speculate: Speculate = "guard"
    divisibility: tuple[tuple[str, int], ...] = ()
    pointer_alignment: int = 16

    def __post_init__(self) -> None:
        if self.speculate not in ("guard", "assume", "off"):
            raise ValueError(
                f"EmitOptions.speculate must be 'guard', 'assume' or 'off'; got {self.speculate!r}"
            )
        a = self.pointer_alignment
        if not isinstance(a, int) or a < 1 or a & (a - 1):
            raise ValueError(f"EmitOptions.pointer_alignment must be a power of two; got {a!r}")
        for name, d in self.divisibility:
            if not isinstance(name, str) or not isinstance(d, int) or d < 1:
                raise ValueError(
                    f"EmitOptions.divisibility holds (name, divisor >= 1) pairs; got {(name, d)!r}"
                )

    @classmethod
    def make(
        cls,
        speculate: Speculate = "guard",
        divisibility: Mapping[str, int] | None = None,
        pointer_alignment: int = 16,
    ) -> EmitOptions:
        facts = tuple(sorted((divisibility or {}).items()))
        return cls(speculate, facts, pointer_alignment)


def param_ctype(t: DataType) -> str:
    """The C type of a scalar kernel argument: the type's own width, as the launcher packs it.

    Narrow integers are passed in their own size (``tv_i8``, ``tv_u16``...) and
    promote to ``int`` in expressions; float16 and bfloat16 arguments are passed
    as float32 values.
    """
    if t.is_float:
        return "float"
    if (t.kind, t.nbits) == ("uint", 1):
        return "bool"
    if t.nbits < 8:
        return "tv_i8" if t.kind == "int" else "tv_u8"
    return elem_ctype(t)


def _address(value: Any) -> int:
    if hasattr(value, "data_ptr"):
        return int(value.data_ptr())
    if hasattr(value, "ctypes"):
        return int(value.ctypes.data)
    return int(value)


__all__ = ["Assumption", "CudaKernel", "EmitOptions", "KernelParam", "Speculate", "param_ctype"]
