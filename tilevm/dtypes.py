"""Data types of any bit width, with bit-exact encoding, decoding and packing.

Every type is an immutable :class:`DataType` value. Two types are equal (and
hash alike) when they describe the same format, however they were obtained:
``tilevm.dtype("i3") == tilevm.int3``.

Formats
-------
| type                  | values                                  | inf and NaN codes          |
|-----------------------|-----------------------------------------|----------------------------|
| int{b}, b = 1..8      | -2^(b-1) .. 2^(b-1)-1, two's complement | none                       |
|                       | (int1 holds -1 and 0)                   |                            |
| uint{b}, b = 1..8     | 0 .. 2^b - 1                            | none                       |
| float{n}_e{E}m{M},    | sign, E exponent bits, M mantissa bits, | none: every code is finite |
| E >= 1, M >= 0,       | bias 2^(E-1) - 1, subnormals; as OCP    |                            |
| 1 + E + M = n <= 8    | FP4/FP6 (e2m1, e2m3, e3m2)              |                            |
| float8_e4m3           | OCP E4M3: bias 7, largest 448           | NaN = S.1111.111; no inf   |
| float8_e5m2           | OCP E5M2 (IEEE style): bias 15,         | inf = S.11111.00,          |
|                       | largest 57344                           | NaN = S.11111.{01,10,11}   |
| float16, bfloat16,    | IEEE binary16 (e5m10), bfloat16 (e8m7), | IEEE: top exponent         |
| float32               | binary32 (e8m23)                        |                            |
| int16, int32, int64,  | as the narrow ints                      | none                       |
| uint16, uint32        |                                         |                            |

A float code ``s | e | m`` (sign, exponent field, mantissa field) means::

    e == 0:  (-1)^s * m * 2^(1 - bias - M)               (zero and subnormals)
    e >= 1:  (-1)^s * (2^M + m) * 2^(e - bias - M)       (normal numbers)

unless the format reserves it as inf or NaN (the table above).

Worked example: ``float4_e2m1`` (OCP FP4, E = 2, M = 1, bias 1) has these
non-negative codes; codes 8..15 are the same values negated (code 8 is -0.0):

| code | e | m | formula              | value |
|------|---|---|----------------------|-------|
| 0    | 0 | 0 | 0 * 2^-1             | 0     |
| 1    | 0 | 1 | 1 * 2^-1 (subnormal) | 0.5   |
| 2    | 1 | 0 | (2 + 0) * 2^-1       | 1     |
| 3    | 1 | 1 | (2 + 1) * 2^-1       | 1.5   |
| 4    | 2 | 0 | (2 + 0) * 2^0        | 2     |
| 5    | 2 | 1 | (2 + 1) * 2^0        | 3     |
| 6    | 3 | 0 | (2 + 0) * 2^1        | 4     |
| 7    | 3 | 1 | (2 + 1) * 2^1        | 6     |

Encoding
--------
:meth:`DataType.encode` maps numbers to codes:

- round to nearest, ties to even: a value halfway between two neighbours goes
  to the one whose significand is even, which is the even code whenever
  M >= 1. With M = 0 every significand is 1 or 2 in units of the lower
  neighbour's spacing, so a tie goes to the larger magnitude (unless the
  smaller neighbour is zero, which wins);
- a finite value beyond the largest finite magnitude saturates to it; +-inf
  becomes +-inf where the format has infinities and saturates otherwise;
- -0.0 (and a negative value that rounds to zero) keeps its sign in every
  float format; ints have no negative zero;
- NaN becomes the format's NaN code (sign kept) where it has one, and is an
  error otherwise.

:meth:`DataType.decode` maps codes back to values: float32 for float types
(exact for every format here), int64 for integer types.

Packing
-------
:func:`pack` and :func:`unpack` use the dense interchange format: element i
occupies bits [i*b, (i+1)*b) of a little-endian bit stream, least significant
bit first, so values may straddle byte boundaries. Three 3-bit codes 1, 2, 3
pack to bytes ``0xD1 0x00``: bits 0-2 hold 1, bits 3-5 hold 2, bits 6-8 hold 3.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._compat import assert_never
from .errors import DTypeError, PackError

Kind = Literal["int", "uint", "float"]
_Specials = Literal["finite", "fn", "ieee"]

# Wider formats tilevm knows, by (kind, nbits) for ints and (E, M) for floats.
_WIDE_INT_BITS = {"int": (16, 32, 64), "uint": (16, 32)}
_WIDE_FLOATS = {(5, 10): "float16", (8, 7): "bfloat16", (8, 23): "float32"}
_WIDE_FLOAT_SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}


@dataclass(frozen=True, slots=True)
class DataType:
    """A scalar data type: an integer or float format of a given bit width.

    Build one through :func:`dtype` or the module attributes (``tilevm.int3``,
    ``tilevm.float6_e3m2``); the constructor validates its fields.

    Parameters
    ----------
    kind
        ``"int"`` (two's complement), ``"uint"`` or ``"float"``.
    nbits
        Total width in bits.
    exponent_bits, mantissa_bits
        For floats only (``None`` for integer types).
    """

    kind: Kind
    nbits: int
    exponent_bits: int | None = None
    mantissa_bits: int | None = None

    def __post_init__(self) -> None:
        _validate(self.kind, self.nbits, self.exponent_bits, self.mantissa_bits)

    # -- names ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Canonical name, e.g. ``int3``, ``uint5``, ``float6_e3m2``, ``bfloat16``."""
        match self.kind:
            case "int" | "uint":
                return f"{self.kind}{self.nbits}"
            case "float":
                wide = _WIDE_FLOATS.get((self.exponent_bits, self.mantissa_bits))
                return wide or f"float{self.nbits}_e{self.exponent_bits}m{self.mantissa_bits}"
            case _:
                assert_never(self.kind)

    @property
    def short_name(self) -> str:
        """Short name, e.g. ``i3``, ``u5``, ``f6e3m2``, ``bf16``."""
        match self.kind:
            case "int" | "uint":
                return f"{self.kind[0]}{self.nbits}"
            case "float":
                wide = _WIDE_FLOAT_SHORT.get(self.name)
                return wide or f"f{self.nbits}e{self.exponent_bits}m{self.mantissa_bits}"
            case _:
                assert_never(self.kind)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"tilevm.{self.name}"

    # -- classification ------------------------------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_integer(self) -> bool:
        return self.kind != "float"

    @property
    def is_signed(self) -> bool:
        """Whether negative values exist (every float format has a sign bit)."""
        return self.kind != "uint"

    @property
    def has_inf(self) -> bool:
        return self._specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self._specials in ("ieee", "fn")

    @property
    def _specials(self) -> _Specials | None:
        if not self.is_float:
            return None
        if (self.exponent_bits, self.mantissa_bits) == (4, 3):
            return "fn"
        if self.nbits > 8 or (self.exponent_bits, self.mantissa_bits) == (5, 2):
            return "ieee"
        return "finite"

    # -- ranges --------------------------------------------------------------------------------
    @property
    def bias(self) -> int | None:
        """Exponent bias 2^(E-1) - 1 for floats, ``None`` for integer types."""
        if self.exponent_bits is None:
            return None
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def max_value(self) -> int | float:
        """Largest finite value: a Python int for integer types, a float for floats."""
        match self.kind:
            case "int":
                return (1 << (self.nbits - 1)) - 1
            case "uint":
                return (1 << self.nbits) - 1
            case "float":
                return float(self.decode(np.asarray(self._max_magnitude_code)))
            case _:
                assert_never(self.kind)

    @property
    def min_value(self) -> int | float:
        """Smallest (most negative) finite value."""
        match self.kind:
            case "int":
                return -(1 << (self.nbits - 1))
            case "uint":
                return 0
            case "float":
                return -self.max_value
            case _:
                assert_never(self.kind)

    @property
    def smallest_normal(self) -> float | None:
        """2^(1 - bias) for floats, ``None`` for integer types."""
        return None if self.bias is None else 2.0 ** (1 - self.bias)

    @property
    def smallest_subnormal(self) -> float | None:
        """2^(1 - bias - M); ``None`` for integer types and formats without subnormals (M = 0)."""
        if self.bias is None or not self.mantissa_bits:
            return None
        return 2.0 ** (1 - self.bias - self.mantissa_bits)

    @property
    def code_dtype(self) -> np.dtype:
        """The numpy unsigned type that holds one code: uint8 for types of at most 8 bits."""
        for bits, np_type in ((8, np.uint8), (16, np.uint16), (32, np.uint32)):
            if self.nbits <= bits:
                return np.dtype(np_type)
        return np.dtype(np.uint64)

    @property
    def value_dtype(self) -> np.dtype:
        """The numpy type :meth:`decode` returns: float32 for floats, int64 for integers."""
        return np.dtype(np.float32 if self.is_float else np.int64)

    @property
    def _max_magnitude_code(self) -> int:
        """The code (sign bit clear) of the largest finite magnitude."""
        assert self.exponent_bits is not None and self.mantissa_bits is not None
        width = self.exponent_bits + self.mantissa_bits
        match self._specials:
            case "finite":
                return (1 << width) - 1
            case "fn":
                return (1 << width) - 2
            case "ieee":
                return (((1 << self.exponent_bits) - 1) << self.mantissa_bits) - 1
            case None:
                raise AssertionError("integer types have no magnitude code")
            case _:
                assert_never(self._specials)

    # -- conversion ----------------------------------------------------------------------------
    def decode(self, codes: Any) -> np.ndarray:
        """Map integer codes (each in ``0 .. 2**nbits - 1``) to their values.

        Returns an array of the same shape: float32 for float types, int64 for
        integer types. Raises :class:`DTypeError` when a code is out of range or
        ``codes`` is not an integer array.
        """
        c = _check_codes(codes, self.nbits, f"codes for {self.name}", DTypeError)
        if self.is_float:
            return _decode_float(self, c)
        return _decode_int(self, c)

    def encode(self, values: Any) -> np.ndarray:
        """Map numbers to codes, rounding to nearest with ties to even and saturating.

        Returns an array of :attr:`code_dtype` (uint8 for types of at most 8 bits)
        with the shape of ``values``. The module docstring states the rules for
        ties, saturation, infinities, signed zeros and NaN.
        """
        x = np.asarray(values)
        if x.dtype == np.bool_:
            x = x.astype(np.int64)
        if x.dtype.kind not in "iuf":
            raise DTypeError(
                f"{self.name}.encode: values must be real numbers; got an array of {x.dtype}"
            )
        if self.is_float:
            return _encode_float(self, x)
        return _encode_int(self, x)


def _validate(kind: str, nbits: Any, e_bits: Any, m_bits: Any) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind not in ("int", "uint", "float"):
        raise DTypeError(f"DataType.kind must be 'int', 'uint' or 'float'; got {kind!r}")
    if not is_int(nbits):
        raise DTypeError(f"DataType.nbits must be an int; got {nbits!r}")
    if kind in ("int", "uint"):
        if e_bits is not None or m_bits is not None:
            raise DTypeError(
                f"{kind} types take no exponent/mantissa bits; got {e_bits!r}, {m_bits!r}"
            )
        wide = _WIDE_INT_BITS[kind]
        if not (1 <= nbits <= 8 or nbits in wide):
            raise DTypeError(
                f"{kind} widths are 1..8 and {', '.join(map(str, wide))}; got nbits={nbits}"
            )
        return
    if not (is_int(e_bits) and is_int(m_bits) and e_bits >= 1 and m_bits >= 0):
        raise DTypeError(
            "float types need exponent_bits >= 1 and mantissa_bits >= 0; "
            f"got exponent_bits={e_bits!r}, mantissa_bits={m_bits!r}"
        )
    if nbits != 1 + e_bits + m_bits:
        raise DTypeError(
            f"a float with {e_bits} exponent and {m_bits} mantissa bits has "
            f"1 + {e_bits} + {m_bits} = {1 + e_bits + m_bits} bits; got nbits={nbits}"
        )
    if nbits > 8 and (e_bits, m_bits) not in _WIDE_FLOATS:
        raise DTypeError(
            "floats wider than 8 bits are float16 (e5m10), bfloat16 (e8m7) and float32 "
            f"(e8m23); got e{e_bits}m{m_bits} ({nbits} bits)"
        )


# -- construction and lookup ---------------------------------------------------------------------
def int_type(nbits: int) -> DataType:
    """The two's-complement integer type of ``nbits`` bits (1..8, 16, 32, 64)."""
    return DataType("int", nbits)


def uint_type(nbits: int) -> DataType:
    """The unsigned integer type of ``nbits`` bits (1..8, 16, 32)."""
    return DataType("uint", nbits)


def float_type(exponent_bits: int, mantissa_bits: int) -> DataType:
    """The float type with the given exponent and mantissa widths (plus a sign bit)."""
    return DataType("float", 1 + exponent_bits + mantissa_bits, exponent_bits, mantissa_bits)


def _low_bit_types() -> tuple[DataType, ...]:
    ints = [t(b) for t in (int_type, uint_type) for b in range(1, 9)]
    floats = [float_type(e, n - 1 - e) for n in range(2, 9) for e in range(1, n)]
    return (*ints, *floats)


LOW_BIT_DTYPES: tuple[DataType, ...] = _low_bit_types()
"""Every type of at most 8 bits: int1..int8, uint1..uint8 and all 28 float splits."""

WIDE_DTYPES: tuple[DataType, ...] = (
    float_type(5, 10),
    float_type(8, 7),
    float_type(8, 23),
    *(int_type(b) for b in _WIDE_INT_BITS["int"]),
    *(uint_type(b) for b in _WIDE_INT_BITS["uint"]),
)
"""float16, bfloat16, float32, int16, int32, int64, uint16, uint32."""

ALL_DTYPES: tuple[DataType, ...] = LOW_BIT_DTYPES + WIDE_DTYPES

_BY_NAME: dict[str, DataType] = {t.name: t for t in ALL_DTYPES}
_BY_NAME.update({t.short_name: t for t in ALL_DTYPES})
# The names torch and ml_dtypes give the formats whose tilevm name differs ("fn": finite).
LIBRARY_NAMES = {
    "float8_e4m3": "float8_e4m3fn",
    "float4_e2m1": "float4_e2m1fn",
    "float6_e2m3": "float6_e2m3fn",
    "float6_e3m2": "float6_e3m2fn",
}
_BY_NAME.update({"half": _BY_NAME["float16"], "float": _BY_NAME["float32"]})
_BY_NAME.update({other: _BY_NAME[ours] for ours, other in LIBRARY_NAMES.items()})


def library_name(t: DataType) -> str:
    """The name of ``t`` in torch and ml_dtypes (``float8_e4m3`` is their ``float8_e4m3fn``)."""
    return LIBRARY_NAMES.get(t.name, t.name)


# The width-less form e{E}m{M} of every low-bit float.
_BY_NAME.update({f"e{t.exponent_bits}m{t.mantissa_bits}": t for t in LOW_BIT_DTYPES if t.is_float})

ACCEPTED_FORMS = (
    "int1..int8, int16, int32, int64 (short i1..i64); "
    "uint1..uint8, uint16, uint32 (short u1..u32); "
    "float{n}_e{E}m{M} with E >= 1, M >= 0, 1 + E + M = n <= 8 "
    "(short f{n}e{E}m{M} or e{E}m{M}, e.g. float6_e3m2, f6e3m2, e3m2); "
    "float16/f16/half, bfloat16/bf16, float32/f32; a numpy or torch dtype of the same formats"
)

_SPLIT_RE = re.compile(r"(?:f(?:loat)?(\d+)_?)?e(\d+)m(\d+)")
_INT_RE = re.compile(r"(u?int|[iu])(\d+)")


def dtype(spec: DataType | str | Any) -> DataType:
    """Look up a data type by name, short name, or numpy/torch dtype.

    >>> dtype("i3") == dtype("int3")
    True
    >>> dtype("e4m3").name
    'float8_e4m3'

    Raises :class:`DTypeError` listing the accepted forms when ``spec`` names no type.
    """
    if isinstance(spec, DataType):
        return spec
    name = spec.strip().lower() if isinstance(spec, str) else _foreign_dtype_name(spec)
    if name is None:
        raise DTypeError(
            f"dtype() takes a DataType, a name or a numpy/torch dtype; got {spec!r} "
            f"of type {type(spec).__name__}"
        )
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    raise DTypeError(
        f"unknown data type {spec!r}{_why_unknown(name)}; accepted forms: {ACCEPTED_FORMS}"
    )


def _foreign_dtype_name(spec: Any) -> str | None:
    """The name of a torch or numpy (or ml_dtypes) dtype, without importing torch."""
    if type(spec).__module__ == "torch":
        return str(spec).removeprefix("torch.")
    if spec is None:
        return None
    try:
        return np.dtype(spec).name
    except TypeError:
        return None


def _why_unknown(name: str) -> str:
    """A specific reason for a name that looks like a type but is not one ('' if none)."""
    if m := _SPLIT_RE.fullmatch(name):
        width, e, mant = (None if g is None else int(g) for g in m.groups())
        try:
            t = float_type(e, mant)
        except DTypeError as err:
            return f" ({err})"
        if width is not None and width != t.nbits:
            return f" (e{e}m{mant} has 1 + {e} + {mant} = {t.nbits} bits, not {width})"
    if m := _INT_RE.fullmatch(name):
        kind = "uint" if m.group(1).startswith("u") else "int"
        try:
            DataType(kind, int(m.group(2)))
        except DTypeError as err:
            return f" ({err})"
    return ""


# -- codes ---------------------------------------------------------------------------------------
def _check_codes(codes: Any, nbits: int, what: str, error: type[Exception]) -> np.ndarray:
    """Return ``codes`` as an int64 array after checking each lies in 0 .. 2**nbits - 1."""
    arr = np.asarray(codes)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise error(f"{what} must be an integer array; got an array of {arr.dtype}")
    if nbits == 64:
        # Every 64-bit pattern is a code; a signed array is read as its bit pattern.
        if arr.dtype.kind == "i":
            return arr.astype(np.int64)
        return arr.astype(np.uint64).view(np.int64)
    bad = (arr < 0) | (arr > (1 << nbits) - 1)
    if bad.any():
        where = np.argwhere(bad)[0]
        index = tuple(int(i) for i in where) if arr.ndim else ()
        raise error(
            f"{what} must lie in 0..{(1 << nbits) - 1} ({nbits} bits); "
            f"got {arr[tuple(where)] if arr.ndim else arr.item()} at index {index}"
        )
    return arr.astype(np.int64)


def _decode_int(t: DataType, c: np.ndarray) -> np.ndarray:
    if t.kind == "int" and t.nbits < 64:
        half = 1 << (t.nbits - 1)
        return np.where(c >= half, c - (1 << t.nbits), c).astype(np.int64)
    return c


def _decode_float(t: DataType, c: np.ndarray) -> np.ndarray:
    e_bits, m_bits, bias = t.exponent_bits, t.mantissa_bits, t.bias
    assert e_bits is not None and m_bits is not None and bias is not None
    sign = (c >> (e_bits + m_bits)) & 1
    e = (c >> m_bits) & ((1 << e_bits) - 1)
    m = c & ((1 << m_bits) - 1)
    significand = np.where(e == 0, m, m + (1 << m_bits)).astype(np.float64)
    exponent = (np.maximum(e, 1) - bias - m_bits).astype(np.int32)
    mag = np.ldexp(significand, exponent)
    top = e == (1 << e_bits) - 1
    match t._specials:
        case "ieee":
            mag = np.where(top & (m == 0), np.inf, mag)
            mag = np.where(top & (m != 0), np.nan, mag)
        case "fn":
            mag = np.where(top & (m == (1 << m_bits) - 1), np.nan, mag)
        case "finite" | None:
            pass
        case _:
            assert_never(t._specials)
    return np.where(sign == 1, -mag, mag).astype(np.float32)


def _encode_int(t: DataType, x: np.ndarray) -> np.ndarray:
    lo, hi = t.min_value, t.max_value
    if x.dtype.kind in "iu":
        q = np.clip(x, max(lo, np.iinfo(x.dtype).min), min(hi, np.iinfo(x.dtype).max))
        q = q.astype(np.int64)
    else:
        xf = x.astype(np.float64)
        nan = np.isnan(xf)
        if nan.any():
            raise DTypeError(
                f"{t.name} has no NaN; got NaN at index {_first_index(nan)} of the values"
            )
        over, under = xf >= hi, xf <= lo
        q = np.rint(np.where(over | under, 0.0, xf)).astype(np.int64)
        q = np.where(over, hi, np.where(under, lo, q))
    if t.nbits == 64:
        return q.astype(np.int64).view(np.uint64)
    return (q & ((1 << t.nbits) - 1)).astype(t.code_dtype)


def _encode_float(t: DataType, x: np.ndarray) -> np.ndarray:
    e_bits, m_bits, bias = t.exponent_bits, t.mantissa_bits, t.bias
    assert e_bits is not None and m_bits is not None and bias is not None
    xf = x.astype(np.float64)
    nan = np.isnan(xf)
    if nan.any() and not t.has_nan:
        raise DTypeError(
            f"{t.name} has no NaN encoding; got NaN at index {_first_index(nan)} of the values"
        )
    sign = np.signbit(xf).astype(np.int64)
    a = np.abs(xf)
    finite = np.isfinite(a)
    a_fin = np.where(finite, a, 0.0)
    # a = f * 2^ex with f in [0.5, 1), so floor(log2 a) = ex - 1; subnormals share 1 - bias.
    _, ex = np.frexp(a_fin)
    e_eff = np.where(a_fin > 0, np.maximum(ex.astype(np.int64) - 1, 1 - bias), 1 - bias)
    # Scaling by a power of two is exact, so rint sees the exact quotient (ties to even).
    q = np.rint(np.ldexp(a_fin, (m_bits - e_eff).astype(np.int32)))
    # A significand that rounds up to 2^(M+1) carries into the exponent field by itself.
    mag = (e_eff + bias - 1).astype(np.float64) * (1 << m_bits) + q
    max_code = t._max_magnitude_code
    mag = np.minimum(mag, max_code).astype(np.int64)
    if t.has_inf:
        inf_code = ((1 << e_bits) - 1) << m_bits
        mag = np.where(np.isinf(a), inf_code, mag)
    else:
        mag = np.where(np.isinf(a), max_code, mag)
    if t.has_nan:
        # A quiet NaN: exponent all ones, mantissa all ones (the only NaN e4m3 has).
        mag = np.where(nan, (1 << (e_bits + m_bits)) - 1, mag)
    return ((sign << (e_bits + m_bits)) | mag).astype(t.code_dtype)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


# -- dense packing -------------------------------------------------------------------------------
def _pack_width(nbits: Any, where: str) -> int:
    if isinstance(nbits, (DataType, str)):
        nbits = dtype(nbits).nbits
    if not isinstance(nbits, (int, np.integer)) or isinstance(nbits, bool) or not 1 <= nbits <= 8:
        raise PackError(
            f"{where}: nbits must be an int in 1..8 (or a type of that width); got {nbits!r}"
        )
    return int(nbits)


def pack(codes: Any, nbits: int | DataType | str) -> np.ndarray:
    """Pack b-bit codes densely into bytes, least significant bit first.

    Element i occupies bits [i*b, (i+1)*b) of the little-endian bit stream, so
    ``ceil(len * b / 8)`` bytes result; bits past the last element are zero.
    ``codes`` of any shape are packed in C order.

    Parameters
    ----------
    codes
        Integer codes, each in ``0 .. 2**b - 1`` (e.g. from :meth:`DataType.encode`).
    nbits
        The width b, 1..8, or a data type of that width.

    Returns
    -------
    numpy.ndarray
        A 1-D uint8 array.
    """
    b = _pack_width(nbits, "pack")
    c = _check_codes(codes, b, f"pack: codes for {b}-bit packing", PackError).reshape(-1)
    n = c.size
    groups = -(-n // 8)
    # Eight b-bit codes make exactly b bytes: build each group as one 64-bit word.
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:n] = c
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(b)
    words = np.bitwise_or.reduce(padded.reshape(groups, 8) << shifts, axis=1)
    byte_shifts = np.arange(b, dtype=np.uint64) * np.uint64(8)
    out = ((words[:, None] >> byte_shifts) & np.uint64(0xFF)).astype(np.uint8)
    return out.reshape(-1)[: (n * b + 7) // 8]


def unpack(data: Any, nbits: int | DataType | str, count: int) -> np.ndarray:
    """Unpack ``count`` b-bit codes from the dense format written by :func:`pack`.

    ``data`` must hold at least ``ceil(count * b / 8)`` bytes (a 1-D uint8 array
    or anything numpy reads as one); later bytes are ignored. Returns a 1-D uint8
    array of ``count`` codes.
    """
    b = _pack_width(nbits, "unpack")
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise PackError(f"unpack: count must be a non-negative int; got {count!r}")
    raw = np.asarray(data)
    if raw.dtype != np.uint8:
        raise PackError(f"unpack: data must be a uint8 array; got an array of {raw.dtype}")
    raw = raw.reshape(-1)
    need = (int(count) * b + 7) // 8
    if raw.size < need:
        raise PackError(
            f"unpack: {count} codes of {b} bits need {need} bytes of data; got {raw.size}"
        )
    groups = -(-int(count) // 8)
    buf = np.zeros(groups * b, dtype=np.uint64)
    buf[:need] = raw[:need]
    byte_shifts = np.arange(b, dtype=np.uint64) * np.uint64(8)
    words = np.bitwise_or.reduce(buf.reshape(groups, b) << byte_shifts, axis=1)
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(b)
    codes = (words[:, None] >> shifts) & np.uint64((1 << b) - 1)
    return codes.astype(np.uint8).reshape(-1)[: int(count)]


globals().update({t.name: t for t in ALL_DTYPES})


# -- type predicates (used by the compiler) --------------------------------------------------------
def scalar_value(dtype: DataType, value: Any) -> int | float:
    """``value`` as the Python number a scalar kernel argument of ``dtype`` receives (the
    interpreter, the CPU launch and the GPU launcher all check their scalars with it); a
    float rounded to ``dtype`` (nearest even), as the kernel holds it.

    Raises ValueError (saying what was expected, for the caller to prefix with
    the argument's name) for a value of the wrong kind or out of ``dtype``'s
    range; bools count as ints, and integer parameters take no floats.
    """
    out_of_range = f"must lie in {dtype.min_value}..{dtype.max_value} ({dtype}); got"
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if dtype.is_integer:
        if not isinstance(value, numbers.Integral):
            raise ValueError(f"must be an int ({dtype}); got {value!r}")
        value = int(value)
        if not dtype.min_value <= value <= dtype.max_value:
            raise ValueError(f"{out_of_range} {value}")
        return value
    if not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number ({dtype}); got {value!r}")
    value = float(value)
    if math.isnan(value) and not dtype.has_nan:
        raise ValueError(f"is NaN, which {dtype} cannot hold")
    if math.isinf(value) and not dtype.has_inf:
        raise ValueError(f"is {value}, which {dtype} cannot hold")
    if math.isfinite(value) and abs(value) > dtype.max_value:
        raise ValueError(f"{out_of_range} {value}")
    if dtype.nbits == 32:
        return value
    return float(dtype.decode(dtype.encode(np.asarray(value))))  # as the type holds it


def is_f16(t: DataType) -> bool:
    return t.is_float and t.nbits == 16 and t.exponent_bits == 5


def is_bf16(t: DataType) -> bool:
    return t.is_float and t.nbits == 16 and t.exponent_bits == 8


def is_f32(t: DataType) -> bool:
    return t.is_float and t.nbits == 32


def embeds(src: DataType, dst: DataType) -> bool:
    """Every value of float type ``src`` (inf and NaN included) is a value of float type ``dst``."""
    if src == dst or is_f32(dst):
        return True
    assert src.mantissa_bits is not None and dst.mantissa_bits is not None
    if src.mantissa_bits > dst.mantissa_bits or src.max_value > dst.max_value:
        return False
    if (src.has_inf and not dst.has_inf) or (src.has_nan and not dst.has_nan):
        return False
    # Every value is a multiple of the smallest positive one (a power of two).
    tiny_src = src.smallest_subnormal or src.smallest_normal
    tiny_dst = dst.smallest_subnormal or dst.smallest_normal
    assert tiny_src is not None and tiny_dst is not None
    return tiny_src >= tiny_dst


__all__ = [
    "ALL_DTYPES",
    "LOW_BIT_DTYPES",
    "WIDE_DTYPES",
    "DataType",
    "dtype",
    "float_type",
    "int_type",
    "pack",
    "uint_type",
    "unpack",
    *(t.name for t in ALL_DTYPES),
]
