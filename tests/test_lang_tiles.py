"""Tile operations through Python operators and the kernel language, checked against numpy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.ir.printer import format_program

f16, f32, i32 = tilevm.float16, tilevm.float32, tilevm.int32


def run_rows(kernel, x: np.ndarray, rows: int, *scalars, dtype=None):
    """Run ``kernel(x, out, *scalars)`` whose results land as ``rows`` rows shaped like ``x``."""
    out = np.zeros((rows, *x.shape), dtype or x.dtype)
    kernel[1](x, out, *scalars)
    return out


@tilevm.kernel
def float_operators(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], s: tilevm.float32):
    go = tl.global_view(out, [10, 4, 8])
    t = tl.load(tl.global_view(x, [4, 8]), [0, 0], [4, 8])
    row = tl.load(tl.global_view(x, [4, 8]), [0, 0], [1, 8])
    col = tl.load(tl.global_view(x, [4, 8]), [0, 0], [4, 1])
    results = (
        t + row,
        col - t,
        t * s,
        2.0 / t,
        t // 0.75,
        t % col,
        -t + 1.5,
        s - t * 3.0,
        t**1 if False else t / row,  # ** is compile-time only; the branch folds away
        (t - s) * (t + s),
    )
    for k, r in enumerate(results):
        tl.store(go, tl.reshape(r, [1, 4, 8]), [k, 0, 0])


def test_float_tile_operators_broadcast_like_numpy_with_scalars_weakly_typed():
    x = fresh_rng().standard_normal((4, 8)).astype(np.float32)
    s = np.float32(0.75)
    out = run_rows(float_operators, x, 10, float(s))
    row, col = x[:1], x[:, :1]
    want = [
        x + row,
        col - x,
        x * s,
        np.float32(2) / x,
        x // np.float32(0.75),
        x % col,
        -x + np.float32(1.5),
        s - x * np.float32(3),
        x / row,
        (x - s) * (x + s),
    ]
    for k, w in enumerate(want):
        np.testing.assert_array_equal(out[k], w, err_msg=f"result {k}")


@tilevm.kernel
def int_operators(x: tilevm.Ptr[i32], out: tilevm.Ptr[i32], s: tilevm.int32):
    go = tl.global_view(out, [12, 4, 8])
    t = tl.load(tl.global_view(x, [4, 8]), [0, 0], [4, 8])
    row = tl.load(tl.global_view(x, [4, 8]), [0, 0], [1, 8]) % 5 + 7  # 3..11, never 0
    results = (
        t + s,
        t - row,
        t * 3,
        t // row,
        t % row,
        t // -4,
        t % -4,
        -t,
        (t & 12) | (row ^ s),
        (t << 2) >> 1,
        ~t,
        t * t * t,  # wraps around int32 like the GPU
    )
    for k, r in enumerate(results):
        tl.store(go, tl.reshape(r, [1, 4, 8]), [k, 0, 0])


def test_int_tile_operators_floor_divide_and_wrap_like_numpy_int32():
    rng = fresh_rng()
    x = rng.integers(-3000, 3000, (4, 8)).astype(np.int32)
    s = int(rng.integers(-50, 50))
    out = run_rows(int_operators, x, 12, s)
    row = x[:1] % 5 + 7
    with np.errstate(over="ignore"):
        want = [
            x + s,
            x - row,
            x * 3,
            x // row,
            x % row,
            x // -4,
            x % -4,
            -x,
            (x & 12) | (row ^ s),
            (x << 2) >> 1,
            ~x,
            x * x * x,
        ]
    for k, w in enumerate(want):
        np.testing.assert_array_equal(out[k], w, err_msg=f"result {k}")


def test_true_division_of_an_int_tile_by_an_int_is_float32_like_numpy():
    @tilevm.kernel
    def halve(x: tilevm.Ptr[i32], out: tilevm.Ptr[f32]):
        t = tl.load(tl.global_view(x, [4]), [0], [4])
        tl.store(tl.global_view(out, [4]), t / 2, [0])

    x = np.array([1, 3, -3, 7], np.int32)
    out = np.zeros(4, np.float32)
    halve[1](x, out)
    np.testing.assert_array_equal(out, x / 2)


@tilevm.kernel
def masks(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], lo: tilevm.float32, hi: tilevm.float32):
    go = tl.global_view(out, [4, 16])
    t = tl.load(tl.global_view(x, [16]), [0], [16])
    inside = (t >= lo) and (t < hi)
    tl.store(go, tl.reshape(tl.where(inside, t, 0.0), [1, 16]), [0, 0])
    tl.store(go, tl.reshape(tl.where(not inside, t, -t), [1, 16]), [1, 0])
    tl.store(go, tl.reshape(tl.where(t == t, 1.0, 2.0) + tl.cast(t != 0.0, f32), [1, 16]), [2, 0])
    tl.store(go, tl.reshape(tl.cast((t < lo) or (t > hi), f32), [1, 16]), [3, 0])


def test_comparisons_give_masks_that_where_and_logic_combine():
    x = fresh_rng().standard_normal(16).astype(np.float32)
    out = run_rows(masks, x, 4, -0.5, 0.5)
    inside = (x >= -0.5) & (x < 0.5)
    np.testing.assert_array_equal(out[0], np.where(inside, x, 0))
    np.testing.assert_array_equal(out[1], np.where(~inside, x, -x))
    np.testing.assert_array_equal(out[2], 1 + (x != 0))
    np.testing.assert_array_equal(out[3], (x < -0.5) | (x > 0.5))


@tilevm.kernel
def math_and_reductions(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32]):
    go = tl.global_view(out, [11, 4, 8])
    t = tl.load(tl.global_view(x, [4, 8]), [0, 0], [4, 8])
    a = abs(t) + 0.5
    results = (
        tl.exp(t),
        tl.log(a),
        tl.sqrt(a),
        tl.abs(t) - abs(t) + tl.maximum(t, 0.0) + tl.minimum(t, -a),
        max(t, 0.25) + min(t, a),  # Python's min/max on tiles are elementwise
        t - tl.max(t, 1),  # reduced dims keep extent 1 and broadcast back
        t / tl.sum(a, 0),
        tl.reshape(tl.sum(t, 1, keepdims=False), [4, 1]) + tl.zeros([4, 8], f32),
        tl.min(t) + tl.zeros([4, 8], f32),
        tl.reshape(tl.reshape(t, [8, 4]) * tl.reshape(tl.arange([32], dtype=f32), [8, 4]), [4, 8]),
        tl.reshape(tl.max(t, [0, 1], keepdims=False), [1, 1]) + tl.zeros([4, 8], f32),
    )
    for k, r in enumerate(results):
        tl.store(go, tl.reshape(r, [1, 4, 8]), [k, 0, 0])


def test_elementwise_math_reductions_and_reshapes_match_numpy():
    x = fresh_rng().standard_normal((4, 8)).astype(np.float32)
    out = run_rows(math_and_reductions, x, 11)
    a = np.abs(x) + np.float32(0.5)
    want = [
        np.exp(x),
        np.log(a),
        np.sqrt(a),
        np.maximum(x, 0) + np.minimum(x, -a),
        np.maximum(x, np.float32(0.25)) + np.minimum(x, a),
        x - x.max(1, keepdims=True),
        x / a.sum(0, keepdims=True),
        np.broadcast_to(x.sum(1, keepdims=True), (4, 8)),
        np.full((4, 8), x.min()),
        (x.reshape(8, 4) * np.arange(32, dtype=np.float32).reshape(8, 4)).reshape(4, 8),
        np.full((4, 8), x.max()),
    ]
    np.testing.assert_allclose(out[0], want[0], rtol=2e-6)  # exp/log/sqrt: libm may differ
    np.testing.assert_allclose(out[1], want[1], rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(out[2], want[2])
    for k in range(3, 11):
        np.testing.assert_allclose(out[k], want[k], rtol=1e-6, atol=1e-6, err_msg=f"result {k}")


@tilevm.kernel
def matmul_ops(a: tilevm.Ptr[f16], b: tilevm.Ptr[f16], out: tilevm.Ptr[f32]):
    ta = tl.load(tl.global_view(a, [16, 32]), [0, 0], [16, 32])
    tb = tl.load(tl.global_view(b, [32, 8]), [0, 0], [32, 8])
    go = tl.global_view(out, [2, 16, 8])
    tl.store(go, tl.reshape(ta @ tb, [1, 16, 8]), [0, 0, 0])
    tl.store(go, tl.reshape(tl.dot(ta, tb, tl.full([16, 8], 1.0, f32)), [1, 16, 8]), [1, 0, 0])


def test_the_matmul_operator_is_dot_with_float32_accumulation():
    rng = fresh_rng()
    a = rng.standard_normal((16, 32)).astype(np.float16)
    b = rng.standard_normal((32, 8)).astype(np.float16)
    out = np.zeros((2, 16, 8), np.float32)
    matmul_ops[1](a, b, out)
    want = a.astype(np.float32) @ b.astype(np.float32)
    np.testing.assert_allclose(out[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], want + 1, rtol=1e-5, atol=1e-5)
    assert format_program(matmul_ops.program()).count(" dot ") == 2


@tilevm.kernel
def round_trip(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], T: tilevm.constexpr):
    t = tl.load(tl.global_view(x, [64]), [0], [64])
    tl.store(tl.global_view(out, [64]), tl.cast(tl.cast(t, T), f32), [0])


@pytest.mark.parametrize(
    "name",
    ["int2", "int4", "uint3", "int8", "float4_e2m1", "float6_e3m2", "float8_e5m2", "bfloat16"],
)
def test_casts_to_low_bit_types_and_back_round_like_the_type_itself(name):
    dtype = tilevm.dtype(name)
    x = (fresh_rng().standard_normal(64) * 6).astype(np.float32)
    out = np.zeros_like(x)
    round_trip[1](x, out, dtype)
    np.testing.assert_array_equal(out, dtype.decode(dtype.encode(x)))


@tilevm.kernel
def fills(out: tilevm.Ptr[i32], fout: tilevm.Ptr[f32], n: tilevm.int32, v: tilevm.float32):
    go = tl.global_view(out, [3, 4, 6])
    tl.store(go, tl.reshape(tl.arange([4, 6], 0), [1, 4, 6]), [0, 0, 0])
    tl.store(go, tl.reshape(tl.arange([4, 6], 1) * 10 - n, [1, 4, 6]), [1, 0, 0])
    tl.store(go, tl.full([1, 4, 6], n + 1, i32), [2, 0, 0])
    tl.store(tl.global_view(fout, [6]), tl.full([6], v * 2.0, f32) + tl.zeros([6], f32), [0])


def test_arange_and_full_build_tiles_from_indices_and_runtime_scalars():
    out = np.zeros((3, 4, 6), np.int32)
    fout = np.zeros(6, np.float32)
    fills[1](out, fout, 7, -1.25)
    np.testing.assert_array_equal(out[0], np.broadcast_to(np.arange(4)[:, None], (4, 6)))
    np.testing.assert_array_equal(out[1], np.broadcast_to(np.arange(6) * 10 - 7, (4, 6)))
    np.testing.assert_array_equal(out[2], 8)
    np.testing.assert_array_equal(fout, -2.5)


# -- random elementwise expressions ------------------------------------------------------------
UNARY = ("neg", "abs", "square")
BINARY = ("add", "sub", "mul", "max", "min", "where_gt", "add_scalar", "mul_row")
FLOAT_ONLY = ("div",)
INT_ONLY = ("floordiv", "mod", "and", "xor")


@functools.cache
def expression_kernel(name: str):
    dtype = tilevm.dtype(name)

    @tilevm.kernel
    def expression(
        x: tilevm.Ptr[dtype],
        y: tilevm.Ptr[dtype],
        out: tilevm.Ptr[dtype],
        s: dtype,
        SHAPE: tilevm.constexpr,
        OPS: tilevm.constexpr,
    ):
        zero = (0,) * len(SHAPE)
        a = tl.load(tl.global_view(x, SHAPE), zero, SHAPE)
        b = tl.load(tl.global_view(y, SHAPE), zero, SHAPE)
        row = tl.load(tl.global_view(y, SHAPE), zero, (1,) * (len(SHAPE) - 1) + SHAPE[-1:])
        for op in OPS:
            if op == "neg":
                a = -a
            elif op == "abs":
                a = abs(a)
            elif op == "square":
                a = a * a
            elif op == "add":
                a = a + b
            elif op == "sub":
                a = b - a
            elif op == "mul":
                a = a * b
            elif op == "max":
                a = tl.maximum(a, b)
            elif op == "min":
                a = min(a, s)
            elif op == "where_gt":
                a = tl.where(a > b, a, s)
            elif op == "add_scalar":
                a += s
            elif op == "mul_row":
                a = a * row
            elif op == "div":
                a = a / b
            elif op == "floordiv":
                a = a // b
            elif op == "mod":
                a = a % b
            elif op == "and":
                a = a & b
            else:
                a = a ^ b
        tl.store(tl.global_view(out, SHAPE), a, zero)

    return expression


def numpy_expression(ops, a, b, s):
    row = b.reshape(-1)[: b.shape[-1]].reshape((1,) * (b.ndim - 1) + b.shape[-1:])
    table = {
        "neg": lambda a: -a,
        "abs": np.abs,
        "square": lambda a: a * a,
        "add": lambda a: a + b,
        "sub": lambda a: b - a,
        "mul": lambda a: a * b,
        "max": lambda a: np.maximum(a, b),
        "min": lambda a: np.minimum(a, s),
        "where_gt": lambda a: np.where(a > b, a, s),
        "add_scalar": lambda a: a + s,
        "mul_row": lambda a: a * row,
        "div": lambda a: a / b,
        "floordiv": lambda a: a // b,
        "mod": lambda a: a % b,
        "and": lambda a: a & b,
        "xor": lambda a: a ^ b,
    }
    with np.errstate(all="ignore"):
        for op in ops:
            a = table[op](a).astype(b.dtype)
    return a


@st.composite
def expressions(draw):
    name = draw(st.sampled_from(["float32", "int32"]))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    extra = FLOAT_ONLY if name == "float32" else INT_ONLY
    ops = tuple(draw(st.lists(st.sampled_from(UNARY + BINARY + extra), min_size=1, max_size=5)))
    return name, shape, ops


@settings(max_examples=100, deadline=None)
@given(expressions(), st.integers(0, 2**32 - 1))
def test_random_elementwise_expressions_match_numpy(case, seed):
    name, shape, ops = case
    rng = np.random.default_rng(seed)
    if name == "float32":
        x, y = rng.standard_normal((2, *shape)).astype(np.float32)
        s = np.float32(rng.standard_normal())
    else:
        x, y = rng.integers(-100, 100, (2, *shape)).astype(np.int32)
        y[y == 0] = 1  # floor division and modulo by zero are not compared
        s = np.int32(rng.integers(-100, 100))
    out = np.zeros(shape, x.dtype)
    expression_kernel(name)[1](x, y, out, s.item(), shape, ops)
    np.testing.assert_array_equal(out, numpy_expression(ops, x, y, s))
