"""Building programs: one method per instruction, checked as it is added.

The frontend drives a :class:`Builder` while it walks a kernel's Python source;
tests use it directly. Each method checks its operands (shapes, dtypes, memory
spaces) and raises :class:`IRError` saying what was expected; the frontend
adds the kernel source line. Control flow uses context managers::

    b = Builder("scale")
    x = b.pointer("x", float32)
    n = b.scalar("n", int32)
    gx = b.global_view(x, float32, [n])
    with b.for_range(0, n, 128) as i:
        t = b.load_global(gx, [i], [128])
        b.store_global(gx, b.binary("mul", t, 2.0), [i])
    program = b.finish()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..dtypes import DataType
from ..errors import LayoutError, TileVMError
from ..layouts.ops import part, permute
from ..layouts.register import RegisterLayout
from ..layouts.view import check_view_legal, view_layout
from . import inst as I
from .expr import ARITHMETIC, BINARY_OPS, BITWISE, BOOL, Expr, Var, as_expr, result_type
from .program import Param, Program
from .stmt import AssignScalar, Break, Declare, For, If, InstStmt, Seq, While
from .tensor import GlobalTensor, RegisterTensor, SharedTensor

UNARY_TENSOR_OPS = ("neg", "abs", "exp", "log", "sqrt", "invert", "lnot")


class IRError(TileVMError, ValueError):
    """An instruction was given operands it cannot take; the message says what was expected."""


def _shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(shape)
    if not out or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in out):
        raise IRError(f"{what} must be a non-empty list of positive compile-time ints; got {shape}")
    return tuple(int(s) for s in out)


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...], what: str) -> tuple[int, ...]:
    """numpy broadcasting: align from the right; extents must match or be 1."""
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise IRError(f"{what}: shapes {list(a)} and {list(b)} do not broadcast") from None


class Builder:
    """Accumulates a :class:`Program`; ``loc`` is stamped on every instruction added."""

    def __init__(self, name: str, num_warps: int = 4):
        if not isinstance(num_warps, int) or not 1 <= num_warps <= 32:
            raise IRError(f"num_warps must be an int in 1..32; got {num_warps!r}")
        self.name = name
        self.num_warps = num_warps
        self.params: list[Param] = []
        self._blocks: list[Seq] = [Seq()]
        self._loops = 0
        self.loc: I.SourceLoc | None = None

    # -- parameters ----------------------------------------------------------------------------
    def pointer(self, name: str, dtype: DataType) -> Var:
        var = Var(name, dtypes.int64)
        self.params.append(Param(name, "pointer", dtype, var))
        return var

    def scalar(self, name: str, dtype: DataType) -> Var:
        var = Var(name, dtype)
        self.params.append(Param(name, "scalar", dtype, var))
        return var

    def pointer_dtype(self, ptr: Var) -> DataType:
        for p in self.params:
            if p.var is ptr and p.kind == "pointer":
                return p.dtype
        raise IRError(f"expected a pointer parameter; got {ptr!r}")

    # -- plumbing ------------------------------------------------------------------------------
    def emit(self, instruction: I.Instruction) -> Any:
        instruction.loc = self.loc
        self._blocks[-1].body.append(InstStmt(instruction))
        return instruction.output

    def finish(self, grid: Sequence[Any] | None = None, constants: dict | None = None) -> Program:
        assert len(self._blocks) == 1, "unclosed control flow"
        return Program(
            self.name,
            list(self.params),
            self._blocks[0],
            self.num_warps,
            None if grid is None else tuple(as_expr(g) for g in grid),
            dict(constants or {}),
        )

    # -- memory --------------------------------------------------------------------------------
    def global_view(
        self,
        ptr: Var,
        dtype: DataType | None,
        shape: Sequence[int | Expr],
        strides: Sequence[int | Expr] | None = None,
        name: str = "",
    ) -> GlobalTensor:
        dtype = dtype or self.pointer_dtype(ptr)
        if dtype.nbits < 8:
            raise IRError(
                f"global tensors of {dtype} are not supported: load the packed bytes as uint8 "
                f"and view them as {dtype}"
            )
        shape = tuple(shape)
        if not shape:
            raise IRError("global_view: shape must have at least one dimension")
        for s in shape:
            if not isinstance(s, (int, Expr)) or (isinstance(s, Expr) and s.dtype.is_float):
                raise IRError(f"global_view: sizes must be ints or integer scalars; got {s!r}")
        if strides is None:
            strides_list: list[int | Expr] = [1]
            for s in reversed(shape[1:]):
                inner = strides_list[0]
                strides_list.insert(0, s if isinstance(inner, int) and inner == 1 else inner * s)
            strides = strides_list
        strides = tuple(strides)
        if len(strides) != len(shape):
            raise IRError(f"global_view: {len(shape)} sizes but {len(strides)} strides")
        return self.emit(I.GlobalView(GlobalTensor(dtype, shape, strides, ptr, name)))

    def _offsets(self, offsets: Sequence[Any], rank: int, what: str) -> tuple[Any, ...]:
        offsets = tuple(offsets)
        if len(offsets) != rank:
            raise IRError(f"{what}: expected {rank} offsets, one per dimension; got {len(offsets)}")
        for o in offsets:
            if not isinstance(o, (int, Expr)) or (isinstance(o, Expr) and o.dtype.is_float):
                raise IRError(f"{what}: offsets must be integers; got {o!r}")
        return offsets

    def load_global(
        self,
        src: GlobalTensor,
        offsets: Sequence[Any],
        shape: Sequence[int],
        *,
        masked: bool = True,
        other: int | float = 0,
        layout: RegisterLayout | None = None,
        name: str = "",
    ) -> RegisterTensor:
        _expect(src, GlobalTensor, "load_global: src")
        shape = _shape(shape, "load_global: shape")
        offsets = self._offsets(offsets, src.rank, "load_global")
        if len(shape) != src.rank:
            raise IRError(f"load_global: tile rank {len(shape)} != tensor rank {src.rank}")
        out = RegisterTensor(src.dtype, shape, self._check_layout(layout, shape), name)
        return self.emit(I.LoadGlobal(out, src, offsets, masked, other))

    def store_global(
        self, dst: GlobalTensor, src: RegisterTensor, offsets: Sequence[Any], *, masked: bool = True
    ) -> None:
        _expect(dst, GlobalTensor, "store_global: dst")
        _expect(src, RegisterTensor, "store_global: src")
        offsets = self._offsets(offsets, dst.rank, "store_global")
        if src.rank != dst.rank:
            raise IRError(f"store_global: tile rank {src.rank} != tensor rank {dst.rank}")
        if src.dtype != dst.dtype:
            raise IRError(
                f"store_global: storing {src.dtype} into a {dst.dtype} tensor; cast first"
            )
        self.emit(I.StoreGlobal(dst, src, offsets, masked))

    def atomic_add(self, dst: GlobalTensor, offsets: Sequence[Any], value: Any) -> Var:
        _expect(dst, GlobalTensor, "atomic_add: dst")
        if dst.dtype not in (dtypes.int32, dtypes.uint32):
            raise IRError(f"atomic_add: dst must be an int32 or uint32 tensor; got {dst.dtype}")
        offsets = self._offsets(offsets, dst.rank, "atomic_add")
        if isinstance(value, RegisterTensor):
            raise IRError("atomic_add: value must be an integer scalar; got a tile")
        value = as_expr(value, like=Var("_", dst.dtype))
        if value.dtype.is_float:
            what = f"the {value.dtype} {value.name}" if isinstance(value, Var) else "a float"
            raise IRError(f"atomic_add: value must be an integer scalar; got {what}")
        out = Var("old", dst.dtype)
        self.emit(I.AtomicAdd(out, dst, offsets, value))
        return out

    def fence(self) -> None:
        self.emit(I.Fence())

    def alloc_shared(self, dtype: DataType, shape: Sequence[int], name: str = "") -> SharedTensor:
        shape = _shape(shape, "alloc_shared: shape")
        return self.emit(I.AllocShared(SharedTensor(dtype, shape, None, name)))

    def free_shared(self, tensor: SharedTensor) -> None:
        _expect(tensor, SharedTensor, "free_shared")
        self.emit(I.FreeShared(tensor))

    def load_shared(
        self,
        src: SharedTensor,
        offsets: Sequence[Any] | None = None,
        shape: Sequence[int] | None = None,
        *,
        layout: RegisterLayout | None = None,
        name: str = "",
    ) -> RegisterTensor:
        _expect(src, SharedTensor, "load_shared: src")
        shape = src.shape if shape is None else _shape(shape, "load_shared: shape")
        offsets = self._offsets(offsets or (0,) * src.rank, src.rank, "load_shared")
        _check_inside(offsets, shape, src.shape, "load_shared")
        out = RegisterTensor(src.dtype, shape, self._check_layout(layout, shape), name)
        return self.emit(I.LoadShared(out, src, offsets))

    def store_shared(
        self, dst: SharedTensor, src: RegisterTensor, offsets: Sequence[Any] | None = None
    ) -> None:
        _expect(dst, SharedTensor, "store_shared: dst")
        _expect(src, RegisterTensor, "store_shared: src")
        if src.dtype != dst.dtype:
            raise IRError(f"store_shared: storing {src.dtype} into {dst.dtype} shared memory")
        offsets = self._offsets(offsets or (0,) * dst.rank, dst.rank, "store_shared")
        _check_inside(offsets, src.shape, dst.shape, "store_shared")
        self.emit(I.StoreShared(dst, src, offsets))

    def copy_async(
        self, dst: SharedTensor, src: GlobalTensor, offsets: Sequence[Any], *, masked: bool = True
    ) -> None:
        _expect(dst, SharedTensor, "copy_async: dst")
        _expect(src, GlobalTensor, "copy_async: src")
        if dst.dtype != src.dtype or dst.rank != src.rank:
            raise IRError(
                f"copy_async: shared {dst.dtype}{list(dst.shape)} and global {src.dtype} of "
                f"rank {src.rank} must have the same dtype and rank"
            )
        self.emit(I.CopyAsync(dst, src, self._offsets(offsets, src.rank, "copy_async"), masked))

    def copy_async_commit(self) -> None:
        self.emit(I.CopyAsyncCommit())

    def copy_async_wait(self, pending: int = 0) -> None:
        if not isinstance(pending, int) or pending < 0:
            raise IRError(f"copy_async_wait: pending must be an int >= 0; got {pending!r}")
        self.emit(I.CopyAsyncWait(pending))

    def sync(self) -> None:
        self.emit(I.SyncThreads())

    # -- compute -------------------------------------------------------------------------------
    def full(
        self,
        shape: Sequence[int],
        value: Any,
        dtype: DataType,
        *,
        layout: RegisterLayout | None = None,
        name: str = "",
    ) -> RegisterTensor:
        shape = _shape(shape, "full: shape")
        out = RegisterTensor(dtype, shape, self._check_layout(layout, shape), name)
        return self.emit(I.Full(out, value if isinstance(value, Expr) else _number(value)))

    def arange(self, shape: Sequence[int], dim: int = 0, dtype: DataType = dtypes.int32):
        shape = _shape(shape, "arange: shape")
        if not 0 <= dim < len(shape):
            raise IRError(f"arange: dim must lie in 0..{len(shape) - 1}; got {dim}")
        return self.emit(I.Arange(RegisterTensor(dtype, shape), dim))

    def cast(self, x: RegisterTensor, dtype: DataType, name: str = "") -> RegisterTensor:
        _expect(x, RegisterTensor, "cast")
        return self.emit(I.Cast(RegisterTensor(dtype, x.shape, x.layout, name), x))

    def view(
        self,
        x: RegisterTensor,
        dtype: DataType,
        layout: RegisterLayout | None = None,
        name: str = "",
    ) -> RegisterTensor:
        _expect(x, RegisterTensor, "view")
        if layout is None:
            if dtype.nbits == x.dtype.nbits:
                out = RegisterTensor(dtype, x.shape, x.layout, name)
                return self.emit(I.View(out, x))
            if x.layout is None:
                raise IRError(
                    f"view of {x.dtype} as {dtype} changes the bit width: give the source a "
                    "layout (load it with layout=...) or give the view one"
                )
            try:
                layout = view_layout(x.layout, x.dtype.nbits, dtype.nbits)
            except LayoutError as err:
                raise IRError(f"view: {err}") from None
        if x.layout is None:
            raise IRError("view with a layout needs the source's layout too (load it with layout=)")
        try:
            check_view_legal(x.layout, x.dtype.nbits, layout, dtype.nbits)
        except LayoutError as err:
            raise IRError(f"view: {err}") from None
        return self.emit(I.View(RegisterTensor(dtype, layout.shape, layout, name), x))

    def unary(self, op: str, x: RegisterTensor, name: str = "") -> RegisterTensor:
        _expect(x, RegisterTensor, f"{op}")
        if op not in UNARY_TENSOR_OPS:
            raise IRError(f"unknown unary op {op!r}; expected one of {', '.join(UNARY_TENSOR_OPS)}")
        if op in ("exp", "log", "sqrt") and not x.dtype.is_float:
            raise IRError(f"{op} needs a float tile; got {x.dtype} (cast first)")
        if op == "invert" and x.dtype.is_float:
            raise IRError(f"~ needs an integer tile; got {x.dtype}")
        dtype = BOOL if op == "lnot" else x.dtype
        return self.emit(I.ElementwiseUnary(RegisterTensor(dtype, x.shape, None, name), op, x))

    def binary(self, op: str, a: Any, b: Any, name: str = "") -> RegisterTensor:
        if op not in BINARY_OPS:
            raise IRError(f"unknown binary op {op!r}")
        a, b = _operand(a, op), _operand(b, op)
        if not (isinstance(a, RegisterTensor) or isinstance(b, RegisterTensor)):
            raise IRError(f"{op}: at least one operand must be a tile")
        shape = broadcast_shapes(_shape_of(a), _shape_of(b), op)
        dtype = tile_result_type(op, a, b)
        return self.emit(I.ElementwiseBinary(RegisterTensor(dtype, shape, None, name), op, a, b))

    def where(self, cond: Any, a: Any, b: Any, name: str = "") -> RegisterTensor:
        cond, a, b = _operand(cond, "where"), _operand(a, "where"), _operand(b, "where")
        shape = broadcast_shapes(_shape_of(cond), _shape_of(a), "where")
        shape = broadcast_shapes(shape, _shape_of(b), "where")
        if not shape:
            raise IRError("where: at least one operand must be a tile")
        both_bool = all(isinstance(v, (RegisterTensor, Expr)) and v.dtype == BOOL for v in (a, b))
        dtype = BOOL if both_bool else tile_result_type("add", a, b)
        return self.emit(I.Where(RegisterTensor(dtype, shape, None, name), cond, a, b))

    def dot(
        self, a: RegisterTensor, b: RegisterTensor, c: RegisterTensor | None = None, name: str = ""
    ) -> RegisterTensor:
        for t, what in ((a, "a"), (b, "b")):
            _expect(t, RegisterTensor, f"dot: {what}")
            if t.rank != 2:
                raise IRError(f"dot: {what} must be a 2-D tile; got shape {list(t.shape)}")
        if a.shape[1] != b.shape[0]:
            raise IRError(f"dot: a is {list(a.shape)} and b is {list(b.shape)}: inner sizes differ")
        if a.dtype.is_float != b.dtype.is_float:
            raise IRError(f"dot: a ({a.dtype}) and b ({b.dtype}) must both be floats or both ints")
        acc = dtypes.float32 if a.dtype.is_float else dtypes.int32
        shape = (a.shape[0], b.shape[1])
        if c is None:
            c = self.full(shape, 0, acc)
        _expect(c, RegisterTensor, "dot: c")
        if c.shape != shape:
            raise IRError(f"dot: c must be {list(shape)}; got {list(c.shape)}")
        if c.dtype.is_float != a.dtype.is_float:
            raise IRError(f"dot: the accumulator c must be {acc}-like; got {c.dtype}")
        return self.emit(I.Dot(RegisterTensor(c.dtype, shape, c.layout, name), a, b, c))

    def reduce(
        self, x: RegisterTensor, op: str, dims: Sequence[int], keepdims: bool = True, name=""
    ) -> RegisterTensor:
        _expect(x, RegisterTensor, f"reduce {op}")
        if op not in I.REDUCE_OPS:
            raise IRError(f"reduce: op must be one of {', '.join(I.REDUCE_OPS)}; got {op!r}")
        dims = tuple(sorted({d % x.rank if -x.rank <= d < x.rank else d for d in dims}))
        if not dims or any(not 0 <= d < x.rank for d in dims):
            raise IRError(f"reduce: dims must lie in 0..{x.rank - 1}; got {list(dims)}")
        shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
        out = self.emit(I.Reduce(RegisterTensor(x.dtype, shape, None, name), x, op, dims))
        if keepdims:
            return out
        kept = tuple(s for d, s in enumerate(x.shape) if d not in dims) or (1,)
        return self.reshape(out, kept)

    def reshape(self, x: RegisterTensor, shape: Sequence[int]) -> RegisterTensor:
        shape = _shape(shape, "reshape: shape")
        if math.prod(shape) != x.size:
            raise IRError(
                f"reshape: {list(x.shape)} has {x.size} elements, {list(shape)} has "
                f"{math.prod(shape)}"
            )
        return self.emit(I.Reshape(RegisterTensor(x.dtype, shape), x))

    def slice(
        self, x: RegisterTensor, offsets: Sequence[int], shape: Sequence[int]
    ) -> RegisterTensor:
        _expect(x, RegisterTensor, "slice")
        shape = _shape(shape, "slice: shape")
        starts = tuple(offsets)
        if len(starts) != x.rank or len(shape) != x.rank:
            raise IRError(
                f"slice: a {x.rank}-d tile needs {x.rank} offsets and a {x.rank}-d shape; got "
                f"offsets {list(starts)} and shape {list(shape)}"
            )
        for d, o in enumerate(starts):
            if not isinstance(o, (int, np.integer)) or isinstance(o, bool):
                what = f"the runtime value {o.name}" if isinstance(o, Var) else repr(o)
                raise IRError(f"slice: offsets must be compile-time ints; offset {d} is {what}")
        starts = tuple(int(o) for o in starts)
        if any(o < 0 or o + s > e for o, s, e in zip(starts, shape, x.shape)):
            raise IRError(
                f"slice: the part at {list(starts)} of shape {list(shape)} does not lie inside "
                f"the {list(x.shape)} tile"
            )
        layout = None
        if x.layout is not None and not any(o % s for o, s in zip(starts, shape)):
            layout = part(x.layout, shape)  # an aligned part of a repeat: its registers
        return self.emit(I.Slice(RegisterTensor(x.dtype, shape, layout), x, starts))

    def trans(self, x: RegisterTensor) -> RegisterTensor:
        _expect(x, RegisterTensor, "trans")
        if x.rank != 2:
            raise IRError(f"trans: needs a 2-D tile; got shape {list(x.shape)}")
        return self.permute(x, (1, 0))

    def permute(self, x: RegisterTensor, dims: tuple[int, ...]) -> RegisterTensor:
        _expect(x, RegisterTensor, "permute")
        dims = tuple(dims)
        if sorted(dims) != list(range(x.rank)) or not all(isinstance(d, int) for d in dims):
            raise IRError(
                f"permute: dims must order the dimensions 0..{x.rank - 1} of a "
                f"{x.rank}-D tile; got {list(dims)}"
            )
        layout = None if x.layout is None else permute(x.layout, dims)
        shape = tuple(x.shape[d] for d in dims)
        return self.emit(I.Transpose(RegisterTensor(x.dtype, shape, layout), x, dims))

    def assign(self, dst: RegisterTensor, src: RegisterTensor) -> None:
        _expect(src, RegisterTensor, "assign")
        if (dst.dtype, dst.shape) != (src.dtype, src.shape):
            raise IRError(
                f"a tile variable keeps its type: it is {dst.dtype}{list(dst.shape)}, the new "
                f"value is {src.dtype}{list(src.shape)}"
            )
        self.emit(I.Assign(dst, src))

    def annotate_layout(self, x: RegisterTensor, layout: RegisterLayout) -> None:
        _expect(x, RegisterTensor, "annotate_layout")
        x.layout = self._check_layout(layout, x.shape)
        self.emit(I.AnnotateLayout(x, layout))

    def print(self, message: str, *args: Any) -> None:
        self.emit(I.Print(message, tuple(args)))

    def _check_layout(self, layout: RegisterLayout | None, shape: tuple[int, ...]):
        if layout is None:
            return None
        if not isinstance(layout, RegisterLayout):
            raise IRError(f"layout must be a RegisterLayout; got {layout!r}")
        if layout.shape != shape:
            raise IRError(f"layout shape {list(layout.shape)} != tile shape {list(shape)}")
        if layout.num_threads > 32 * self.num_warps:
            raise IRError(
                f"layout uses {layout.num_threads} threads; the kernel has {32 * self.num_warps}"
            )
        return layout

    # -- scalars and control flow --------------------------------------------------------------
    def declare(self, name: str, value: Any) -> Var:
        value = as_expr(value)
        var = Var(name, value.dtype)
        self._blocks[-1].body.append(Declare(var, value, self.loc))
        return var

    def assign_scalar(self, var: Var, value: Any) -> None:
        value = as_expr(value, like=var)
        if value.dtype != var.dtype:
            raise IRError(
                f"scalar variable {var.name} is {var.dtype}; it cannot take a {value.dtype} value"
            )
        self._blocks[-1].body.append(AssignScalar(var, value, self.loc))

    @contextlib.contextmanager
    def for_range(
        self, start: Any, stop: Any, step: Any = 1, unroll: int | None = None, name: str = "i"
    ) -> Iterator[Var]:
        start, stop, step = (as_expr(v) for v in (start, stop, step))
        for v in (start, stop, step):
            if v.dtype.is_float:
                raise IRError(f"range() needs integers; got a {v.dtype} value")
        var = Var(name, dtypes.int32)
        body = Seq()
        self._blocks[-1].body.append(For(var, start, stop, step, body, unroll, self.loc))
        self._blocks.append(body)
        self._loops += 1
        try:
            yield var
        finally:
            self._loops -= 1
            self._blocks.pop()

    @contextlib.contextmanager
    def if_(self, cond: Any) -> Iterator[If]:
        node = If(as_expr(cond), Seq(), None, self.loc)
        self._blocks[-1].body.append(node)
        self._blocks.append(node.then)
        try:
            yield node
        finally:
            self._blocks.pop()

    @contextlib.contextmanager
    def else_(self, node: If) -> Iterator[None]:
        node.orelse = Seq()
        self._blocks.append(node.orelse)
        try:
            yield
        finally:
            self._blocks.pop()

    @contextlib.contextmanager
    def while_(self, cond: Any) -> Iterator[While]:
        node = While(as_expr(cond), Seq(), self.loc)
        self._blocks[-1].body.append(node)
        self._blocks.append(node.body)
        self._loops += 1
        try:
            yield node
        finally:
            self._loops -= 1
            self._blocks.pop()

    def break_(self) -> None:
        if not self._loops:
            raise IRError("break outside a loop")
        self._blocks[-1].body.append(Break(self.loc))


def _expect(value: Any, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        kind = {
            GlobalTensor: "a global tensor",
            SharedTensor: "a shared tensor",
            RegisterTensor: "a register tile",
        }[cls]
        raise IRError(f"{what} must be {kind}; got {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, (GlobalTensor, SharedTensor, RegisterTensor)):
        space = type(value).__name__.replace("Tensor", "").lower()
        return f"a {space} tensor {value.dtype}{list(value.shape)}"
    return repr(value)


def _check_inside(offsets, shape, outer, what) -> None:
    if len(shape) != len(outer):
        raise IRError(f"{what}: tile rank {len(shape)} != shared tensor rank {len(outer)}")
    for o, s, n in zip(offsets, shape, outer):
        if isinstance(o, int) and not 0 <= o <= n - s:
            raise IRError(
                f"{what}: a {list(shape)} tile at offsets {list(offsets)} leaves the "
                f"shared tensor of shape {list(outer)}"
            )


def _number(value: Any) -> int | float:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    raise IRError(f"expected a number or a scalar expression; got {value!r}")


def _operand(value: Any, what: str) -> Any:
    if isinstance(value, (RegisterTensor, Expr)):
        return value
    if isinstance(value, (SharedTensor, GlobalTensor)):
        raise IRError(f"{what}: load {_describe(value)} into registers first")
    return _number(value)


def _shape_of(value: Any) -> tuple[int, ...]:
    return value.shape if isinstance(value, RegisterTensor) else ()


def tile_result_type(op: str, a: Any, b: Any) -> DataType:
    """Tiles set the type; a Python scalar adopts the tile's type (like numpy's weak scalars)."""
    ta = a.dtype if isinstance(a, (RegisterTensor, Expr)) else None
    tb = b.dtype if isinstance(b, (RegisterTensor, Expr)) else None
    if ta is None and tb is None:
        raise IRError(f"{op}: at least one operand must be a tile or a scalar expression")
    if ta is None or tb is None:
        known = ta or tb
        other = b if ta is not None else a
        if op in ("lt", "le", "gt", "ge", "eq", "ne", "land", "lor"):
            return BOOL
        if op == "truediv" and not known.is_float:
            return dtypes.float32  # true division of integers, as in Python and numpy
        if isinstance(other, float) and not known.is_float:
            raise IRError(f"{op}: mixing a {known} tile with the float {other}; cast the tile")
        if op in BITWISE and known.is_float:
            raise IRError(f"{op}: bit operations need integer tiles; got {known}")
        if known == BOOL:  # the scalar is a bool too: the same type as two bool tiles give
            return result_type(op, known, known)
        return known
    if op in ARITHMETIC and ta.is_float and tb.is_float and ta != tb:
        raise IRError(f"{op}: operands are {ta} and {tb}; cast one so they match")
    try:
        return result_type(op, ta, tb)
    except TileVMError as err:
        raise IRError(str(err)) from None
