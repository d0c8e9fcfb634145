"""Interpretation of the compute instructions, one registered rule each.

Each rule reads its operand tiles (arrays of the tiles' logical shapes holding
values, see :mod:`.values`), computes over the whole tile with numpy, and
keeps the result inside the output's type. Scalar operands are evaluated
expressions or Python numbers; a Python float adopts the float operand's type
(rounded to it first), a Python int stays exact until the result is wrapped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import DataType, float32, int64
from ..errors import DTypeError, LayoutError
from ..ir import inst as I
from ..ir.expr import ARITHMETIC, BITWISE, COMPARISONS, SYMBOLS, Expr
from ..ir.tensor import RegisterTensor
from ..layouts.view import view_moves
from .scalars import evaluate
from .state import RULES, Machine, tensor_name
from .values import cast, convert, round_arith, value_dtype, wrap_int


def operand(m: Machine, value: Any, like: DataType) -> tuple[np.ndarray, DataType]:
    """The values and type of a tile or scalar operand; Python numbers take ``like``'s type.

    A Python int stays an exact int64 unless ``like`` is a float type; a
    Python float is rounded to ``like`` when that is a float type, else to
    float32.
    """
    if isinstance(value, RegisterTensor):
        return m.tile(value), value.dtype
    if isinstance(value, Expr):
        return np.asarray(evaluate(m, value), dtype=value_dtype(value.dtype)), value.dtype
    if isinstance(value, int) and not like.is_float:
        if not -(1 << 63) <= value < (1 << 63):
            raise m.error(f"the constant {value} does not fit in 64 bits")
        return np.asarray(value, dtype=np.int64), int64
    target = like if like.is_float else float32
    return round_arith(np.asarray(value, dtype=np.float32), target), target


def _dtype_of(value: Any) -> DataType | None:
    return value.dtype if isinstance(value, (RegisterTensor, Expr)) else None


def _convert(m: Machine, x: np.ndarray, src: DataType, dst: DataType, what: str) -> np.ndarray:
    try:
        return convert(x, src, dst)
    except DTypeError as err:
        raise m.error(f"{what}: {err}") from None


# -- creation and shape ------------------------------------------------------------------------
@RULES.rule(I.Full)
def _full(m: Machine, inst: I.Full) -> None:
    out = inst.out
    if isinstance(inst.value, Expr):
        value, src = evaluate(m, inst.value), inst.value.dtype
    else:
        value, src = inst.value, None
    try:
        # Full converts its value like Cast: nearest even, saturating.
        v = out.dtype.decode(out.dtype.encode(np.asarray(value))) if src != out.dtype else value
    except (DTypeError, OverflowError) as err:
        raise m.error(f"Full: {value!r} as {out.dtype}: {err}") from None
    m.set_tile(out, np.full(out.shape, v, dtype=value_dtype(out.dtype)))


@RULES.rule(I.Arange)
def _arange(m: Machine, inst: I.Arange) -> None:
    out = inst.out
    index = np.arange(out.shape[inst.dim], dtype=np.int64)
    index = index.reshape([-1 if d == inst.dim else 1 for d in range(out.rank)])
    values = cast(np.broadcast_to(index, out.shape), int64, out.dtype)
    m.set_tile(out, values)


@RULES.rule(I.Reshape)
def _reshape(m: Machine, inst: I.Reshape) -> None:
    m.set_tile(inst.out, m.tile(inst.x).reshape(inst.out.shape))


@RULES.rule(I.Slice)
def _slice(m: Machine, inst: I.Slice) -> None:
    index = tuple(slice(o, o + s) for o, s in zip(inst.offsets, inst.out.shape))
    m.set_tile(inst.out, m.tile(inst.x)[index].copy())


@RULES.rule(I.Transpose)
def _transpose(m: Machine, inst: I.Transpose) -> None:
    m.set_tile(inst.out, np.transpose(m.tile(inst.x), inst.dims).copy())


@RULES.rule(I.ConvertLayout)
def _convert_layout(m: Machine, inst: I.ConvertLayout) -> None:
    """Layouts place values on threads; the logical tile is unchanged."""
    m.set_tile(inst.out, m.tile(inst.x))


@RULES.rule(I.Assign)
def _assign(m: Machine, inst: I.Assign) -> None:
    m.set_tile(inst.out, m.tile(inst.x))


@RULES.rule(I.AnnotateLayout)
def _annotate_layout(m: Machine, inst: I.AnnotateLayout) -> None:
    """A layout changes where values live, never what they are."""


@RULES.rule(I.Print)
def _print(m: Machine, inst: I.Print) -> None:
    """``block (x,): message scalar ...``, each tile on lines of its own below."""
    text = f"block {m.block_label}: {inst.message}"
    for arg in inst.args:
        if isinstance(arg, RegisterTensor):
            text += "\n" + np.array2string(m.tile(arg))
        else:
            text += f" {evaluate(m, arg)}"
    print(text, file=sys.stdout)


# -- conversions -----------------------------------------------------------------------------
@RULES.rule(I.Cast)
def _cast(m: Machine, inst: I.Cast) -> None:
    try:
        values = cast(m.tile(inst.x), inst.x.dtype, inst.out.dtype)
    except DTypeError as err:
        raise m.error(f"Cast from {inst.x.dtype} to {inst.out.dtype}: {err}") from None
    m.set_tile(inst.out, values)


class _ViewPlan:
    """Index arrays that move a view's bits: for every output element (row-major), up to
    ``P`` pieces, each ``(source flat index, source bit, destination bit, mask)``;
    unused pieces have mask 0."""

    def __init__(self, src: RegisterTensor, dst: RegisterTensor):
        assert src.layout is not None and dst.layout is not None
        moves = view_moves(src.layout, src.dtype.nbits, dst.layout, dst.dtype.nbits)
        n = dst.size
        width = max(len(p) for p in moves.values())
        self.src_index = np.zeros((width, n), dtype=np.int64)
        self.src_bit = np.zeros((width, n), dtype=np.uint64)
        self.dst_bit = np.zeros((width, n), dtype=np.uint64)
        self.mask = np.zeros((width, n), dtype=np.uint64)
        covered = np.zeros(n, dtype=bool)
        for index, pieces in moves.items():
            k = int(np.ravel_multi_index(index, dst.shape))
            covered[k] = True
            for j, p in enumerate(pieces):
                self.src_index[j, k] = np.ravel_multi_index(p.src_index, src.shape)
                self.src_bit[j, k] = p.src_bit
                self.dst_bit[j, k] = p.dst_bit
                self.mask[j, k] = (1 << p.nbits) - 1
        if not covered.all():
            missing = tuple(int(i) for i in np.unravel_index(int(np.argmin(covered)), dst.shape))
            raise LayoutError(f"no thread of {dst.layout} holds element {missing} of the view")

    def apply(self, codes: np.ndarray) -> np.ndarray:
        flat = codes.reshape(-1).astype(np.uint64)
        out = np.zeros(self.mask.shape[1], dtype=np.uint64)
        for j in range(self.mask.shape[0]):
            piece = (flat[self.src_index[j]] >> self.src_bit[j]) & self.mask[j]
            out |= piece << self.dst_bit[j]
        return out


@RULES.rule(I.View)
def _view(m: Machine, inst: I.View) -> None:
    x, out = inst.x, inst.out
    codes = x.dtype.encode(m.tile(x))  # exact: a value of its own type
    same_place = x.layout is None or out.layout is None or x.layout == out.layout
    if x.dtype.nbits == out.dtype.nbits and same_place and x.shape == out.shape:
        m.set_tile(out, out.dtype.decode(codes.astype(out.dtype.code_dtype)))
        return
    if x.layout is None or out.layout is None:
        raise m.error(
            f"View of {x.dtype}{list(x.shape)} as {out.dtype}{list(out.shape)} moves bits "
            "between elements, so both the source and the output need a layout; "
            f"the {'source' if x.layout is None else 'output'} has none"
        )
    plan = m.cache.get(inst)
    if plan is None:
        try:
            plan = m.cache[inst] = _ViewPlan(x, out)
        except LayoutError as err:
            raise m.error(f"View: {err}") from None
    bits = plan.apply(codes).astype(out.dtype.code_dtype)
    m.set_tile(out, out.dtype.decode(bits).reshape(out.shape))


# -- elementwise -----------------------------------------------------------------------------
def _check_int_divisor(m: Machine, inst: Any, op: str, b: np.ndarray) -> None:
    if np.any(b == 0):
        raise m.error(
            f"{type(inst).__name__}: integer division by zero in '{SYMBOLS[op]}' "
            f"({tensor_name(inst.out)})"
        )


def _shift(m: Machine, inst: Any, op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.any(b < 0):
        raise m.error(f"{type(inst).__name__}: negative shift count in '{SYMBOLS[op]}'")
    # Shifting by 64 or more leaves nothing (or the sign), as the GPU's clamped shifts do.
    if op == "shl":
        return np.where(b >= 64, 0, a << np.minimum(b, 63))
    return a >> np.minimum(b, 63)


_INT_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "floordiv": np.floor_divide,
    "mod": np.mod,
    "min": np.minimum,
    "max": np.maximum,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
}

_FLOAT_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.divide,
    "floordiv": np.floor_divide,
    "mod": np.mod,
    "min": np.minimum,
    "max": np.maximum,
}

_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


@RULES.rule(I.ElementwiseBinary)
def _binary(m: Machine, inst: I.ElementwiseBinary) -> None:
    op, out = inst.op, inst.out
    da, db = _dtype_of(inst.a), _dtype_of(inst.b)
    like_a = da or db
    like_b = db or da
    assert like_a is not None and like_b is not None
    a, ta = operand(m, inst.a, like_a)
    b, tb = operand(m, inst.b, like_b)
    with np.errstate(all="ignore"):
        if op in ("land", "lor"):
            fn = np.logical_and if op == "land" else np.logical_or
            result = fn(a != 0, b != 0).astype(np.int64)
        elif op in COMPARISONS:
            if ta.is_float or tb.is_float:
                a, b = a.astype(np.float32), b.astype(np.float32)
            result = _COMPARE[op](a, b).astype(np.int64)
        elif out.dtype.is_float:
            assert op in ARITHMETIC, op
            a = _convert(m, a, ta, out.dtype, f"ElementwiseBinary '{op}'")
            b = _convert(m, b, tb, out.dtype, f"ElementwiseBinary '{op}'")
            result = _FLOAT_BINARY[op](a, b)
        else:
            a, b = a.astype(np.int64), b.astype(np.int64)
            if op in ("floordiv", "mod"):
                _check_int_divisor(m, inst, op, b)
            if op in ("shl", "shr"):
                result = _shift(m, inst, op, a, b)
            else:
                assert op in _INT_BINARY and (op in ARITHMETIC or op in BITWISE), op
                result = _INT_BINARY[op](a, b)
    result = np.broadcast_to(result, out.shape)
    try:
        m.set_tile(out, round_arith(result, out.dtype))
    except DTypeError as err:
        raise m.error(f"ElementwiseBinary '{op}' into {out.dtype}: {err}") from None


@RULES.rule(I.ElementwiseUnary)
def _unary(m: Machine, inst: I.ElementwiseUnary) -> None:
    x, out, op = m.tile(inst.x), inst.out, inst.op
    with np.errstate(all="ignore"):
        match op:
            case "lnot":
                result = (x == 0).astype(np.int64)
            case "neg":
                result = -x
            case "abs":
                result = np.abs(x)
            case "invert":
                result = ~x
            case "exp" | "log" | "sqrt":
                result = getattr(np, op)(x.astype(np.float32))
            case _:
                raise AssertionError(f"unknown unary op {op!r}")
    try:
        m.set_tile(out, round_arith(result, out.dtype))
    except DTypeError as err:
        raise m.error(f"ElementwiseUnary '{op}' into {out.dtype}: {err}") from None


@RULES.rule(I.Where)
def _where(m: Machine, inst: I.Where) -> None:
    out = inst.out
    cond, _ = operand(m, inst.cond, int64)
    a, ta = operand(m, inst.a, out.dtype)
    b, tb = operand(m, inst.b, out.dtype)
    a = _convert(m, a, ta, out.dtype, "Where")
    b = _convert(m, b, tb, out.dtype, "Where")
    m.set_tile(out, np.broadcast_to(np.where(cond != 0, a, b), out.shape))


# -- contractions ----------------------------------------------------------------------------
@RULES.rule(I.Dot)
def _dot(m: Machine, inst: I.Dot) -> None:
    a, b, c, out = m.tile(inst.a), m.tile(inst.b), m.tile(inst.c), inst.out
    if out.dtype.is_float:
        # c plus the products summed in float64 and rounded once, like the tensor cores (and
        # the same bits for every shape and BLAS: products of 16-bit floats are exact in
        # float64, and so are their sums at the widths of a k step; float32 sums in BLAS order
        # differ in the last bit between tile shapes and machines).
        wide = np.matmul(a.astype(np.float64), b.astype(np.float64)) + c.astype(np.float64)
        acc = wide.astype(np.float32)
        try:
            values = round_arith(acc, out.dtype)
        except DTypeError as err:
            raise m.error(f"Dot into {out.dtype}: {err}") from None
    else:
        values = wrap_int(np.matmul(a.astype(np.int64), b.astype(np.int64)) + c, out.dtype)
    m.set_tile(out, values)


@RULES.rule(I.Reduce)
def _reduce(m: Machine, inst: I.Reduce) -> None:
    x, out, dims = m.tile(inst.x), inst.out, inst.dims
    if inst.op == "sum":
        acc = np.float32 if out.dtype.is_float else np.int64
        total = np.sum(x, axis=dims, keepdims=True, dtype=acc)
        try:
            values = round_arith(total, out.dtype)
        except DTypeError as err:
            raise m.error(f"Reduce sum into {out.dtype}: {err}") from None
    elif inst.op == "max":
        values = np.max(x, axis=dims, keepdims=True)
    elif inst.op == "min":
        values = np.min(x, axis=dims, keepdims=True)
    else:
        raise AssertionError(f"unknown reduce op {inst.op!r}")
    m.set_tile(out, values)
