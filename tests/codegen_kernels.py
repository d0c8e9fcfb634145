"""Kernels that exercise every instruction the CUDA emitter lowers (compiled, not run, by tests)."""

import tilevm
import tilevm.lang as tl
from tilevm.layouts import local, spatial

RUNNABLE = (
    "cross_warp_sum",
    "transpose_via_layouts",
    "scalars_and_control",
    "conversions",
    "int8_dot",
    "bf16_dot",
)
"""The kernels below that the backend compiles (``float32_dot`` it refuses)."""


@tilevm.kernel(num_warps=4)
def cross_warp_sum(x: tilevm.Ptr[tilevm.float16], out: tilevm.Ptr[tilevm.float16], n: tilevm.int32):
    """A column sum whose rows span the warps: shuffles, then shared memory across warps."""
    t = tl.load(tl.global_view(x, [64, n]), [0, tl.block_idx() * 32], [64, 32])
    tl.store(tl.global_view(out, [1, n]), tl.sum(t, 0), [0, tl.block_idx() * 32])


@tilevm.kernel(num_warps=2)
def transpose_via_layouts(x: tilevm.Ptr[tilevm.int32], out: tilevm.Ptr[tilevm.int32]):
    """A tile loaded in one layout and stored from another: a conversion through shared memory."""
    t = tl.load(tl.global_view(x, [16, 16]), [0, 0], [16, 16], masked=False)
    u = tl.annotate_layout(t + 1, spatial(16, 4) * local(1, 4))
    v = tl.annotate_layout(u * 2, local(1, 4) * spatial(16, 4))
    w = tl.reshape(v, [256])
    tl.store(tl.global_view(out, [256]), w, [0])


@tilevm.kernel(num_warps=1)
def scalars_and_control(
    out: tilevm.Ptr[tilevm.float32], n: tilevm.int32, s: tilevm.float32, big: tilevm.int64
):
    """Scalar arithmetic with Python semantics, loops of both directions, while, if and break."""
    acc = tl.zeros([32], tilevm.float32)
    i = n // 3 + n % 5 - (n << 2) + (n >> 1)
    for j in range(n, 0, -2):
        acc = acc + tl.cast(j, tilevm.float32)
        if j * 7 % 3 == 1:
            break
    for j in range(0, n, 4, unroll=2):
        acc = tl.maximum(acc, s * 2.5 + tl.cast(j, tilevm.float32))
    while i < n:
        i = i + 1
        acc = tl.where(tl.arange([32]) > i, acc - 1.0, acc)
    big2 = big * 3 + tl.cast(i, tilevm.int64)
    acc = acc + tl.cast(big2 // 7, tilevm.float32) + tl.cast(tl.minimum(i, 9), tilevm.float32)
    tl.print("sums", i, s, acc)
    tl.store(tl.global_view(out, [32]), acc, [0], masked=False)


@tilevm.kernel(num_warps=1)
def conversions(
    xf: tilevm.Ptr[tilevm.float32],
    xb: tilevm.Ptr[tilevm.bfloat16],
    xi: tilevm.Ptr[tilevm.int32],
    out: tilevm.Ptr[tilevm.uint8],
    out_i: tilevm.Ptr[tilevm.int8],
    out_b: tilevm.Ptr[tilevm.bfloat16],
):
    """Casts between float32, bfloat16, float16, small floats and narrow integers."""
    f = tl.load(tl.global_view(xf, [64]), [0], [64])
    b = tl.load(tl.global_view(xb, [64]), [0], [64])
    i = tl.load(tl.global_view(xi, [64]), [0], [64])
    e4 = tl.cast(f * 3.0, tilevm.float8_e4m3)
    e5 = tl.cast(b, tilevm.float8_e5m2)
    u4 = tl.cast(i, tilevm.uint4)
    s3 = tl.cast(f, tilevm.int3)
    half = tl.cast(e4, tilevm.float16) + tl.cast(e5, tilevm.float16) + tl.cast(u4, tilevm.float16)
    bf = tl.cast(i, tilevm.bfloat16) * b + tl.cast(s3, tilevm.bfloat16)
    small = tl.cast(half, tilevm.float4_e2m1)
    tl.store(tl.global_view(out, [64]), tl.cast(half, tilevm.uint8), [0])
    shifted = tl.cast(tl.exp(f) // 2.0 + tl.sqrt(tl.abs(f)), tilevm.int8)
    tl.store(tl.global_view(out_i, [64]), shifted, [0])
    tl.store(tl.global_view(out_b, [64]), bf - tl.cast(small, tilevm.bfloat16), [0])


@tilevm.kernel(num_warps=4)
def int8_dot(a: tilevm.Ptr[tilevm.int8], b: tilevm.Ptr[tilevm.int8], c: tilevm.Ptr[tilevm.int32]):
    """An int8 tensor-core dot (m16n8k32) with int32 accumulation."""
    ta = tl.load(tl.global_view(a, [32, 64]), [0, 0], [32, 64])
    tb = tl.load(tl.global_view(b, [64, 32]), [0, 0], [64, 32])
    tl.store(tl.global_view(c, [32, 32]), tl.dot(ta, tb), [0, 0])


@tilevm.kernel(num_warps=2)
def bf16_dot(
    a: tilevm.Ptr[tilevm.bfloat16], b: tilevm.Ptr[tilevm.bfloat16], c: tilevm.Ptr[tilevm.bfloat16]
):
    """A bfloat16 dot with A staged through shared memory by cp.async; a bfloat16 result."""
    sa = tl.alloc_shared(tilevm.bfloat16, [16, 32])
    tl.copy_async(sa, tl.global_view(a, [16, 32]), [0, 0])
    tl.copy_async_commit()
    tl.copy_async_wait(0)
    tl.sync()
    tb = tl.load(tl.global_view(b, [32, 16]), [0, 0], [32, 16])
    d = tl.dot(tl.load(sa), tb, tl.zeros([16, 16], tilevm.bfloat16))
    tl.free_shared(sa)
    tl.store(tl.global_view(c, [16, 16]), d, [0, 0])


@tilevm.kernel(num_warps=1)
def float32_dot(a: tilevm.Ptr[tilevm.float32], c: tilevm.Ptr[tilevm.float32]):
    """A dot the tensor cores cannot take exactly: the emitter refuses it."""
    t = tl.load(tl.global_view(a, [16, 16]), [0, 0], [16, 16])
    tl.store(tl.global_view(c, [16, 16]), tl.dot(t, t), [0, 0])
