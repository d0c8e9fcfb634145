"""Scalar expressions as C, and what is known about their divisibility.

Every thread of a block evaluates the same scalar expressions (parameters,
block indices, loop variables), so they become plain C with the semantics of
:mod:`tilevm.ir.expr` and the interpreter's :mod:`~tilevm.interp.scalars`:

- ``//`` and ``%`` on integers floor (``tv_floordiv``, ``tv_mod``), on floats
  they follow numpy; ``/`` divides in float32;
- integer results narrower than 32 bits wrap through a cast; 32- and 64-bit
  ones are C ``int`` / ``long long`` arithmetic, which the GPU wraps (C++
  leaves signed overflow undefined, so an overflowing int32 scalar is the
  one place the generated code relies on the hardware's behaviour);
- float results of a type narrower than float32 are rounded back to it;
  comparisons with a float operand compare float32 values;
- shifts by a constant within the width are C shifts, others clamp like the
  interpreter's (``tv_shl``, ``tv_shr``).

:func:`divisor` answers the vectoriser's question "which integer surely
divides this value?" from constants, loop steps, ``let`` definitions and the
divisibility facts known of parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..dtypes import DataType, float32, int64
from ..interp.values import round_arith
from ..ir.expr import (
    BOOL,
    Binary,
    BlockIdx,
    Const,
    Expr,
    NumBlocks,
    Select,
    Unary,
    Var,
)
from .prelude import Prelude
from .values import convert, float_literal, value_ctype, value_literal

ATOM, UNARY, MUL, ADD, SHIFT, REL, EQ, BAND, BXOR, BOR, LAND, LOR, COND = (
    16,
    15,
    13,
    12,
    11,
    10,
    9,
    8,
    7,
    6,
    5,
    4,
    3,
)

_C_BINARY = {
    "add": ("+", ADD),
    "sub": ("-", ADD),
    "mul": ("*", MUL),
    "truediv": ("/", MUL),
    "and": ("&", BAND),
    "or": ("|", BOR),
    "xor": ("^", BXOR),
    "lt": ("<", REL),
    "le": ("<=", REL),
    "gt": (">", REL),
    "ge": (">=", REL),
    "eq": ("==", EQ),
    "ne": ("!=", EQ),
    "land": ("&&", LAND),
    "lor": ("||", LOR),
}


def paren(text: str, prec: int, need: int) -> str:
    """``text`` (of precedence ``prec``) as an operand that needs at least ``need``."""
    return text if prec >= need else f"({text})"


def _wide(t: DataType) -> bool:
    return t.is_integer and t.nbits >= 32


@dataclass
class ScalarContext:
    """What translating an expression needs: C names of variables and the prelude."""

    name: Callable[[Var], str]
    prelude: Prelude


def c_expr(expr: Expr | int | float, ctx: ScalarContext) -> str:
    """The C text of a scalar expression (a Python number is an int or float32 literal)."""
    return _c(expr, ctx)[0]


def _c(e: Expr | int | float, ctx: ScalarContext) -> tuple[str, int]:
    if isinstance(e, bool):
        return ("true" if e else "false"), ATOM
    if isinstance(e, int):
        return value_literal(e, int64 if not -(2**31) <= e < 2**31 else _INT32), _num_prec(e)
    if isinstance(e, float):
        return float_literal(e), _num_prec(e)
    match e:
        case Var():
            return ctx.name(e), ATOM
        case Const(value=value, dtype=dtype):
            if dtype == BOOL:
                return ("true" if value else "false"), ATOM
            if dtype.is_float:
                v = float(round_arith(np.asarray(float(value), dtype=np.float32), dtype))
                return float_literal(v), _num_prec(v)
            return value_literal(_wrap_int(int(value), dtype), dtype), _num_prec(int(value))
        case BlockIdx(dim=dim):
            return ("0", ATOM) if dim > 2 else (f"(int)blockIdx.{'xyz'[dim]}", UNARY)
        case NumBlocks(dim=dim):
            return ("1", ATOM) if dim > 2 else (f"(int)gridDim.{'xyz'[dim]}", UNARY)
        case Unary():
            return _unary(e, ctx)
        case Binary():
            return _binary(e, ctx)
        case Select(cond=cond, a=a, b=b, dtype=dtype):
            c = paren(*_c(cond, ctx), LOR)
            x = paren(_fit(a, dtype, ctx), UNARY, COND + 1)
            y = paren(_fit(b, dtype, ctx), UNARY, COND)
            return f"{c} ? {x} : {y}", COND
    raise AssertionError(f"unknown scalar expression {e!r}")


_INT32 = DataType("int", 32)


def _num_prec(v: int | float) -> int:
    return UNARY if v < 0 or (isinstance(v, float) and math.copysign(1.0, v) < 0) else ATOM


def _wrap_int(v: int, t: DataType) -> int:
    if t.kind == "uint":
        return v & ((1 << t.nbits) - 1)
    half = 1 << (t.nbits - 1)
    return ((v + half) & ((1 << t.nbits) - 1)) - half


def c_fit(e: Expr, t: DataType, ctx: ScalarContext) -> str:
    """``e`` converted implicitly to a value of ``t``, as the interpreter's ``fit`` does."""
    text, prec = _c(e, ctx)
    if e.dtype == t:
        return text
    return convert(paren(text, prec, UNARY), e.dtype, t, "convert", ctx.prelude)


def _fit(e: Expr, t: DataType, ctx: ScalarContext) -> str:
    text, prec = _c(e, ctx)
    if e.dtype == t:
        return paren(text, prec, UNARY)
    return convert(paren(text, prec, UNARY), e.dtype, t, "convert", ctx.prelude)


def _c_int_type(t: DataType) -> str:
    return value_ctype(t) if _wide(t) else "int"


def _common_int(a: DataType, b: DataType) -> str:
    types = {_c_int_type(a), _c_int_type(b)}
    if "long long" in types or types == {"int", "tv_u32"}:
        return "long long"
    return types.pop()


def _unary(e: Unary, ctx: ScalarContext) -> tuple[str, int]:
    t, op = e.dtype, e.op
    x, px = _c(e.x, ctx)
    if op == "cast":
        text = convert(paren(x, px, UNARY), e.x.dtype, t, "cast", ctx.prelude)
        return text, (px if text == paren(x, px, UNARY) and text == x else ATOM)
    if op == "lnot":
        return f"!{paren(x, px, UNARY)}", UNARY
    if op in ("exp", "log", "sqrt"):
        arg = x if e.x.dtype == float32 else f"(float){paren(x, px, UNARY)}"
        return _round_float(f"{op}f({arg})", ATOM, float32, t, ctx)
    if t.is_float:
        if op == "neg":
            return f"-{paren(x, px, UNARY)}", UNARY
        if op == "abs":
            return f"fabsf({x})", ATOM
    else:
        natural = _c_int_type(e.x.dtype)
        if op == "neg":
            return _int_result(f"-{paren(x, px, UNARY)}", UNARY, t, natural)
        if op == "abs":
            ctx.prelude.use("int_minmax")
            return _int_result(f"tv_abs({x})", ATOM, t, natural)
        if op == "invert":
            return _int_result(f"~{paren(x, px, UNARY)}", UNARY, t, natural)
    raise AssertionError(f"unknown unary op {op!r} for {t}")


def _int_result(text: str, prec: int, t: DataType, natural: str) -> tuple[str, int]:
    """An integer computed in C type ``natural``, as a value of ``t`` (wrapped to its width)."""
    if t == BOOL:
        return f"(bool)({paren(text, prec, BAND + 1)} & 1)", UNARY
    if t.nbits in (8, 16):
        ctype = {"int": "tv_i", "uint": "tv_u"}[t.kind] + str(t.nbits)
        return f"({ctype})({text})", UNARY
    if t.nbits < 8:
        if t.kind == "uint":
            return f"({paren(text, prec, BAND + 1)} & {(1 << t.nbits) - 1})", ATOM
        shift = 32 - t.nbits
        return f"((int)((tv_u32)({text}) << {shift}) >> {shift})", ATOM
    if value_ctype(t) != natural:
        return f"({value_ctype(t)})({text})", UNARY
    return text, prec


def _round_float(text: str, prec: int, src: DataType, t: DataType, ctx) -> tuple[str, int]:
    if t in (src, float32):
        return text, prec
    out = convert(paren(text, prec, UNARY), float32, t, "arith", ctx.prelude)
    return out, ATOM


def _binary(e: Binary, ctx: ScalarContext) -> tuple[str, int]:
    op, t = e.op, e.dtype
    ta, tb = e.lhs.dtype, e.rhs.dtype
    if op in ("land", "lor"):
        sym, level = _C_BINARY[op]
        a, pa = _c(e.lhs, ctx)
        b, pb = _c(e.rhs, ctx)
        return f"{paren(a, pa, level)} {sym} {paren(b, pb, level + 1)}", level
    if op in ("lt", "le", "gt", "ge", "eq", "ne"):
        sym, level = _C_BINARY[op]
        if ta.is_float or tb.is_float:
            a, b = _as(e.lhs, float32, ctx), _as(e.rhs, float32, ctx)
        else:
            common = _common_int(ta, tb)
            a, b = _as_c(e.lhs, common, ctx), _as_c(e.rhs, common, ctx)
        return f"{paren(*a, level)} {sym} {paren(*b, level + 1)}", level
    if t.is_float:
        a, b = _as(e.lhs, t, ctx), _as(e.rhs, t, ctx)
        if op in ("floordiv", "mod", "min", "max"):
            fn = {"floordiv": "tv_ffloordiv", "mod": "tv_fmod_py", "min": "tv_fmin"}.get(
                op, "tv_fmax"
            )
            ctx.prelude.use("float_division" if op in ("floordiv", "mod") else "float_minmax")
            return _round_float(f"{fn}({a[0]}, {b[0]})", ATOM, float32, t, ctx)
        sym, level = _C_BINARY[op]
        text = f"{paren(*a, level)} {sym} {paren(*b, level + 1)}"
        return _round_float(text, level, float32, t, ctx)
    return _int_binary(e, ctx)


def _as(e: Expr, t: DataType, ctx: ScalarContext) -> tuple[str, int]:
    """``e`` as a value of ``t`` (implicit conversion), with its precedence."""
    text, prec = _c(e, ctx)
    if e.dtype == t:
        return text, prec
    if t.is_float and e.dtype.is_integer:
        conv = f"(float){paren(text, prec, UNARY)}"
        if t != float32:
            conv = convert(conv, float32, t, "arith", ctx.prelude)
            return conv, ATOM
        return conv, UNARY
    out = convert(paren(text, prec, UNARY), e.dtype, t, "convert", ctx.prelude)
    return (out, prec) if out == text else (out, ATOM if out.endswith(")") else UNARY)


def _as_c(e: Expr, ctype: str, ctx: ScalarContext) -> tuple[str, int]:
    text, prec = _c(e, ctx)
    if _c_int_type(e.dtype) == ctype or e.dtype == BOOL:
        return (text, prec) if e.dtype != BOOL or ctype == "int" else (f"({ctype}){text}", UNARY)
    return f"({ctype}){paren(text, prec, UNARY)}", UNARY


def _int_binary(e: Binary, ctx: ScalarContext) -> tuple[str, int]:
    op, t = e.op, e.dtype
    ta, tb = e.lhs.dtype, e.rhs.dtype
    common = _common_int(ta, tb)
    a, b = _as_c(e.lhs, common, ctx), _as_c(e.rhs, common, ctx)
    if op in ("floordiv", "mod"):
        ctx.prelude.use("int_division")
        fn = "tv_floordiv" if op == "floordiv" else "tv_mod"
        if common == "tv_u32":  # both unsigned: C division already floors
            sym = "/" if op == "floordiv" else "%"
            return _int_result(f"{paren(*a, MUL)} {sym} {paren(*b, MUL + 1)}", MUL, t, common)
        return _int_result(f"{fn}({a[0]}, {b[0]})", ATOM, t, common)
    if op in ("min", "max"):
        ctx.prelude.use("int_minmax")
        return _int_result(f"tv_{op}({a[0]}, {b[0]})", ATOM, t, common)
    if op in ("shl", "shr"):
        return _shift(e, ctx)
    sym, level = _C_BINARY[op]
    # Comparisons under a bitwise operator get parentheses too, as readers (and -Wparentheses)
    # expect.
    need = SHIFT if op in ("and", "or", "xor") else level
    text = f"{paren(*a, need)} {sym} {paren(*b, max(need, level + 1))}"
    return _int_result(text, level, t, common)


def _shift(e: Binary, ctx: ScalarContext) -> tuple[str, int]:
    op, t = e.op, e.dtype
    a, pa = _c(e.lhs, ctx)
    width = 64 if e.lhs.dtype.nbits == 64 else 32
    if isinstance(e.rhs, Const) and 0 <= int(e.rhs.value) < width:
        sym = "<<" if op == "shl" else ">>"
        text = f"{paren(a, pa, SHIFT)} {sym} {int(e.rhs.value)}"
        return _int_result(text, SHIFT, t, _c_int_type(e.lhs.dtype))
    ctx.prelude.use("int_shift")
    b = c_expr(e.rhs, ctx)
    fn = "tv_shl" if op == "shl" else "tv_shr"
    text = f"{fn}((long long){paren(a, pa, UNARY)}, {b})"
    return _int_result(text, ATOM, t, "long long")


# -- divisibility ----------------------------------------------------------------------------------
CAP = 1 << 20


@dataclass(frozen=True)
class VarFact:
    """What the program says about a variable: ``kind`` is param, loop, let or assigned."""

    kind: str
    value: Expr | None = None
    step: Expr | None = None


def divisor(e: Expr | int, facts: Mapping[Var, VarFact], params: Mapping[str, int]) -> int:
    """An integer known to divide the integer value of ``e``: 0 when ``e`` is 0, at most CAP.

    ``facts`` describes variables; ``params`` maps parameter names to known
    divisors (the launcher's divisibility facts or speculated assumptions).
    """
    if isinstance(e, int):
        return min(abs(e), CAP)
    match e:
        case Const(value=value, dtype=dtype) if dtype.is_integer:
            return min(abs(int(value)), CAP)
        case Var():
            fact = facts.get(e)
            if fact is None or fact.kind == "assigned":
                return 1
            if fact.kind == "param":
                return params.get(e.name, 1)
            if fact.kind == "loop":
                assert fact.value is not None and fact.step is not None
                return math.gcd(
                    divisor(fact.value, facts, params), divisor(fact.step, facts, params)
                )
            assert fact.value is not None
            return divisor(fact.value, facts, params)
        case Binary(op=op, lhs=a, rhs=b) if e.dtype.is_integer:
            da, db = divisor(a, facts, params), divisor(b, facts, params)
            if op in ("add", "sub"):
                return math.gcd(da, db)
            if op == "mul":
                return min(da * db, CAP) if da and db else 0
            if op == "shl" and isinstance(b, Const):
                return min(da << int(b.value), CAP) if da else 0
            if op == "mod" and isinstance(b, Const) and int(b.value) > 0:
                return math.gcd(da, int(b.value))
            return 1
        case Unary(op="neg", x=x):
            return divisor(x, facts, params)
        case Select(a=a, b=b):
            return math.gcd(divisor(a, facts, params), divisor(b, facts, params))
    return 1


__all__ = ["ScalarContext", "VarFact", "c_expr", "c_fit", "divisor", "paren"]
