"""Row softmax with reductions: each block normalises BLOCK_M rows of an (m, n) matrix.

A row must fit in one tile (BLOCK_N >= n); the masked tail reads -inf so it
adds nothing to the max or the sum.
"""

import numpy as np

import tilevm
import tilevm.lang as tl


@tilevm.kernel
def softmax(
    x: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    m: tilevm.int32,
    n: tilevm.int32,
    BLOCK_M: tilevm.constexpr = 4,
    BLOCK_N: tilevm.constexpr = 128,
):
    row = tl.block_idx() * BLOCK_M
    gx = tl.global_view(x, [m, n])
    gout = tl.global_view(out, [m, n])
    t = tl.load(gx, [row, 0], [BLOCK_M, BLOCK_N], other=float("-inf"))
    shifted = t - tl.max(t, 1)
    e = tl.exp(shifted)
    tl.store(gout, e / tl.sum(e, 1), [row, 0])


def reference(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check(m: int = 37, n: int = 100, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, n)) * 3).astype(np.float32)
    out = np.zeros_like(x)
    softmax[((m + 3) // 4,)](x, out, m, n)
    return float(np.abs(out - reference(x)).max())


if __name__ == "__main__":
    print(f"softmax 37x100: max |error| = {check():.3g}")
