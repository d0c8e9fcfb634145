"""tilevm's formats agree with independent implementations wherever they share a format.

ml_dtypes covers OCP FP4/FP6/FP8 and int1/2/4, uint1/2/4 and bfloat16; numpy
covers float16 and float32; torch covers the OCP FP8 formats. Each library's
overflow behaviour differs (NaN, inf, wrap-around), so encodings are compared
on values inside the range; saturation is tested on its own elsewhere.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import tilevm

FLOAT_TWINS = [
    ("float4_e2m1", ml_dtypes.float4_e2m1fn),
    ("float6_e2m3", ml_dtypes.float6_e2m3fn),
    ("float6_e3m2", ml_dtypes.float6_e3m2fn),
    ("float8_e4m3", ml_dtypes.float8_e4m3fn),
    ("float8_e5m2", ml_dtypes.float8_e5m2),
]
INT_TWINS = [
    (f"{kind}{b}", getattr(ml_dtypes, f"{kind}{b}")) for kind in ("int", "uint") for b in (1, 2, 4)
]


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float32 values, NaN matching NaN and -0.0 distinct from 0.0."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    nan = np.isnan(a)
    return bool(
        (nan == np.isnan(b)).all() and (a[~nan].view(np.uint32) == b[~nan].view(np.uint32)).all()
    )


def in_range_samples(t: tilevm.DataType, rng: np.random.Generator, n: int = 20_000) -> np.ndarray:
    """Random float32 values within +-max, plus every midpoint between neighbouring codes."""
    span = np.float32(t.max_value)
    uniform = rng.uniform(-span, span, n).astype(np.float32)
    # log-uniform magnitudes reach the subnormals
    lo = np.log2(t.smallest_subnormal or t.smallest_normal) - 2
    logs = (2.0 ** rng.uniform(lo, np.log2(span), n) * rng.choice([-1, 1], n)).astype(np.float32)
    values = t.decode(np.arange(1 << t.nbits)).astype(np.float64)
    finite = np.sort(values[np.isfinite(values)])
    mids = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)
    return np.concatenate([uniform, logs, mids, [0.0, -0.0]]).astype(np.float32)


@pytest.mark.parametrize(("name", "twin"), FLOAT_TWINS, ids=[n for n, _ in FLOAT_TWINS])
def test_float_decoding_matches_ml_dtypes_for_every_code(name, twin):
    t = tilevm.dtype(name)
    codes = np.arange(1 << t.nbits, dtype=np.uint8)
    assert same_floats(t.decode(codes), codes.view(twin).astype(np.float32))


@pytest.mark.parametrize(("name", "twin"), FLOAT_TWINS, ids=[n for n, _ in FLOAT_TWINS])
def test_float_encoding_matches_ml_dtypes_inside_the_range(name, twin):
    t = tilevm.dtype(name)
    x = in_range_samples(t, np.random.default_rng(1))
    np.testing.assert_array_equal(t.encode(x), x.astype(twin).view(np.uint8))


@pytest.mark.parametrize(("name", "twin"), INT_TWINS, ids=[n for n, _ in INT_TWINS])
def test_int_codes_match_ml_dtypes_for_every_value(name, twin):
    t = tilevm.dtype(name)
    values = np.arange(t.min_value, t.max_value + 1)
    assert (ml_dtypes.iinfo(twin).min, ml_dtypes.iinfo(twin).max) == (t.min_value, t.max_value)
    twin_codes = values.astype(twin).view(np.uint8) & ((1 << t.nbits) - 1)
    np.testing.assert_array_equal(t.encode(values), twin_codes)
    np.testing.assert_array_equal(t.decode(twin_codes), values)


@pytest.mark.parametrize(
    ("name", "twin", "seed"), [("float16", np.float16, 2), ("bfloat16", ml_dtypes.bfloat16, 3)]
)
def test_16_bit_floats_match_numpy_and_ml_dtypes_for_every_code_and_random_values(name, twin, seed):
    t = tilevm.dtype(name)
    codes = np.arange(1 << 16, dtype=np.uint16)
    assert same_floats(t.decode(codes), codes.view(twin).astype(np.float32))
    x = in_range_samples(t, np.random.default_rng(seed), 200_000)
    np.testing.assert_array_equal(t.encode(x), x.astype(twin).view(np.uint16))


def test_float32_matches_numpy_on_random_codes_and_float64_values():
    t = tilevm.float32
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    assert same_floats(t.decode(codes), codes.view(np.float32))
    v = codes[:2000].view(np.float32)
    v = v[np.isfinite(v)]
    midpoints = (v.astype(np.float64) + np.nextafter(v, np.float32(np.inf)).astype(np.float64)) / 2
    x = np.concatenate(
        [rng.standard_normal(100_000) * 10.0 ** rng.integers(-40, 38, 100_000), midpoints]
    )
    x = x[np.isfinite(x) & (np.abs(x) <= t.max_value)]
    np.testing.assert_array_equal(t.encode(x), x.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize(
    ("name", "torch_name"), [("float8_e4m3", "float8_e4m3fn"), ("float8_e5m2", "float8_e5m2")]
)
def test_fp8_matches_torch_on_the_cpu(name, torch_name):
    torch = pytest.importorskip("torch")
    t, twin = tilevm.dtype(name), getattr(torch, torch_name)
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    assert same_floats(t.decode(codes.numpy()), codes.view(twin).float().numpy())
    x = in_range_samples(t, np.random.default_rng(5))
    np.testing.assert_array_equal(
        t.encode(x), torch.from_numpy(x).to(twin).view(torch.uint8).numpy()
    )
