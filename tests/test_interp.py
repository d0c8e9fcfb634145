"""The CPU interpreter runs whole programs: loads and stores, dot, reduce, views, control flow."""

from __future__ import annotations

import numpy as np
import pytest

import tilevm
from tilevm.interp import InterpError, run, storage_dtype
from tilevm.ir import BlockIdx, Builder
from tilevm.ir.expr import NumBlocks, cast_expr, maximum, minimum, select
from tilevm.ir.inst import SourceLoc
from tilevm.layouts import (
    local,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    pack_for_layout,
    packed_byte_layout,
    spatial,
)

f16, bf16, f32 = tilevm.float16, tilevm.bfloat16, tilevm.float32
i8, i32, u8 = tilevm.int8, tilevm.int32, tilevm.uint8


def at(b: Builder, line: int) -> None:
    """Stamp the following instructions with line ``line`` of kernel.py."""
    b.loc = SourceLoc("kernel.py", line)


def vector_add(n_tile: int, *, masked: bool = True):
    b = Builder("vector_add")
    x, y, o = (b.pointer(name, f32) for name in "xyo")
    n = b.scalar("n", i32)
    gx, gy, go = (
        b.global_view(p, f32, [n], name=name) for p, name in ((x, "x"), (y, "y"), (o, "o"))
    )
    start = BlockIdx(0) * n_tile
    at(b, 7)
    tx = b.load_global(gx, [start], [n_tile], masked=masked)
    at(b, 8)
    ty = b.load_global(gy, [start], [n_tile], masked=masked)
    at(b, 9)
    b.store_global(go, b.binary("add", tx, ty), [start], masked=masked)
    return b.finish(grid=[(n + n_tile - 1) // n_tile])


# -- loads, stores, arithmetic -------------------------------------------------------------------
def test_vector_add_masks_the_partial_last_tile():
    rng = np.random.default_rng(0)
    n = 1000
    x, y = rng.standard_normal((2, n)).astype(np.float32)
    out = np.full(n + 5, -1.0, np.float32)  # elements past n must stay untouched
    run(vector_add(128), (8,), {"x": x, "y": y, "o": out, "n": n})
    np.testing.assert_array_equal(out[:n], x + y)
    np.testing.assert_array_equal(out[n:], -1.0)


def test_the_program_grid_is_evaluated_from_the_scalar_arguments():
    x, y = np.arange(10, dtype=np.float32), np.ones(10, np.float32)
    out = np.zeros(10, np.float32)
    run(vector_add(4), None, {"x": x, "y": y, "o": out, "n": 10})
    np.testing.assert_array_equal(out, x + 1)


def test_an_unmasked_access_outside_the_tensor_names_instruction_tensor_index_and_line():
    x = np.zeros(10, np.float32)
    args = {"x": x, "y": x.copy(), "o": x.copy(), "n": 10}
    message = (
        r"^kernel\.py:7: LoadGlobal: index \(10,\) is outside 'x' of shape \[10\] "
        r"and the access is not masked$"
    )
    with pytest.raises(InterpError, match=message):
        run(vector_add(4, masked=False), (3,), args)


def test_an_access_past_the_argument_buffer_is_an_error_even_when_masked():
    x = np.zeros(10, np.float32)
    args = {"x": x, "y": np.zeros(12, np.float32), "o": np.zeros(12, np.float32), "n": 12}
    message = (
        r"^kernel\.py:7: LoadGlobal: element \(10,\) of 'x' is at position 10 of parameter "
        r"'x', whose buffer holds 10 float32 elements$"
    )
    with pytest.raises(InterpError, match=message):
        run(vector_add(4), (3,), args)


def test_2d_tiles_follow_strides_and_block_indices():
    # A padded row-major matrix in, its tiles doubled into a column-major matrix out.
    rng = np.random.default_rng(1)
    rows, cols, ld, bm, bn = 37, 21, 24, 16, 8
    a = rng.standard_normal((rows, ld)).astype(np.float32)
    b = Builder("scale2d")
    pa, po = b.pointer("a", f32), b.pointer("o", f32)
    m_, n_, lda = b.scalar("m", i32), b.scalar("n", i32), b.scalar("lda", i32)
    ga = b.global_view(pa, f32, [m_, n_], [lda, 1], name="a")
    go = b.global_view(po, f32, [m_, n_], [1, m_], name="o")
    i, j = BlockIdx(1) * bm, BlockIdx(0) * bn
    t = b.load_global(ga, [i, j], [bm, bn], other=7.0)
    b.store_global(go, b.binary("add", b.binary("mul", t, 2.0), 1.0), [i, j])
    out = np.zeros(rows * cols, np.float32)
    grid = (-(-cols // bn), -(-rows // bm))
    run(b.finish(), grid, {"a": a, "o": out, "m": rows, "n": cols, "lda": ld})
    expect = a[:, :cols] * 2 + 1
    np.testing.assert_array_equal(out.reshape(cols, rows).T, expect)


def test_masked_loads_read_other_outside_the_tensor():
    b = Builder("other")
    p, o = b.pointer("x", i32), b.pointer("o", i32)
    gx, go = b.global_view(p, i32, [3]), b.global_view(o, i32, [8])
    b.store_global(go, b.load_global(gx, [-2], [8], other=-5), [0])
    out = np.zeros(8, np.int32)
    run(b.finish(), (1,), {"x": np.array([1, 2, 3], np.int32), "o": out})
    np.testing.assert_array_equal(out, [-5, -5, 1, 2, 3, -5, -5, -5])


def test_a_global_view_of_another_type_reads_the_same_bytes():
    b = Builder("bytes")
    p, o = b.pointer("x", u8), b.pointer("o", tilevm.uint32)
    words = b.global_view(p, tilevm.uint32, [2])
    b.store_global(b.global_view(o, tilevm.uint32, [2]), b.load_global(words, [0], [2]), [0])
    data = np.arange(8, dtype=np.uint8)
    out = np.zeros(2, np.uint32)
    run(b.finish(), (1,), {"x": data, "o": out})
    np.testing.assert_array_equal(out, data.view(np.uint32))


# -- dot and reduce ------------------------------------------------------------------------------
def matmul_program(a_type, acc_type, out_type, shape=(32, 64, 16)):
    m_, k_, n_ = shape
    b = Builder("matmul")
    pa, pb, po = b.pointer("a", a_type), b.pointer("b", a_type), b.pointer("o", out_type)
    ga, gb = b.global_view(pa, a_type, [m_, k_]), b.global_view(pb, a_type, [k_, n_])
    go = b.global_view(po, out_type, [m_, n_])
    acc = b.full([m_, n_], 0, acc_type)
    acc = b.dot(b.load_global(ga, [0, 0], [m_, k_]), b.load_global(gb, [0, 0], [k_, n_]), acc)
    b.store_global(go, b.cast(acc, out_type) if out_type != acc_type else acc, [0, 0])
    return b.finish()


def test_fp16_dot_accumulates_in_fp32_like_a_float32_matmul():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((32, 64)).astype(np.float16)
    w = rng.standard_normal((64, 16)).astype(np.float16)
    out = np.zeros(32 * 16, np.float32)
    run(matmul_program(f16, f32, f32), (1,), {"a": a, "b": w, "o": out})
    expect = a.astype(np.float32) @ w.astype(np.float32)
    np.testing.assert_allclose(out.reshape(32, 16), expect, rtol=1e-5, atol=1e-5)


def test_fp16_dot_of_small_integers_is_exact():
    rng = np.random.default_rng(3)
    a = rng.integers(-8, 9, (32, 64)).astype(np.float16)
    w = rng.integers(-8, 9, (64, 16)).astype(np.float16)
    out = np.zeros(32 * 16, np.float32)
    run(matmul_program(f16, f32, f32), (1,), {"a": a, "b": w, "o": out})
    np.testing.assert_array_equal(out.reshape(32, 16), a.astype(np.int64) @ w.astype(np.int64))


def test_fp16_dot_with_fp16_accumulator_rounds_the_fp32_sum_once():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 32)).astype(np.float16)
    w = rng.standard_normal((32, 8)).astype(np.float16)
    out = np.zeros(16 * 8, np.float16)
    run(matmul_program(f16, f16, f16, (16, 32, 8)), (1,), {"a": a, "b": w, "o": out})
    expect = (a.astype(np.float32) @ w.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(out.reshape(16, 8), expect)


def test_int8_dot_accumulates_exactly_in_int32():
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (32, 64)).astype(np.int8)
    w = rng.integers(-128, 128, (64, 16)).astype(np.int8)
    out = np.zeros(32 * 16, np.int32)
    run(matmul_program(i8, i32, i32), (1,), {"a": a, "b": w, "o": out})
    np.testing.assert_array_equal(out.reshape(32, 16), a.astype(np.int64) @ w.astype(np.int64))


def reduce_program(dtype, op, dims, shape=(8, 16)):
    b = Builder("reduce")
    p, o = b.pointer("x", dtype), b.pointer("o", dtype)
    gx = b.global_view(p, dtype, list(shape))
    r = b.reduce(b.load_global(gx, [0, 0], list(shape)), op, dims)
    b.store_global(b.global_view(o, dtype, list(r.shape)), r, [0, 0])
    return b.finish()


@pytest.mark.parametrize("dims", [(0,), (1,), (0, 1)])
def test_reduce_sum_of_float32_matches_numpy(dims):
    x = np.random.default_rng(6).standard_normal((8, 16)).astype(np.float32)
    expect = np.sum(x, axis=dims, keepdims=True, dtype=np.float32)
    out = np.zeros(expect.size, np.float32)
    run(reduce_program(f32, "sum", dims), (1,), {"x": x, "o": out})
    np.testing.assert_allclose(out.reshape(expect.shape), expect, rtol=1e-6)


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduce_max_and_min_of_int8_are_exact(op):
    x = np.random.default_rng(7).integers(-128, 128, (8, 16)).astype(np.int8)
    out = np.zeros(16, np.int8)
    run(reduce_program(i8, op, (0,)), (1,), {"x": x, "o": out})
    np.testing.assert_array_equal(out, getattr(np, op)(x, axis=0))


def test_reduce_sum_of_int8_wraps_to_int8():
    x = np.full((8, 16), 100, np.int8)
    out = np.zeros(8, np.int8)
    run(reduce_program(i8, "sum", (1,)), (1,), {"x": x, "o": out})
    np.testing.assert_array_equal(out, np.int8(1600 - 6 * 256))


# -- views ---------------------------------------------------------------------------------------
VIEW_CASES = [
    (tilevm.int3, local(2, 1) * mma_m16n8k16_b()),
    (tilevm.uint3, local(2, 1) * mma_m16n8k16_b()),
    (tilevm.int5, mma_m16n8k16_a()),
    (tilevm.float6_e3m2, local(4, 1) * mma_m16n8k16_b()),
    (tilevm.int4, spatial(4, 8) * local(1, 6)),
]


def view_program(dtype, target):
    nbits = dtype.nbits
    byte_layout = packed_byte_layout(target, nbits)
    b = Builder("dequant")
    pw, po, pb = b.pointer("w", u8), b.pointer("o", f32), b.pointer("back", u8)
    gw = b.global_view(pw, u8, [byte_layout.size])
    raw = b.load_global(gw, [0], [byte_layout.size], layout=byte_layout)
    low = b.view(raw, dtype, target)
    b.store_global(b.global_view(po, f32, list(target.shape)), b.cast(low, f32), [0, 0])
    again = b.view(low, u8, byte_layout)
    b.store_global(b.global_view(pb, u8, [byte_layout.size]), again, [0])
    return b.finish()


@pytest.mark.parametrize(("dtype", "target"), VIEW_CASES, ids=[str(t) for t, _ in VIEW_CASES])
def test_a_view_of_pre_packed_bytes_reproduces_every_code_and_views_back(dtype, target):
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 1 << dtype.nbits, target.shape).astype(np.uint8)
    data = pack_for_layout(codes, target, dtype.nbits)
    out = np.zeros(target.size, np.float32)
    back = np.zeros_like(data)
    run(view_program(dtype, target), (1,), {"w": data, "o": out, "back": back})
    np.testing.assert_array_equal(out.reshape(target.shape), dtype.decode(codes))
    np.testing.assert_array_equal(back, data)


def same_width_view(src, dst, n):
    b = Builder("reinterpret")
    p, o = b.pointer("x", src), b.pointer("o", dst)
    t = b.view(b.load_global(b.global_view(p, src, [n]), [0], [n]), dst)
    b.store_global(b.global_view(o, dst, [n]), t, [0])
    return b.finish()


def test_a_same_width_view_reads_float16_bits_as_uint16_and_back():
    codes = np.arange(1 << 16, dtype=np.uint16)
    halves = codes.view(np.float16)
    nan = np.isnan(halves)
    bits = np.zeros(1 << 16, np.uint16)
    run(same_width_view(f16, tilevm.uint16, 1 << 16), (1,), {"x": halves, "o": bits})
    np.testing.assert_array_equal(bits[~nan], codes[~nan])
    # A NaN stays a NaN (values hold no payload), the quiet NaN of its sign.
    assert np.isnan(bits[nan].view(np.float16)).all()
    again = np.zeros(1 << 16, np.float16)
    run(same_width_view(tilevm.uint16, f16, 1 << 16), (1,), {"x": codes, "o": again})
    np.testing.assert_array_equal(again.view(np.uint16)[~nan], codes[~nan])
    assert np.isnan(again[nan]).all()


def test_a_bit_width_changing_view_needs_both_layouts():
    b = Builder("view")
    p, o = b.pointer("x", u8), b.pointer("o", i8)
    t = b.load_global(b.global_view(p, u8, [3]), [0], [3], layout=local(3))
    at(b, 4)
    v = b.view(t, tilevm.int3, local(8))
    v.layout = None  # as if a pass had dropped it
    b.store_global(b.global_view(o, i8, [8]), b.cast(v, i8), [0])
    with pytest.raises(InterpError, match=r"^kernel\.py:4: View .* the output has none"):
        run(b.finish(), (1,), {"x": np.zeros(3, np.uint8), "o": np.zeros(8, np.int8)})


# -- shared memory -------------------------------------------------------------------------------
def shared_program(*, sync: bool):
    b = Builder("stage")
    p, o = b.pointer("x", f32), b.pointer("o", f32)
    gx, go = b.global_view(p, f32, [4, 8]), b.global_view(o, f32, [8, 4])
    s = b.alloc_shared(f32, [4, 8], name="s")
    at(b, 5)
    b.store_shared(s, b.load_global(gx, [0, 0], [4, 8]))
    if sync:
        b.sync()
    at(b, 6)
    t = b.load_shared(s, [0, 4], [4, 4])
    b.store_global(go, t, [0, 0])
    b.free_shared(s)
    return b.finish()


def test_a_shared_round_trip_with_a_barrier_returns_the_data():
    x = np.arange(32, dtype=np.float32)
    out = np.full(32, np.nan, np.float32)
    run(shared_program(sync=True), (1,), {"x": x, "o": out})
    np.testing.assert_array_equal(out.reshape(8, 4)[:4], x.reshape(4, 8)[:, 4:])


def test_a_shared_read_after_a_write_without_a_barrier_is_a_race():
    args = {"x": np.zeros(32, np.float32), "o": np.zeros(32, np.float32)}
    message = (
        r"^kernel\.py:6: missing sync_threads between the write at line 5 and this read "
        r"at line 6 of shared tensor 's'$"
    )
    with pytest.raises(InterpError, match=message):
        run(shared_program(sync=False), (1,), args)
    run(shared_program(sync=False), (1,), args, check_races=False)


def test_shared_memory_is_fresh_and_zeroed_in_every_block():
    b = Builder("fresh")
    o = b.pointer("o", i32)
    s = b.alloc_shared(i32, [2])
    b.sync()
    t = b.load_shared(s)
    b.store_global(b.global_view(o, i32, [4]), t, [BlockIdx(0) * 2])
    b.store_shared(s, b.full([2], 9, i32))
    out = np.full(4, -1, np.int32)
    run(b.finish(), (2,), {"o": out})
    np.testing.assert_array_equal(out, 0)


def test_a_shared_tensor_used_after_free_is_an_error():
    b = Builder("freed")
    s = b.alloc_shared(i32, [2], name="s")
    at(b, 3)
    b.free_shared(s)
    at(b, 4)
    b.load_shared(s)
    with pytest.raises(
        InterpError, match=r"^kernel\.py:4: .*'s' is used after free_shared at line 3"
    ):
        run(b.finish(), (1,), {})


def pipeline_program(*, wait: int | None, commit: bool = True, sync: bool = True, tiles=4):
    """Copy ``tiles`` tiles of 8 through two shared stages: compute on one while the next lands."""
    b = Builder("pipeline")
    p, o = b.pointer("x", f32), b.pointer("o", f32)
    gx, go = b.global_view(p, f32, [8 * tiles]), b.global_view(o, f32, [8 * tiles])
    stages = [b.alloc_shared(f32, [8], name=f"stage{k}") for k in range(2)]
    at(b, 3)
    b.copy_async(stages[0], gx, [0])
    if commit:
        b.copy_async_commit()
    for k in range(tiles):
        at(b, 10 + k)
        if k + 1 < tiles:
            b.copy_async(stages[(k + 1) % 2], gx, [8 * (k + 1)])
            b.copy_async_commit()
        if wait is not None:
            b.copy_async_wait(wait if k + 1 < tiles else 0)
        if sync:
            b.sync()
        at(b, 20 + k)
        t = b.load_shared(stages[k % 2])
        b.store_global(go, b.binary("mul", t, 3.0), [8 * k])
        b.sync()
    return b.finish()


def test_storing_into_a_copy_still_in_flight_is_an_error():
    b = Builder("overwrite")
    gx = b.global_view(b.pointer("x", f32), f32, [8])
    s = b.alloc_shared(f32, [8], name="s")
    at(b, 3)
    b.copy_async(s, gx, [0])
    b.copy_async_commit()
    at(b, 5)
    b.store_shared(s, b.full([4], 1.0, f32), [4])
    message = r"^kernel\.py:5: StoreShared writes shared tensor 's' while the async copy at line 3"
    with pytest.raises(InterpError, match=message):
        run(b.finish(), (1,), {"x": np.zeros(8, np.float32)})


def test_async_copies_through_two_stages_deliver_every_tile():
    x = np.random.default_rng(9).standard_normal(32).astype(np.float32)
    out = np.zeros(32, np.float32)
    run(pipeline_program(wait=1), (1,), {"x": x, "o": out})
    np.testing.assert_array_equal(out, x * 3)


def test_async_copy_data_is_read_from_global_memory_when_the_copy_is_issued():
    b = Builder("snapshot")
    p = b.pointer("x", i32)
    gx = b.global_view(p, i32, [4])
    s = b.alloc_shared(i32, [4])
    b.copy_async(s, gx, [0])
    b.copy_async_commit()
    b.store_global(gx, b.full([4], 5, i32), [0])
    b.copy_async_wait(0)
    b.sync()
    b.store_global(gx, b.binary("add", b.load_shared(s), 10), [0])
    x = np.arange(4, dtype=np.int32)
    run(b.finish(), (1,), {"x": x})
    np.testing.assert_array_equal(x, [10, 11, 12, 13])


def test_reading_a_copy_that_is_still_in_flight_is_an_error():
    args = {"x": np.zeros(32, np.float32), "o": np.zeros(32, np.float32)}
    # wait(2) leaves both the first and the second group in flight at the first read.
    message = (
        r"^kernel\.py:20: LoadShared reads shared tensor 'stage0' while the async copy at "
        r"line 3 into it is still in flight"
    )
    with pytest.raises(InterpError, match=message):
        run(pipeline_program(wait=2), (1,), args)
    with pytest.raises(InterpError, match="still in flight"):
        run(pipeline_program(wait=None), (1,), args)


def test_a_landed_copy_still_needs_a_barrier_before_it_is_read():
    args = {"x": np.zeros(32, np.float32), "o": np.zeros(32, np.float32)}
    with pytest.raises(
        InterpError, match=r"^kernel\.py:20: missing sync_threads between the write at line 3"
    ):
        run(pipeline_program(wait=1, sync=False), (1,), args)


def test_waiting_with_uncommitted_copies_is_an_error():
    b = Builder("uncommitted")
    gx = b.global_view(b.pointer("x", f32), f32, [8])
    s = b.alloc_shared(f32, [8])
    at(b, 3)
    b.copy_async(s, gx, [0])
    at(b, 4)
    b.copy_async_wait(0)
    message = r"^kernel\.py:4: CopyAsyncWait: the async copies at line 3 are not committed"
    with pytest.raises(InterpError, match=message):
        run(b.finish(), (1,), {"x": np.zeros(8, np.float32)})


# -- control flow and scalars --------------------------------------------------------------------
def test_a_for_loop_accumulates_a_tile_over_k_tiles():
    rng = np.random.default_rng(10)
    x = rng.integers(-50, 50, (4, 64)).astype(np.int32)
    b = Builder("rowsum")
    p, o = b.pointer("x", i32), b.pointer("o", i32)
    k = b.scalar("k", i32)
    gx = b.global_view(p, i32, [4, k])
    acc = b.full([4, 1], 0, i32)
    with b.for_range(0, k, 16) as j:
        b.assign(
            acc, b.binary("add", acc, b.reduce(b.load_global(gx, [0, j], [4, 16]), "sum", [1]))
        )
    b.store_global(b.global_view(o, i32, [4, 1]), acc, [0, 0])
    out = np.zeros(4, np.int32)
    run(b.finish(), (1,), {"x": x, "o": out, "k": 64})
    np.testing.assert_array_equal(out, x.sum(axis=1))


def test_while_break_if_else_follow_python():
    # Collatz steps of n, counted by a while loop that breaks at 1.
    b = Builder("collatz")
    o = b.pointer("o", i32)
    n = b.scalar("n", i32)
    x = b.declare("x", n)
    steps = b.declare("steps", 0)
    with b.while_(x > 0):
        with b.if_(x == 1):
            b.break_()
        with b.if_(x % 2 == 0) as branch:
            b.assign_scalar(x, x // 2)
        with b.else_(branch):
            b.assign_scalar(x, 3 * x + 1)
        b.assign_scalar(steps, steps + 1)
    b.store_global(b.global_view(o, i32, [1]), b.full([1], steps, i32), [0])
    out = np.zeros(1, np.int32)
    run(b.finish(), (1,), {"o": out, "n": 27})
    assert out[0] == 111


def test_a_while_loop_that_never_ends_is_stopped(monkeypatch):
    monkeypatch.setattr("tilevm.interp.machine.MAX_WHILE_ITERATIONS", 100)
    b = Builder("forever")
    i = b.declare("i", 0)
    at(b, 3)
    with b.while_(i >= 0):
        b.assign_scalar(i, i + 1)
    with pytest.raises(InterpError, match=r"^kernel\.py:3: while loop ran more than 100 iter"):
        run(b.finish(), (1,), {})


def test_a_range_with_step_zero_is_an_error():
    b = Builder("step0")
    s = b.scalar("s", i32)
    at(b, 2)
    with b.for_range(0, 4, s):
        pass
    with pytest.raises(InterpError, match=r"^kernel\.py:2: range\(\) step must not be zero"):
        run(b.finish(), (1,), {"s": 0})


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def scalar_program(make, dtype=i32, **scalars):
    """A program storing ``make(vars)`` (a scalar expression) into one element."""
    b = Builder("scalar")
    o = b.pointer("o", dtype)
    vars_ = {name: b.scalar(name, t) for name, (t, _) in scalars.items()}
    at(b, 2)
    b.store_global(b.global_view(o, dtype, [1]), b.full([1], make(**vars_), dtype), [0])
    out = np.zeros(1, storage_dtype(dtype))
    run(b.finish(), (1,), {"o": out, **{k: v for k, (_, v) in scalars.items()}})
    return out[0]


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda a, b: a // b, -7 // 2),
        (lambda a, b: a % b, -7 % 2),
        (lambda a, b: -a % -b, 7 % -2),
        (lambda a, b: a * b * 1_000_000_000, wrap32(-14_000_000_000)),
        (lambda a, b: select(a < b, a, b) + minimum(a, b) + maximum(a, b), -7 - 7 + 2),
        (lambda a, b: (a << 29) >> 28, wrap32(-7 << 29) >> 28),
        (lambda a, b: cast_expr(a * 0.4, i32), -3),
        (lambda a, b: BlockIdx(0) + NumBlocks(0) + NumBlocks(2), 2),
    ],
)
def test_scalar_expressions_follow_python_and_wrap_to_int32(make, expect):
    assert scalar_program(make, a=(i32, -7), b=(i32, 2)) == expect


def test_scalar_integer_division_by_zero_names_the_line():
    with pytest.raises(InterpError, match=r"^kernel\.py:2: integer division by zero"):
        scalar_program(lambda a, b: a // b, a=(i32, 1), b=(i32, 0))


def test_tile_integer_division_by_zero_names_the_instruction():
    b = Builder("div0")
    o = b.pointer("o", i32)
    t = b.full([4], 3, i32)
    at(b, 5)
    q = b.binary("floordiv", t, b.arange([4]))
    b.store_global(b.global_view(o, i32, [4]), q, [0])
    message = r"^kernel\.py:5: ElementwiseBinary: integer division by zero in '//'"
    with pytest.raises(InterpError, match=message):
        run(b.finish(), (1,), {"o": np.zeros(4, np.int32)})


def test_a_pointer_used_as_a_number_is_an_error():
    b = Builder("ptr")
    p = b.pointer("x", f32)
    at(b, 2)
    b.declare("address", p + 1)
    with pytest.raises(InterpError, match=r"^kernel\.py:2: pointer parameter 'x' is used as a"):
        run(b.finish(), (1,), {"x": np.zeros(1, np.float32)})


def test_print_writes_the_block_index_message_scalars_and_tiles(capsys):
    b = Builder("hello")
    n = b.scalar("n", i32)
    b.print("n is", n, b.arange([3]))
    run(b.finish(), (2,), {"n": 5})
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["block (0,): n is 5", "[0 1 2]", "block (1,): n is 5", "[0 1 2]"]


# -- arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": None}, r"missing argument 'x': expected a C-contiguous numpy array of float32"),
        ({"x": np.zeros(4, np.float64)}, r"argument 'x' must be .* got an array of float64"),
        ({"x": [1.0, 2.0]}, r"argument 'x' must be .* got list"),
        ({"x": np.zeros((4, 4), np.float32)[:, 0]}, r"'x' must be C-contiguous"),
        ({"n": 2**31}, r"'n' must lie in -2147483648..2147483647 \(int32\); got 2147483648"),
        ({"n": 2.5}, r"'n' must be an int \(int32\); got 2.5"),
        ({"zz": 1}, r"has no parameter\(s\) 'zz'; its parameters are x, y, o, n"),
    ],
)
def test_wrong_arguments_are_named(change, message):
    args = {"x": np.zeros(4, np.float32), "y": np.zeros(4, np.float32)}
    args.update(o=np.zeros(4, np.float32), n=4)
    args.update(change)
    args = {k: v for k, v in args.items() if v is not None}
    with pytest.raises(InterpError, match=message):
        run(vector_add(4), (1,), args)


@pytest.mark.parametrize(
    ("dtype", "storage"),
    [
        (f16, np.float16),
        (f32, np.float32),
        (bf16, np.uint16),
        (tilevm.float8_e4m3, np.uint8),
        (tilevm.float4_e2m1, np.uint8),
        (i8, np.int8),
        (tilevm.int64, np.int64),
        (tilevm.uint32, np.uint32),
        (tilevm.uint16, np.uint16),
    ],
)
def test_storage_dtypes(dtype, storage):
    assert storage_dtype(dtype) == np.dtype(storage)


def test_the_grid_must_be_one_to_three_positive_ints():
    with pytest.raises(InterpError, match=r"grid must be 1 to 3 ints >= 1; got \(1, 0\)"):
        run(Builder("empty").finish(), (1, 0), {})
