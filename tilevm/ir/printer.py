"""The IR's text form: stable, readable, one line per instruction.

A program prints as a header, its constants and grid, then its body with
two spaces of indent per block::

    kernel vector_add(x: ptr<float32>, out: ptr<float32>, n: int32) warps=4
      constants: BLOCK=1024
      grid: [(n + 1023) // 1024]
      gx = global_view x : float32[n] strides=[1]
      go = global_view out : float32[n] strides=[1]
      for i in range(0, 1024, 256) unroll=2:
        a = load_global gx[block_idx.x * 1024 + i] masked : float32[256]
        b = mul a, 2.0 : float32[256]
        store_global go[block_idx.x * 1024 + i] <- b masked

Each line reads ``result = mnemonic operands attributes : type``: what comes
before ``:`` is the operation, what follows is the new tensor's dtype, shape
and (once known) layout. Instructions that write an existing tensor use an
arrow (``store_shared sa[0, 0] <- t``, ``assign acc <- d``).

Names are stable: a value prints as its ``name`` hint, made unique with a
numeric suffix (``acc``, ``acc_1``), or as ``%0``, ``%1``, ... when it has no
hint, numbered in the order the printer first meets it. Nothing depends on
object ids, so the same program prints the same text on every run, which is
what golden tests compare.

Expressions print like Python with the fewest parentheses its precedence
allows (``(n + 63) // 64``, ``a - (b - c)``); comparisons are parenthesised
inside one another so that nothing reads as a chained comparison. Casts print
as ``dtype(x)``, ``min``/``max``/``exp``/... as calls, ``Select`` as
``select(cond, a, b)``.

Each instruction class has its own printing rule in :data:`PRINT_RULES`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..dtypes import DataType
from . import inst as I
from .expr import BOOL, SYMBOLS, Binary, BlockIdx, Const, Expr, NumBlocks, Select, Unary, Var
from .plan import Plan
from .program import Program
from .registry import RuleTable
from .stmt import AssignScalar, Break, Declare, For, If, InstStmt, Seq, Stmt, While
from .tensor import GlobalTensor, RegisterTensor, SharedTensor

PRINT_RULES = RuleTable("printer")
"""One rule per instruction class: ``rule(inst, printer) -> str``, the instruction's line."""

INDENT = "  "


class Names:
    """Printed names of tensors and scalar variables, assigned on first sight.

    ``names[value]`` returns the value's name: its ``name`` hint, with a suffix
    ``_1``, ``_2``, ... when that name is taken, or ``%N`` when it has none.
    Values are keyed by identity and kept alive, so a name never moves to
    another value.
    """

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._keep: list[Any] = []
        self._taken: set[str] = set()
        self._unnamed = 0

    def __contains__(self, value: Any) -> bool:
        return id(value) in self._names

    def __getitem__(self, value: Any) -> str:
        return self.name_as(value, getattr(value, "name", ""))

    def name_as(self, value: Any, hint: str) -> str:
        """Name ``value`` after ``hint`` (made unique) unless it already has a name."""
        if id(value) not in self._names:
            self._names[id(value)] = self._fresh(hint)
            self._keep.append(value)
        return self._names[id(value)]

    def _fresh(self, hint: str) -> str:
        if not hint:
            while f"%{self._unnamed}" in self._taken:
                self._unnamed += 1
            hint = f"%{self._unnamed}"
            self._unnamed += 1
        name, suffix = hint, 0
        while name in self._taken:
            suffix += 1
            name = f"{hint}_{suffix}"
        self._taken.add(name)
        return name


# -- expressions ---------------------------------------------------------------------------------

_ATOM = 100
_UNARY = 11  # -x, ~x, and negative literals
_NOT = 3
_PRECEDENCE = {
    "lor": 1,
    "land": 2,
    **dict.fromkeys(("lt", "le", "gt", "ge", "eq", "ne"), 4),
    "or": 5,
    "xor": 6,
    "and": 7,
    "shl": 8,
    "shr": 8,
    "add": 9,
    "sub": 9,
    "mul": 10,
    "floordiv": 10,
    "mod": 10,
    "truediv": 10,
}
_COMPARISON = 4
_PREFIX = {"neg": "-", "invert": "~"}
_CALLS = ("min", "max")


def format_expr(expr: Expr, names: Mapping[Any, str] | Names | None = None) -> str:
    """A scalar expression as Python-like text with minimal parentheses.

    Parameters
    ----------
    expr
        The expression.
    names
        Maps each :class:`Var` to its printed name: a :class:`Names` (which names
        values on first sight, as :func:`format_program` does) or a plain mapping.
        ``None`` prints each variable under its own ``name``.
    """
    return _expr(expr, Names() if names is None else names)[0]


def format_number(value: int | float) -> str:
    """A Python number as the IR prints it: ints plainly, floats by ``repr`` (``2.0``, ``inf``)."""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _expr(e: Expr, names: Any) -> tuple[str, int]:
    match e:
        case Var():
            return names[e], _ATOM
        case Const(value=value, dtype=dtype):
            if dtype == BOOL and value in (0, 1):
                return ("True" if value else "False"), _ATOM
            text = format_number(value)
            return text, _UNARY if text.startswith("-") else _ATOM
        case BlockIdx(dim=dim):
            return f"block_idx.{_axis(dim)}", _ATOM
        case NumBlocks(dim=dim):
            return f"num_blocks.{_axis(dim)}", _ATOM
        case Unary(op="cast", x=x, dtype=dtype):
            return f"{dtype}({_expr(x, names)[0]})", _ATOM
        case Unary(op="lnot", x=x):
            return f"not {_operand(x, names, _NOT, strict=False)}", _NOT
        case Unary(op=op, x=x) if op in _PREFIX:
            return f"{_PREFIX[op]}{_operand(x, names, _UNARY, strict=True)}", _UNARY
        case Unary(op=op, x=x):
            return f"{op}({_expr(x, names)[0]})", _ATOM
        case Binary(op=op, lhs=lhs, rhs=rhs) if op in _CALLS or op not in _PRECEDENCE:
            return f"{op}({_expr(lhs, names)[0]}, {_expr(rhs, names)[0]})", _ATOM
        case Binary(op=op, lhs=lhs, rhs=rhs):
            level = _PRECEDENCE[op]
            left = _operand(lhs, names, level, strict=level == _COMPARISON)
            right = _operand(rhs, names, level, strict=True)
            return f"{left} {SYMBOLS[op]} {right}", level
        case Select(cond=cond, a=a, b=b):
            parts = ", ".join(_expr(x, names)[0] for x in (cond, a, b))
            return f"select({parts})", _ATOM
        case _:
            raise AssertionError(f"format_expr: unknown expression {e!r}")


def _operand(e: Expr, names: Any, level: int, *, strict: bool) -> str:
    """``e`` as an operand of an operator binding at ``level``, parenthesised if it must be."""
    text, own = _expr(e, names)
    return f"({text})" if own < level or (strict and own == level) else text


def _axis(dim: int) -> str:
    return "xyz"[dim] if dim in (0, 1, 2) else f"[{dim}]"


# -- instructions --------------------------------------------------------------------------------


class Printer:
    """What printing rules use: names, scalars, offsets and types, all printed one way."""

    def __init__(self, names: Names | None = None):
        self.names = Names() if names is None else names

    def name(self, value: Any) -> str:
        return self.names[value]

    def value(self, value: Any) -> str:
        """A tensor's name, a scalar expression or a number."""
        if isinstance(value, (GlobalTensor, SharedTensor, RegisterTensor, Var)):
            return self.names[value]
        if isinstance(value, Expr):
            return format_expr(value, self.names)
        if isinstance(value, (int, float)):
            return format_number(value)
        if isinstance(value, DataType):
            return str(value)
        return repr(value)

    def values(self, values: Sequence[Any]) -> str:
        return ", ".join(self.value(v) for v in values)

    def indexed(self, tensor: Any, offsets: Sequence[Any]) -> str:
        return f"{self.name(tensor)}[{self.values(offsets)}]"

    def type(self, tensor: GlobalTensor | SharedTensor | RegisterTensor) -> str:
        """``dtype[shape]``, then ``strides=`` for global and ``layout=`` for laid-out tensors."""
        text = f"{tensor.dtype}[{self.values(tensor.shape)}]"
        if isinstance(tensor, GlobalTensor):
            return f"{text} strides=[{self.values(tensor.strides)}]"
        if tensor.layout is not None:
            return f"{text} layout={tensor.layout}"
        return text

    def define(self, out: Any, operation: str) -> str:
        """The line of an instruction that creates ``out``: ``out = operation : type``."""
        return f"{self.name(out)} = {operation} : {self.type(out)}"


def format_instruction(inst: I.Instruction, names: Names | None = None) -> str:
    """One instruction's line, without indent (names as in ``names`` if given)."""
    return PRINT_RULES.lookup(inst)(inst, Printer(names))


def _masked(masked: bool) -> str:
    return "masked" if masked else "unmasked"


@PRINT_RULES.rule(I.GlobalView)
def _global_view(inst: I.GlobalView, p: Printer) -> str:
    return p.define(inst.out, f"global_view {p.name(inst.out.ptr)}")


@PRINT_RULES.rule(I.LoadGlobal)
def _load_global(inst: I.LoadGlobal, p: Printer) -> str:
    other = f" other={format_number(inst.other)}" if inst.masked and inst.other != 0 else ""
    source = p.indexed(inst.src, inst.offsets)
    return p.define(inst.out, f"load_global {source} {_masked(inst.masked)}{other}")


@PRINT_RULES.rule(I.StoreGlobal)
def _store_global(inst: I.StoreGlobal, p: Printer) -> str:
    target = p.indexed(inst.dst, inst.offsets)
    return f"store_global {target} <- {p.name(inst.src)} {_masked(inst.masked)}"


@PRINT_RULES.rule(I.AtomicAdd)
def _atomic_add(inst: I.AtomicAdd, p: Printer) -> str:
    target = p.indexed(inst.dst, inst.offsets)
    return f"{p.name(inst.out)}: {inst.out.dtype} = atomic_add {target} += {p.value(inst.value)}"


@PRINT_RULES.rule(I.Fence)
def _fence(inst: I.Fence, p: Printer) -> str:
    return "fence"


@PRINT_RULES.rule(I.AllocShared)
def _alloc_shared(inst: I.AllocShared, p: Printer) -> str:
    return p.define(inst.out, "alloc_shared")


@PRINT_RULES.rule(I.FreeShared)
def _free_shared(inst: I.FreeShared, p: Printer) -> str:
    return f"free_shared {p.name(inst.tensor)}"


@PRINT_RULES.rule(I.LoadShared)
def _load_shared(inst: I.LoadShared, p: Printer) -> str:
    return p.define(inst.out, f"load_shared {p.indexed(inst.src, inst.offsets)}")


@PRINT_RULES.rule(I.StoreShared)
def _store_shared(inst: I.StoreShared, p: Printer) -> str:
    return f"store_shared {p.indexed(inst.dst, inst.offsets)} <- {p.name(inst.src)}"


@PRINT_RULES.rule(I.CopyAsync)
def _copy_async(inst: I.CopyAsync, p: Printer) -> str:
    source = p.indexed(inst.src, inst.offsets)
    return f"copy_async {p.name(inst.dst)} <- {source} {_masked(inst.masked)}"


@PRINT_RULES.rule(I.CopyAsyncCommit)
def _copy_async_commit(inst: I.CopyAsyncCommit, p: Printer) -> str:
    return "copy_async_commit"


@PRINT_RULES.rule(I.CopyAsyncWait)
def _copy_async_wait(inst: I.CopyAsyncWait, p: Printer) -> str:
    return f"copy_async_wait pending={inst.pending}"


@PRINT_RULES.rule(I.SyncThreads)
def _sync_threads(inst: I.SyncThreads, p: Printer) -> str:
    return "sync_threads"


@PRINT_RULES.rule(I.Full)
def _full(inst: I.Full, p: Printer) -> str:
    return p.define(inst.out, f"full {p.value(inst.value)}")


@PRINT_RULES.rule(I.Arange)
def _arange(inst: I.Arange, p: Printer) -> str:
    return p.define(inst.out, f"arange dim={inst.dim}")


@PRINT_RULES.rule(I.Cast)
def _cast(inst: I.Cast, p: Printer) -> str:
    return p.define(inst.out, f"cast {p.name(inst.x)}")


@PRINT_RULES.rule(I.View)
def _view(inst: I.View, p: Printer) -> str:
    return p.define(inst.out, f"view {p.name(inst.x)}")


@PRINT_RULES.rule(I.ElementwiseUnary)
def _unary(inst: I.ElementwiseUnary, p: Printer) -> str:
    return p.define(inst.out, f"{inst.op} {p.name(inst.x)}")


@PRINT_RULES.rule(I.ElementwiseBinary)
def _binary(inst: I.ElementwiseBinary, p: Printer) -> str:
    return p.define(inst.out, f"{inst.op} {p.values((inst.a, inst.b))}")


@PRINT_RULES.rule(I.Where)
def _where(inst: I.Where, p: Printer) -> str:
    return p.define(inst.out, f"where {p.values((inst.cond, inst.a, inst.b))}")


@PRINT_RULES.rule(I.Dot)
def _dot(inst: I.Dot, p: Printer) -> str:
    return p.define(inst.out, f"dot {p.values((inst.a, inst.b, inst.c))}")


@PRINT_RULES.rule(I.Reduce)
def _reduce(inst: I.Reduce, p: Printer) -> str:
    dims = ", ".join(str(d) for d in inst.dims)
    return p.define(inst.out, f"reduce {inst.op} {p.name(inst.x)} dims=[{dims}]")


@PRINT_RULES.rule(I.Reshape)
def _reshape(inst: I.Reshape, p: Printer) -> str:
    return p.define(inst.out, f"reshape {p.name(inst.x)}")


@PRINT_RULES.rule(I.Slice)
def _slice(inst: I.Slice, p: Printer) -> str:
    return p.define(inst.out, f"slice {p.name(inst.x)} at {list(inst.offsets)}")


@PRINT_RULES.rule(I.Transpose)
def _transpose(inst: I.Transpose, p: Printer) -> str:
    if inst.dims == (1, 0):
        return p.define(inst.out, f"trans {p.name(inst.x)}")
    return p.define(inst.out, f"permute {p.name(inst.x)} {list(inst.dims)}")


@PRINT_RULES.rule(I.ConvertLayout)
def _convert_layout(inst: I.ConvertLayout, p: Printer) -> str:
    return p.define(inst.out, f"convert_layout {p.name(inst.x)}")


@PRINT_RULES.rule(I.Assign)
def _assign(inst: I.Assign, p: Printer) -> str:
    return f"assign {p.name(inst.out)} <- {p.name(inst.x)}"


@PRINT_RULES.rule(I.AnnotateLayout)
def _annotate_layout(inst: I.AnnotateLayout, p: Printer) -> str:
    return f"annotate_layout {p.name(inst.tensor)} layout={inst.layout}"


@PRINT_RULES.rule(I.Print)
def _print(inst: I.Print, p: Printer) -> str:
    message = json.dumps(inst.message, ensure_ascii=False)
    return f"print {', '.join([message, *(p.value(a) for a in inst.args)])}"


# -- statements and programs ---------------------------------------------------------------------


def format_program(program: Program) -> str:
    """The whole program as text, ending in a newline; the same program always gives the same text.

    See the module docstring for the form.
    """
    p = Printer()
    for param in program.params:
        p.names.name_as(param.var, param.name)
    params = ", ".join(_param(param, p) for param in program.params)
    lines = [f"kernel {program.name}({params}) warps={program.num_warps}"]
    if program.constants:
        constants = ", ".join(f"{k}={_constant(v)}" for k, v in program.constants.items())
        lines.append(f"{INDENT}constants: {constants}")
    if program.grid is not None:
        lines.append(f"{INDENT}grid: [{p.values(program.grid)}]")
    _seq(program.body, p, 1, lines, program.plan)
    return "\n".join(lines) + "\n"


def _param(param: Any, p: Printer) -> str:
    kind = f"ptr<{param.dtype}>" if param.kind == "pointer" else str(param.dtype)
    return f"{p.name(param.var)}: {kind}"


def _constant(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(_constant(v) for v in value)}]"
    if isinstance(value, tuple):
        inner = ", ".join(_constant(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


def _seq(seq: Seq, p: Printer, depth: int, lines: list[str], plan: Plan | None = None) -> None:
    if not seq.body:
        lines.append(f"{INDENT * depth}pass")
    for stmt in seq.body:
        _stmt(stmt, p, depth, lines, plan)


def _stmt(stmt: Stmt, p: Printer, depth: int, lines: list[str], plan: Plan | None) -> None:
    pad = INDENT * depth
    match stmt:
        case InstStmt(inst=inst):
            note = plan.note(inst) if plan is not None else ""
            line = PRINT_RULES.lookup(inst)(inst, p)
            lines.append(pad + line + (f"  # {note}" if note else ""))
        case For(var=var, start=start, stop=stop, step=step, body=body, unroll=unroll):
            bounds = p.values((start, stop, step))
            hint = "" if unroll is None else f" unroll={unroll}"
            lines.append(f"{pad}for {p.name(var)} in range({bounds}){hint}:")
            _seq(body, p, depth + 1, lines, plan)
        case If(cond=cond, then=then, orelse=orelse):
            lines.append(f"{pad}if {p.value(cond)}:")
            _seq(then, p, depth + 1, lines, plan)
            if orelse is not None:
                lines.append(f"{pad}else:")
                _seq(orelse, p, depth + 1, lines, plan)
        case While(cond=cond, body=body):
            lines.append(f"{pad}while {p.value(cond)}:")
            _seq(body, p, depth + 1, lines, plan)
        case Break():
            lines.append(f"{pad}break")
        case Declare(var=var, value=value):
            lines.append(f"{pad}let {p.name(var)}: {var.dtype} = {p.value(value)}")
        case AssignScalar(var=var, value=value):
            lines.append(f"{pad}{p.name(var)} = {p.value(value)}")
        case Seq():
            _seq(stmt, p, depth, lines, plan)
        case _:
            raise AssertionError(f"format_program: unknown statement {stmt!r}")
