"""How generated code holds values of every data type, and the conversions between them.

A register tile element is held in its *storage* form, the bits global memory
holds (so loads and stores move bits): float32 as ``float``, float16 and
bfloat16 as their 16 bits, every other float of at most 8 bits and every
integer type narrower than 8 bits as its code in a ``tv_u8``, the other
integers natively. Computation happens on *values*: a ``float`` for every
float type (each of their values is a float32) and ``int`` / ``tv_u32`` /
``long long`` for integers. Scalars (parameters, ``let`` variables) are
always values.

==============  ===============  ============  =================================
type            element C type   value type    element -> value
==============  ===============  ============  =================================
float32         ``float``        ``float``     itself
float16         ``tv_f16``       ``float``     ``tv_f16_to_f32(h)`` (cvt.f32.f16)
bfloat16        ``tv_bf16``      ``float``     ``tv_bf16_to_f32(h)`` (a shift)
float6_e3m2     ``tv_u8`` code   ``float``     ``tv_decode_float<3, 2, 0>(c)``
int8            ``tv_i8``        ``int``       itself
int3            ``tv_u8`` code   ``int``       ``tv_sext<3>(c)``
uint32          ``tv_u32``       ``tv_u32``    itself
int64           ``long long``    ``long long`` itself
==============  ===============  ============  =================================

Converting a value into a type follows the interpreter's rules
(:mod:`tilevm.interp.values`): ``"arith"`` rounds a computed result (ints
wrap; floats round to nearest even and overflow to inf), ``"cast"`` is an
explicit conversion (nearest even, saturating), ``"convert"`` an implicit one
(int to int wraps, anything to a float rounds like arithmetic, float to int
casts).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..dtypes import DataType, embeds, is_bf16, is_f16, is_f32
from ..errors import TileVMError
from .prelude import Prelude

Mode = Literal["arith", "cast", "convert"]


class CodegenError(TileVMError, ValueError):
    """A program the CUDA emitter cannot lower (a missing layout, a dot it has no mma for...)."""


_NATIVE_INT = {
    ("int", 8): "tv_i8",
    ("uint", 8): "tv_u8",
    ("int", 16): "tv_i16",
    ("uint", 16): "tv_u16",
    ("int", 32): "int",
    ("uint", 32): "tv_u32",
    ("int", 64): "long long",
}
_SPECIAL = {"finite": 0, "fn": 1, "ieee": 2}


def is_native_int(t: DataType) -> bool:
    return (t.kind, t.nbits) in _NATIVE_INT


def elem_ctype(t: DataType) -> str:
    """The C type of one element of a tile (or of global/shared memory) of type ``t``."""
    if is_f32(t):
        return "float"
    if is_f16(t):
        return "tv_f16"
    if is_bf16(t):
        return "tv_bf16"
    return _NATIVE_INT.get((t.kind, t.nbits), "tv_u8")


def elem_bytes(t: DataType) -> int:
    """Bytes of one element in registers and memory (a code of 1..8 bits takes a byte)."""
    return max(1, t.nbits // 8) if t.nbits >= 8 else 1


def value_ctype(t: DataType) -> str:
    """The C type computations on values of ``t`` use (and scalars of ``t`` are held in)."""
    if t.is_float:
        return "float"
    if t.nbits == 64:
        return "long long"
    if t.kind == "uint" and t.nbits == 32:
        return "tv_u32"
    return "int"


def scalar_ctype(t: DataType) -> str:
    """The C type of a scalar variable of ``t`` (booleans are ``bool``)."""
    return "bool" if (t.kind, t.nbits) == ("uint", 1) else value_ctype(t)


def _special(t: DataType) -> int:
    return _SPECIAL[t._specials]


def _small_float_args(t: DataType) -> str:
    return f"{t.exponent_bits}, {t.mantissa_bits}, {_special(t)}"


# -- elements <-> values ---------------------------------------------------------------------------
def load(elem: str, t: DataType, pre: Prelude) -> str:
    """The value (C expression) of an element ``elem`` of type ``t``."""
    if is_f32(t):
        return elem
    if is_f16(t):
        pre.use("f16")
        return f"tv_f16_to_f32({elem})"
    if is_bf16(t):
        pre.use("bf16")
        return f"tv_bf16_to_f32({elem})"
    if t.is_float:
        pre.use("small_float")
        return f"tv_decode_float<{_small_float_args(t)}>({elem})"
    if is_native_int(t):
        return elem
    if t.kind == "int":
        pre.use("sext")
        return f"tv_sext<{t.nbits}>({elem})"
    return elem


def _from_f32(x: str, t: DataType, mode: Mode, pre: Prelude) -> str:
    """The element of float type ``t`` nearest the float value ``x``."""
    saturate = mode == "cast"
    if is_f32(t):
        return x
    if is_f16(t):
        pre.use("f16")
        return f"tv_f32_to_f16{'_sat' if saturate else ''}({x})"
    if is_bf16(t):
        pre.use("bf16")
        return f"tv_f32_to_bf16{'_sat' if saturate else ''}({x})"
    pre.use("small_float")
    arith = "false" if saturate else "true"
    return f"(tv_u8)tv_encode_float<{_small_float_args(t)}, {arith}>({x})"


def _wrap(v: str, t: DataType) -> str:
    """The element of integer type ``t`` holding the integer value ``v`` modulo 2^bits."""
    if t.nbits == 64:
        return v
    if is_native_int(t):
        return f"({elem_ctype(t)})({v})"
    return f"(tv_u8)(({v}) & {(1 << t.nbits) - 1})"


def _int_range(t: DataType) -> tuple[int, int]:
    return int(t.min_value), int(t.max_value)


def _fits(src: DataType, dst: DataType) -> bool:
    """Every value of integer type ``src`` is a value of integer type ``dst``."""
    lo, hi = _int_range(src)
    dlo, dhi = _int_range(dst)
    return dlo <= lo and hi <= dhi


def _int_literal(v: int, ctype: str = "int") -> str:
    if v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    if ctype == "long long" or not -(2**31) <= v < 2**31:
        return f"{v}LL"
    return str(v) if v != -(2**31) else "(-2147483647 - 1)"


def _int_to_float(v: str, src: DataType, dst: DataType, mode: Mode, pre: Prelude) -> str:
    """A ``float`` for the integer value ``v``; rounding it to ``dst`` then rounds correctly.

    ``(float)v`` rounds once; a cast to a format narrower than float32 that reaches
    past 2^24 would round twice, so it goes through a float32 rounded to odd.
    """
    lo, hi = _int_range(src)
    exact = lo >= -(2**24) and hi <= 2**24
    if mode == "cast" and not is_f32(dst) and not exact and dst.max_value >= 2**24:
        pre.use("int_to_f32_odd")
        return f"tv_int_to_f32_odd({v})"
    return f"(float)({v})"


def store(value: str, src: DataType, dst: DataType, mode: Mode, pre: Prelude) -> str:
    """The element of type ``dst`` for ``value``, a value of type ``src``, under ``mode``."""
    if dst.is_float:
        # A cast saturates only values beyond dst's range; a narrower source has none.
        saturate = mode == "cast" and _max(src) > dst.max_value
        if src.is_float and embeds(src, dst):
            saturate = False
        if src.is_float:
            return _from_f32(value, dst, "cast" if saturate else "arith", pre)
        x = _int_to_float(value, src, dst, mode, pre)
        return _from_f32(x, dst, "cast" if saturate else "arith", pre)
    lo, hi = (_int_literal(v, "long long") for v in _int_range(dst))
    if src.is_float:
        pre.use("float_to_int")
        return _wrap(f"tv_f32_to_int({value}, {lo}, {hi})", dst)
    if _fits(src, dst) and is_native_int(dst):
        return value  # in range: the assignment converts without changing it
    if mode == "cast" and not _fits(src, dst):
        pre.use("int_minmax")
        return _wrap(f"tv_clamp({value}, {lo}, {hi})", dst)
    return _wrap(value, dst)


def _max(t: DataType) -> float:
    """The largest magnitude of a type's values (inf for floats that have inf)."""
    if t.is_float and t.has_inf:
        return float("inf")
    return float(max(abs(t.min_value), abs(t.max_value)))


def convert(value: str, src: DataType, dst: DataType, mode: Mode, pre: Prelude) -> str:
    """The value of type ``dst`` (a C value) for ``value``, a value of ``src``, under ``mode``."""
    if src == dst:
        return value
    if src.is_float and dst.is_float and embeds(src, dst):
        return value
    if src.is_integer and dst.is_integer and _fits(src, dst):
        return value
    return load(store(value, src, dst, mode, pre), dst, pre)


# -- codes -----------------------------------------------------------------------------------------
def code_ctype(t: DataType) -> str:
    return "tv_u64" if t.nbits > 32 else "tv_u32"


def to_code(elem: str, t: DataType) -> str:
    """The bits of an element as an unsigned integer (``tv_u32``, or ``tv_u64`` for 64 bits)."""
    if is_f32(t):
        return f"__float_as_uint({elem})"
    if t.nbits == 64:
        return f"(tv_u64)({elem})"
    if t.nbits >= 8 and elem_ctype(t) in ("tv_i8", "tv_i16", "int"):
        mask = (1 << t.nbits) - 1
        return f"((tv_u32)({elem}) & 0x{mask:X}u)" if t.nbits < 32 else f"(tv_u32)({elem})"
    return f"(tv_u32)({elem})"


def from_code(code: str, t: DataType) -> str:
    """The element whose bits are the unsigned integer ``code`` (already masked to the width)."""
    if is_f32(t):
        return f"__uint_as_float({_unwrap(code)})"
    return f"({elem_ctype(t)})({_unwrap(code)})"


def _unwrap(text: str) -> str:
    """``text`` without one pair of parentheses around all of it."""
    if text.startswith("(") and text.endswith(")"):
        depth = 0
        for k, ch in enumerate(text):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and k < len(text) - 1:
                return text
        return text[1:-1]
    return text


# -- constants -------------------------------------------------------------------------------------
def float_literal(v: float) -> str:
    """A C ``float`` expression for the float32 value ``v`` (exact; inf and NaN spelled out).

    numpy prints a float32 with the fewest digits that read back as the same
    float32, which is what the C compiler does with a ``...f`` literal.
    """
    f = np.float32(v)
    if np.isnan(f):
        return "__uint_as_float(0x7FFFFFFFu)"
    if np.isinf(f):
        return "__uint_as_float(0x7F800000u)" if f > 0 else "__uint_as_float(0xFF800000u)"
    text = str(f)
    if not any(c in text for c in ".e"):
        text += ".0"
    return f"{text}f"


def value_literal(v: int | float, t: DataType) -> str:
    """A C value of type ``t`` (see :func:`value_ctype`) for the exact value ``v`` of ``t``."""
    if t.is_float:
        return float_literal(float(v))
    ctype = value_ctype(t)
    if ctype == "tv_u32":
        return f"{int(v)}u"
    return _int_literal(int(v), ctype)


def elem_literal(v: int | float, t: DataType) -> str:
    """A C element of type ``t`` holding the exact value ``v`` of ``t``."""
    if is_f32(t):
        return float_literal(float(v))
    if t.is_float:
        code = int(t.encode(np.asarray(v, dtype=np.float64)))
        return f"({elem_ctype(t)})0x{code:X}"
    if is_native_int(t):
        return (
            value_literal(int(v), t)
            if elem_ctype(t) in ("int", "long long")
            else (f"({elem_ctype(t)}){_int_literal(int(v))}")
        )
    return f"(tv_u8){int(v) & ((1 << t.nbits) - 1)}"


__all__ = [
    "CodegenError",
    "Mode",
    "convert",
    "elem_bytes",
    "elem_ctype",
    "elem_literal",
    "embeds",
    "float_literal",
    "from_code",
    "is_bf16",
    "is_f16",
    "is_f32",
    "load",
    "scalar_ctype",
    "store",
    "to_code",
    "value_ctype",
    "value_literal",
]
