"""The low-bit GEMM kernels behind :func:`tilevm.ops.quant_matmul`, in tilevm's own language.

``y[m, n] = sum_k x[m, k] * w[n, k]`` with ``w`` the dequantised weight of a
:class:`~tilevm.quant.QuantizedWeight` (packing "tile64x64.v1": 64 x 64
tiles of codes, k tiles outer, each tile's bytes in the order of one warp's
mma.sync B fragments; see :mod:`tilevm.quant.packing`).

One block computes ``BLOCK_M`` rows by ``64 * WARPS`` columns; warp ``w``
owns the 64 columns of weight tile ``tile_n + w``. Per 64-deep step of k:

1. x's ``BLOCK_M x 64`` tile is loaded (rows past m and columns past k read
   0) into the mma A fragments, which every warp holds;
2. each thread reads its ``16 * b`` bytes of its warp's weight tile, ``b``
   16-byte loads (the bytes arrive in fragment order, so no shuffles and no
   shared memory), views them as ``b``-bit codes in the B-fragment layout and
   casts them to the activation type;
3. the zero point (a per-group tensor, or the fixed offset of offset-binary
   codes) is subtracted and the group's scale multiplied: exactly the
   reference ``fp16(float32(q - z) * float32(s))``;
4. ``dot`` accumulates in fp32 with mma.sync.

The k tiles of a block are ``[split * k_tiles_per_split, ...)``: with more
than one split (``PARTIAL``), blocks write fp32 partial sums to a workspace
``[splits, m, n]`` and :data:`qgemm_reduce` adds them in a fixed order
(deterministic, no atomics), adds the bias and rounds to the output type.
"""

from __future__ import annotations

import tilevm
import tilevm.lang as tl
from tilevm.layouts import packed_byte_layout, spatial

from ..quant.packing import TILE_K, TILE_N, tile_bytes, tile_layout


def weight_layout(warps: int):
    """Warp ``w`` holds weight tile ``w`` of the block (64 columns each) as mma B fragments."""
    return spatial(1, warps) * tile_layout()


def weight_byte_layout(warps: int, nbits: int):
    """The block's bytes: warp after warp, each warp's tile as :func:`packed_byte_layout`."""
    return spatial(warps) * packed_byte_layout(tile_layout(), nbits)


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
        gw = tl.global_view(packed, [k_tiles * n_tiles * nbytes])
        groups = 1 if GROUP == 0 else k // GROUP
        gs = tl.global_view(scales, [groups, n])
        gz = tl.global_view(zeros, [groups, n])
        rows_per_tile = 1 if GROUP == 0 or GROUP >= TILE_K else TILE_K // GROUP
        acc = tl.zeros([BLOCK_M, block_n], tilevm.float32)
        for kt in range(first, last):
            a = tl.load(gx, [row, kt * TILE_K], [BLOCK_M, TILE_K])
            raw = tl.load(
                gw,
                [(kt * n_tiles + tile_n) * nbytes],
                [WARPS * nbytes],
                layout=weight_byte_layout(WARPS, WTYPE.nbits),
            )
            w = tl.cast(tl.view(raw, WTYPE, weight_layout(WARPS)), act)
            group = 0 if GROUP == 0 else (kt * TILE_K) // GROUP
            if rows_per_tile == 1:
                s = tl.load(gs, [group, col], [1, block_n])
                if HAS_ZEROS:
                    w = w - tl.load(gz, [group, col], [1, block_n])
                elif ZERO_OFFSET:
                    w = w - tl.full([1, block_n], ZERO_OFFSET, act)
                w = w * s
            else:
                # Groups shorter than the tile: its rows in runs of GROUP, one scale row each.
                s = tl.reshape(
                    tl.load(gs, [group, col], [rows_per_tile, block_n]), [rows_per_tile, 1, block_n]
                )
                w3 = tl.reshape(w, [rows_per_tile, GROUP, block_n])
                if HAS_ZEROS:
                    z = tl.load(gz, [group, col], [rows_per_tile, block_n])
                    w3 = w3 - tl.reshape(z, [rows_per_tile, 1, block_n])
                elif ZERO_OFFSET:
                    w3 = w3 - tl.full([1, 1, block_n], ZERO_OFFSET, act)
                w = tl.reshape(w3 * s, [TILE_K, block_n])
            acc = tl.dot(a, w, acc)
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
