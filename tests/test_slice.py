"""``tl.slice``: a static part of a register tile, free when the layout repeats the part.

The layout side is :func:`tilevm.layouts.part` (``local(q) * P`` gives ``P``);
the interpreter cuts the numpy tile; the CUDA emitter picks registers when
every thread holds its part and goes through shared scratch otherwise.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lang_testing import expect_compile_error, fresh_rng
from layout_testing import layouts

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.ir.printer import format_program
from tilevm.layouts import local, mma_m16n8k16_b, part, spatial
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda

WEIGHT_TILE = local(4, 8) * mma_m16n8k16_b()  # the 64 x 64 packed weight tile's layout


# -- the layout ------------------------------------------------------------------------------------
@given(layouts(rank=2), st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_part_of_a_local_repeat_is_the_repeated_layout(inner, q):
    outer = local(*q)
    whole = outer * inner
    got = part(whole, inner.shape)
    assert got == inner
    # Block b (row-major over q) is registers b * P.local_size ... of every thread.
    table, inner_table = whole.table(), inner.table()
    for b, (i, j) in enumerate(itertools.product(range(q[0]), range(q[1]))):
        regs = table[:, b * inner.local_size : (b + 1) * inner.local_size]
        shift = np.array([i * inner.shape[0], j * inner.shape[1]])
        assert (regs[: inner.num_threads] == inner_table + shift).all()


def test_part_is_none_when_a_block_spans_threads():
    rows_over_threads = spatial(2, 4) * local(1, 2)  # each row lives in 4 threads
    assert part(rows_over_threads, (1, 8)) is None
    assert part(rows_over_threads, (1, 3)) is None  # 3 does not divide 8
    assert part(local(2, 1) * spatial(1, 4), (1, 4)) == spatial(1, 4)


def test_part_of_the_weight_tile_is_one_mma_step():
    assert part(WEIGHT_TILE, (16, 64)) == local(1, 8) * mma_m16n8k16_b()
    assert part(WEIGHT_TILE, (16, 8)) == mma_m16n8k16_b()
    assert part(spatial(1, 4) * WEIGHT_TILE, (16, 256)) == spatial(1, 4) * (
        local(1, 8) * mma_m16n8k16_b()
    )


# -- the interpreter -------------------------------------------------------------------------------
@tilevm.kernel(num_warps=1)
def add_parts(
    x: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float16],
    R: tilevm.constexpr,
    C: tilevm.constexpr,
):
    gx, gy = tl.global_view(x, [64, 64]), tl.global_view(y, [64, 64])
    t = tl.load(gx, [0, 0], [64, 64], layout=WEIGHT_TILE)
    for i in tl.static_range(64 // R):
        for j in tl.static_range(64 // C):
            p = tl.slice(t, [i * R, j * C], [R, C])
            tl.store(gy, p + p, [i * R, j * C])


@pytest.mark.parametrize(("rows", "cols"), [(16, 64), (16, 8), (8, 8), (64, 64), (32, 16)])
def test_slices_cover_the_tile_on_the_interpreter(rows, cols):
    x = fresh_rng().standard_normal((64, 64)).astype(np.float16)
    y = np.zeros_like(x)
    add_parts[(1,)](x, y, rows, cols)
    np.testing.assert_array_equal(y, x + x)


@tilevm.kernel(num_warps=1)
def odd_part(x: tilevm.Ptr[tilevm.int32], y: tilevm.Ptr[tilevm.int32]):
    t = tl.load(tl.global_view(x, [6, 10]), [0, 0], [6, 10])
    tl.store(tl.global_view(y, [2, 3]), tl.slice(t, [3, 5], [2, 3]), [0, 0])


def test_a_part_at_any_offset_reads_those_elements():
    x = fresh_rng().integers(-1000, 1000, (6, 10)).astype(np.int32)
    y = np.zeros((2, 3), np.int32)
    odd_part[(1,)](x, y)
    np.testing.assert_array_equal(y, x[3:5, 5:8])


# -- errors ----------------------------------------------------------------------------------------
@tilevm.kernel
def outside(x: tilevm.Ptr[tilevm.float32]):
    t = tl.load(tl.global_view(x, [8, 8]), [0, 0], [8, 8])
    tl.store(tl.global_view(x, [8, 8]), tl.slice(t, [4, 6], [4, 4]), [0, 0])


@tilevm.kernel
def runtime_offset(x: tilevm.Ptr[tilevm.float32], i: tilevm.int32):
    t = tl.load(tl.global_view(x, [8, 8]), [0, 0], [8, 8])
    tl.store(tl.global_view(x, [8, 8]), tl.slice(t, [i, 0], [4, 8]), [0, 0])


@tilevm.kernel
def wrong_rank(x: tilevm.Ptr[tilevm.float32]):
    t = tl.load(tl.global_view(x, [8, 8]), [0, 0], [8, 8])
    tl.store(tl.global_view(x, [8, 8]), tl.slice(t, [0], [4]), [0, 0])


def test_a_part_outside_the_tile_is_an_error_at_the_call():
    expect_compile_error(
        outside,
        "slice: the part at [4, 6] of shape [4, 4] does not lie inside the [8, 8] tile",
        "tl.slice(t, [4, 6], [4, 4])",
    )


def test_slice_offsets_must_be_compile_time_ints():
    err = expect_compile_error(
        runtime_offset,
        "slice: offsets must be compile-time ints; offset 0 is the runtime value i",
        "tl.slice(t, [i, 0], [4, 8])",
    )
    assert "compile-time" in err.reason


def test_slice_needs_one_offset_per_dimension():
    expect_compile_error(
        wrong_rank,
        "slice: a 2-d tile needs 2 offsets and a 2-d shape; got offsets [0] and shape [4]",
        "tl.slice(t, [0], [4])",
    )


# -- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rows", "cols", "in_place"), [(16, 64, True), (16, 8, True), (8, 8, False)]
)
def test_aligned_parts_of_a_repeated_layout_are_registers(rows, cols, in_place):
    program = run_pipeline(add_parts.program(R=rows, C=cols))
    assert f"slice t at [{rows}, 0]" in format_program(program)
    kernel = emit_cuda(program)
    # An 8-row part of an mma B fragment spans the threads: it moves through scratch.
    assert ("scratch" not in kernel.source) == in_place
    module = compile_cuda(kernel.source, kernel.name, "sm_90a")
    assert module.report.spill_bytes == 0
    if in_place:
        assert "st.shared" not in module.ptx
