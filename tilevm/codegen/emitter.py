"""The CUDA C++ emitter: one ``__global__`` function per program, per-thread code for tiles.

:func:`emit_cuda` turns a program whose register tiles all have layouts (the
output of :func:`tilevm.passes.pipeline.run_pipeline`) into a
:class:`CudaKernel`. The generated function runs one thread block of
``32 * num_warps`` threads with a 1-D thread id ``tid``:

- a register tile becomes a per-thread array ``T name[local_size]``; the
  thread part of its elements' logical indices is computed once per layout at
  the top of the kernel (``L0_d0``, ...; see :mod:`.indexing`), the local part
  is a constant of the unrolled register loops;
- scalars (parameters, ``let`` variables, loop variables) are C variables,
  statements are C control flow (:mod:`.scalars`);
- every instruction is a block of C preceded by a comment with its IR line, as
  the printer writes it, emitted by the rule registered for its class in
  :data:`EMIT` (:mod:`.memory`, :mod:`.compute`, :mod:`.reduce`, :mod:`.dot`).

Vector accesses to global memory may rest on facts the emitter cannot prove:
that a runtime row stride is a multiple of 8, that a pointer is 16-byte
aligned. By default (``EmitOptions(speculate="guard")``) the kernel tests a
scalar fact itself, once, and takes an element-wise path when it fails, so
every shape works; with ``speculate="assume"`` the fact is recorded as an
:class:`Assumption` instead, and with ``"off"`` it is not used. Pointer
alignment is always recorded: the launcher checks it before each launch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..dtypes import DataType
from ..ir.expr import Binary, Const, Expr, Var
from ..ir.printer import Names, format_instruction
from ..ir.program import Program
from ..ir.registry import RuleTable
from ..ir.stmt import AssignScalar, Break, Declare, For, If, InstStmt, Seq, Stmt, While
from ..ir.tensor import GlobalTensor, RegisterTensor, SharedTensor
from ..layouts.indexing import DigitSum, fit_digit_sum, local_radices, replica_terms, thread_parts
from ..layouts.register import RegisterLayout
from ..passes.plan_shared_memory import SharedAllocator
from .kernel import Assumption, CudaKernel, EmitOptions, KernelParam, param_ctype
from .prelude import Prelude
from .scalars import ScalarContext, VarFact, c_expr, c_fit, divisor
from .values import CodegenError, elem_ctype, scalar_ctype

EMIT = RuleTable("codegen")
"""One rule per instruction class: ``rule(emitter, inst)`` writes the instruction's C."""

STATIC_SHARED_LIMIT = 48 * 1024


# -- names -----------------------------------------------------------------------------------------
_KEYWORDS = """alignas alignof and asm auto bool break case catch char char16_t char32_t class
    const const_cast constexpr continue decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept not nullptr operator or private protected public register
    reinterpret_cast return short signed sizeof static static_assert static_cast struct switch
    template this throw true try typedef typeid typename union unsigned using virtual void
    volatile wchar_t while xor"""
_BUILTINS = """threadIdx blockIdx blockDim gridDim warpSize printf expf logf sqrtf fabsf fmodf
    floorf rintf copysignf min max"""
_OWN = "tid smem i r vec at part partials group scratch elem src_bytes fc fd"
# C++ keywords, CUDA built-ins and the math functions the code calls, the emitter's own names.
_RESERVED = set(_KEYWORDS.split()) | set(_BUILTINS.split()) | set(_OWN.split())
# The emitter's own name patterns, and CUDA's built-in vector types (float4, uint2, dim3...).
_INTERNAL = re.compile(
    r"^(tv_|L\d+_|i\d+$|f[ab]\d|(u?(char|short|int|long|longlong)|float|double)[1-4]$|dim3$)"
)


class CNames:
    """C identifiers for IR values, derived from the printer's names and made unique."""

    def __init__(self, names: Names):
        self._names = names
        self._c: dict[int, str] = {}
        self._keep: list[Any] = []
        self._taken: set[str] = set(_RESERVED)

    def __getitem__(self, value: Any) -> str:
        key = id(value)
        if key not in self._c:
            printed = self._names[value]
            self._c[key] = self._fresh(printed)
            self._keep.append(value)
        return self._c[key]

    def fresh(self, hint: str) -> str:
        """A new identifier for the emitter's own use."""
        return self._fresh(hint)

    def _fresh(self, printed: str) -> str:
        base = "v" + printed[1:] if printed.startswith("%") else printed
        base = re.sub(r"\W", "_", base.encode("ascii", "replace").decode()).replace("?", "_")
        if not base or base[0].isdigit():
            base = "v" + base
        if base in self._taken or _INTERNAL.match(base) or base.startswith("__"):
            base += "_"
        name, n = base, 0
        while name in self._taken:
            n += 1
            name = f"{base}{n}"
        self._taken.add(name)
        return name


# -- per-layout thread coordinates -----------------------------------------------------------------
@dataclass
class Coords:
    """The C names (or texts) of a layout's thread parts, one per dimension, and its owner test."""

    key: str
    layout: RegisterLayout
    dims: tuple[str, ...]
    parts: tuple[DigitSum, ...]
    owner: str | None = None


# -- the emitter -----------------------------------------------------------------------------------
@dataclass
class GlobalVar:
    name: str
    tensor: GlobalTensor
    shape: tuple[str, ...]
    strides: tuple[str, ...]


@dataclass
class SharedVar:
    name: str
    tensor: SharedTensor
    offset: int
    strides: tuple[int, ...]
    swizzle: Any  # a tilevm.layouts.shared.Swizzle or None


class Emitter:
    """The state of one emission: output lines, names, layouts, shared memory, assumptions."""

    def __init__(self, program: Program, options: EmitOptions):
        self.program = program
        self.options = options
        self.block_threads = program.num_threads
        self.prelude = Prelude()
        self.names = Names()
        for param in program.params:
            self.names.name_as(param.var, param.name)
        self.c = CNames(self.names)
        self.smem = SharedAllocator()
        self.lines: list[str] = []
        self.depth = 1
        self.coords_lines: list[str] = []
        self.guard_lines: list[str] = []
        self._guards: dict[tuple[str, int], str] = {}
        self._coords: dict[RegisterLayout, Coords] = {}
        self.globals: dict[int, GlobalVar] = {}
        # Low-bit tiles viewed from 32-bit words: (words' C array, word count, bit of each code).
        self.packed_codes: dict[int, tuple[str, int, tuple[int, ...]]] = {}

        self.shared: dict[int, SharedVar] = {}
        self.facts: dict[Var, VarFact] = {}
        self.params = {p.var: p for p in program.params}
        self.known: dict[str, int] = dict(options.divisibility)
        self.value_assumptions: dict[str, int] = {}
        self.address_assumptions: dict[str, int] = {}
        self.scalars = ScalarContext(self.scalar_name, self.prelude)
        self.prelude.use("types")
        _collect_facts(program, self.facts)

    # -- output ----------------------------------------------------------------------------------
    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def extend(self, lines: Sequence[str]) -> None:
        for text in lines:
            self.line(text)

    def comment(self, text: str) -> None:
        self.line(f"// {text}")

    @contextmanager
    def block(self, head: str = "") -> Iterator[None]:
        """``head {`` ... ``}`` (a bare scope when ``head`` is empty)."""
        self.line(f"{head} {{" if head else "{")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line("}")

    # -- scalars ---------------------------------------------------------------------------------
    def scalar_name(self, var: Var) -> str:
        return self.c[var]

    def expr(self, e: Expr | int | float) -> str:
        return c_expr(e, self.scalars)

    def divisor(self, e: Expr | int) -> int:
        known = dict(self.known)
        for name, d in self.value_assumptions.items():
            known[name] = _lcm(known.get(name, 1), d)
        return divisor(e, self.facts, known)

    def proven_by(self, cond: Expr) -> dict[str, int]:
        """Divisors of parameters that ``cond`` being true proves: each of its conjuncts of
        the form ``p % d == 0`` (through ``let`` variables), so that the branch it guards
        vectorises accesses that need ``p`` to be a multiple of ``d`` without testing again."""
        match cond:
            case Var() if (fact := self.facts.get(cond)) is not None and fact.kind == "let":
                return self.proven_by(fact.value)
            case Binary(op="land", lhs=a, rhs=b):
                found = self.proven_by(a)
                for name, d in self.proven_by(b).items():
                    found[name] = _lcm(found.get(name, 1), d)
                return found
            case Binary(
                op="eq", lhs=Binary(op="mod", lhs=p, rhs=Const(value=d)), rhs=Const(value=0)
            ):
                name = self.param_of(p)
                if name is not None and int(d) > 1:
                    return {name: int(d)}
        return {}

    @contextmanager
    def _knowing(self, facts: Mapping[str, int]) -> Iterator[None]:
        """Parameter divisors known while the body of the ``with`` is emitted."""
        before = dict(self.known)
        for name, d in facts.items():
            self.known[name] = _lcm(self.known.get(name, 1), d)
        try:
            yield
        finally:
            self.known = before

    def param_of(self, e: Expr | int) -> str | None:
        """The parameter's name when ``e`` is a scalar parameter itself (never reassigned)."""
        if isinstance(e, Var) and e in self.params and self.params[e].kind == "scalar":
            fact = self.facts.get(e)
            return self.params[e].name if fact is not None and fact.kind == "param" else None
        return None

    def nonnegative(self, e: Expr | int) -> bool:
        """Whether the integer ``e`` is surely >= 0 (block indices, counting loops, their sums)."""
        from ..ir.expr import Binary, BlockIdx, Const, NumBlocks

        match e:
            case int():
                return e >= 0
            case Const(value=value):
                return value >= 0
            case BlockIdx() | NumBlocks():
                return True
            case Var():
                fact = self.facts.get(e)
                if fact is None or fact.kind in ("assigned", "param"):
                    return False
                if fact.kind == "loop":
                    step = _const_int(fact.step)
                    return step is not None and step > 0 and self.nonnegative(fact.value)
                return self.nonnegative(fact.value)
            case Binary(op=op, lhs=a, rhs=b) if op in ("add", "mul", "min", "floordiv", "shl"):
                positive_divisor = op != "floordiv" or (_const_int(b) or 0) > 0
                return positive_divisor and self.nonnegative(a) and self.nonnegative(b)
        return False

    def stable(self, e: Expr | int | float) -> bool:
        """Whether ``e`` keeps its value while a loop runs (no variable in it is reassigned)."""
        if not isinstance(e, Expr):
            return True
        return all(self.facts.get(v, VarFact("assigned")).kind != "assigned" for v in _vars(e))

    # -- tiles -----------------------------------------------------------------------------------
    def tile(self, t: RegisterTensor) -> str:
        """The C array of a register tile (its name)."""
        if t.layout is None:
            raise CodegenError(
                f"register tile {self.names[t]} ({t.dtype}{list(t.shape)}) has no layout; "
                "run the pass pipeline (tilevm.passes.pipeline.run_pipeline) before emit_cuda"
            )
        return self.c[t]

    def scratch(self, nbytes: int) -> tuple[int, bool]:
        """Shared scratch for one instruction: (offset, whether others may still use the space).

        The space above the live tensors may hold a tensor freed since the last
        barrier, or a previous scratch; a barrier must come first when it does.
        """
        before = self.smem.peak
        offset = self.smem.scratch(nbytes)
        return offset, offset < before

    def declare(self, t: RegisterTensor) -> str:
        """Declare the array of a tile an instruction creates; returns its name."""
        name = self.tile(t)
        assert t.layout is not None
        self.line(f"{elem_ctype(t.dtype)} {name}[{t.layout.local_size}];")
        return name

    def layout(self, t: RegisterTensor) -> RegisterLayout:
        self.tile(t)
        assert t.layout is not None
        return t.layout

    def coords(self, layout: RegisterLayout) -> Coords:
        """The thread parts of ``layout``'s logical indices, computed once at the kernel's top."""
        found = self._coords.get(layout)
        if found is not None:
            return found
        key = f"L{len(self._coords)}"
        parts = thread_parts(layout)
        self.coords_lines.append(f"// {key}: {layout}")
        dims = []
        for d, part in enumerate(parts):
            text = part.render("tid", self.block_threads, standalone=True)
            if text in ("0", "tid"):
                dims.append(text)
                continue
            name = f"{key}_d{d}"
            self.coords_lines.append(f"const int {name} = {text};")
            dims.append(name)
        coords = Coords(key, layout, tuple(dims), parts)
        self._coords[layout] = coords
        return coords

    def owner(self, layout: RegisterLayout) -> str | None:
        """A C test true in exactly one thread per element of ``layout`` (``None``: every thread).

        Threads past the layout's thread count and every replica but the first
        fail it, so stores are not duplicated.
        """
        coords = self.coords(layout)
        if coords.owner is not None:
            return coords.owner or None
        tests = []
        if layout.num_threads < self.block_threads:
            tests.append(f"tid < {layout.num_threads}")
        mask = 0
        for term in replica_terms(layout):
            if term.stride * term.extent > self.block_threads and term.stride >= self.block_threads:
                continue
            if _pow2(term.stride) and _pow2(term.extent):
                mask |= (term.extent - 1) * term.stride
            else:
                tests.append(f"(tid / {term.stride}) % {term.extent} == 0")
        if mask:
            tests.append(f"(tid & 0x{mask:X}) == 0")
        if not tests:
            coords.owner = ""
            return None
        name = f"{coords.key}_owner"
        self.coords_lines.append(f"const bool {name} = {' && '.join(tests)};  // stores once")
        coords.owner = name
        return name

    # -- register loops --------------------------------------------------------------------------
    def per_local(
        self,
        count: int,
        radices: Sequence[tuple[int, int]],
        maps: Sequence[Sequence[int]],
        body: Callable[[Callable[[int], str]], Sequence[str]],
        var: str = "i",
    ) -> None:
        """Emit ``body`` for every register index 0 .. count - 1.

        ``maps[k][l]`` is an index the body needs for register l (another tile's
        register, a local part); ``body(idx)`` gets ``idx(k)``, the text of map k.
        A ``#pragma unroll`` loop when every map is a digit sum over ``radices``
        (the loop's register digits), else one copy of the body per register.
        Each ``idx(k)`` is safe as an operand of ``+`` (a mask is parenthesised:
        bodies add it to a base index).
        """
        if count == 1:
            self.extend(body(lambda k: str(maps[k][0])))
            return
        fits = [fit_digit_sum(m, radices) for m in maps]
        if all(f is not None for f in fits):
            texts = [f.render(var, count) for f in fits]  # type: ignore[union-attr]
            self.line("#pragma unroll")
            with self.block(f"for (int {var} = 0; {var} < {count}; ++{var})"):
                self.extend(body(lambda k: texts[k]))
            return
        for reg in range(count):
            lines = list(body(lambda k, reg=reg: str(maps[k][reg])))
            if len(lines) > 1:  # each copy in its own scope: bodies declare temporaries
                with self.block():
                    self.extend(lines)
            else:
                self.extend(lines)

    def local_loop(
        self,
        out: RegisterTensor,
        maps: Sequence[Sequence[int]],
        body: Callable[[Callable[[int], str]], Sequence[str]],
    ) -> None:
        """:meth:`per_local` over the registers of ``out``; map 0 is ``out``'s own index."""
        layout = self.layout(out)
        identity = list(range(layout.local_size))
        self.per_local(layout.local_size, local_radices(layout), [identity, *maps], body)

    # -- global and shared tensors ---------------------------------------------------------------
    def global_var(self, t: GlobalTensor) -> GlobalVar:
        found = self.globals.get(id(t))
        if found is None:
            raise CodegenError(f"global tensor {self.names[t]} is used before its global_view")
        return found

    def shared_var(self, t: SharedTensor) -> SharedVar:
        found = self.shared.get(id(t))
        if found is None:
            raise CodegenError(f"shared tensor {self.names[t]} is used before alloc_shared")
        return found

    # -- assumptions -----------------------------------------------------------------------------
    def assume_value(self, param: str, d: int) -> None:
        if d > 1:
            self.value_assumptions[param] = _lcm(self.value_assumptions.get(param, 1), d)

    def guard(self, needs: Mapping[str, int]) -> str:
        """A C test that every parameter in ``needs`` is a multiple of its divisor.

        Each test is computed once at the kernel's top (parameters never change).
        """
        names = []
        for param, d in sorted(needs.items()):
            key = (param, d)
            if key not in self._guards:
                name = self.c.fresh(f"{param}_is_multiple_of_{d}")
                var = next(p.var for p in self.program.params if p.name == param)
                test = (
                    f"({self.c[var]} & {d - 1}) == 0" if _pow2(d) else f"{self.c[var]} % {d} == 0"
                )
                self.guard_lines.append(f"const bool {name} = {test};")
                self._guards[key] = name
            names.append(self._guards[key])
        return " && ".join(names)

    def assume_address(self, param: str, nbytes: int) -> None:
        self.address_assumptions[param] = max(self.address_assumptions.get(param, 1), nbytes)

    def assumptions(self) -> tuple[Assumption, ...]:
        values = [Assumption(p, "value", d) for p, d in sorted(self.value_assumptions.items())]
        addresses = [
            Assumption(p, "address", d) for p, d in sorted(self.address_assumptions.items())
        ]
        return tuple(values + addresses)

    # -- statements ------------------------------------------------------------------------------
    def stmt(self, s: Stmt) -> None:
        match s:
            case Seq():
                for inner in s.body:
                    self.stmt(inner)
            case InstStmt(inst=inst):
                self.comment(format_instruction(inst, self.names))
                EMIT.lookup(inst)(self, inst)
            case For():
                self._for(s)
            case If(cond=cond, then=then, orelse=orelse):
                with self.block(f"if ({self.expr(cond)})"), self._knowing(self.proven_by(cond)):
                    self.stmt(then)
                if orelse is not None and orelse.body:
                    self.lines[-1] += " else {"
                    self.depth += 1
                    self.stmt(orelse)
                    self.depth -= 1
                    self.line("}")
            case While(cond=cond, body=body):
                with self.block(f"while ({self.expr(cond)})"):
                    self.stmt(body)
            case Break():
                self.line("break;")
            case Declare(var=var, value=value):
                ctype = scalar_ctype(var.dtype)
                const = "const " if self.facts[var].kind == "let" else ""
                self.line(f"{const}{ctype} {self.c[var]} = {self._fit(value, var.dtype)};")
            case AssignScalar(var=var, value=value):
                self.line(f"{self.c[var]} = {self._fit(value, var.dtype)};")
            case _:
                raise AssertionError(f"unknown statement {s!r}")

    def _fit(self, value: Expr, t: DataType) -> str:
        """``value`` converted implicitly to ``t`` (the interpreter's ``fit``)."""
        return c_fit(value, t, self.scalars)

    def _for(self, s: For) -> None:
        var = self.c[s.var]
        ctype = scalar_ctype(s.var.dtype)
        stop, step = self.expr(s.stop), self.expr(s.step)
        if not self.stable(s.stop):
            name = self.c.fresh(f"{var}_stop")
            self.line(f"const {ctype} {name} = {stop};")
            stop = name
        if not self.stable(s.step):
            name = self.c.fresh(f"{var}_step")
            self.line(f"const {ctype} {name} = {step};")
            step = name
        step_value = _const_int(s.step)
        if step_value is not None and step_value > 0:
            test = f"{var} < {stop}"
        elif step_value is not None and step_value < 0:
            test = f"{var} > {stop}"
        else:
            test = f"({step} > 0 ? {var} < {stop} : {var} > {stop})"
        advance = f"++{var}" if step_value == 1 else f"{var} += {step}"
        if s.unroll is not None:
            self.line(f"#pragma unroll {s.unroll}")
        with self.block(f"for ({ctype} {var} = {self.expr(s.start)}; {test}; {advance})"):
            self.stmt(s.body)

    # -- the kernel ------------------------------------------------------------------------------
    def kernel(self) -> CudaKernel:
        self.stmt(self.program.body)
        params = tuple(_param(p, self.c[p.var]) for p in self.program.params)
        args = ", ".join(f"{p.ctype} {self.c[v.var]}" for p, v in zip(params, self.program.params))
        shared = self.smem.peak
        dynamic = shared > STATIC_SHARED_LIMIT
        head = [
            f"// Generated by tilevm from kernel '{self.program.name}'"
            + (f" ({_constants(self.program.constants)})" if self.program.constants else "")
            + f": {self.block_threads} threads per block.",
        ]
        prelude = self.prelude.text()
        out = head + ([prelude, ""] if prelude else [])
        out.append(
            f'extern "C" __global__ void __launch_bounds__({self.block_threads}) '
            f"{self.program.name}({args}) {{"
        )
        out.append("  const int tid = threadIdx.x;")
        if shared:
            if dynamic:
                out.append("  extern __shared__ alignas(16) unsigned char smem[];")
            else:
                out.append(f"  __shared__ alignas(16) unsigned char smem[{shared}];")
        if self.coords_lines:
            out.append("  // Thread parts of the logical index under each register layout.")
            out.extend("  " + line for line in self.coords_lines)
        if self.guard_lines:
            out.append(
                "  // Vector accesses need these; when one fails they go element by element."
            )
            out.extend("  " + line for line in self.guard_lines)
        out.extend(self.lines)
        out.append("}")
        return CudaKernel(
            name=self.program.name,
            source="\n".join(out) + "\n",
            params=params,
            num_threads=self.block_threads,
            shared_bytes=shared,
            assumptions=self.assumptions(),
            dynamic_shared=dynamic,
        )


def emit_cuda(program: Program, options: EmitOptions | None = None) -> CudaKernel:
    """CUDA C++ for ``program``, whose register tiles all have layouts.

    Parameters
    ----------
    program
        The output of :func:`tilevm.passes.pipeline.run_pipeline`.
    options
        What may be assumed of the arguments (:class:`EmitOptions`); by default
        the kernel tests the divisibility its vector accesses need, and records
        the pointer alignment they need in :attr:`CudaKernel.assumptions`.

    Raises
    ------
    CodegenError
        A register tile without a layout, or an instruction the emitter cannot
        lower as laid out (a dot whose operands are not on mma fragments...).
    """
    from . import compute, dot, memory, reduce  # noqa: F401  (registers the rules)

    return Emitter(program, options or EmitOptions()).kernel()


# -- helpers ---------------------------------------------------------------------------------------
def _param(p, cname: str) -> KernelParam:
    if p.kind == "pointer":
        return KernelParam(p.name, "pointer", p.dtype, f"{elem_ctype(p.dtype)}*")
    return KernelParam(p.name, "scalar", p.dtype, param_ctype(p.dtype))


def _constants(constants: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in constants.items())


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _const_int(e: Expr | int) -> int | None:
    from ..ir.expr import Const

    if isinstance(e, int):
        return e
    if isinstance(e, Const) and e.dtype.is_integer:
        return int(e.value)
    return None


def _vars(e: Expr) -> Iterator[Var]:
    from ..ir.expr import Binary, Select, Unary

    match e:
        case Var():
            yield e
        case Unary(x=x):
            yield from _vars(x)
        case Binary(lhs=a, rhs=b):
            yield from _vars(a)
            yield from _vars(b)
        case Select(cond=c, a=a, b=b):
            yield from _vars(c)
            yield from _vars(a)
            yield from _vars(b)


def _collect_facts(program: Program, facts: dict[Var, VarFact]) -> None:
    for p in program.params:
        facts[p.var] = VarFact("param")

    def walk(seq: Seq) -> None:
        for s in seq.body:
            match s:
                case Declare(var=var, value=value):
                    facts[var] = VarFact("let", value)
                case AssignScalar(var=var):
                    facts[var] = VarFact("assigned")
                case For(var=var, start=start, step=step, body=body):
                    facts[var] = VarFact("loop", start, step)
                    walk(body)
                case While(body=body):
                    walk(body)
                case If(then=then, orelse=orelse):
                    walk(then)
                    if orelse is not None:
                        walk(orelse)

    walk(program.body)


__all__ = [
    "EMIT",
    "Assumption",
    "CodegenError",
    "Coords",
    "CudaKernel",
    "EmitOptions",
    "Emitter",
    "GlobalVar",
    "KernelParam",
    "SharedVar",
    "emit_cuda",
]
