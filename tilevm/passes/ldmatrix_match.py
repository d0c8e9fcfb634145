"""``ldmatrix``: shared → register loads whose register layout is a sequence of 8x8 matrices.

``ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16`` loads 1, 2 or 4
matrices of 8 x 8 16-bit elements, each row 16 contiguous, 16-byte aligned
bytes of shared memory. Lane ``l`` gives the address of row ``l % 8`` of
matrix ``l // 8``; 32-bit register ``j`` of every lane receives two elements
of matrix ``j``, the lower-indexed one in the low half:

=============  ==================================  =================================
lane t gets    row                                 columns
=============  ==================================  =================================
plain          ``t // 4``                          ``2 (t % 4)`` and ``2 (t % 4) + 1``
``.trans``     ``2 (t % 4)`` and ``2 (t % 4) + 1``  ``t // 4``
=============  ==================================  =================================

A register layout is loaded this way when, in every warp, each pair of
consecutive registers ``(2p, 2p + 1)`` of a 16-bit tile holds one such matrix:
over the 32 lanes the pair holds, for a base ``(R, C)`` of the last two
dimensions (the other dimensions fixed) that may differ between warps,

- plain: ``(R + l // 4, C + 2 (l % 4))`` and ``(R + l // 4, C + 2 (l % 4) + 1)``;
- ``.trans``: ``(R + 2 (l % 4), C + l // 4)`` and ``(R + 2 (l % 4) + 1, C + l // 4)``;

with ``C`` a multiple of 8. Either way the matrix is the block ``[R, R + 8) x
[C, C + 8)`` of the tile, its rows along the last dimension: that dimension
must be contiguous in shared memory, and each row start 16-byte aligned
(:func:`rows_fit_shared`). The pairs go, in register order, into ``.x4``
instructions, or ``.x2`` and ``.x1`` where fewer pairs of the same kind are
left or where the row starts of four matrices are not one sum of digits of the
thread id (the C text each thread computes its address with; see
:mod:`tilevm.layouts.indexing`).

Worked example: matmul_fp16's A operand, a 32 x 16 fp16 tile on 4 warps,
``local(1, 1) * spatial(2, 1) * replicate(2) * mma_m16n8k16_a()``. Warp w
holds rows ``16 (w // 2)`` to ``16 (w // 2) + 15``; its registers pair up as

=====  ============  ======================
pair   registers     matrix (R, C)
=====  ============  ======================
0      a0 a1         (16 (w // 2), 0)
1      a2 a3         (16 (w // 2) + 8, 0)
2      a4 a5         (16 (w // 2), 8)
3      a6 a7         (16 (w // 2) + 8, 8)
=====  ============  ======================

so one plain ``.x4`` loads them; lane l addresses row ``l % 8`` of matrix
``l // 8``: element ``(16 (w // 2) + (l & 15), 8 ((l >> 4) & 1))``, in C
``(tid >> 6) * 16 + (tid & 15)`` and ``((tid >> 4) & 1) * 8``. Warps 2w and
2w + 1 hold the same rows (the A operand is replicated across the warps that
split n): each loads its own copy.

:func:`ldmatrix_plan` decides from the layout alone (a pure function of the
layout, the dtype and the block size) for the ``select_instructions`` pass;
:func:`rows_fit_shared` is the check lowering makes against the shared
tensor; :func:`tilevm.codegen.ldmatrix.emit_ldmatrix` writes the code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..dtypes import DataType
from ..layouts.indexing import DigitSum, fit_digit_sum
from ..layouts.register import RegisterLayout
from ..layouts.shared import Swizzle

WARP = 32
ROW = 8  # elements of one matrix row: 16 bytes of b16


@dataclass(frozen=True, slots=True)
class LdmatrixOp:
    """One ``ldmatrix.x{num}[.trans]``: matrix j goes to registers ``2 pairs[j]``, ``+ 1``.

    ``rows[d]`` is, as a function of the block's thread id ``tid``, index ``d``
    (relative to the tile) of the first element of the row the thread
    addresses: row ``tid % 8`` of matrix ``(tid // 8) % num`` of its warp.
    """

    num: int
    trans: bool
    pairs: tuple[int, ...]
    rows: tuple[DigitSum, ...]

    @property
    def instruction(self) -> str:
        trans = ".trans" if self.trans else ""
        return f"ldmatrix.sync.aligned.m8n8.x{self.num}{trans}.shared.b16"


@dataclass(frozen=True, slots=True)
class LdmatrixPlan:
    """A tile's load as ``ldmatrix`` instructions, covering every register once, in order."""

    ops: tuple[LdmatrixOp, ...]
    block_threads: int


def _lane_offsets(rank: int, trans: bool) -> np.ndarray:
    """(32, 2, rank): what lane l holds in the two registers of a pair, less the matrix base."""
    lane = np.arange(WARP)
    out = np.zeros((WARP, 2, rank), np.int64)
    for b in range(2):
        row, col = (2 * (lane % 4) + b, lane // 4) if trans else (lane // 4, 2 * (lane % 4) + b)
        out[:, b, -2], out[:, b, -1] = row, col
    return out


def ldmatrix_plan(
    layout: RegisterLayout, dtype: DataType, block_threads: int
) -> LdmatrixPlan | None:
    """The ``ldmatrix`` instructions that load ``layout``'s registers, or ``None``.

    ``None`` unless ``dtype`` has 16 bits, the tile has at least two
    dimensions, ``block_threads`` is whole warps and every register pair of
    every warp holds an 8x8 matrix as the module docs say (threads past the
    layout's thread count act as ``tid % num_threads``). Post-condition: a
    warp executing the plan's ops, each lane addressing the element
    ``op.rows(tid)`` of the tile (offset by the load's offsets), receives in
    every register the element ``layout`` assigns it.
    """
    rank, size = layout.rank, layout.local_size
    if dtype.nbits != 16 or rank < 2 or size % 2 or block_threads % WARP or not block_threads:
        return None
    warps, pairs = block_threads // WARP, size // 2
    threads = np.arange(block_threads) % layout.num_threads
    held = layout.table()[threads].reshape(warps, WARP, pairs, 2, rank)
    base = held[:, 0, :, 0, :]  # (warps, pairs, rank): lane 0's first element of each pair
    relative = held - base[:, None, :, None, :]
    kinds = []
    for p in range(pairs):
        if (base[:, p, -1] % ROW).any():
            return None
        rel = relative[:, :, p]
        if (rel == _lane_offsets(rank, False)).all():
            kinds.append(False)
        elif (rel == _lane_offsets(rank, True)).all():
            kinds.append(True)
        else:
            return None
    ops: list[LdmatrixOp] = []
    p = 0
    while p < pairs:
        # The most matrices one instruction can take here: pairs of the same kind whose row
        # starts are one digit sum over tid (4 matrices that are not may still go 2 and 2).
        for num in (4, 2, 1):
            chosen = tuple(range(p, p + num))
            if p + num > pairs or any(kinds[q] != kinds[p] for q in chosen):
                continue
            rows = _rows(layout, base, chosen, block_threads)
            if rows is not None:
                ops.append(LdmatrixOp(num, kinds[p], chosen, rows))
                p += num
                break
        else:
            return None
    return LdmatrixPlan(tuple(ops), block_threads)


def _rows(
    layout: RegisterLayout, base: np.ndarray, pairs: tuple[int, ...], block_threads: int
) -> tuple[DigitSum, ...] | None:
    """Per dimension, the digit sum over tid of the row start each thread addresses."""
    tid = np.arange(block_threads)
    warp, lane = tid // WARP, tid % WARP
    matrix = np.asarray(pairs)[(lane // ROW) % len(pairs)]
    index = base[warp, matrix].copy()  # (threads, rank)
    index[:, -2] += lane % ROW
    radices = _thread_radices(layout, block_threads)
    out = []
    for d in range(index.shape[1]):
        fit = fit_digit_sum(index[:, d], radices)
        if fit is None:
            return None
        out.append(fit)
    return tuple(out)


def _thread_radices(layout: RegisterLayout, block_threads: int) -> list[tuple[int, int]]:
    """``(stride, extent)`` digits of tid: the lane, then the warp's digits in the layout.

    The warp index is spelled in the layout's own thread digits (a digit that
    straddles the lane boundary split there), then its repeats over the block,
    so a row start that is a sum over them fits; the lane is 5 bits.
    """
    digits, stride = [], 1
    for entry in reversed(layout.spatial_modes):
        extent = -entry if entry < 0 else layout.mode_shape[entry]
        digits.append((stride, extent))
        stride *= extent
    if block_threads % stride:
        return [(WARP, block_threads // WARP), (1, WARP)]
    digits.append((stride, block_threads // stride))
    out = []
    for stride, extent in reversed(digits):
        if stride >= WARP:
            out.append((stride, extent))
        elif stride * extent > WARP:
            low = WARP // stride
            if WARP % stride or extent % low:
                return [(WARP, block_threads // WARP), (1, WARP)]
            out.append((WARP, extent // low))
    return [*out, (1, WARP)]


def rows_fit_shared(
    plan: LdmatrixPlan,
    strides: Sequence[int],
    swizzle: Swizzle | None,
    offset_divisors: Sequence[int],
) -> bool:
    """Whether every row ``plan`` addresses is 8 contiguous elements starting 16-byte aligned.

    The tile lies at element ``swizzle(sum_d (offset_d + index_d) * strides[d])``
    of a 16-byte aligned buffer; ``offset_divisors[d]`` divides ``offset_d``
    (0: it is 0). Rows need the last stride 1 and a swizzle that moves
    aligned blocks of at least 8 elements (``2**base >= 8``), and each term of
    the row start's offset a multiple of 8.
    """
    if strides[-1] != 1 or (swizzle is not None and (1 << swizzle.base) < ROW):
        return False
    for op in plan.ops:
        for rows, stride, known in zip(op.rows, strides, offset_divisors):
            if (math.gcd(rows.divisor(), known) * stride) % ROW:
                return False
    return True


__all__ = ["LdmatrixOp", "LdmatrixPlan", "ldmatrix_plan", "rows_fit_shared"]
