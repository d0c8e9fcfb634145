"""The verifier: a finished program's values, types, shapes and memory spaces are consistent.

:func:`verify` walks a :class:`~tilevm.ir.program.Program` once, in order, and
raises :class:`VerifyError` at the first problem, prefixed with the kernel
source position (``kernel.py:12: ``) of the instruction or statement at fault.

What it checks:

============================  =================================================================
values                        every tensor and scalar variable is defined before it is used, on
                              every path: what an ``if``, ``for`` or ``while`` body defines is
                              gone after the body (a tile defined before a loop and given new
                              values with ``assign`` inside is fine); each tensor is created by
                              one instruction; a shared tensor is not used after ``free_shared``
memory spaces                 each operand lives where the instruction reads or writes it
                              (``load_global`` reads a global tensor into a register tile, ...)
types and shapes              the rules :class:`~tilevm.ir.builder.Builder` enforces while
                              building, checked again on the finished program: offsets one per
                              dimension, stores keep the dtype, dot shapes and accumulator,
                              broadcasting, reduce dims, bit counts of views, layouts that fit
                              their tile and the kernel's threads
control flow                  conditions and range bounds are integer scalars; ``break`` sits in
                              a loop; loop variables are not assigned; scalar assignments keep
                              the variable's type
parameters                    unique names; the grid uses parameters only
============================  =================================================================

Passes run it between each other, so a rule here is also what a pass must
keep true. Each instruction class has its own rule in :data:`VERIFY_RULES`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import numpy as np

from .. import dtypes
from ..dtypes import DataType
from ..errors import LayoutError, TileVMError
from ..layouts.register import RegisterLayout
from ..layouts.shared import SharedLayout
from ..layouts.view import check_view_legal
from . import inst as I
from .builder import UNARY_TENSOR_OPS, IRError, broadcast_shapes, tile_result_type
from .expr import (
    BINARY_OPS,
    BOOL,
    UNARY_OPS,
    Binary,
    BlockIdx,
    Const,
    Expr,
    NumBlocks,
    Select,
    Unary,
    Var,
)
from .printer import format_expr, format_number
from .program import Program
from .registry import RuleTable
from .stmt import AssignScalar, Break, Declare, For, If, InstStmt, Seq, Stmt, While
from .tensor import GlobalTensor, RegisterTensor, SharedTensor

VERIFY_RULES = RuleTable("verify")
"""One rule per instruction class: ``rule(inst, checker)``, raising through ``checker.fail``."""


class VerifyError(TileVMError, ValueError):
    """A program breaks a rule of the IR; the message starts with the kernel line at fault.

    Attributes
    ----------
    detail
        The message without the location prefix.
    loc
        The :class:`~tilevm.ir.inst.SourceLoc` of the offending instruction or statement,
        or ``None`` when it has none.
    """

    def __init__(self, detail: str, loc: I.SourceLoc | None = None):
        self.detail = detail
        self.loc = loc
        super().__init__(detail if loc is None else f"{loc.file}:{loc.line}: {detail}")


def verify(program: Program) -> None:
    """Check ``program``; raise :class:`VerifyError` describing the first problem found.

    Returns ``None`` when the program is well formed. The program is not changed.
    """
    checker = Checker(program)
    checker.check_program()


def describe(value: Any) -> str:
    """A value as an error message names it: its memory space, type and name hint."""
    if isinstance(value, (GlobalTensor, SharedTensor, RegisterTensor)):
        space = {GlobalTensor: "global tensor", SharedTensor: "shared tensor"}.get(
            type(value), "register tile"
        )
        shape = ", ".join(format_expr(s) if isinstance(s, Expr) else str(s) for s in value.shape)
        named = f" '{value.name}'" if value.name else ""
        return f"a {space}{named} {value.dtype}[{shape}]"
    if isinstance(value, Var):
        return f"the scalar '{value.name}' ({value.dtype})"
    if isinstance(value, Expr):
        return f"the scalar {format_expr(value)} ({value.dtype})"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return repr(value)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _type_text(t: RegisterTensor | SharedTensor) -> str:
    return f"{t.dtype}{_shape_text(t.shape)}"


_KIND = {GlobalTensor: "a global tensor", SharedTensor: "a shared tensor"}


class Checker:
    """The verifier's state while it walks a program; rules call its checks and ``fail``.

    Scoping follows the structured control flow: a block (an if branch, a loop
    body) sees what was visible where it starts plus what it defines itself,
    and what it defines is forgotten when it ends. Frees flow outward: a
    tensor freed on some path counts as freed after it.
    """

    def __init__(self, program: Program):
        self.program = program
        self.num_threads = 32 * program.num_warps
        self.loc: I.SourceLoc | None = None
        self._visible: set[int] = set()
        self._defined: set[int] = set()
        self._keep: list[Any] = []  # keeps ids stable while the walk lasts
        self._freed: set[int] = set()
        self._loop_vars: set[int] = set()
        self._pointers: set[int] = set()
        self._loops = 0

    # -- reporting -----------------------------------------------------------------------------
    def fail(self, message: str) -> NoReturn:
        raise VerifyError(message, self.loc)

    # -- values --------------------------------------------------------------------------------
    def define(self, value: Any) -> None:
        """``value`` is created here: it must not exist yet, and is visible from now on."""
        if id(value) in self._defined:
            if isinstance(value, Var):
                self.fail(
                    f"{describe(value)} is defined a second time; a scalar variable is declared "
                    "once (a new value is an assignment)"
                )
            self.fail(
                f"{describe(value)} is created a second time; each tensor is created by one "
                "instruction (assign gives an existing tile a new value)"
            )
        self._defined.add(id(value))
        self._visible.add(id(value))
        self._keep.append(value)

    def use(self, value: Any, what: str) -> None:
        """``value`` is read or written here: it must be visible and, if shared, not freed.

        Scalar expressions are checked variable by variable; numbers need nothing.
        """
        if isinstance(value, (GlobalTensor, SharedTensor, RegisterTensor, Var)):
            if id(value) not in self._visible:
                where = (
                    "inside a block (an if or loop body) that has ended before this use"
                    if id(value) in self._defined
                    else "nowhere before this use"
                )
                self.fail(f"{what}: {describe(value)} is defined {where}")
            if id(value) in self._freed:
                self.fail(f"{what}: {describe(value)} is used after free_shared")
            if isinstance(value, GlobalTensor):
                self.use(value.ptr, what)
        elif isinstance(value, Expr):
            self.expr(value, what)

    def expr(self, e: Expr, what: str) -> None:
        """Every variable of ``e`` is visible and every operator is known."""
        match e:
            case Var():
                self.use(e, what)
            case Const(value=value):
                if not isinstance(value, (int, float, np.integer, np.floating)):
                    self.fail(f"{what}: a constant must be a number; got {value!r}")
            case BlockIdx(dim=dim) | NumBlocks(dim=dim):
                if dim not in (0, 1, 2):
                    self.fail(f"{what}: grid dimensions are 0, 1 and 2; got {dim}")
            case Unary(op=op, x=x):
                if op not in UNARY_OPS:
                    self.fail(f"{what}: unknown scalar operator {op!r}")
                self.expr(x, what)
            case Binary(op=op, lhs=lhs, rhs=rhs):
                if op not in BINARY_OPS:
                    self.fail(f"{what}: unknown scalar operator {op!r}")
                self.expr(lhs, what)
                self.expr(rhs, what)
            case Select(cond=cond, a=a, b=b):
                for x in (cond, a, b):
                    self.expr(x, what)
            case _:
                self.fail(f"{what}: expected a scalar expression; got {e!r}")

    def scalar(self, value: Any, what: str, *, integer: bool = False) -> None:
        """``value`` is a number or a scalar expression (of an integer type if ``integer``)."""
        if isinstance(value, Expr):
            self.expr(value, what)
            if integer and not value.dtype.is_integer:
                self.fail(f"{what} must be an integer scalar; got {describe(value)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer)):
            self.fail(f"{what} must be a number or a scalar expression; got {value!r}")
        elif integer and not isinstance(value, (int, np.integer)):
            self.fail(f"{what} must be an integer; got {value!r}")

    # -- operands ------------------------------------------------------------------------------
    def expect(self, value: Any, cls: type, what: str) -> None:
        """``value`` is a tensor of memory space ``cls``."""
        if not isinstance(value, cls):
            kind = _KIND.get(cls, "a register tile")
            self.fail(f"{what} must be {kind}; got {describe(value)}")

    def operand(self, value: Any, what: str) -> None:
        """An elementwise operand: a register tile, a scalar expression or a number."""
        if isinstance(value, (SharedTensor, GlobalTensor)):
            self.fail(f"{what}: operands must be in registers; load {describe(value)} first")
        if not isinstance(value, RegisterTensor):
            self.scalar(value, what)

    def offsets(self, offsets: Any, rank: int, what: str) -> None:
        if not isinstance(offsets, tuple) or len(offsets) != rank:
            count = len(offsets) if isinstance(offsets, (tuple, list)) else offsets
            self.fail(f"{what}: expected {rank} offsets, one per dimension; got {count}")
        for o in offsets:
            self.scalar(o, f"{what}: offset", integer=True)

    def inside(self, offsets: tuple, tile: RegisterTensor, shared: SharedTensor, what: str):
        """A tile at constant offsets stays within the shared tensor."""
        if tile.rank != shared.rank:
            self.fail(f"{what}: tile rank {tile.rank} != shared tensor rank {shared.rank}")
        for o, s, n in zip(offsets, tile.shape, shared.shape):
            if isinstance(o, int) and not 0 <= o <= n - s:
                self.fail(
                    f"{what}: a {_shape_text(tile.shape)} tile at offsets {_shape_text(offsets)} "
                    f"leaves the shared tensor of shape {_shape_text(shared.shape)}"
                )

    def shape(self, shape: Any, what: str) -> None:
        if (
            not isinstance(shape, tuple)
            or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
        ):
            self.fail(f"{what} must be a non-empty tuple of positive ints; got {shape!r}")

    def register_layout(self, layout: Any, shape: tuple[int, ...], what: str) -> None:
        if layout is None:
            return
        if not isinstance(layout, RegisterLayout):
            self.fail(f"{what}: layout must be a RegisterLayout; got {layout!r}")
        if layout.shape != shape:
            self.fail(
                f"{what}: layout shape {_shape_text(layout.shape)} != tile shape "
                f"{_shape_text(shape)}"
            )
        if layout.num_threads > self.num_threads:
            self.fail(
                f"{what}: layout uses {layout.num_threads} threads; the kernel has "
                f"{self.num_threads}"
            )

    def new_tile(self, out: Any, what: str) -> None:
        """``out`` is a well-formed register tile created here."""
        self.expect(out, RegisterTensor, f"{what}: the result")
        self.shape(out.shape, f"{what}: the result's shape")
        self.register_layout(out.layout, out.shape, what)
        self.define(out)

    def result(self, out: Any, dtype: DataType, shape: tuple[int, ...], what: str) -> None:
        """``out`` is a new register tile of exactly ``dtype[shape]``."""
        self.expect(out, RegisterTensor, f"{what}: the result")
        if (out.dtype, out.shape) != (dtype, shape):
            self.fail(
                f"{what}: the result should be {dtype}{_shape_text(shape)}; it is {_type_text(out)}"
            )
        self.new_tile(out, what)

    # -- walking -------------------------------------------------------------------------------
    @contextmanager
    def block(self) -> Iterator[None]:
        saved = set(self._visible), set(self._loop_vars)
        try:
            yield
        finally:
            self._visible, self._loop_vars = saved

    def check_program(self) -> None:
        program = self.program
        if not isinstance(program.num_warps, int) or not 1 <= program.num_warps <= 32:
            self.fail(f"num_warps must be an int in 1..32; got {program.num_warps!r}")
        seen: set[str] = set()
        for param in program.params:
            if param.name in seen:
                self.fail(f"parameter names must be unique; '{param.name}' is used twice")
            seen.add(param.name)
            if param.kind not in ("pointer", "scalar"):
                self.fail(f"parameter '{param.name}': kind must be pointer or scalar")
            if not isinstance(param.var, Var):
                self.fail(f"parameter '{param.name}': expected a Var; got {param.var!r}")
            self.define(param.var)
            if param.kind == "pointer":
                self._pointers.add(id(param.var))
        for g in program.grid or ():
            self.scalar(g, "grid: a grid size", integer=True)
        self.seq(program.body)

    def seq(self, seq: Seq) -> None:
        for stmt in seq.body:
            self.stmt(stmt)

    def stmt(self, stmt: Stmt) -> None:
        match stmt:
            case InstStmt(inst=inst):
                self.loc = inst.loc
                name = _mnemonic(type(inst))
                for value in inst.inputs():
                    self.use(value, name)
                VERIFY_RULES.lookup(inst)(inst, self)
            case For(var=var, start=start, stop=stop, step=step, body=body):
                self.loc = stmt.loc
                for bound, what in ((start, "start"), (stop, "stop"), (step, "step")):
                    self.scalar(bound, f"for: the range's {what}", integer=True)
                if not isinstance(var, Var) or not var.dtype.is_integer:
                    self.fail(f"for: the loop variable must be an integer Var; got {var!r}")
                with self.block():
                    self.define(var)
                    self._loop_vars.add(id(var))
                    self._loops += 1
                    self.seq(body)
                    self._loops -= 1
            case If(cond=cond, then=then, orelse=orelse):
                self.loc = stmt.loc
                self.scalar(cond, "if: the condition", integer=True)
                with self.block():
                    self.seq(then)
                if orelse is not None:
                    with self.block():
                        self.seq(orelse)
            case While(cond=cond, body=body):
                self.loc = stmt.loc
                self.scalar(cond, "while: the condition", integer=True)
                with self.block():
                    self._loops += 1
                    self.seq(body)
                    self._loops -= 1
            case Break():
                self.loc = stmt.loc
                if not self._loops:
                    self.fail("break outside a loop")
            case Declare(var=var, value=value):
                self.loc = stmt.loc
                self.scalar(value, f"let {var.name}: the value")
                if isinstance(value, Expr) and value.dtype != var.dtype:
                    self.fail(
                        f"let {var.name}: the variable is {var.dtype}; its value is {value.dtype}"
                    )
                self.define(var)
            case AssignScalar(var=var, value=value):
                self.loc = stmt.loc
                self.use(var, f"assignment to {var.name}")
                if id(var) in self._loop_vars:
                    self.fail(f"the loop variable '{var.name}' cannot be assigned in its loop")
                self.scalar(value, f"assignment to {var.name}: the value")
                if isinstance(value, Expr) and value.dtype != var.dtype:
                    self.fail(
                        f"the scalar variable '{var.name}' keeps its type: it is {var.dtype}, "
                        f"the new value is {value.dtype}"
                    )
            case Seq():
                with self.block():
                    self.seq(stmt)
            case _:
                self.fail(f"expected a statement; got {stmt!r}")

    def mark_freed(self, tensor: SharedTensor) -> None:
        self._freed.add(id(tensor))

    def is_pointer(self, value: Any) -> bool:
        """Whether ``value`` is the variable of one of the program's pointer parameters."""
        return isinstance(value, Var) and id(value) in self._pointers


def _mnemonic(cls: type) -> str:
    """``LoadGlobal`` -> ``load_global``: the name the printer and error messages use."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


# -- memory --------------------------------------------------------------------------------------


@VERIFY_RULES.rule(I.GlobalView)
def _global_view(inst: I.GlobalView, c: Checker) -> None:
    out = inst.out
    c.expect(out, GlobalTensor, "global_view: the result")
    if not c.is_pointer(out.ptr):
        c.fail(f"global_view: must view a pointer parameter; got {describe(out.ptr)}")
    c.use(out.ptr, "global_view")
    if out.dtype.nbits < 8:
        c.fail(
            f"global tensors of {out.dtype} are not supported: load the packed bytes as uint8 "
            f"and view them as {out.dtype}"
        )
    if not isinstance(out.shape, tuple) or not out.shape:
        c.fail(f"global_view: shape must have at least one dimension; got {out.shape!r}")
    if not isinstance(out.strides, tuple) or len(out.strides) != len(out.shape):
        count = len(out.strides) if isinstance(out.strides, (tuple, list)) else out.strides
        c.fail(f"global_view: {len(out.shape)} sizes but {count} strides")
    for s in out.shape:
        c.scalar(s, "global_view: a size", integer=True)
        if isinstance(s, int) and s < 0:
            c.fail(f"global_view: sizes must be >= 0; got {s}")
    for s in out.strides:
        c.scalar(s, "global_view: a stride", integer=True)
    c.define(out)


@VERIFY_RULES.rule(I.LoadGlobal)
def _load_global(inst: I.LoadGlobal, c: Checker) -> None:
    c.expect(inst.src, GlobalTensor, "load_global: src")
    c.offsets(inst.offsets, inst.src.rank, "load_global")
    c.expect(inst.out, RegisterTensor, "load_global: the result")
    if inst.out.rank != inst.src.rank:
        c.fail(f"load_global: tile rank {inst.out.rank} != tensor rank {inst.src.rank}")
    c.result(inst.out, inst.src.dtype, inst.out.shape, "load_global")
    if not isinstance(inst.masked, bool):
        c.fail(f"load_global: masked must be True or False; got {inst.masked!r}")
    c.scalar(inst.other, "load_global: other")
    if isinstance(inst.other, Expr):
        c.fail("load_global: other must be a number")


@VERIFY_RULES.rule(I.StoreGlobal)
def _store_global(inst: I.StoreGlobal, c: Checker) -> None:
    c.expect(inst.dst, GlobalTensor, "store_global: dst")
    c.expect(inst.src, RegisterTensor, "store_global: src")
    c.offsets(inst.offsets, inst.dst.rank, "store_global")
    if inst.src.rank != inst.dst.rank:
        c.fail(f"store_global: tile rank {inst.src.rank} != tensor rank {inst.dst.rank}")
    if inst.src.dtype != inst.dst.dtype:
        c.fail(f"store_global: storing {inst.src.dtype} into a {inst.dst.dtype} tensor; cast first")


@VERIFY_RULES.rule(I.AtomicAdd)
def _atomic_add(inst: I.AtomicAdd, c: Checker) -> None:
    c.expect(inst.dst, GlobalTensor, "atomic_add: dst")
    c.offsets(inst.offsets, inst.dst.rank, "atomic_add")
    c.scalar(inst.value, "atomic_add: value", integer=True)
    if inst.dst.dtype.kind not in ("int", "uint") or inst.dst.dtype.nbits != 32:
        c.fail(f"atomic_add: dst must be an int32 or uint32 tensor; got {inst.dst.dtype}")
    c.expect(inst.out, Var, "atomic_add: the result")
    if inst.out.dtype != inst.dst.dtype:
        c.fail(f"atomic_add: the result should be {inst.dst.dtype}; it is {inst.out.dtype}")
    c.define(inst.out)


@VERIFY_RULES.rule(I.Fence)
def _fence(inst: I.Fence, c: Checker) -> None:
    pass


@VERIFY_RULES.rule(I.AllocShared)
def _alloc_shared(inst: I.AllocShared, c: Checker) -> None:
    out = inst.out
    c.expect(out, SharedTensor, "alloc_shared: the result")
    c.shape(out.shape, "alloc_shared: shape")
    if out.layout is not None:
        if not isinstance(out.layout, SharedLayout):
            c.fail(f"alloc_shared: layout must be a SharedLayout; got {out.layout!r}")
        if out.layout.shape != out.shape:
            c.fail(
                f"alloc_shared: layout shape {_shape_text(out.layout.shape)} != tensor shape "
                f"{_shape_text(out.shape)}"
            )
    c.define(out)


@VERIFY_RULES.rule(I.FreeShared)
def _free_shared(inst: I.FreeShared, c: Checker) -> None:
    c.expect(inst.tensor, SharedTensor, "free_shared")
    c.mark_freed(inst.tensor)


@VERIFY_RULES.rule(I.LoadShared)
def _load_shared(inst: I.LoadShared, c: Checker) -> None:
    c.expect(inst.src, SharedTensor, "load_shared: src")
    c.offsets(inst.offsets, inst.src.rank, "load_shared")
    c.expect(inst.out, RegisterTensor, "load_shared: the result")
    c.inside(inst.offsets, inst.out, inst.src, "load_shared")
    c.result(inst.out, inst.src.dtype, inst.out.shape, "load_shared")


@VERIFY_RULES.rule(I.StoreShared)
def _store_shared(inst: I.StoreShared, c: Checker) -> None:
    c.expect(inst.dst, SharedTensor, "store_shared: dst")
    c.expect(inst.src, RegisterTensor, "store_shared: src")
    if inst.src.dtype != inst.dst.dtype:
        c.fail(f"store_shared: storing {inst.src.dtype} into {inst.dst.dtype} shared memory")
    c.offsets(inst.offsets, inst.dst.rank, "store_shared")
    c.inside(inst.offsets, inst.src, inst.dst, "store_shared")


@VERIFY_RULES.rule(I.CopyAsync)
def _copy_async(inst: I.CopyAsync, c: Checker) -> None:
    dst, src = inst.dst, inst.src
    c.expect(dst, SharedTensor, "copy_async: dst")
    c.expect(src, GlobalTensor, "copy_async: src")
    if dst.dtype != src.dtype or dst.rank != src.rank:
        c.fail(
            f"copy_async: shared {_type_text(dst)} and global {src.dtype} of rank {src.rank} "
            "must have the same dtype and rank"
        )
    c.offsets(inst.offsets, src.rank, "copy_async")


@VERIFY_RULES.rule(I.CopyAsyncCommit, I.SyncThreads)
def _nothing_to_check(inst: I.Instruction, c: Checker) -> None:
    """Barriers and group commits take no operands."""


@VERIFY_RULES.rule(I.CopyAsyncWait)
def _copy_async_wait(inst: I.CopyAsyncWait, c: Checker) -> None:
    if not isinstance(inst.pending, int) or isinstance(inst.pending, bool) or inst.pending < 0:
        c.fail(f"copy_async_wait: pending must be an int >= 0; got {inst.pending!r}")


# -- compute -------------------------------------------------------------------------------------


@VERIFY_RULES.rule(I.Full)
def _full(inst: I.Full, c: Checker) -> None:
    c.scalar(inst.value, "full: the value")
    c.new_tile(inst.out, "full")


@VERIFY_RULES.rule(I.Arange)
def _arange(inst: I.Arange, c: Checker) -> None:
    c.new_tile(inst.out, "arange")
    if not isinstance(inst.dim, int) or not 0 <= inst.dim < inst.out.rank:
        c.fail(f"arange: dim must lie in 0..{inst.out.rank - 1}; got {inst.dim!r}")


@VERIFY_RULES.rule(I.Cast)
def _cast(inst: I.Cast, c: Checker) -> None:
    c.expect(inst.x, RegisterTensor, "cast")
    c.expect(inst.out, RegisterTensor, "cast: the result")
    c.result(inst.out, inst.out.dtype, inst.x.shape, "cast")


@VERIFY_RULES.rule(I.ConvertLayout)
def _convert_layout(inst: I.ConvertLayout, c: Checker) -> None:
    c.expect(inst.x, RegisterTensor, "convert_layout")
    c.expect(inst.out, RegisterTensor, "convert_layout: the result")
    if inst.out.layout is None:
        c.fail("convert_layout needs the layout it converts to")
    c.result(inst.out, inst.x.dtype, inst.x.shape, "convert_layout")


@VERIFY_RULES.rule(I.View)
def _view(inst: I.View, c: Checker) -> None:
    x, out = inst.x, inst.out
    c.expect(x, RegisterTensor, "view")
    c.expect(out, RegisterTensor, "view: the result")
    if out.layout is None or x.layout is None:
        if out.layout is not None:
            c.fail("view with a layout needs the source's layout too (load it with layout=)")
        if x.dtype.nbits != out.dtype.nbits:
            c.fail(
                f"view of {x.dtype} as {out.dtype} changes the bit width: both the source and "
                "the result need layouts"
            )
        c.result(out, out.dtype, x.shape, "view")
        return
    c.register_layout(x.layout, x.shape, "view: the source")
    c.register_layout(out.layout, out.shape, "view")
    try:
        check_view_legal(x.layout, x.dtype.nbits, out.layout, out.dtype.nbits)
    except LayoutError as err:
        c.fail(f"view: {err}")
    c.new_tile(out, "view")


@VERIFY_RULES.rule(I.ElementwiseUnary)
def _unary(inst: I.ElementwiseUnary, c: Checker) -> None:
    op, x = inst.op, inst.x
    if op not in UNARY_TENSOR_OPS:
        c.fail(f"unknown unary op {op!r}; expected one of {', '.join(UNARY_TENSOR_OPS)}")
    c.expect(x, RegisterTensor, op)
    if op in ("exp", "log", "sqrt") and not x.dtype.is_float:
        c.fail(f"{op} needs a float tile; got {x.dtype} (cast first)")
    if op == "invert" and x.dtype.is_float:
        c.fail(f"~ needs an integer tile; got {x.dtype}")
    c.result(inst.out, BOOL if op == "lnot" else x.dtype, x.shape, op)


def _tile_shape(value: Any) -> tuple[int, ...]:
    return value.shape if isinstance(value, RegisterTensor) else ()


def _broadcast(c: Checker, values: Sequence[Any], what: str) -> tuple[int, ...]:
    shape: tuple[int, ...] = ()
    try:
        for v in values:
            shape = broadcast_shapes(shape, _tile_shape(v), what)
    except IRError as err:
        c.fail(str(err))
    if not shape:
        c.fail(f"{what}: at least one operand must be a tile")
    return shape


def _result_type(c: Checker, op: str, a: Any, b: Any) -> DataType:
    try:
        return tile_result_type(op, a, b)
    except IRError as err:
        c.fail(str(err))


@VERIFY_RULES.rule(I.ElementwiseBinary)
def _binary(inst: I.ElementwiseBinary, c: Checker) -> None:
    op = inst.op
    if op not in BINARY_OPS:
        c.fail(f"unknown binary op {op!r}")
    for v in (inst.a, inst.b):
        c.operand(v, op)
    shape = _broadcast(c, (inst.a, inst.b), op)
    c.result(inst.out, _result_type(c, op, inst.a, inst.b), shape, op)


@VERIFY_RULES.rule(I.Where)
def _where(inst: I.Where, c: Checker) -> None:
    for v in (inst.cond, inst.a, inst.b):
        c.operand(v, "where")
    shape = _broadcast(c, (inst.cond, inst.a, inst.b), "where")
    c.result(inst.out, _result_type(c, "add", inst.a, inst.b), shape, "where")


@VERIFY_RULES.rule(I.Dot)
def _dot(inst: I.Dot, c: Checker) -> None:
    a, b, acc = inst.a, inst.b, inst.c
    for t, what in ((a, "a"), (b, "b")):
        c.expect(t, RegisterTensor, f"dot: {what}")
        if t.rank != 2:
            c.fail(f"dot: {what} must be a 2-D tile; got shape {_shape_text(t.shape)}")
    if a.shape[1] != b.shape[0]:
        c.fail(
            f"dot: a is {_shape_text(a.shape)} and b is {_shape_text(b.shape)}: inner sizes differ"
        )
    if a.dtype.is_float != b.dtype.is_float:
        c.fail(f"dot: a ({a.dtype}) and b ({b.dtype}) must both be floats or both ints")
    like = dtypes.float32 if a.dtype.is_float else dtypes.int32
    shape = (a.shape[0], b.shape[1])
    c.expect(acc, RegisterTensor, "dot: c")
    if acc.shape != shape:
        c.fail(f"dot: c must be {_shape_text(shape)}; got {_shape_text(acc.shape)}")
    if acc.dtype.is_float != a.dtype.is_float:
        c.fail(f"dot: the accumulator c must be {like}-like; got {acc.dtype}")
    c.result(inst.out, acc.dtype, shape, "dot")


@VERIFY_RULES.rule(I.Reduce)
def _reduce(inst: I.Reduce, c: Checker) -> None:
    x, op, dims = inst.x, inst.op, inst.dims
    c.expect(x, RegisterTensor, f"reduce {op}")
    if op not in I.REDUCE_OPS:
        c.fail(f"reduce: op must be one of {', '.join(I.REDUCE_OPS)}; got {op!r}")
    valid = (
        isinstance(dims, tuple)
        and dims
        and all(isinstance(d, int) and 0 <= d < x.rank for d in dims)
        and list(dims) == sorted(set(dims))
    )
    if not valid:
        c.fail(
            f"reduce: dims must be distinct, increasing and lie in 0..{x.rank - 1}; "
            f"got {list(dims) if isinstance(dims, (tuple, list)) else dims!r}"
        )
    shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
    c.result(inst.out, x.dtype, shape, f"reduce {op}")


@VERIFY_RULES.rule(I.Reshape)
def _reshape(inst: I.Reshape, c: Checker) -> None:
    x, out = inst.x, inst.out
    c.expect(x, RegisterTensor, "reshape")
    c.expect(out, RegisterTensor, "reshape: the result")
    c.shape(out.shape, "reshape: shape")
    if math.prod(out.shape) != x.size:
        c.fail(
            f"reshape: {_shape_text(x.shape)} has {x.size} elements, "
            f"{_shape_text(out.shape)} has {math.prod(out.shape)}"
        )
    c.result(out, x.dtype, out.shape, "reshape")


@VERIFY_RULES.rule(I.Slice)
def _slice(inst: I.Slice, c: Checker) -> None:
    x, out = inst.x, inst.out
    c.expect(x, RegisterTensor, "slice")
    c.expect(out, RegisterTensor, "slice: the result")
    c.shape(out.shape, "slice: shape")
    offsets = inst.offsets
    if (
        not isinstance(offsets, tuple)
        or len(offsets) != x.rank
        or len(out.shape) != x.rank
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        c.fail(f"slice: expected {x.rank} int offsets and a {x.rank}-d shape; got {offsets!r}")
    if any(o < 0 or o + s > e for o, s, e in zip(offsets, out.shape, x.shape)):
        c.fail(
            f"slice: the part at {list(offsets)} of shape {_shape_text(out.shape)} does not lie "
            f"inside {_shape_text(x.shape)}"
        )
    c.result(out, x.dtype, out.shape, "slice")


@VERIFY_RULES.rule(I.Transpose)
def _transpose(inst: I.Transpose, c: Checker) -> None:
    x, dims = inst.x, inst.dims
    c.expect(x, RegisterTensor, "permute")
    if sorted(dims) != list(range(x.rank)):
        c.fail(
            f"permute: dims {list(dims)} do not order the dimensions of shape "
            f"{_shape_text(x.shape)}"
        )
    c.result(inst.out, x.dtype, tuple(x.shape[d] for d in dims), "permute")


@VERIFY_RULES.rule(I.Assign)
def _assign(inst: I.Assign, c: Checker) -> None:
    dst, src = inst.out, inst.x
    c.expect(dst, RegisterTensor, "assign: the target")
    c.expect(src, RegisterTensor, "assign")
    c.use(dst, "assign")
    if (dst.dtype, dst.shape) != (src.dtype, src.shape):
        c.fail(
            f"a tile variable keeps its type: it is {_type_text(dst)}, "
            f"the new value is {_type_text(src)}"
        )


@VERIFY_RULES.rule(I.AnnotateLayout)
def _annotate_layout(inst: I.AnnotateLayout, c: Checker) -> None:
    c.expect(inst.tensor, RegisterTensor, "annotate_layout")
    if inst.layout is None:
        c.fail("annotate_layout: layout must be a RegisterLayout; got None")
    c.register_layout(inst.layout, inst.tensor.shape, "annotate_layout")


@VERIFY_RULES.rule(I.Print)
def _print(inst: I.Print, c: Checker) -> None:
    if not isinstance(inst.message, str):
        c.fail(f"print: the message must be a string; got {inst.message!r}")
    for arg in inst.args:
        if not isinstance(arg, (GlobalTensor, SharedTensor, RegisterTensor)):
            c.scalar(arg, "print: an argument")


__all__ = ["VERIFY_RULES", "Checker", "VerifyError", "describe", "verify"]
