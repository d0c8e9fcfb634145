"""The low-bit GEMM kernels behind :func:`tilevm.ops.quant_matmul`, in tilevm's own language.

``y[m, n] = sum_k x[m, k] * w[n, k]`` with ``w`` the dequantised weight of a
:class:`~tilevm.quant.QuantizedWeight` (packing "tile64x64.v3": 64 x 64
tiles of codes, k tiles outer, each tile's bytes in the order of one warp's
mma.sync B fragments, its columns in mma order; see :mod:`tilevm.quant.packing`).

Two GEMM kernels share one main loop (:func:`_main_loop`). A block computes
``BLOCK_M`` rows by ``64 * WARPS_N`` columns; its warps form a
``WARPS_M x WARPS_N`` grid and warp ``(i, j)`` owns the 64 columns of weight
tile ``tile_n + j`` (the ``WARPS_M`` warps of a column load and dequantise the
same tile). Per 64-deep tile of k:

1. each thread's ``16 * b`` bytes of the *next* tile are requested (``b``
   16-byte loads of 32-bit words, :func:`weight_word_layout`; the bytes arrive
   in fragment order, so no shuffles and no shared memory), so that they are
   in flight while this tile computes;
2. x's ``BLOCK_M x 64`` tile has been copied into shared memory with
   ``cp.async`` one tile ahead (two buffers); each k step's ``BLOCK_M x 16``
   is read with ``ldmatrix``;
3. for each of the four mma k steps (16 rows of the tile): the ``b`` words a
   thread holds for that step (a :func:`tilevm.lang.slice` of
   :func:`weight_step_layout`, so only registers are picked) are viewed as
   ``b``-bit codes in their packed order (:func:`code_step_layout`), cast to
   the activation type straight into the B-fragment layout, the zero point (a
   per-group tensor, or the fixed offset of offset-binary codes) subtracted
   and the group's scale multiplied, exactly the reference
   ``fp16(float32(q - z) * float32(s))``, and ``dot`` accumulates in fp32 with
   mma.sync. Only one step's dequantised registers are live at a time. The scales
   and zeros of the block's columns are loaded in the weight's column order, a
   thread's eight columns one 16-byte run (the tiles' columns are packed in mma
   order), and relabelled into the fragments' order for free
   (:func:`swap_octets`); so are the accumulators before they are stored. A 1-bit
   code has only two values: those are computed once a group row and column,
   by the same operations, and each code picks one (``tl.where``, which
   lowering turns into a mask and a select two lanes an instruction).

:data:`GEMM` (decode: 8 or 16 rows, one row of ``WARPS`` warps) and
:data:`GEMM_TC` (prefill: a grid of warps) differ in how they finish.
A decode block of 8 rows swaps the mma's operands: ``acc^T += w^T @ x^T``
with the dequantised weights as the 16-row A operand (the same registers,
:func:`swapped_step_layout`, read through a free ``tl.trans``) and x's 8 rows
as the n8 B operand, so a row or a few of x cost half the mma (and about a
quarter fewer registers) of a 16-row block, whose rows past M are padding.
The grid's third dimension splits k: block ``split`` takes k tiles
``[split * per_split, ...)``, ``per_split`` even (:func:`k_tiles_per_split`).
The main loop takes the tiles in pairs; where groups span 128 rows (or the
whole of k) a pair shares one row of scales and zeros, loaded once a pair
(per channel, once), not once a tile. With more than one split (the decode kernel
reads that from its grid, the prefill kernel's ``PARTIAL`` says so), blocks
write fp32 partial sums to a workspace
``[splits, m, n]`` and count themselves in at their tile's counter
(``tl.atomic_add``); the last block of a tile to arrive adds the partials in
split order (the same sum whoever arrives last: deterministic), adds the bias,
rounds to the output type and sets the counter back to 0. No second kernel.
"""

from __future__ import annotations

import tilevm
import tilevm.lang as tl
from tilevm.layouts import local, mma_m16n8k16_a, part, permute, replicate, spatial

from ..quant.packing import TILE_K, TILE_N, code_layout, tile_bytes, tile_layout

MMA_K = 16  # the k extent of one mma.m16n8k16
MMA_N = 8  # its n extent: the rows of x a block of 8 rows (swap-AB) takes
STEPS = TILE_K // MMA_K  # mma k steps per weight tile


def _warps(warps_m: int, warps_n: int):
    """Warp (i, j) of the block's grid; the ``warps_m`` warps of a column hold the same data."""
    return replicate(warps_m, rank=2) * spatial(1, warps_n)


def weight_layout(warps_n: int, warps_m: int = 1):
    """The block's 64 x 64 weight tiles as mma B fragments: warp column j holds tile j."""
    return _warps(warps_m, warps_n) * tile_layout()


def weight_word_layout(warps_n: int, nbits: int, warps_m: int = 1):
    """The block's packed tiles as 32-bit words, warp column after column, in load order.

    :func:`~tilevm.layouts.packed_byte_layout` in words: thread t's ``4 b``
    words of a tile are its bytes ``16 r + c`` at tile byte ``512 r + 16 t + c``.
    """
    return replicate(warps_m) * spatial(warps_n) * local(nbits).spatial(32).local(4)


def weight_step_layout(warps_n: int, nbits: int, warps_m: int = 1):
    """The same words as ``[4, 32 * warps_n * b]``: row s holds the ``b`` words of each thread
    that carry k step s (k rows ``16 s ... 16 s + 15``) of its warp's tile."""
    return local(STEPS, 1) * _warps(warps_m, warps_n) * spatial(1, 32) * local(1, nbits)


def step_layout(warps_n: int, warps_m: int = 1):
    """One k step (16 rows) of the block's weights as mma B fragments."""
    return part(weight_layout(warps_n, warps_m), (MMA_K, TILE_N * warps_n))


def swapped_step_layout(warps_n: int):
    """One k step of the block's weights, ``[16, 64 * warps_n]`` (k x n), as the transpose of
    mma A fragments: warp j holds rows ``64 j ... 64 j + 63`` of ``A = w^T`` (n x k).

    A lane holds n in ``{g, g + 8} + 16 i`` and k in ``{2 t, 2 t + 1, 2 t + 8, 2 t + 9}``
    (``g = lane / 4``, ``t = lane % 4``): over 64 columns the elements it holds in
    :func:`step_layout`, in another register order, so the packed codes cast straight into it.
    """
    fragments = spatial(warps_n, 1) * local(TILE_N // 16, 1) * mma_m16n8k16_a()
    return permute(fragments, (1, 0))


def code_step_layout(warps_n: int, nbits: int, warps_m: int = 1):
    """The same k step in the order its codes are packed (:func:`~tilevm.quant.code_layout`):
    the same registers of the same threads, numbered so that a view of the step's words reads
    them."""
    layout = _warps(warps_m, warps_n) * code_layout(nbits)
    return part(layout, (MMA_K, TILE_N * warps_n))


# -- the pieces both kernels share -------------------------------------------------------------
@tilevm.func
def _load_weights(gw, kt, n_tiles, tile_n, words, layout):
    """The packed words of the block's weight tiles at k tile ``kt``."""
    return tl.load(gw, [(kt * n_tiles + tile_n) * words], [layout.shape[0]], layout=layout)


@tilevm.func
def _weight_step(steps, step, per_group, group, wtype, act, layout, codes, zero_offset):
    """k step ``step`` of the tile: codes viewed (in their packed order ``codes``) and
    dequantised into the mma fragments ``layout`` with the group rows of
    :func:`_group_tiles`: cast, zero point subtracted, scaled; 1-bit codes pick one of
    their two values."""
    words = tl.slice(steps, [step, 0], [1, steps.shape[1]])
    g = (step * MMA_K) // _group_rows(group)  # the scale row of this step
    block_n = layout.shape[1]
    q = tl.view(words, wtype, codes)
    if wtype.nbits == 1:
        if_set, if_clear = per_group
        w = tl.where(
            q, tl.slice(if_set, [g, 0], [1, block_n]), tl.slice(if_clear, [g, 0], [1, block_n])
        )
        return tl.annotate_layout(w, layout)
    s_tile, z_tile = per_group
    w = tl.annotate_layout(tl.cast(q, act), layout)
    if z_tile is not None:
        w = w - tl.slice(z_tile, [g, 0], [1, block_n])
    elif zero_offset:
        w = w - tl.full([1, block_n], zero_offset, act)
    return w * tl.slice(s_tile, [g, 0], [1, block_n])


@tilevm.func
def _finish(acc, bias, out, partial, counters, m, n, row, col, split, act, has_bias, is_partial):
    """The block's tile of the output: rounded (bias added), or with k split, summed.

    Split, every block writes its fp32 partial sums to the workspace and
    counts itself in at its tile's counter; the last of the tile's blocks to
    arrive adds the partials in split order (the same sum whoever is last, so
    results are deterministic), finishes the tile and sets the counter back
    to 0 for the next launch.
    """
    if is_partial:
        splits = tl.num_blocks(2)
        gp = tl.global_view(partial, [splits, m, n])
        tl.store(gp, tl.reshape(acc, [1, acc.shape[0], acc.shape[1]]), [split, row, col])
        tl.fence()  # the partials are visible to every block before this one counts itself in
        tl.sync()
        gc = tl.global_view(counters, [tl.num_blocks(0) * tl.num_blocks(1)])
        tile = tl.block_idx(0) * tl.num_blocks(1) + tl.block_idx(1)
        arrived = tl.atomic_add(gc, [tile], 1)
        if arrived == splits - 1:
            tl.fence()
            total = tl.zeros([1, acc.shape[0], acc.shape[1]], tilevm.float32)
            for s in range(0, splits):
                total = total + tl.load(gp, [s, row, col], [1, acc.shape[0], acc.shape[1]])
            _store_tile(
                tl.reshape(total, [acc.shape[0], acc.shape[1]]),
                bias,
                out,
                m,
                n,
                row,
                col,
                act,
                has_bias,
            )
            tl.store(gc, tl.zeros([1], tilevm.int32), [tile])
    else:
        _store_tile(acc, bias, out, m, n, row, col, act, has_bias)


@tilevm.func
def _store_tile(acc, bias, out, m, n, row, col, act, has_bias):
    """``acc`` (+ bias), rounded to the activation type, into the output at (row, col)."""
    if has_bias:
        gb = tl.global_view(bias, [1, n])
        acc = acc + tl.cast(tl.load(gb, [0, col], [1, acc.shape[1]]), tilevm.float32)
    tl.store(tl.global_view(out, [m, n]), tl.cast(acc, act), [row, col])


def k_tiles_per_split(k_tiles: int, splits: int) -> int:
    """The k tiles each of ``splits`` blocks takes: a share of ``k_tiles`` rounded up to even,
    as the kernel computes it (the last split may take fewer; one split takes them all)."""
    if splits == 1:
        return k_tiles
    per = -(-k_tiles // splits)
    return per + per % 2


def _group_rows(group: int) -> int:
    """Rows of a weight tile that share a scale row (GROUP 0 is per-channel)."""
    return TILE_K if group == 0 or group >= TILE_K else group


@tilevm.func
def _block_inputs(x, packed, scales, zeros, m, n, k, n_tiles, words, group):
    """x, the packed words, the scales and the zeros as global tensors, and the block's k
    tiles ``[first, last)``: the grid's third dimension splits k (the launch says how many
    ways) into an even number of tiles a split (:func:`k_tiles_per_split`), so that the main
    loop's pairs of tiles start at even tiles and share a scale row where groups are 128
    rows or per channel."""
    k_tiles = (k + TILE_K - 1) // TILE_K
    per_split = (k_tiles + tl.num_blocks(2) - 1) // tl.num_blocks(2)
    per_split = per_split + per_split % 2
    first = tl.block_idx(2) * per_split
    last = tl.minimum(first + per_split, k_tiles)
    groups = 1 if group == 0 else k // group
    gx = tl.global_view(x, [m, k])
    gw = tl.global_view(packed, [k_tiles * n_tiles * words], dtype=tilevm.uint32)
    gs = tl.global_view(scales, [groups, n])
    gz = tl.global_view(zeros, [groups, n])
    return gx, gw, gs, gz, first, last


@tilevm.func
def _group_tiles(gs, gz, kt, col, consts, act):
    """The group rows of k tile ``kt`` that :func:`_weight_step` takes: the scale rows and
    the zero rows (or None); for 1-bit codes instead the two values a code dequantises to,
    ``(code 1, code 0)``, each computed as the wider codes compute theirs (so bit for bit
    the same), once a group row rather than once a weight.

    The rows are loaded in the weight's column order, where a thread's eight columns are
    adjacent (one 16-byte load of each row; a tile's columns are in mma order,
    :func:`~tilevm.quant.tile_columns`), and relabelled into the tile's order in registers."""
    group, block_n, has_zeros, wtype, zero_offset = consts
    row = 0 if group == 0 else (kt * TILE_K) // group
    rows = TILE_K // _group_rows(group)
    s_tile = swap_octets(tl.load(gs, [row, col], [rows, block_n]))
    z_tile = None
    if has_zeros:
        z_tile = swap_octets(tl.load(gz, [row, col], [rows, block_n]))
    if wtype.nbits != 1:
        return s_tile, z_tile
    one = _code_value(float(wtype.decode(1)), s_tile, z_tile, zero_offset, act)
    return one, _code_value(0.0, s_tile, z_tile, zero_offset, act)


@tilevm.func
def swap_octets(t):
    """``t [rows, 64 c]`` with column ``64 j + 8 a + b`` moved to ``64 j + 8 b + a`` (its own
    inverse): between the weight's columns and the order of a packed tile's columns. Free: the
    same registers, relabelled."""
    rows, cols = t.shape
    octets = tl.reshape(t, [rows, cols // TILE_N, 8, 8])
    return tl.reshape(tl.permute(octets, (0, 1, 3, 2)), [rows, cols])


@tilevm.func
def _code_value(q, s_tile, z_tile, zero_offset, act):
    """What the code of value ``q`` dequantises to, per group row and column."""
    v = tl.full(s_tile.shape, q, act)
    if z_tile is not None:
        v = v - z_tile
    elif zero_offset:
        v = v - tl.full(s_tile.shape, zero_offset, act)
    return v * s_tile


@tilevm.func
def _main_loop(x, packed, scales, zeros, m, n, k, n_tiles, consts, act):
    """The block's fp32 accumulators ``[block_m, block_n]`` over its k tiles (see
    :func:`_block_inputs`), with its first row and column: ``consts`` are the kernel's (BLOCK_M,
    WARPS_M, WARPS_N, WTYPE, GROUP, HAS_ZEROS, ZERO_OFFSET, SWAP_AB).

    x's ``block_m x 64`` tiles alternate between two shared buffers, copied
    with ``cp.async`` one tile ahead of the compute and read a k step at a
    time with ``ldmatrix``; the weights of the next tile are in flight in
    registers while this one is dequantised and multiplied. With ``SWAP_AB``
    the dot computes the transpose, ``acc^T += w^T @ x^T``: the weights are
    the A operand (dequantised into :func:`swapped_step_layout`, transposed
    for free) and x's 8 rows the n8 of the mma, half the mma of 16 rows.
    """
    block_m, warps_m, warps_n, wtype, group, has_zeros, zero_offset, swap_ab = consts
    block_n = TILE_N * warps_n
    words = tile_bytes(wtype.nbits) // 4
    row = tl.block_idx(0) * block_m
    tile_n = tl.block_idx(1) * warps_n
    col = tile_n * TILE_N
    gx, gw, gs, gz, first, last = _block_inputs(
        x, packed, scales, zeros, m, n, k, n_tiles, words, group
    )
    word_layout = weight_word_layout(warps_n, wtype.nbits, warps_m)
    step_words = weight_step_layout(warps_n, wtype.nbits, warps_m)
    codes = code_step_layout(warps_n, wtype.nbits, warps_m)
    if swap_ab:
        w_layout = swapped_step_layout(warps_n)
        acc = tl.zeros([block_n, block_m], tilevm.float32)
    else:
        w_layout = step_layout(warps_n, warps_m)
        acc = tl.zeros([block_m, block_n], tilevm.float32)
    sx = [tl.alloc_shared(act, [block_m, TILE_K]), tl.alloc_shared(act, [block_m, TILE_K])]
    tl.copy_async(sx[0], gx, [row, first * TILE_K])
    tl.copy_async_commit()
    # The last tile loads itself again, from L1, rather than a tile past the split.
    raw_next = _load_weights(gw, first, n_tiles, tile_n, words, word_layout)
    # One scale row per channel, per pair of tiles (splits start at even tiles) for groups of
    # 128 rows, per tile for smaller groups.
    per_pair = group >= 2 * TILE_K
    row_consts = (group, block_n, has_zeros, wtype, zero_offset)
    if group == 0:
        per_group = _group_tiles(gs, gz, first, col, row_consts, act)
    for kt2 in range(first, last, 2):
        if per_pair:
            per_group = _group_tiles(gs, gz, kt2, col, row_consts, act)
        for half in tl.static_range(2):
            kt = kt2 + half
            if kt < last:
                # Start the copy of tile kt + 1 into the other buffer (its readers are done).
                tl.copy_async(sx[1 - half], gx, [row, (kt + 1) * TILE_K])
                tl.copy_async_commit()
                raw = raw_next
                raw_next = _load_weights(
                    gw, tl.minimum(kt + 1, last - 1), n_tiles, tile_n, words, word_layout
                )
                steps = tl.view(raw, tilevm.uint32, step_words)
                if 0 < group < 2 * TILE_K:
                    per_group = _group_tiles(gs, gz, kt, col, row_consts, act)
                tl.copy_async_wait(1)  # tile kt has landed
                tl.sync()
                for step in tl.static_range(STEPS):
                    w = _weight_step(
                        steps, step, per_group, group, wtype, act, w_layout, codes, zero_offset
                    )
                    a = tl.load(sx[half], [0, step * MMA_K], [block_m, MMA_K])
                    acc = tl.dot(tl.trans(w), tl.trans(a), acc) if swap_ab else tl.dot(a, w, acc)
                tl.sync()  # every warp is done with sx[half] before it is refilled
    tl.copy_async_wait(0)
    tl.free_shared(sx[1])
    tl.free_shared(sx[0])
    if swap_ab:
        acc = tl.trans(acc)
    return swap_octets(acc), row, col


def _make_gemm(act: tilevm.DataType):
    def qgemm(
        x: tilevm.Ptr[act],
        packed: tilevm.Ptr[tilevm.uint8],
        scales: tilevm.Ptr[act],
        zeros: tilevm.Ptr[act],
        bias: tilevm.Ptr[act],
        out: tilevm.Ptr[act],
        partial: tilevm.Ptr[tilevm.float32],
        counters: tilevm.Ptr[tilevm.int32],
        m: tilevm.int32,
        n: tilevm.int32,
        k: tilevm.int32,
        n_tiles: tilevm.int32,
        WTYPE: tilevm.constexpr,
        GROUP: tilevm.constexpr,
        BLOCK_M: tilevm.constexpr,
        WARPS: tilevm.constexpr,
        HAS_ZEROS: tilevm.constexpr,
        ZERO_OFFSET: tilevm.constexpr,
        HAS_BIAS: tilevm.constexpr,
    ):
        assert BLOCK_M in (MMA_N, 16), f"decode blocks take {MMA_N} or 16 rows; got {BLOCK_M}"
        swap_ab = BLOCK_M == MMA_N  # 8 rows: x is the mma's n8 operand
        consts = (BLOCK_M, 1, WARPS, WTYPE, GROUP, HAS_ZEROS, ZERO_OFFSET, swap_ab)
        acc, row, col = _main_loop(x, packed, scales, zeros, m, n, k, n_tiles, consts, act)
        if tl.num_blocks(2) > 1:
            split = tl.block_idx(2)
            _finish(acc, bias, out, partial, counters, m, n, row, col, split, act, HAS_BIAS, True)
        else:
            _store_tile(acc, bias, out, m, n, row, col, act, HAS_BIAS)

    qgemm.__name__ = qgemm.__qualname__ = f"qgemm_{tilevm.dtypes.library_name(act)}"
    return tilevm.kernel(qgemm, num_warps="WARPS")


def _make_gemm_tc(act: tilevm.DataType):
    def qgemm_tc(
        x: tilevm.Ptr[act],
        packed: tilevm.Ptr[tilevm.uint8],
        scales: tilevm.Ptr[act],
        zeros: tilevm.Ptr[act],
        bias: tilevm.Ptr[act],
        out: tilevm.Ptr[act],
        partial: tilevm.Ptr[tilevm.float32],
        counters: tilevm.Ptr[tilevm.int32],
        m: tilevm.int32,
        n: tilevm.int32,
        k: tilevm.int32,
        n_tiles: tilevm.int32,
        WTYPE: tilevm.constexpr,
        GROUP: tilevm.constexpr,
        BLOCK_M: tilevm.constexpr,
        WARPS_M: tilevm.constexpr,
        WARPS_N: tilevm.constexpr,
        HAS_ZEROS: tilevm.constexpr,
        ZERO_OFFSET: tilevm.constexpr,
        HAS_BIAS: tilevm.constexpr,
        PARTIAL: tilevm.constexpr,
        NUM_WARPS: tilevm.constexpr,
    ):
        consts = (BLOCK_M, WARPS_M, WARPS_N, WTYPE, GROUP, HAS_ZEROS, ZERO_OFFSET, False)
        acc, row, col = _main_loop(x, packed, scales, zeros, m, n, k, n_tiles, consts, act)
        split = tl.block_idx(2)
        _finish(acc, bias, out, partial, counters, m, n, row, col, split, act, HAS_BIAS, PARTIAL)

    qgemm_tc.__name__ = qgemm_tc.__qualname__ = f"qgemm_tc_{tilevm.dtypes.library_name(act)}"
    return tilevm.kernel(qgemm_tc, num_warps="NUM_WARPS")


GEMM = {t: _make_gemm(t) for t in (tilevm.float16, tilevm.bfloat16)}
"""The decode GEMM kernel per activation type (float16, bfloat16): ``BLOCK_M`` 16 (x the mma A
operand) or 8 (swap-AB: the weights are the A operand, half the mma a tile and warp)."""

GEMM_TC = {t: _make_gemm_tc(t) for t in (tilevm.float16, tilevm.bfloat16)}
"""The prefill GEMM kernel (x staged in shared memory, a grid of warps) per activation type."""


# Each kernel under its own name too: the autotuner's compile workers find a kernel by
# module and name (tilevm.autotune.kernel_reference).
qgemm_float16, qgemm_bfloat16 = GEMM[tilevm.float16], GEMM[tilevm.bfloat16]
qgemm_tc_float16, qgemm_tc_bfloat16 = GEMM_TC[tilevm.float16], GEMM_TC[tilevm.bfloat16]
