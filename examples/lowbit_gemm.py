"""Low-bit weight GEMM (W3A16, W6A16, any 1-8 bit type): y = x @ dequant(W).

One kernel serves every weight type: the type is a compile-time constant.

Host side, once per weight matrix:

1. quantise W (k x n, fp32) per group of GROUP rows and per column:
   s = max|W| / max_value(type), codes = type.encode(W / s) (round to nearest
   even, saturating), scales stored as fp16;
2. pre-pack each warp's 64 x 64 part of a BLOCK_K x BLOCK_N tile so that
   thread t's bytes hold exactly the codes the target layout gives it: the
   target is the mma.sync B-operand fragment repeated 4 x 8 times in
   registers (``WARP_TILE``), one such tile per warp (``weight_layout``), and
   ``tilevm.layouts.pack_for_layout`` writes the bytes. Each thread then
   holds 128 codes: ``b`` times 16 bytes, whatever the width ``b``.

Kernel side, per K step: start an async copy (cp.async) of x's BLOCK_M x
BLOCK_K tile into shared memory; meanwhile load the weight bytes (16-byte
loads: each thread's bytes are contiguous, ``packed_byte_layout``), ``view``
them as the low-bit type in the fragment layout, ``cast`` to fp16 and
multiply by the group's scales; then wait for the copy, load x's tile from
shared memory into the mma A fragments (ldmatrix) and ``dot`` (mma.sync,
fp32 accumulation). Rows of x (m) may be any number; k and n must be
multiples of the tile sizes (the packed format is per tile).
"""

import numpy as np

import tilevm
import tilevm.lang as tl
from tilevm.layouts import local, mma_m16n8k16_b, pack_for_layout, packed_byte_layout, spatial

BLOCK_M, BLOCK_K, WARPS = 16, 64, 2
BLOCK_N = 64 * WARPS  # each warp owns 64 columns
GROUP = BLOCK_K  # one scale per column per BLOCK_K rows
WARP_TILE = local(4, 8) * mma_m16n8k16_b()  # one warp's 64 x 64 weights, 128 per thread


def weight_layout(warps: int = WARPS):
    """B-operand fragments of mma.m16n8k16: warp w holds columns [64 w, 64 w + 64)."""
    return spatial(1, warps) * WARP_TILE


def weight_byte_layout(nbits: int, warps: int = WARPS):
    """The block's packed bytes: each warp's tile after the other, 16-byte runs per thread."""
    return spatial(warps) * packed_byte_layout(WARP_TILE, nbits)


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
    byte_layout = weight_byte_layout(WTYPE.nbits)
    tile_bytes = byte_layout.shape[0]
    row = tl.block_idx(0) * BLOCK_M
    tile_n = tl.block_idx(1)
    gx = tl.global_view(x, [m, k])
    gw = tl.global_view(packed, [(k // BLOCK_K) * (n // BLOCK_N) * tile_bytes])
    gs = tl.global_view(scales, [k // GROUP, n])
    gy = tl.global_view(y, [m, n])
    sx = tl.alloc_shared(tilevm.float16, [BLOCK_M, BLOCK_K])
    acc = tl.zeros([BLOCK_M, BLOCK_N], tilevm.float32)
    for tile_k in range(0, k // BLOCK_K):
        tl.copy_async(sx, gx, [row, tile_k * BLOCK_K])
        tl.copy_async_commit()
        raw = tl.load(
            gw, [(tile_k * (n // BLOCK_N) + tile_n) * tile_bytes], [tile_bytes], layout=byte_layout
        )
        codes = tl.view(raw, WTYPE, target)
        s = tl.load(gs, [tile_k, tile_n * BLOCK_N], [1, BLOCK_N])
        w = tl.cast(codes, tilevm.float16) * s
        tl.copy_async_wait(0)
        tl.sync()
        acc = tl.dot(tl.load(sx), w, acc)
        tl.sync()  # every warp has read sx before the next copy overwrites it
    tl.free_shared(sx)
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
    """Bytes of every BLOCK_K x BLOCK_N tile in the kernel's order (k tiles outer, n inner).

    Within a tile, warp after warp: the bytes of its 64 columns as WARP_TILE lays them out.
    """
    k, n = codes.shape
    tiles = [
        pack_for_layout(codes[i : i + BLOCK_K, j : j + 64], WARP_TILE, wtype.nbits)
        for i in range(0, k, BLOCK_K)
        for j in range(0, n, 64)
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


def check(wtype_name: str, m: int = 21, n: int = 128, k: int = 128, seed: int = 0):
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
            f"W{tilevm.dtype(name).nbits}A16 ({name}) 21x128x128: max relative error vs "
            f"numpy {err:.2g}, weight rms quantisation error {qerr:.3f}"
        )
