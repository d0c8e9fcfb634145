"""An independent reference for encoding: brute force over a type's codebook.

It shares nothing with tilevm's encoder but ``decode`` (itself checked against
ml_dtypes and hand tables): it lists every finite value, finds the two
neighbours of x with exact rational arithmetic, and applies the tie rule as the
dtypes docstring states it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from tilevm.dtypes import DataType


def positive_codebook(t: DataType) -> tuple[list[float], list[int]]:
    """Finite non-negative values of a low-bit float type, ascending, with their codes."""
    codes = np.arange(1 << (t.nbits - 1))  # sign bit clear
    values = t.decode(codes).astype(np.float64)
    keep = np.isfinite(values)
    return values[keep].tolist(), codes[keep].tolist()


def reference_encode(t: DataType, x: float) -> int:
    """The code tilevm.encode must return for the single value x."""
    if t.is_integer:
        return _reference_encode_int(t, x)
    sign_bit = 1 << (t.nbits - 1)
    sign = sign_bit if math.copysign(1.0, x) < 0 else 0
    values, codes = positive_codebook(t)
    if math.isnan(x):
        assert t.has_nan
        return sign | ((1 << (t.nbits - 1)) - 1)
    a = abs(x)
    if math.isinf(a):
        if t.has_inf:
            return sign | (((1 << t.exponent_bits) - 1) << t.mantissa_bits)
        return sign | codes[-1]
    if a >= values[-1]:
        return sign | codes[-1]
    i = max(k for k, v in enumerate(values) if v <= a)
    lo, hi = Fraction(values[i]), Fraction(values[i + 1])
    exact = Fraction(a)
    if exact - lo < hi - exact:
        pick = i
    elif exact - lo > hi - exact:
        pick = i + 1
    elif t.mantissa_bits >= 1:
        pick = i if codes[i] % 2 == 0 else i + 1
    else:  # M = 0: the larger neighbour has the even significand, unless the smaller is zero
        pick = i if lo == 0 else i + 1
    return sign | codes[pick]


def _reference_encode_int(t: DataType, x: float) -> int:
    if isinstance(x, float):
        assert not math.isnan(x)
        # Fraction rounds half to even
        q = (t.max_value if x > 0 else t.min_value) if math.isinf(x) else round(Fraction(x))
    else:
        q = int(x)
    q = min(max(q, t.min_value), t.max_value)
    return q & ((1 << t.nbits) - 1)
