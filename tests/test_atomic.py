"""``tl.atomic_add`` and ``tl.fence``: the last block to arrive can sum what the others wrote.

``atomic_add`` adds to one int32/uint32 element once for the block and gives
every thread the old value; ``fence`` orders a thread's global writes. The
interpreter runs blocks one after another, so the protocol's logic runs here;
the CUDA side is checked by its PTX.
"""

from __future__ import annotations

import numpy as np
import pytest
from lang_testing import expect_compile_error, fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.ir.printer import format_program
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda


@tilevm.kernel(num_warps=2)
def last_block_sums(
    x: tilevm.Ptr[tilevm.float32],
    part: tilevm.Ptr[tilevm.float32],
    count: tilevm.Ptr[tilevm.int32],
    y: tilevm.Ptr[tilevm.float32],
):
    tile, split = tl.block_idx(0), tl.block_idx(1)
    width = tl.num_blocks(0) * 64
    gx = tl.global_view(x, [tl.num_blocks(1), width])
    gp = tl.global_view(part, [tl.num_blocks(1), width])
    gc = tl.global_view(count, [tl.num_blocks(0)])
    tl.store(gp, tl.load(gx, [split, tile * 64], [1, 64]) * 2.0, [split, tile * 64])
    tl.fence()
    tl.sync()
    arrived = tl.atomic_add(gc, [tile], 1)
    if arrived == tl.num_blocks(1) - 1:
        tl.fence()
        acc = tl.zeros([1, 64], tilevm.float32)
        for s in range(0, tl.num_blocks(1)):  # a fixed order, whoever arrives last
            acc = acc + tl.load(gp, [s, tile * 64], [1, 64])
        tl.store(tl.global_view(y, [1, width]), acc, [0, tile * 64])
        tl.store(gc, tl.zeros([1], tilevm.int32), [tile])  # ready for the next launch


def test_the_last_block_of_each_tile_sums_the_partials_and_resets_the_counter():
    x = fresh_rng().standard_normal((5, 3 * 64)).astype(np.float32)
    part, count = np.zeros_like(x), np.zeros(3, np.int32)
    for _ in range(2):  # the counters come back to 0, so a second launch works the same
        y = np.zeros((1, 192), np.float32)
        last_block_sums[(3, 5)](x, part, count, y)
        np.testing.assert_array_equal(y, (2 * x).sum(0, keepdims=True, dtype=np.float32))
        np.testing.assert_array_equal(count, 0)


@tilevm.kernel(num_warps=1)
def add_twice(c: tilevm.Ptr[tilevm.int32], seen: tilevm.Ptr[tilevm.int32], v: tilevm.int32):
    gc = tl.global_view(c, [2])
    first = tl.atomic_add(gc, [1], v)
    second = tl.atomic_add(gc, [1], v)
    out = tl.full([2], first, tilevm.int32) + tl.arange([2]) * (second - first)
    tl.store(tl.global_view(seen, [2]), out, [0])


def test_atomic_add_returns_the_old_value_and_wraps_like_int32():
    c = np.array([0, 2**31 - 2], np.int32)
    seen = np.zeros(2, np.int32)
    add_twice[(1,)](c, seen, 1)
    np.testing.assert_array_equal(seen, [2**31 - 2, 2**31 - 1])
    assert c[1] == -(2**31)  # wrapped


@tilevm.kernel
def float_counter(c: tilevm.Ptr[tilevm.float32]):
    tl.atomic_add(tl.global_view(c, [4]), [0], 1)


@tilevm.kernel
def float_value(c: tilevm.Ptr[tilevm.int32], f: tilevm.float32):
    tl.atomic_add(tl.global_view(c, [4]), [0], f)


@tilevm.kernel
def tile_value(c: tilevm.Ptr[tilevm.int32]):
    tl.atomic_add(tl.global_view(c, [4]), [0], tl.zeros([1], tilevm.int32))


@tilevm.kernel
def two_offsets(c: tilevm.Ptr[tilevm.int32]):
    tl.atomic_add(tl.global_view(c, [4]), [0, 1], 1)


@tilevm.kernel
def shared_counter(c: tilevm.Ptr[tilevm.int32]):
    s = tl.alloc_shared(tilevm.int32, [4])
    tl.atomic_add(s, [0], 1)


@pytest.mark.parametrize(
    ("kernel", "reason", "snippet"),
    [
        (
            float_value,
            "atomic_add: value must be an integer scalar; got the float32 f",
            "tl.atomic_add(tl.global_view(c, [4]), [0], f)",
        ),
        (
            tile_value,
            "atomic_add: value must be an integer scalar; got a tile",
            "tl.atomic_add(tl.global_view(c, [4]), [0], tl.zeros([1], tilevm.int32))",
        ),
        (
            two_offsets,
            "atomic_add: expected 1 offsets, one per dimension; got 2",
            "tl.atomic_add(tl.global_view(c, [4]), [0, 1], 1)",
        ),
        (
            shared_counter,
            "atomic_add needs a global tensor (global_view); got a shared tensor",
            "tl.atomic_add(s, [0], 1)",
        ),
    ],
)
def test_a_bad_atomic_add_is_an_error_at_the_call(kernel, reason, snippet):
    expect_compile_error(kernel, reason, snippet)


def test_atomic_add_wants_an_int32_tensor():
    expect_compile_error(
        float_counter,
        "atomic_add: dst must be an int32 or uint32 tensor; got float32",
        "tl.atomic_add(tl.global_view(c, [4]), [0], 1)",
    )


def test_the_cuda_has_one_atomic_per_block_and_the_fences():
    program = run_pipeline(last_block_sums.program())
    text = format_program(program)
    assert "atomic_add" in text and "fence" in text
    kernel = emit_cuda(program)
    assert "if (tid == 0)" in kernel.source and "atomicAdd(" in kernel.source
    for target in ("sm_80", "sm_90a"):
        module = compile_cuda(kernel.source, kernel.name, target)
        assert module.report.spill_bytes == 0
        assert "atom.global.add.u32" in module.ptx or "atom.global.add.s32" in module.ptx
        assert (
            "membar.gl" in module.ptx
            or "fence.sc.gpu" in module.ptx
            or "fence.acq_rel.gpu" in module.ptx
        )


@pytest.mark.gpu
def test_on_the_gpu_the_last_block_sums_whatever_the_arrival_order():
    torch = pytest.importorskip("torch")
    x = torch.randn(7, 5 * 64, device="cuda")
    part = torch.zeros_like(x)
    count = torch.zeros(5, dtype=torch.int32, device="cuda")
    want = (2 * x).sum(0, keepdim=True)
    for _ in range(20):
        y = torch.zeros(1, 5 * 64, device="cuda")
        last_block_sums[(5, 7)](x, part, count, y)
        torch.testing.assert_close(y, want)
    assert int(count.sum()) == 0
