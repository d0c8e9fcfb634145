"""How the interpreter holds values of every data type, and how it rounds them.

A register tile (and a shared tensor) holds *values*, never codes: a float32
array for every float type and an int64 array for every integer type. Both
are exact: every value of every float type here is a float32, and every
integer type fits in int64 (uint32 included). Three conversions keep values
inside their type:

- :func:`round_arith` after arithmetic, as the GPU's native operations
  round: ints wrap modulo 2^bits, float16 and bfloat16 round to nearest even
  and overflow to inf, float32 is native, and the 8-bit-or-narrower floats
  round to nearest even and saturate (overflow to inf where the format has
  inf, i.e. float8_e5m2);
- :func:`cast` for an explicit conversion, ``T.decode(T.encode(x))`` through
  :mod:`tilevm.dtypes`: nearest even, saturating finite values, ints rounded
  then saturated, NaN into a type without NaN an error;
- :func:`convert` for an implicit conversion (assigning a scalar, promoting
  an operand): int to int wraps like C, anything to a float rounds like
  arithmetic, float to int casts.

Worked example, ``x = 300.0`` and ``y = 70000.0``:

===========================  ======  ============================
conversion                   result  why
===========================  ======  ============================
``round_arith(300, int8)``   44      300 - 256, two's complement
``cast(300.0, int8)``        127     saturates
``round_arith(y, float16)``  inf     IEEE overflow
``cast(y, float16)``         65504   saturates to the largest
===========================  ======  ============================

Global memory holds *storage* (:func:`storage_dtype`): numpy's own float16,
float32 and integer types, the raw bits of bfloat16 as uint16, and a uint8
code per element for the floats of at most 8 bits.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DataType
from ..errors import TileVMError

_NATIVE_INTS = {
    ("int", 8): np.int8,
    ("int", 16): np.int16,
    ("int", 32): np.int32,
    ("int", 64): np.int64,
    ("uint", 8): np.uint8,
    ("uint", 16): np.uint16,
    ("uint", 32): np.uint32,
}


class InterpError(TileVMError, RuntimeError):
    """A program did something the interpreter refuses: an out-of-bounds access, a race, ...

    The message starts with ``file:line:`` of the instruction or statement
    when it has a source location.
    """


def storage_dtype(dtype: DataType) -> np.dtype:
    """The numpy type of a global buffer of ``dtype`` elements (what ``run`` expects).

    float16 and float32 are numpy's; bfloat16 is its raw bits as uint16;
    int8..int64 and uint8..uint32 are numpy's; every other type of at most
    8 bits is uint8 (one code per element for 8-bit floats; packed bytes for
    narrower types, which global tensors never have: they load bytes and
    view them).
    """
    if dtype.is_float:
        if dtype.nbits == 32:
            return np.dtype(np.float32)
        if dtype.nbits == 16:
            return np.dtype(np.float16 if dtype.exponent_bits == 5 else np.uint16)
        return np.dtype(np.uint8)
    native = _NATIVE_INTS.get((dtype.kind, dtype.nbits))
    return np.dtype(native if native is not None else np.uint8)


def value_dtype(dtype: DataType) -> np.dtype:
    return np.dtype(np.float32 if dtype.is_float else np.int64)


def is_bfloat16(dtype: DataType) -> bool:
    return dtype.is_float and dtype.nbits == 16 and dtype.exponent_bits == 8


def is_float16(dtype: DataType) -> bool:
    return dtype.is_float and dtype.nbits == 16 and dtype.exponent_bits == 5


# -- rounding ------------------------------------------------------------------------------------
def wrap_int(x: np.ndarray, dtype: DataType) -> np.ndarray:
    """int64 ``x`` modulo 2^bits, as two's complement for signed types."""
    x = np.asarray(x, dtype=np.int64)
    if dtype.nbits >= 64:
        return x
    mask = np.int64((1 << dtype.nbits) - 1)
    if dtype.kind == "uint":
        return x & mask
    half = np.int64(1 << (dtype.nbits - 1))
    return ((x + half) & mask) - half


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` rounded to bfloat16, nearest even, overflow to inf, NaN kept, as float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds to nearest even; a carry out of the
    # mantissa bumps the exponent, which turns the largest values into inf as IEEE says.
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000
    )
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), x, out).astype(np.float32)


def round_arith(x: np.ndarray, dtype: DataType) -> np.ndarray:
    """The result of an arithmetic operation (int64 or float32 ``x``) rounded to ``dtype``.

    Raises :class:`~tilevm.errors.DTypeError` for NaN in a float type without NaN.
    """
    if dtype.is_integer:
        return wrap_int(x, dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = np.asarray(x, dtype=np.float32)
        if dtype.nbits == 32:
            return x32
        if is_float16(dtype):
            return x32.astype(np.float16).astype(np.float32)
    if is_bfloat16(dtype):
        return round_bfloat16(x32)
    out = dtype.decode(dtype.encode(x32))
    if dtype.has_inf:
        # IEEE-style overflow: beyond the largest finite value plus half an ulp is inf (the
        # largest finite significand is odd, so the tie goes to inf too).
        assert dtype.mantissa_bits is not None and dtype.bias is not None
        emax = (1 << dtype.exponent_bits) - 2 - dtype.bias
        limit = dtype.max_value + 2.0 ** (emax - dtype.mantissa_bits - 1)
        out = np.where(np.abs(x32) >= limit, np.copysign(np.float32(np.inf), x32), out)
    return np.asarray(out, dtype=np.float32)


def cast(x: np.ndarray, src: DataType, dst: DataType) -> np.ndarray:
    """An explicit conversion of ``src`` values to ``dst``: ``dst.decode(dst.encode(x))``."""
    if src == dst:
        return np.asarray(x, dtype=value_dtype(dst))
    if dst.is_float and dst.nbits == 32 and src.is_float:
        return np.asarray(x, dtype=np.float32)  # every float value here is a float32
    return dst.decode(dst.encode(np.asarray(x)))


def convert(x: np.ndarray, src: DataType, dst: DataType) -> np.ndarray:
    """An implicit conversion: int to int wraps, anything to a float rounds, float to int casts."""
    if src == dst:
        return np.asarray(x, dtype=value_dtype(dst))
    if dst.is_integer:
        return wrap_int(x, dst) if src.is_integer else cast(x, src, dst)
    return round_arith(np.asarray(x, dtype=np.float32), dst)


# -- storage -------------------------------------------------------------------------------------
def from_storage(data: np.ndarray, dtype: DataType) -> np.ndarray:
    """Values of ``dtype`` from elements of its storage type."""
    if is_bfloat16(dtype):
        return (data.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if data.dtype == np.uint8 and dtype.is_float:
        return dtype.decode(data)
    return data.astype(value_dtype(dtype))


def to_storage(values: np.ndarray, dtype: DataType) -> np.ndarray:
    """Elements of ``dtype``'s storage type holding ``values`` (exact: values are in range)."""
    store = storage_dtype(dtype)
    if dtype.is_float and (is_bfloat16(dtype) or store == np.uint8):
        return dtype.encode(values).astype(store)
    return np.asarray(values).astype(store)
