"""fp16 matmul with fp32 accumulation, staged through shared memory with async copies.

C[m, n] = A[m, k] @ B[k, n]. Each block computes a BLOCK_M x BLOCK_N tile of C:
per step of K it copies tiles of A and B into shared memory (cp.async on a
GPU), waits, syncs, loads them into registers and calls dot. Edge tiles are
masked, so any m, n, k work.
"""

import numpy as np

import tilevm
import tilevm.lang as tl


@tilevm.kernel(num_warps=4)
def matmul(
    a: tilevm.Ptr[tilevm.float16],
    b: tilevm.Ptr[tilevm.float16],
    c: tilevm.Ptr[tilevm.float16],
    m: tilevm.int32,
    n: tilevm.int32,
    k: tilevm.int32,
    BLOCK_M: tilevm.constexpr = 32,
    BLOCK_N: tilevm.constexpr = 32,
    BLOCK_K: tilevm.constexpr = 16,
):
    row = tl.block_idx(0) * BLOCK_M
    col = tl.block_idx(1) * BLOCK_N
    ga = tl.global_view(a, [m, k])
    gb = tl.global_view(b, [k, n])
    gc = tl.global_view(c, [m, n])
    sa = tl.alloc_shared(tilevm.float16, [BLOCK_M, BLOCK_K])
    sb = tl.alloc_shared(tilevm.float16, [BLOCK_K, BLOCK_N])
    acc = tl.zeros([BLOCK_M, BLOCK_N], tilevm.float32)
    for k0 in range(0, k, BLOCK_K):
        tl.copy_async(sa, ga, [row, k0])
        tl.copy_async(sb, gb, [k0, col])
        tl.copy_async_commit()
        tl.copy_async_wait(0)
        tl.sync()
        acc = tl.dot(tl.load(sa), tl.load(sb), acc)
        tl.sync()
    tl.free_shared(sa)
    tl.free_shared(sb)
    tl.store(gc, tl.cast(acc, tilevm.float16), [row, col])


def check(m: int = 50, n: int = 40, k: int = 70, seed: int = 0) -> float:
    """Largest error relative to the fp32 reference's scale (only summation order differs)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    c = np.zeros((m, n), np.float16)
    matmul[((m + 31) // 32, (n + 31) // 32)](a, b, c, m, n, k)
    want = a.astype(np.float32) @ b.astype(np.float32)
    return float(np.abs(c.astype(np.float32) - want).max() / np.abs(want).max())


if __name__ == "__main__":
    print(f"matmul fp16 50x40x70: max relative error = {check():.3g}")
