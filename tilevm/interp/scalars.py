"""Evaluating scalar expressions: Python semantics, results kept in their type.

A scalar is a Python ``int`` (for integer types, already wrapped to the
type's width) or a Python ``float`` (for float types, a value of that type).
Operators follow :mod:`tilevm.ir.expr`: ``//`` and ``%`` floor, ``/``
divides in float32, integer results wrap, comparisons and logic give 0 or 1.
Arithmetic with a float result converts both operands to the result's type
and computes in float32, then rounds like a tile operation
(:func:`~tilevm.interp.values.round_arith`); a comparison with a float
operand compares float32 values, and two integers compare exactly. ``and``,
``or`` and ``a if c else b`` evaluate lazily, as in Python.
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import DataType, float32
from ..errors import DTypeError
from ..ir.expr import (
    ARITHMETIC,
    BITWISE,
    COMPARISONS,
    SYMBOLS,
    Binary,
    BlockIdx,
    Const,
    Expr,
    NumBlocks,
    Select,
    Unary,
    Var,
)
from .state import Machine
from .values import cast, convert, round_arith

Scalar = int | float


def wrap_scalar(x: int, dtype: DataType) -> int:
    """A Python int modulo 2^bits of ``dtype`` (two's complement when signed)."""
    if dtype.kind == "uint":
        return x & ((1 << dtype.nbits) - 1)
    half = 1 << (dtype.nbits - 1)
    return ((x + half) & ((1 << dtype.nbits) - 1)) - half


def to_float(x: Scalar, dtype: DataType) -> float:
    """A float result (from float32 arithmetic) rounded to ``dtype``."""
    return float(round_arith(np.asarray(x, dtype=np.float32), dtype))


def fit(m: Machine, value: Scalar, src: DataType, dst: DataType) -> Scalar:
    """Implicit conversion of a scalar (see :func:`~tilevm.interp.values.convert`)."""
    if dst.is_integer and src.is_integer:
        return wrap_scalar(int(value), dst)
    try:
        return convert(np.asarray(value), src, dst).item()
    except DTypeError as err:
        raise m.error(f"converting a scalar to {dst}: {err}") from None


def evaluate(m: Machine, expr: Expr | int | float) -> Scalar:
    """The value of a scalar expression in the running block (Python numbers pass through)."""
    if not isinstance(expr, Expr):
        return expr
    match expr:
        case Var():
            try:
                return m.env[expr]
            except KeyError:
                pass
            if expr in m.buffers:
                raise m.error(f"pointer parameter '{expr.name}' is used as a number")
            raise m.error(f"scalar '{expr.name}' is used before it has a value")
        case Const():
            return _constant(m, expr)
        case BlockIdx():
            return m.block[expr.dim] if expr.dim < 3 else 0
        case NumBlocks():
            return m.grid[expr.dim] if expr.dim < 3 else 1
        case Unary():
            return _unary(m, expr)
        case Binary():
            return _binary(m, expr)
        case Select():
            branch = expr.a if evaluate(m, expr.cond) else expr.b
            return fit(m, evaluate(m, branch), branch.dtype, expr.dtype)
        case _:
            raise AssertionError(f"unknown expression {expr!r}")


def _constant(m: Machine, c: Const) -> Scalar:
    if c.dtype.is_integer:
        if isinstance(c.value, float) and not c.value.is_integer():
            raise m.error(f"the constant {c.value} is not an integer but has type {c.dtype}")
        return wrap_scalar(int(c.value), c.dtype)
    # A literal is a float32 first, as a C float literal in a kernel would be.
    return to_float(float(c.value), c.dtype)


def _unary(m: Machine, e: Unary) -> Scalar:
    x = evaluate(m, e.x)
    t = e.dtype
    op = e.op
    if op == "cast":
        try:
            return cast(np.asarray(x), e.x.dtype, t).item()
        except DTypeError as err:
            raise m.error(f"cast to {t}: {err}") from None
    if op == "lnot":
        return int(not x)
    if op in ("exp", "log", "sqrt"):
        with np.errstate(all="ignore"):
            y = getattr(np, op)(np.float32(x))
        return fit(m, float(y), float32, t)
    if t.is_integer:
        match op:
            case "neg":
                return wrap_scalar(-int(x), t)
            case "abs":
                return wrap_scalar(abs(int(x)), t)
            case "invert":
                return wrap_scalar(~int(x), t)
    match op:
        case "neg":
            return -float(x)
        case "abs":
            return abs(float(x))
    raise AssertionError(f"unknown unary op {op!r} for {t}")


def _binary(m: Machine, e: Binary) -> Scalar:
    op = e.op
    if op in ("land", "lor"):
        first = bool(evaluate(m, e.lhs))
        if first == (op == "lor"):
            return int(first)
        return int(bool(evaluate(m, e.rhs)))
    a, b = evaluate(m, e.lhs), evaluate(m, e.rhs)
    ta, tb = e.lhs.dtype, e.rhs.dtype
    if op in COMPARISONS:
        if ta.is_float or tb.is_float:
            a, b = float(np.float32(a)), float(np.float32(b))
        return int(_COMPARE[op](a, b))
    if op in BITWISE:
        return wrap_scalar(_bitwise(m, op, int(a), int(b)), e.dtype)
    assert op in ARITHMETIC, op
    t = e.dtype
    if t.is_float:
        fa, fb = (np.float32(fit(m, v, tv, t)) for v, tv in ((a, ta), (b, tb)))
        with np.errstate(all="ignore"):
            return to_float(_FLOAT_OPS[op](fa, fb), t)
    a, b = int(a), int(b)
    if op in ("floordiv", "mod") and b == 0:
        raise m.error(f"integer division by zero in the scalar expression '{SYMBOLS[op]}'")
    return wrap_scalar(_INT_OPS[op](a, b), t)


def _bitwise(m: Machine, op: str, a: int, b: int) -> int:
    if op in ("shl", "shr"):
        if b < 0:
            raise m.error(f"negative shift count {b} in '{SYMBOLS[op]}'")
        # Shifting by the width or more leaves nothing, as the GPU's clamped shifts do.
        return a << min(b, 64) if op == "shl" else a >> min(b, 64)
    return {"and": a & b, "or": a | b, "xor": a ^ b}[op]


_COMPARE = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}

_INT_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "min": min,
    "max": max,
}

_FLOAT_OPS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.divide,
    "floordiv": np.floor_divide,
    "mod": np.mod,
    "min": np.minimum,
    "max": np.maximum,
}


def evaluate_int(m: Machine, expr: Expr | int, what: str) -> int:
    """An integer scalar (an offset, a size, a loop bound); a float is an error saying ``what``."""
    value = evaluate(m, expr)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise m.error(f"{what} must be an integer; got {value}")
        return int(value)
    return int(value)


__all__ = ["Scalar", "evaluate", "evaluate_int", "fit", "wrap_scalar"]
