"""The interpreter's arithmetic and casts are bit-exact in every data type.

Programs load wide values (float32 or int64), cast them to the type under
test (exact: they are values of that type), compute, cast back (exact again)
and store, so every low-bit type can be checked from the host. References are
independent where a library has the format: numpy for float16 and float32,
ml_dtypes for bfloat16 and float8_e5m2, Python integers for the ints, and
``tilevm.dtypes`` (itself checked against ml_dtypes) for the rest.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilevm
from tilevm.dtypes import ALL_DTYPES, LOW_BIT_DTYPES, DataType
from tilevm.interp import InterpError, run
from tilevm.interp.values import round_bfloat16
from tilevm.ir import Builder
from tilevm.ir.inst import SourceLoc

f16, bf16, f32, i64 = tilevm.float16, tilevm.bfloat16, tilevm.float32, tilevm.int64


def wide(t: DataType) -> DataType:
    """The type whose global buffers carry values of ``t`` to and from the host exactly."""
    return f32 if t.is_float else i64


def host(t: DataType) -> type:
    return np.float32 if t.is_float else np.int64


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN matching NaN and -0.0 distinct from 0.0."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a, b = a.astype(np.float32), b.astype(np.float32)
        nan = np.isnan(a)
        return bool(
            (nan == np.isnan(b)).all()
            and (a[~nan].view(np.uint32) == b[~nan].view(np.uint32)).all()
        )
    return bool((a == b).all())


def values_of(t: DataType, rng: np.random.Generator, shape, *, nan: bool = False) -> np.ndarray:
    """Random values of ``t`` (every code equally likely for narrow types), as float32/int64."""
    if t.is_integer:
        lo, hi = t.min_value, t.max_value
        return rng.integers(lo, hi, shape, endpoint=True, dtype=np.int64)
    if t.nbits == 32:
        x = rng.integers(0, 1 << 32, shape, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        x = t.decode(rng.integers(0, 1 << t.nbits, shape))
    if not nan:
        x = np.where(np.isnan(x), np.float32(1.0), x)
    return x.astype(np.float32)


# -- casts ---------------------------------------------------------------------------------------
def cast_program(src: DataType, dst: DataType, shape: tuple[int, ...]):
    """Load values as ``wide(src)``, cast to ``src`` then ``dst``, store as ``wide(dst)``."""
    b = Builder("cast")
    p, o = b.pointer("x", wide(src)), b.pointer("o", wide(dst))
    b.loc = SourceLoc("kernel.py", 4)
    zeros = [0] * len(shape)
    t = b.load_global(b.global_view(p, wide(src), list(shape)), zeros, shape)
    t = b.cast(b.cast(t, src), dst)
    b.store_global(b.global_view(o, wide(dst), list(shape)), b.cast(t, wide(dst)), zeros)
    return b.finish()


def run_cast(src: DataType, dst: DataType, x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape, host(dst))
    run(cast_program(src, dst, x.shape), (1,), {"x": x, "o": out})
    return out


def awkward_float32_values(rng: np.random.Generator) -> np.ndarray:
    """Values around every scale, exact halves (ties for ints), out of range, +-inf and -0.0."""
    scales = 2.0 ** rng.integers(-30, 30, 2000)
    normal = rng.standard_normal(2000) * scales
    halves = rng.integers(-300, 300, 500) + 0.5
    return np.concatenate([normal, halves, [np.inf, -np.inf, -0.0, 1e30, -1e30]]).astype(np.float32)


@pytest.mark.parametrize("dst", LOW_BIT_DTYPES, ids=str)
def test_a_cast_to_every_low_bit_type_rounds_like_its_encoder(dst):
    x = awkward_float32_values(np.random.default_rng(dst.nbits))
    expect = dst.decode(dst.encode(x))
    assert same_values(run_cast(f32, dst, x), expect)


def test_a_cast_of_nan_into_a_type_without_nan_names_the_instruction():
    x = np.array([1.0, np.nan], np.float32)
    with pytest.raises(InterpError, match=r"^kernel\.py:4: Cast from float32 to int3: .*NaN"):
        run_cast(f32, tilevm.int3, x)


WIDE_AND_NARROW = [t for t in ALL_DTYPES if t.nbits <= 16 or t in (f32, tilevm.int32)]


@settings(max_examples=150, deadline=None)
@given(
    src=st.sampled_from(WIDE_AND_NARROW),
    dst=st.sampled_from(WIDE_AND_NARROW),
    seed=st.integers(0, 2**32 - 1),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
)
def test_casts_between_any_two_types_are_encode_then_decode(src, dst, seed, shape):
    x = values_of(src, np.random.default_rng(seed), shape, nan=True)
    if np.isnan(x).any() and not dst.has_nan:
        with pytest.raises(InterpError, match="NaN"):
            run_cast(src, dst, x)
        return
    assert same_values(run_cast(src, dst, x), dst.decode(dst.encode(x)))


# -- arithmetic rounding -------------------------------------------------------------------------
def binary_program(t: DataType, op: str, a_shape, b_shape, scalar=None):
    """``a op b`` in type ``t``; ``b`` is a Python number when ``scalar`` is given."""
    b = Builder("binary")
    pa, pb = b.pointer("a", wide(t)), b.pointer("b", wide(t))
    ta = b.cast(
        b.load_global(b.global_view(pa, wide(t), list(a_shape)), [0] * len(a_shape), a_shape), t
    )
    if scalar is None:
        gb = b.global_view(pb, wide(t), list(b_shape))
        tb = b.cast(b.load_global(gb, [0] * len(b_shape), b_shape), t)
    else:
        tb = scalar
    r = b.binary(op, ta, tb)
    po = b.pointer("o", wide(r.dtype))
    go = b.global_view(po, wide(r.dtype), list(r.shape))
    b.store_global(go, b.cast(r, wide(r.dtype)), [0] * r.rank)
    return b.finish(), r


def run_binary(t, op, a, b, *, with_type=False):
    scalar = b if np.ndim(b) == 0 else None
    program, r = binary_program(t, op, a.shape, np.shape(b), scalar)
    out = np.zeros(r.size, host(r.dtype))
    bb = np.zeros(1, host(t)) if scalar is not None else b
    run(program, (1,), {"a": a, "b": bb, "o": out})
    return (out.reshape(r.shape), r.dtype) if with_type else out.reshape(r.shape)


def test_float16_arithmetic_overflows_to_inf_but_a_cast_saturates():
    x = np.array([300.0, -300.0, 2.0], np.float32)
    assert same_values(run_binary(f16, "mul", x, 300.0), [np.inf, -np.inf, 600.0])
    big = np.array([90000.0, -1e10, np.inf], np.float32)
    assert same_values(run_cast(f32, f16, big), [65504.0, -65504.0, np.inf])


def test_float8_e5m2_arithmetic_overflows_to_inf_like_ml_dtypes():
    x = np.array([57344.0, 49152.0, -57344.0, 40960.0], np.float32)
    got = run_binary(tilevm.float8_e5m2, "add", x, 8192.0)
    expect = (x + np.float32(8192)).astype(ml_dtypes.float8_e5m2).astype(np.float32)
    assert same_values(got, expect)
    assert np.isinf(got[0]) and got[2] == -49152.0


def test_formats_without_inf_saturate_in_arithmetic():
    x = np.array([6.0, -6.0, 4.0], np.float32)
    got = run_binary(tilevm.float4_e2m1, "add", x, x)
    assert same_values(got, [6.0, -6.0, 6.0])


def test_bfloat16_rounding_matches_ml_dtypes_on_random_bit_patterns():
    bits = np.random.default_rng(11).integers(0, 1 << 32, 200_000, dtype=np.uint64)
    x = bits.astype(np.uint32).view(np.float32)
    special = np.array([np.inf, -np.inf, 3.4e38, -3.39e38, 0.0, -0.0, np.nan], np.float32)
    x = np.concatenate([x, special])
    with np.errstate(invalid="ignore"):  # signalling NaNs among the bit patterns
        expect = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert same_values(round_bfloat16(x), expect)


@pytest.mark.parametrize("op", ["add", "mul", "sub", "truediv"])
def test_bfloat16_arithmetic_matches_ml_dtypes(op):
    rng = np.random.default_rng(12)
    a = values_of(bf16, rng, (64, 8))
    b = values_of(bf16, rng, (64, 8))
    a_bits = a.astype(ml_dtypes.bfloat16).view(np.uint16)  # bf16 travels as its raw bits
    b_bits = b.astype(ml_dtypes.bfloat16).view(np.uint16)
    b16 = Builder("bf16")
    pa, pb, po = (b16.pointer(name, bf16) for name in "abo")
    ga, gb, go = (b16.global_view(p, bf16, [64, 8]) for p in (pa, pb, po))
    r = b16.binary(op, b16.load_global(ga, [0, 0], [64, 8]), b16.load_global(gb, [0, 0], [64, 8]))
    b16.store_global(go, r, [0, 0])
    out = np.zeros(64 * 8, np.uint16)
    run(b16.finish(), (1,), {"a": a_bits, "b": b_bits, "o": out})
    ufunc = {"add": np.add, "mul": np.multiply, "sub": np.subtract, "truediv": np.divide}[op]
    with np.errstate(all="ignore"):
        expect = ufunc(a, b).astype(ml_dtypes.bfloat16).astype(np.float32)
    assert same_values(out.view(ml_dtypes.bfloat16).astype(np.float32).reshape(64, 8), expect)


def test_a_python_float_adopts_the_tile_type_before_the_operation():
    x = values_of(f16, np.random.default_rng(13), (100,))
    got = run_binary(f16, "mul", x, 0.1)
    expect = (x * np.float32(np.float16(0.1))).astype(np.float16).astype(np.float32)
    assert same_values(got, expect)


def test_full_converts_its_value_like_a_cast():
    b = Builder("full")
    o = b.pointer("o", f32)
    t = b.cast(b.full([3], 300, tilevm.int8), f32)
    u = b.cast(b.full([3], float("-inf"), tilevm.float4_e2m1), f32)
    go = b.global_view(o, f32, [6])
    b.store_global(go, t, [0])
    b.store_global(go, u, [3])
    out = np.zeros(6, np.float32)
    run(b.finish(), (1,), {"o": out})
    np.testing.assert_array_equal(out, [127, 127, 127, -6, -6, -6])


def test_a_python_int_stays_exact_until_the_result_wraps():
    x = np.arange(-128, 128, dtype=np.int64)
    assert same_values(run_binary(tilevm.int8, "add", x, 300), (x + 300 + 128) % 256 - 128)
    assert same_values(run_binary(tilevm.int8, "lt", x, 300), np.ones(256, np.int64))


def unary_program(t: DataType, op: str, n: int):
    b = Builder("unary")
    p = b.pointer("x", wide(t))
    x = b.cast(b.load_global(b.global_view(p, wide(t), [n]), [0], [n]), t)
    r = b.unary(op, x)
    o = b.pointer("o", wide(r.dtype))
    b.store_global(b.global_view(o, wide(r.dtype), [n]), b.cast(r, wide(r.dtype)), [0])
    return b.finish(), r


def run_unary(t: DataType, op: str, x: np.ndarray) -> np.ndarray:
    program, r = unary_program(t, op, x.size)
    out = np.zeros(x.size, host(r.dtype))
    run(program, (1,), {"x": x, "o": out})
    return out


@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "neg", "abs"])
def test_float16_unary_ops_compute_in_float32_and_round_once(op):
    x = values_of(f16, np.random.default_rng(14), (500,))
    with np.errstate(all="ignore"):
        reference = {"neg": np.negative, "abs": np.abs}.get(op) or getattr(np, op)
        expect = reference(x).astype(np.float16).astype(np.float32)
    assert same_values(run_unary(f16, op, x), expect)


def test_integer_unary_ops_wrap():
    x = np.arange(-8, 8, dtype=np.int64)
    assert same_values(run_unary(tilevm.int4, "neg", x), (-x + 8) % 16 - 8)
    assert same_values(run_unary(tilevm.int4, "abs", x), (np.abs(x) + 8) % 16 - 8)
    assert same_values(run_unary(tilevm.int4, "invert", x), ~x)
    u = np.arange(16, dtype=np.int64)
    assert same_values(run_unary(tilevm.uint4, "neg", u), (-u) % 16)
    assert same_values(run_unary(tilevm.uint4, "lnot", u), (u == 0).astype(np.int64))


# -- elementwise binary ops against references ---------------------------------------------------
INT_OPS = ["add", "sub", "mul", "floordiv", "mod", "min", "max", "and", "or", "xor"]
SHIFTS = ["shl", "shr"]
FLOAT_OPS = ["add", "sub", "mul", "truediv", "min", "max"]
COMPARISONS = ["lt", "le", "gt", "ge", "eq", "ne"]
ARITH_TYPES = [t for t in ALL_DTYPES if t.nbits <= 32 or t.is_integer]


def wrap(x: np.ndarray, t: DataType) -> np.ndarray:
    x = np.asarray(x, dtype=object)
    size = 1 << t.nbits
    lo = t.min_value
    return np.array([(int(v) - lo) % size + lo for v in x.reshape(-1)], np.int64).reshape(x.shape)


def round_reference(x: np.ndarray, t: DataType) -> np.ndarray | None:
    """float64 results rounded once to ``t``; ``None`` when ``t`` cannot hold a NaN among them."""
    if np.isnan(x).any() and not t.has_nan:
        return None
    if t == f16:
        return x.astype(np.float16).astype(np.float32)
    if t == bf16:
        return x.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
    if t == tilevm.float8_e5m2:
        return x.astype(np.float32).astype(ml_dtypes.float8_e5m2).astype(np.float32)
    return t.decode(t.encode(x))


def int_reference(op: str, a: np.ndarray, b: np.ndarray, t: DataType) -> np.ndarray:
    a, b = np.broadcast_arrays(a.astype(object), np.asarray(b).astype(object))
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "floordiv": lambda x, y: x // y,
        "mod": lambda x, y: x % y,
        "min": min,
        "max": max,
        "and": lambda x, y: x & y,
        "or": lambda x, y: x | y,
        "xor": lambda x, y: x ^ y,
        "shl": lambda x, y: x << y,
        "shr": lambda x, y: x >> y,
    }[op]
    out = np.array([fn(int(x), int(y)) for x, y in zip(a.reshape(-1), b.reshape(-1))], object)
    return wrap(out.reshape(a.shape), t)


@st.composite
def binary_cases(draw):
    t = draw(st.sampled_from(ARITH_TYPES))
    if t.is_float:
        op = draw(st.sampled_from(FLOAT_OPS + COMPARISONS))
    else:
        ops = INT_OPS + COMPARISONS + (SHIFTS if t.kind == "uint" else [])
        op = draw(st.sampled_from(ops))
    a_shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    form = draw(st.sampled_from(["same", "broadcast", "scalar"]))
    if form == "broadcast":
        b_shape = tuple(draw(st.sampled_from([1, s])) for s in a_shape)
    else:
        b_shape = a_shape
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = values_of(t, rng, a_shape)
    b = values_of(t, rng, b_shape)
    if op in ("floordiv", "mod"):
        b = np.where(b == 0, 1 if t.max_value >= 1 else -1, b)  # int1 holds only -1 and 0
    if op in SHIFTS:
        b = b % min(1 << t.nbits, t.nbits + 3)
    if form == "scalar":
        b = b.reshape(-1)[0].item()
    return t, op, a, b


FLOAT_UFUNCS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.divide,
    "min": np.minimum,
    "max": np.maximum,
}
COMPARE_UFUNCS = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


def binary_reference(t: DataType, op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """``a op b`` for tiles of ``t``; the result has type ``t`` (uint1 + uint1 is int32)."""
    if op in COMPARISONS:
        return COMPARE_UFUNCS[op](a, b).astype(np.int64)
    if t.is_integer:
        both_bool = t == tilevm.uint1 and op not in ("and", "or", "xor")
        return int_reference(op, a, b, tilevm.int32 if both_bool else t)
    with np.errstate(all="ignore"):
        if t == f32:
            return FLOAT_UFUNCS[op](a, b)
        # Exact (or rounded finely enough) in float64, then rounded once to t.
        return round_reference(FLOAT_UFUNCS[op](a.astype(np.float64), b.astype(np.float64)), t)


@settings(max_examples=300, deadline=None)
@given(binary_cases())
@example((tilevm.int1, "floordiv", np.array([0]), np.array([-1])))  # int1's only nonzero is -1
@example((tilevm.uint1, "add", np.array([1]), 1))  # a bool tile plus a Python int: int32, 2
@example((tilevm.uint1, "shl", np.array([1]), np.array([1])))  # True << True is int32 2
def test_elementwise_binary_ops_match_a_reference_in_every_type(case):
    t, op, a, b = case
    expect = binary_reference(t, op, a, np.asarray(b, dtype=a.dtype))
    if expect is None:
        with pytest.raises(InterpError, match="NaN"):
            run_binary(t, op, a, b)
        return
    got = run_binary(t, op, a, b)
    assert same_values(got, expect), (t, op, a, b, got, expect)


def test_where_picks_per_element_and_broadcasts_scalars():
    b = Builder("where")
    px, po = b.pointer("x", tilevm.int32), b.pointer("o", tilevm.int32)
    x = b.load_global(b.global_view(px, tilevm.int32, [6]), [0], [6])
    r = b.where(b.binary("gt", x, 2), x, -1)
    b.store_global(b.global_view(po, tilevm.int32, [6]), r, [0])
    out = np.zeros(6, np.int32)
    run(b.finish(), (1,), {"x": np.arange(6, dtype=np.int32), "o": out})
    np.testing.assert_array_equal(out, [-1, -1, -1, 3, 4, 5])
