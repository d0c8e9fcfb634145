"""Scalar expressions: runtime parameters, loop variables, block indices and arithmetic on them.

A scalar expression is a small tree evaluated by every thread of a block
alike. Leaves are :class:`Var` (a runtime parameter, loop variable or scalar
variable), :class:`Const` and :class:`BlockIdx` / :class:`NumBlocks`; inner
nodes are :class:`Unary` and :class:`Binary`. Python operators build trees::

    n = Var("n", int32)
    (n + 63) // 64          # Binary("floordiv", Binary("add", n, Const(63)), Const(64))

Semantics follow Python, so kernels mean what they say: ``//`` and ``%``
floor (``-7 // 2 == -4``), ``/`` is true division in float32, and integer
results wrap to their type's width (int32 arithmetic wraps like the GPU's).
Comparisons and ``and``/``or``/``not`` produce ``uint1`` (0 or 1), the IR's
boolean. Expressions are compared by identity (``==`` builds a comparison),
so they hash by identity too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..dtypes import DataType
from ..errors import TileVMError

BOOL = dtypes.uint1
INT32 = dtypes.int32
FLOAT32 = dtypes.float32

ARITHMETIC = ("add", "sub", "mul", "floordiv", "mod", "truediv", "min", "max")
BITWISE = ("and", "or", "xor", "shl", "shr")
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
LOGICAL = ("land", "lor")
BINARY_OPS = ARITHMETIC + BITWISE + COMPARISONS + LOGICAL
UNARY_OPS = ("neg", "abs", "invert", "lnot", "exp", "log", "sqrt", "cast")

SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "floordiv": "//",
    "mod": "%",
    "truediv": "/",
    "and": "&",
    "or": "|",
    "xor": "^",
    "shl": "<<",
    "shr": ">>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "eq": "==",
    "ne": "!=",
    "land": "and",
    "lor": "or",
}


class ExprError(TileVMError, TypeError):
    """A scalar expression was built from values that do not fit (types, Python truth tests)."""


def result_type(op: str, a: DataType, b: DataType) -> DataType:
    """The type of ``a op b``: comparisons and logic give uint1, floats win, wider ints win."""
    if op in COMPARISONS or op in LOGICAL:
        return BOOL
    if op == "truediv" or a.is_float or b.is_float:
        if op in BITWISE:
            raise ExprError(f"bit operation '{SYMBOLS[op]}' needs integers; got {a} and {b}")
        wide = [t for t in (a, b) if t.is_float]
        return max(wide, key=lambda t: t.nbits) if op != "truediv" or wide else FLOAT32
    if a == BOOL:
        # Two bools stay bool only under &, |, ^ (True << True is 2, as in Python and numpy).
        return b if b != BOOL or op in ("and", "or", "xor") else INT32
    if b == BOOL:
        return a
    return a if a.nbits >= b.nbits else b


class Expr:
    """Base of scalar expressions; Python operators build :class:`Binary` and :class:`Unary`."""

    __slots__ = ()
    dtype: DataType

    def _bin(self, op: str, other: Any, *, reverse: bool = False) -> Binary:
        other = as_expr(other, like=self)
        a, b = (other, self) if reverse else (self, other)
        return Binary(op, a, b, result_type(op, a.dtype, b.dtype))

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, reverse=True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, reverse=True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, reverse=True)

    def __floordiv__(self, o):
        return self._bin("floordiv", o)

    def __rfloordiv__(self, o):
        return self._bin("floordiv", o, reverse=True)

    def __mod__(self, o):
        return self._bin("mod", o)

    def __rmod__(self, o):
        return self._bin("mod", o, reverse=True)

    def __truediv__(self, o):
        return self._bin("truediv", o)

    def __rtruediv__(self, o):
        return self._bin("truediv", o, reverse=True)

    def __and__(self, o):
        return self._bin("and", o)

    def __rand__(self, o):
        return self._bin("and", o, reverse=True)

    def __or__(self, o):
        return self._bin("or", o)

    def __ror__(self, o):
        return self._bin("or", o, reverse=True)

    def __xor__(self, o):
        return self._bin("xor", o)

    def __rxor__(self, o):
        return self._bin("xor", o, reverse=True)

    def __lshift__(self, o):
        return self._bin("shl", o)

    def __rlshift__(self, o):
        return self._bin("shl", o, reverse=True)

    def __rshift__(self, o):
        return self._bin("shr", o)

    def __rrshift__(self, o):
        return self._bin("shr", o, reverse=True)

    def __lt__(self, o):
        return self._bin("lt", o)

    def __le__(self, o):
        return self._bin("le", o)

    def __gt__(self, o):
        return self._bin("gt", o)

    def __ge__(self, o):
        return self._bin("ge", o)

    def __eq__(self, o):  # type: ignore[override]
        return self._bin("eq", o)

    def __ne__(self, o):  # type: ignore[override]
        return self._bin("ne", o)

    def __neg__(self):
        return Unary("neg", self, self.dtype)

    def __abs__(self):
        return Unary("abs", self, self.dtype)

    def __invert__(self):
        if self.dtype.is_float:
            raise ExprError(f"'~' needs an integer; got {self.dtype}")
        return Unary("invert", self, self.dtype)

    def __bool__(self):
        raise ExprError(
            "a runtime value has no truth value while the kernel is compiled; use it in the "
            "kernel's own if/while, or make it a compile-time constant"
        )

    __hash__ = object.__hash__


@dataclass(eq=False, slots=True)
class Var(Expr):
    """A named scalar: a runtime parameter, a loop variable, or a variable the kernel assigns."""

    name: str
    dtype: DataType = INT32


@dataclass(eq=False, slots=True)
class Const(Expr):
    """A constant of a given type (Python int, float or bool value)."""

    value: int | float
    dtype: DataType = INT32


@dataclass(eq=False, slots=True)
class BlockIdx(Expr):
    """The index of the running block along grid dimension ``dim`` (0, 1 or 2)."""

    dim: int
    dtype: DataType = field(default=INT32)


@dataclass(eq=False, slots=True)
class NumBlocks(Expr):
    """The grid's extent along dimension ``dim``."""

    dim: int
    dtype: DataType = field(default=INT32)


@dataclass(eq=False, slots=True)
class Unary(Expr):
    op: str
    x: Expr
    dtype: DataType


@dataclass(eq=False, slots=True)
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    dtype: DataType


@dataclass(eq=False, slots=True)
class Select(Expr):
    """``a if cond else b``."""

    cond: Expr
    a: Expr
    b: Expr
    dtype: DataType


def as_expr(value: Any, like: Expr | None = None) -> Expr:
    """Wrap a Python number as a :class:`Const` (int32, float32 or uint1); pass Exprs through."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        return Const(int(value), BOOL)
    if isinstance(value, int):
        wide_int = like is not None and like.dtype.is_integer and like.dtype != BOOL
        return Const(value, like.dtype if wide_int else INT32)
    if isinstance(value, float):
        return Const(value, like.dtype if like is not None and like.dtype.is_float else FLOAT32)
    raise ExprError(f"expected a number or a scalar expression; got {value!r}")


def minimum(a: Any, b: Any) -> Expr:
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    return a._bin("min", b)


def maximum(a: Any, b: Any) -> Expr:
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    return a._bin("max", b)


def logical_and(a: Any, b: Any) -> Expr:
    return as_expr(a)._bin("land", b)


def logical_or(a: Any, b: Any) -> Expr:
    return as_expr(a)._bin("lor", b)


def logical_not(a: Any) -> Expr:
    return Unary("lnot", as_expr(a), BOOL)


def select(cond: Any, a: Any, b: Any) -> Expr:
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    b = as_expr(b, like=a)
    return Select(as_expr(cond), a, b, result_type("add", a.dtype, b.dtype))


def cast_expr(x: Any, dtype: DataType) -> Expr:
    """Convert a scalar to ``dtype`` (printed as ``dtype(x)``)."""
    return Unary("cast", as_expr(x), dtype)
