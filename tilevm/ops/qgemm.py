"""The low-bit GEMM kernels behind :func:`tilevm.ops.quant_matmul`, in tilevm's own language.

``y[m, n] = sum_k x[m, k] * w[n, k]`` with ``w`` the dequantised weight of a
:class:`~tilevm.quant.QuantizedWeight` (packing "tile64x64.v1": 64 x 64
tiles of codes, k tiles outer, each tile's bytes in the order of one warp's
mma.sync B fragments; see :mod:`tilevm.quant.packing`).

One block computes ``BLOCK_M`` rows by ``64 * WARPS`` columns; warp ``w``
owns the 64 columns of weight tile ``tile_n + w``. Per 64-deep tile of k:

1. each thread's ``16 * b`` bytes of the *next* tile are requested (``b``
   16-byte loads of 32-bit words, :func:`weight_word_layout`; the bytes arrive
   in fragment order, so no shuffles and no shared memory), so that they are
   in flight while this tile computes;
2. x's ``BLOCK_M x 64`` tile is loaded (rows past m and columns past k read 0);
3. for each of the four mma k steps (16 rows of the tile): the ``b`` words a
   thread holds for that step (a :func:`tilevm.lang.slice` of
   :func:`weight_step_layout`, so only registers are picked) are viewed as
   ``b``-bit codes in the B-fragment layout, cast to the activation type, the
   zero point (a per-group tensor, or the fixed offset of offset-binary codes)
   subtracted and the group's scale multiplied, exactly the reference
   ``fp16(float32(q - z) * float32(s))``, and ``dot`` accumulates in fp32 with
   mma.sync. Only one step's 16 dequantised registers are live at a time.

The k tiles of a block are ``[split * k_tiles_per_split, ...)``: with more
than one split (``PARTIAL``), blocks write fp32 partial sums to a workspace
``[splits, m, n]`` and :data:`qgemm_reduce` adds them in a fixed order
(deterministic, no atomics), adds the bias and rounds to the output type.
"""

from __future__ import annotations

import tilevm
import tilevm.lang as tl
from tilevm.layouts import local, part, spatial

from ..quant.packing import TILE_K, TILE_N, tile_bytes, tile_layout

MMA_K = 16  # the k extent of one mma.m16n8k16


def weight_layout(warps: int):
    """Warp ``w`` holds weight tile ``w`` of the block (64 columns each) as mma B fragments."""
    return spatial(1, warps) * tile_layout()


def weight_word_layout(warps: int, nbits: int):
    """The block's packed tiles as 32-bit words, warp after warp, in load order.

    :func:`packed_byte_layout` in words: thread t's ``4 b`` words of a tile are
    its bytes ``16 r + c`` at tile byte ``512 r + 16 t + c``.
    """
    return spatial(warps) * local(nbits).spatial(32).local(4)


def weight_step_layout(warps: int, nbits: int):
    """The same words as ``[4, 32 * warps * b]``: row s holds the ``b`` words of each thread
    that carry k step s (k rows ``16 s ... 16 s + 15``) of its warp's tile."""
    return local(TILE_K // MMA_K, 1) * spatial(1, warps) * spatial(1, 32) * local(1, nbits)


def step_layout(warps: int):
    """One k step (16 rows) of the block's weights as mma B fragments."""
    return part(weight_layout(warps), (MMA_K, TILE_N * warps))


def _make_gemm(act: tilevm.DataType):
    def qgemm(
        x: tilevm.Ptr[act],
        packed: tilevm.Ptr[tilevm.uint8],
        scales: tilevm.Ptr[act],
        zeros: tilevm.Ptr[act],
        bias: tilevm.Ptr[act],
        out: tilevm.Ptr[act],
        partial: tilevm.Ptr[tilevm.float32],
        m: tilevm.int32,
        n: tilevm.int32,
        k: tilevm.int32,
        n_tiles: tilevm.int32,
        k_tiles_per_split: tilevm.int32,
        WTYPE: tilevm.constexpr,
        GROUP: tilevm.constexpr,
        BLOCK_M: tilevm.constexpr,
        WARPS: tilevm.constexpr,
        HAS_ZEROS: tilevm.constexpr,
        ZERO_OFFSET: tilevm.constexpr,
        HAS_BIAS: tilevm.constexpr,
        PARTIAL: tilevm.constexpr,
    ):
        block_n = TILE_N * WARPS
        nbytes = tile_bytes(WTYPE.nbits)
        row = tl.block_idx(0) * BLOCK_M
        tile_n = tl.block_idx(1) * WARPS
        col = tile_n * TILE_N
        split = tl.block_idx(2)
        k_tiles = (k + TILE_K - 1) // TILE_K
        first = split * k_tiles_per_split
        last = tl.minimum(first + k_tiles_per_split, k_tiles)
        gx = tl.global_view(x, [m, k])
        words = nbytes // 4
        gw = tl.global_view(packed, [k_tiles * n_tiles * words], dtype=tilevm.uint32)
        groups = 1 if GROUP == 0 else k // GROUP
        gs = tl.global_view(scales, [groups, n])
        gz = tl.global_view(zeros, [groups, n])
        rows_per_tile = 1 if GROUP == 0 or GROUP >= TILE_K else TILE_K // GROUP
        word_layout = weight_word_layout(WARPS, WTYPE.nbits)
        # Software pipelining: tile kt + 1's loads are in flight while tile kt computes
        # (the last tile loads itself again, from L1, rather than a tile past the split).
        raw_next = tl.load(
            gw, [(first * n_tiles + tile_n) * words], [WARPS * words], layout=word_layout
        )
        acc = tl.zeros([BLOCK_M, block_n], tilevm.float32)
        for kt in range(first, last):
            raw = raw_next
            ahead = tl.minimum(kt + 1, last - 1)
            a = tl.load(gx, [row, kt * TILE_K], [BLOCK_M, TILE_K])
            raw_next = tl.load(
                gw, [(ahead * n_tiles + tile_n) * words], [WARPS * words], layout=word_layout
            )
            steps = tl.view(raw, tilevm.uint32, weight_step_layout(WARPS, WTYPE.nbits))
            group = 0 if GROUP == 0 else (kt * TILE_K) // GROUP
            s_tile = tl.load(gs, [group, col], [rows_per_tile, block_n])
            if HAS_ZEROS:
                z_tile = tl.load(gz, [group, col], [rows_per_tile, block_n])
            # One mma k step (16 rows of the tile) at a time: 16 dequantised registers live.
            for step in tl.static_range(TILE_K // MMA_K):
                step_words = tl.slice(steps, [step, 0], [1, WARPS * 32 * WTYPE.nbits])
                w = tl.cast(tl.view(step_words, WTYPE, step_layout(WARPS)), act)
                g = 0 if rows_per_tile == 1 else (step * MMA_K) // GROUP
                if HAS_ZEROS:
                    w = w - tl.slice(z_tile, [g, 0], [1, block_n])
                elif ZERO_OFFSET:
                    w = w - tl.full([1, block_n], ZERO_OFFSET, act)
                w = w * tl.slice(s_tile, [g, 0], [1, block_n])
                acc = tl.dot(tl.slice(a, [0, step * MMA_K], [BLOCK_M, MMA_K]), w, acc)
        if PARTIAL:
            gp = tl.global_view(partial, [tl.num_blocks(2), m, n])
            tl.store(gp, tl.reshape(acc, [1, BLOCK_M, block_n]), [split, row, col])
        else:
            if HAS_BIAS:
                gb = tl.global_view(bias, [1, n])
                acc = acc + tl.cast(tl.load(gb, [0, col], [1, block_n]), tilevm.float32)
            tl.store(tl.global_view(out, [m, n]), tl.cast(acc, act), [row, col])

    qgemm.__name__ = qgemm.__qualname__ = f"qgemm_{tilevm.dtypes.library_name(act)}"
    return tilevm.kernel(qgemm, num_warps="WARPS")


def _make_reduce(act: tilevm.DataType):
    def qgemm_reduce(
        partial: tilevm.Ptr[tilevm.float32],
        bias: tilevm.Ptr[act],
        out: tilevm.Ptr[act],
        m: tilevm.int32,
        n: tilevm.int32,
        splits: tilevm.int32,
        HAS_BIAS: tilevm.constexpr,
        BLOCK_M: tilevm.constexpr = 4,
        BLOCK_N: tilevm.constexpr = 256,
    ):
        row = tl.block_idx(0) * BLOCK_M
        col = tl.block_idx(1) * BLOCK_N
        gp = tl.global_view(partial, [splits, m, n])
        acc = tl.zeros([1, BLOCK_M, BLOCK_N], tilevm.float32)
        for s in range(0, splits):
            acc = acc + tl.load(gp, [s, row, col], [1, BLOCK_M, BLOCK_N])
        y = tl.reshape(acc, [BLOCK_M, BLOCK_N])
        if HAS_BIAS:
            gb = tl.global_view(bias, [1, n])
            y = y + tl.cast(tl.load(gb, [0, col], [1, BLOCK_N]), tilevm.float32)
        tl.store(tl.global_view(out, [m, n]), tl.cast(y, act), [row, col])

    qgemm_reduce.__name__ = qgemm_reduce.__qualname__ = (
        f"qgemm_reduce_{tilevm.dtypes.library_name(act)}"
    )
    return tilevm.kernel(qgemm_reduce, num_warps=4)


GEMM = {t: _make_gemm(t) for t in (tilevm.float16, tilevm.bfloat16)}
"""The GEMM kernel per activation type (float16, bfloat16)."""

REDUCE = {t: _make_reduce(t) for t in (tilevm.float16, tilevm.bfloat16)}
"""The split-K reduction per activation type."""
