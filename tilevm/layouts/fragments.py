"""Tensor-core fragment layouts (mma.sync, ldmatrix) written in the layout algebra.

Notation of the PTX ISA: lane = thread id in the warp, ``groupID = lane >> 2``,
``threadID_in_group = lane % 4``; register index i counts the fragment's
elements a0, a1, ... from low to high. Each layout maps (lane, i) to
(row, column) of the operand tile.

``mma.m16n8k16`` with f16/bf16 operands, A (16x16, m x k):
row = groupID (+8 for a2, a3, a6, a7), col = 2 * threadID_in_group + (i & 1)
(+8 for a4..a7). Read as a product, from the outside in:

- ``column_local(2, 2)``: registers i >> 1 step down 8 rows first, then right 8 columns;
- ``spatial(8, 4)``: groupID picks the row, threadID_in_group the column pair;
- ``local(1, 2)``: the two halves of one 32-bit register are adjacent columns.

so ``A = column_local(2, 2) * spatial(8, 4) * local(1, 2)``. The other
fragments follow the same reading.
"""

from __future__ import annotations

from ..errors import LayoutError
from .register import RegisterLayout, column_local, column_spatial, local, spatial


def mma_m16n8k16_a() -> RegisterLayout:
    """A operand of ``mma.sync.m16n8k16`` (f16/bf16, row-major): 16 (m) x 16 (k), 8 per lane."""
    return column_local(2, 2) * spatial(8, 4) * local(1, 2)


def mma_m16n8k16_b() -> RegisterLayout:
    """B operand of ``mma.sync.m16n8k16`` (f16/bf16, column-major): 16 (k) x 8 (n), 4 per lane."""
    return local(2, 1) * column_spatial(4, 8) * local(2, 1)


def mma_m16n8k16_c() -> RegisterLayout:
    """C/D of ``mma.sync.m16n8k16`` (f32 or f16 accumulators): 16 (m) x 8 (n), 4 per lane."""
    return local(2, 1) * spatial(8, 4) * local(1, 2)


def mma_m16n8k32_a() -> RegisterLayout:
    """A operand of ``mma.sync.m16n8k32`` (s8/u8, row-major): 16 (m) x 32 (k), 16 per lane."""
    return column_local(2, 2) * spatial(8, 4) * local(1, 4)


def mma_m16n8k32_b() -> RegisterLayout:
    """B operand of ``mma.sync.m16n8k32`` (s8/u8, column-major): 32 (k) x 8 (n), 8 per lane."""
    return local(2, 1) * column_spatial(4, 8) * local(4, 1)


def mma_m16n8k32_c() -> RegisterLayout:
    """C/D of ``mma.sync.m16n8k32`` (s32 accumulators): 16 (m) x 8 (n), 4 per lane."""
    return mma_m16n8k16_c()


def ldmatrix(num: int = 1, trans: bool = False) -> RegisterLayout:
    """What ``ldmatrix.sync.aligned.m8n8.x{num}[.trans].b16`` leaves in registers.

    The tile is the ``num`` 8x8 matrices stacked along rows (matrix j is rows
    8j..8j+7, read from the addresses of lanes 8j..8j+7); register j of every
    lane holds two b16 elements of matrix j. Without ``.trans`` lane t holds
    row t // 4, columns 2 (t % 4) and 2 (t % 4) + 1; with ``.trans`` it holds
    rows 2 (t % 4) and 2 (t % 4) + 1 of column t // 4.
    """
    if num not in (1, 2, 4):
        raise LayoutError(f"ldmatrix loads 1, 2 or 4 matrices; got num={num!r}")
    one = column_spatial(4, 8) * local(2, 1) if trans else spatial(8, 4) * local(1, 2)
    return local(num, 1) * one
