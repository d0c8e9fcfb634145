"""Low-bit weight GEMM (W3A16, W6A16, any 1-8 bit type): y = x @ dequant(W).

One kernel serves every weight type: the type is a compile-time constant.

Host side, once per weight matrix:

1. quantise W (k x n, fp32) per group of GROUP rows and per column:
   s = max|W| / max_value(type), codes = type.encode(W / s) (round to nearest
   even, saturating), scales stored as fp16;
2. pre-pack each BLOCK_K x BLOCK_N tile so that thread t's bytes hold exactly
   the codes the target layout gives it: the target is the mma.sync B-operand
   fragment repeated over the block's warps (``weight_layout``), and
   ``tilevm.layouts.pack_for_layout`` writes the bytes.

Kernel side, per K step: load the tile's bytes (each thread a contiguous run,
``packed_byte_layout``), ``view`` them as the low-bit type in the fragment
layout, ``cast`` to fp16, multiply by the group's scales, and ``dot`` with the
activations (fp32 accumulation). Rows of x (m) may be any number; k and n must
be multiples of the tile sizes (the packed format is per tile).
"""

import numpy as np

import tilevm
import tilevm.lang as tl
from tilevm.layouts import local, mma_m16n8k16_b, pack_for_layout, packed_byte_layout, spatial

BLOCK_M, BLOCK_N, BLOCK_K, WARPS = 16, 32, 64, 4
GROUP = BLOCK_K  # one scale per column per BLOCK_K rows


def weight_layout(block_k: int = BLOCK_K, block_n: int = BLOCK_N, warps: int = WARPS):
    """B-operand fragments of mma.m16n8k16: warps side by side along n, repeats in registers."""
    return local(block_k // 16, block_n // (8 * warps)) * spatial(1, warps) * mma_m16n8k16_b()


@tilevm.kernel(num_warps=WARPS)
def lowbit_gemm(
    x: tilevm.Ptr[tilevm.float16],
    packed: tilevm.Ptr[tilevm.uint8],
    scales: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float16],
    m: tilevm.int32,
    n: tilevm.int32,
    k: tilevm.int32,
    WTYPE: tilevm.constexpr,
):
    target = weight_layout()
    byte_layout = packed_byte_layout(target, WTYPE.nbits)
    tile_bytes = byte_layout.shape[0]
    row = tl.block_idx(0) * BLOCK_M
    tile_n = tl.block_idx(1)
    gx = tl.global_view(x, [m, k])
    gw = tl.global_view(packed, [(k // BLOCK_K) * (n // BLOCK_N) * tile_bytes])
    gs = tl.global_view(scales, [k // GROUP, n])
    gy = tl.global_view(y, [m, n])
    acc = tl.zeros([BLOCK_M, BLOCK_N], tilevm.float32)
    for tile_k in range(0, k // BLOCK_K):
        a = tl.load(gx, [row, tile_k * BLOCK_K], [BLOCK_M, BLOCK_K])
        raw = tl.load(
            gw, [(tile_k * (n // BLOCK_N) + tile_n) * tile_bytes], [tile_bytes], layout=byte_layout
        )
        codes = tl.view(raw, WTYPE, target)
        s = tl.load(gs, [tile_k, tile_n * BLOCK_N], [1, BLOCK_N])
        w = tl.cast(codes, tilevm.float16) * s
        acc = tl.dot(a, w, acc)
    tl.store(gy, tl.cast(acc, tilevm.float16), [row, tile_n * BLOCK_N])


def quantize(w: np.ndarray, wtype: tilevm.DataType):
    """Per-group, per-column symmetric quantisation: (codes k x n, fp16 scales k/GROUP x n)."""
    k, n = w.shape
    groups = w.reshape(k // GROUP, GROUP, n)
    scales = (np.abs(groups).max(axis=1) / wtype.max_value).astype(np.float16)
    scales[scales == 0] = 1
    codes = wtype.encode(groups / scales[:, None, :].astype(np.float32)).reshape(k, n)
    return codes, scales


def prepack(codes: np.ndarray, wtype: tilevm.DataType) -> np.ndarray:
    """Bytes of every BLOCK_K x BLOCK_N tile in the kernel's order (k tiles outer, n inner)."""
    k, n = codes.shape
    target = weight_layout()
    tiles = [
        pack_for_layout(codes[i : i + BLOCK_K, j : j + BLOCK_N], target, wtype.nbits)
        for i in range(0, k, BLOCK_K)
        for j in range(0, n, BLOCK_N)
    ]
    return np.concatenate(tiles)


def reference(x: np.ndarray, codes: np.ndarray, scales: np.ndarray, wtype) -> np.ndarray:
    """The same arithmetic in numpy: fp16 dequantisation, fp32 accumulation, fp16 result."""
    deq = wtype.decode(codes).astype(np.float16) * np.repeat(scales, GROUP, axis=0)
    return (x.astype(np.float32) @ deq.astype(np.float32)).astype(np.float16)


def gemm(x: np.ndarray, packed: np.ndarray, scales: np.ndarray, n: int, wtype) -> np.ndarray:
    m, k = x.shape
    if k % BLOCK_K or n % BLOCK_N:
        raise ValueError(f"k and n must be multiples of {BLOCK_K} and {BLOCK_N}; got {k}, {n}")
    y = np.zeros((m, n), np.float16)
    grid = ((m + BLOCK_M - 1) // BLOCK_M, n // BLOCK_N)
    lowbit_gemm[grid](x, packed, scales, y, m, n, k, wtype)
    return y


def check(wtype_name: str, m: int = 21, n: int = 64, k: int = 128, seed: int = 0):
    """(max |y - reference| / max |reference|, rms quantisation error of W) on fresh data."""
    wtype = tilevm.dtype(wtype_name)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float16)
    w = rng.standard_normal((k, n)).astype(np.float32)
    codes, scales = quantize(w, wtype)
    y = gemm(x, prepack(codes, wtype), scales, n, wtype)
    want = reference(x, codes, scales, wtype).astype(np.float32)
    err = float(np.abs(y.astype(np.float32) - want).max() / np.abs(want).max())
    deq = wtype.decode(codes) * np.repeat(scales, GROUP, axis=0).astype(np.float32)
    return err, float(np.sqrt(np.mean((deq - w) ** 2)))


if __name__ == "__main__":
    for name in ("int3", "float6_e3m2"):
        err, qerr = check(name)
        print(
            f"W{tilevm.dtype(name).nbits}A16 ({name}) 21x64x128: max relative error vs "
            f"numpy {err:.2g}, weight rms quantisation error {qerr:.3f}"
        )
