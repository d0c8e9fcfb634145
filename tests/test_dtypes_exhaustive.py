"""Every code of every type of at most 8 bits: round trip, order, neighbours, ties, limits."""

from __future__ import annotations

import numpy as np
import pytest

import tilevm
from tilevm.dtypes import LOW_BIT_DTYPES, DataType

FLOATS = [t for t in LOW_BIT_DTYPES if t.is_float]
INTS = [t for t in LOW_BIT_DTYPES if t.is_integer]


def all_codes(t: DataType) -> np.ndarray:
    return np.arange(1 << t.nbits)


def finite_positive(t: DataType) -> tuple[np.ndarray, np.ndarray]:
    """Codes with the sign bit clear that decode to finite values, and those values (float64)."""
    codes = np.arange(1 << (t.nbits - 1))
    values = t.decode(codes).astype(np.float64)
    keep = np.isfinite(values)
    return codes[keep], values[keep]


def test_there_are_44_types_of_at_most_8_bits():
    assert len(LOW_BIT_DTYPES) == 44
    assert len(FLOATS) == 28 and len(INTS) == 16
    assert len(set(LOW_BIT_DTYPES)) == 44


@pytest.mark.parametrize("t", LOW_BIT_DTYPES, ids=str)
def test_encode_of_decode_returns_every_code(t):
    codes = all_codes(t)
    values = t.decode(codes)
    nan = np.isnan(values) if t.is_float else np.zeros(codes.shape, bool)
    np.testing.assert_array_equal(t.encode(values[~nan]), codes[~nan])
    if nan.any():
        again = t.encode(values[nan])
        assert np.isnan(t.decode(again)).all()
        # the sign of a NaN survives
        np.testing.assert_array_equal(again >> (t.nbits - 1), codes[nan] >> (t.nbits - 1))


@pytest.mark.parametrize("t", LOW_BIT_DTYPES, ids=str)
def test_decode_returns_float32_or_int64_of_the_input_shape(t):
    codes = all_codes(t).reshape(2, -1)
    out = t.decode(codes)
    assert out.shape == codes.shape
    assert out.dtype == (np.float32 if t.is_float else np.int64)
    assert t.encode(out[~np.isnan(out)] if t.is_float else out).dtype == np.uint8


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_float_codes_increase_with_value_and_the_sign_bit_negates(t):
    codes, values = finite_positive(t)
    assert codes[0] == 0 and values[0] == 0.0
    assert (np.diff(values) > 0).all()
    sign = 1 << (t.nbits - 1)
    negative = t.decode(codes | sign)
    np.testing.assert_array_equal(negative, -values.astype(np.float32))
    assert np.signbit(t.decode(np.array(sign)))  # the code 1000... is -0.0
    assert values[-1] == t.max_value and -values[-1] == t.min_value


@pytest.mark.parametrize("t", INTS, ids=str)
def test_int_codes_cover_exactly_the_range_once(t):
    values = t.decode(all_codes(t))
    np.testing.assert_array_equal(np.sort(values), np.arange(t.min_value, t.max_value + 1))
    if t.is_signed:  # two's complement: the top bit weighs -2^(b-1)
        codes = all_codes(t)
        expected = codes - ((codes >> (t.nbits - 1)) << t.nbits)
        np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_values_a_hair_off_a_float_round_back_to_it(t):
    _, values = finite_positive(t)
    for direction in (np.inf, -np.inf):
        nudged = np.nextafter(values, direction)
        got = t.decode(t.encode(nudged)).astype(np.float64)
        np.testing.assert_array_equal(got, values)  # -0.0 == 0.0: nudging 0 down gives -0
        got_negative = t.decode(t.encode(-nudged)).astype(np.float64)
        np.testing.assert_array_equal(got_negative, -values)


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_ties_between_neighbours_round_to_even(t):
    codes, values = finite_positive(t)
    lo, hi = values[:-1], values[1:]
    mid = (lo + hi) / 2  # exact in float64 for every format here
    assert ((mid > lo) & (mid < hi)).all()
    if t.mantissa_bits >= 1:
        expected = np.where(codes[:-1] % 2 == 0, codes[:-1], codes[1:])
    else:  # M = 0: the larger neighbour's significand is even, unless the smaller is zero
        expected = np.where(lo == 0, codes[:-1], codes[1:])
    np.testing.assert_array_equal(t.encode(mid), expected)
    sign = 1 << (t.nbits - 1)
    np.testing.assert_array_equal(t.encode(-mid), expected | sign)
    np.testing.assert_array_equal(t.encode(np.nextafter(mid, -np.inf)), codes[:-1])
    np.testing.assert_array_equal(t.encode(np.nextafter(mid, np.inf)), codes[1:])


@pytest.mark.parametrize("t", INTS, ids=str)
def test_int_encoding_rounds_half_to_even_and_saturates(t):
    k = np.arange(t.min_value, t.max_value + 1)
    np.testing.assert_array_equal(t.decode(t.encode(k + 0.49)), k)
    np.testing.assert_array_equal(t.decode(t.encode(k - 0.49)), k)
    halves = t.decode(t.encode(k + 0.5))
    expected = np.minimum(np.where(k % 2 == 0, k, k + 1), t.max_value)
    np.testing.assert_array_equal(halves, expected)
    big = [1e300, np.inf, t.max_value + 1, 2.0**70]
    np.testing.assert_array_equal(t.decode(t.encode(big)), t.max_value)
    np.testing.assert_array_equal(t.decode(t.encode([-x for x in big])), t.min_value)
    assert t.decode(t.encode(-0.0)) == 0 and t.encode(-0.0) == 0


@pytest.mark.parametrize("t", INTS, ids=str)
def test_int_encoding_of_integer_arrays_is_exact_and_saturates(t):
    k = np.arange(-300, 300, dtype=np.int64)
    np.testing.assert_array_equal(t.decode(t.encode(k)), np.clip(k, t.min_value, t.max_value))
    huge = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min])
    np.testing.assert_array_equal(t.decode(t.encode(huge)), [t.max_value, t.min_value])


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_floats_beyond_the_range_saturate_and_inf_maps_to_inf_where_it_exists(t):
    top, sign = t.encode(t.max_value), 1 << (t.nbits - 1)
    beyond = np.array([t.max_value * 1.5, t.max_value * 4, 1e38, 1e300])
    np.testing.assert_array_equal(t.encode(beyond), top)
    np.testing.assert_array_equal(t.encode(-beyond), top | sign)
    inf = t.decode(t.encode([np.inf, -np.inf]))
    if t.has_inf:
        np.testing.assert_array_equal(inf, [np.inf, -np.inf])
    else:
        np.testing.assert_array_equal(inf, [t.max_value, t.min_value])


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_zero_keeps_its_sign_and_underflow_rounds_to_signed_zero(t):
    tiny = (t.smallest_subnormal or t.smallest_normal) / 4
    codes = t.encode([0.0, -0.0, tiny, -tiny, 1e-300, -1e-300])
    sign = 1 << (t.nbits - 1)
    np.testing.assert_array_equal(codes, [0, sign, 0, sign, 0, sign])


@pytest.mark.parametrize("t", LOW_BIT_DTYPES, ids=str)
def test_nan_becomes_the_nan_code_or_an_error_naming_the_type(t):
    if t.has_nan:
        codes = t.encode([np.nan, -np.nan])
        assert np.isnan(t.decode(codes)).all()
        assert codes[0] >> (t.nbits - 1) == 0 and codes[1] >> (t.nbits - 1) == 1
    else:
        with pytest.raises(tilevm.DTypeError, match=rf"{t.name} has no NaN.*index \(1,\)"):
            t.encode([1.0, np.nan])


# -- hand tables from the format specifications --------------------------------------------------
HAND_TABLES = {
    "float4_e2m1": [0, 0.5, 1, 1.5, 2, 3, 4, 6],
    "float3_e1m1": [0, 1, 2, 3],
    "float3_e2m0": [0, 1, 2, 4],
    "float2_e1m0": [0, 2],
    "float5_e2m2": [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7],
}


@pytest.mark.parametrize("name", sorted(HAND_TABLES))
def test_small_formats_decode_to_their_hand_tables(name):
    t = tilevm.dtype(name)
    expected = HAND_TABLES[name]
    np.testing.assert_array_equal(t.decode(np.arange(len(expected))), expected)


@pytest.mark.parametrize(
    ("name", "bias", "max_value", "smallest_normal", "smallest_subnormal"),
    [
        ("float4_e2m1", 1, 6.0, 1.0, 0.5),
        ("float6_e2m3", 1, 7.5, 1.0, 0.125),
        ("float6_e3m2", 3, 28.0, 0.25, 0.0625),
        ("float7_e3m3", 3, 30.0, 0.25, 2.0**-5),
        ("float7_e2m4", 1, 7.75, 1.0, 2.0**-4),
        ("float8_e4m3", 7, 448.0, 2.0**-6, 2.0**-9),
        ("float8_e5m2", 15, 57344.0, 2.0**-14, 2.0**-16),
        ("float16", 15, 65504.0, 2.0**-14, 2.0**-24),
        ("bfloat16", 127, 3.3895313892515355e38, 2.0**-126, 2.0**-133),
        ("float32", 127, 3.4028234663852886e38, 2.0**-126, 2.0**-149),
    ],
)
def test_float_format_parameters_match_their_specifications(
    name, bias, max_value, smallest_normal, smallest_subnormal
):
    t = tilevm.dtype(name)
    assert (t.bias, t.max_value, t.min_value) == (bias, max_value, -max_value)
    assert (t.smallest_normal, t.smallest_subnormal) == (smallest_normal, smallest_subnormal)


def test_e4m3_has_nan_at_all_ones_and_no_infinity():
    t = tilevm.float8_e4m3
    assert np.isnan(t.decode([0x7F, 0xFF])).all()
    assert t.decode(0x7E) == 448 and t.decode(0xFE) == -448
    assert (t.has_nan, t.has_inf) == (True, False)
    np.testing.assert_array_equal(
        t.encode([np.nan, np.inf, -np.inf, 500.0]), [0x7F, 0x7E, 0xFE, 0x7E]
    )


def test_e5m2_has_ieee_infinities_and_nans():
    t = tilevm.float8_e5m2
    np.testing.assert_array_equal(t.decode([0x7C, 0xFC]), [np.inf, -np.inf])
    assert np.isnan(t.decode([0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF])).all()
    np.testing.assert_array_equal(t.encode([np.inf, -np.inf, 1e6]), [0x7C, 0xFC, 0x7B])


def test_finite_formats_use_every_code_for_a_number():
    for t in FLOATS:
        if not (t.has_nan or t.has_inf):
            assert np.isfinite(t.decode(all_codes(t))).all(), t


def test_int1_holds_minus_one_and_zero():
    assert tilevm.int1.decode([0, 1]).tolist() == [0, -1]
    assert (tilevm.int1.min_value, tilevm.int1.max_value) == (-1, 0)
