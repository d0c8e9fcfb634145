"""Property tests of encode on random float32 values, against the brute-force reference."""

from __future__ import annotations

import math

import numpy as np
from dtype_reference import positive_codebook, reference_encode
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilevm
from tilevm.dtypes import LOW_BIT_DTYPES, DataType

FLOATS = [t for t in LOW_BIT_DTYPES if t.is_float]
INTS = [t for t in LOW_BIT_DTYPES if t.is_integer]


def boundary_values(t: DataType) -> list[float]:
    """The values where rounding changes behaviour: zero, subnormal edges, the top, ties."""
    values, _ = positive_codebook(t)
    top = values[-1]
    points = [0.0, values[1], values[1] / 2, top, 2 * top, math.inf]
    points += [(values[-2] + top) / 2, top + (top - values[-2]) / 2]  # ties at and past the top
    if t.smallest_normal is not None:
        points += [t.smallest_normal, math.nextafter(t.smallest_normal, 0.0)]
    if t.smallest_subnormal is not None:
        points += [t.smallest_subnormal * 1.5, math.nextafter(t.smallest_subnormal / 2, 1.0)]
    return points


@st.composite
def type_and_value(draw, types=FLOATS):
    t = draw(st.sampled_from(types))
    values, _ = positive_codebook(t) if t.is_float else ([0.0, float(t.max_value)], None)
    top = values[-1]
    i = draw(st.integers(0, len(values) - 2))
    near = st.sampled_from(
        [
            (values[i] + values[i + 1]) / 2,  # an exact tie
            math.nextafter((values[i] + values[i + 1]) / 2, math.inf),
            math.nextafter((values[i] + values[i + 1]) / 2, -math.inf),
            values[i],
        ]
    )
    x = draw(
        st.one_of(
            st.floats(width=32, allow_nan=False),
            st.floats(-2.5 * top, 2.5 * top, width=32),
            near,
            st.sampled_from(boundary_values(t)) if t.is_float else st.just(top + 0.5),
        )
    )
    sign = draw(st.sampled_from([1.0, -1.0]))
    return t, float(np.float32(x)) * sign


@settings(max_examples=1500, deadline=None)
@given(type_and_value())
@example((tilevm.float4_e2m1, 5.0))  # tie between 4 and 6 goes to 4 (even code 6)
@example((tilevm.float4_e2m1, 0.25))  # tie between 0 and 0.5 goes to 0
@example((tilevm.float4_e2m1, -0.25))  # ... keeping the sign: -0.0
@example((tilevm.float2_e1m0, 1.0))  # M = 0: tie between 0 and 2 goes to 0
@example((tilevm.float3_e2m0, 3.0))  # M = 0: tie between 2 and 4 goes to 4
@example((tilevm.float8_e4m3, 464.0))  # tie past the top saturates to 448
@example((tilevm.float8_e5m2, -math.inf))
@example((tilevm.float8_e4m3, 2.0**-10))  # half the smallest subnormal: ties to zero
def test_float_encoding_matches_the_brute_force_reference(case):
    t, x = case
    assert int(t.encode(x)) == reference_encode(t, x)


@settings(max_examples=500, deadline=None)
@given(type_and_value(INTS))
@example((tilevm.int3, 2.5))
@example((tilevm.int3, -4.5))
@example((tilevm.uint1, 0.5))
def test_int_encoding_matches_the_brute_force_reference(case):
    t, x = case
    assert int(t.encode(x)) == reference_encode(t, x)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FLOATS), st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_encoding_picks_a_nearest_finite_value(t, x):
    got = float(t.decode(t.encode(x)))
    values, _ = positive_codebook(t)
    best = min(abs(abs(x) - v) for v in values)
    if abs(x) <= values[-1]:
        assert abs(abs(x) - abs(got)) == best
    else:
        assert abs(got) == values[-1]
    assert math.copysign(1.0, got) == math.copysign(1.0, x)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(FLOATS + INTS),
    st.lists(st.floats(width=32, allow_nan=False), min_size=2, max_size=40),
)
@example(tilevm.float8_e5m2, [math.inf, math.inf])  # inf - inf is NaN: compare, never subtract
def test_encoding_is_monotone(t, xs):
    xs = np.sort(np.asarray(xs, dtype=np.float32))
    decoded = t.decode(t.encode(xs)).astype(np.float64)
    assert (decoded[1:] >= decoded[:-1]).all()
