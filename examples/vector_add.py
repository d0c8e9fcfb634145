"""Vector add: the smallest tilevm kernel, run on the CPU interpreter and checked against numpy.

Each block adds one tile of BLOCK elements; the last tile is partial when n is
not a multiple of BLOCK, and the loads and stores mask it.
"""

import numpy as np

import tilevm
import tilevm.lang as tl


@tilevm.kernel
def vector_add(
    x: tilevm.Ptr[tilevm.float32],
    y: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    n: tilevm.int32,
    BLOCK: tilevm.constexpr = 256,
):
    start = tl.block_idx() * BLOCK
    gx = tl.global_view(x, [n])
    gy = tl.global_view(y, [n])
    gout = tl.global_view(out, [n])
    a = tl.load(gx, [start], [BLOCK])
    b = tl.load(gy, [start], [BLOCK])
    tl.store(gout, a + b, [start])


def check(n: int = 1000, seed: int = 0) -> float:
    """Run on fresh random data; return the largest difference from numpy (0 expected)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.float32)
    vector_add[lambda a: ((a["n"] + a["BLOCK"] - 1) // a["BLOCK"],)](x, y, out, n)
    return float(np.abs(out - (x + y)).max())


if __name__ == "__main__":
    print(f"vector_add, n=1000: max |error| = {check():g}")
