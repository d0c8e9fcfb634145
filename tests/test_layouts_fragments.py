"""Tensor-core fragment layouts against tables written from the PTX ISA's fragment figures.

Each table is the figure as the ISA draws it: the cell at (row, col) names the
lane and the fragment element index (a0 is 0, a1 is 1, ...) that holds it. The
int8 fragments are checked against the ISA's row/col formulas, typed in here.
"""

from __future__ import annotations

import pytest
from layout_testing import grid_of

from tilevm.errors import LayoutError
from tilevm.layouts.fragments import (
    ldmatrix,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    mma_m16n8k32_a,
    mma_m16n8k32_b,
    mma_m16n8k32_c,
)

MMA_M16N8K16_A = """\
  0:0   0:1   1:0   1:1   2:0   2:1   3:0   3:1   0:4   0:5   1:4   1:5   2:4   2:5   3:4   3:5
  4:0   4:1   5:0   5:1   6:0   6:1   7:0   7:1   4:4   4:5   5:4   5:5   6:4   6:5   7:4   7:5
  8:0   8:1   9:0   9:1  10:0  10:1  11:0  11:1   8:4   8:5   9:4   9:5  10:4  10:5  11:4  11:5
 12:0  12:1  13:0  13:1  14:0  14:1  15:0  15:1  12:4  12:5  13:4  13:5  14:4  14:5  15:4  15:5
 16:0  16:1  17:0  17:1  18:0  18:1  19:0  19:1  16:4  16:5  17:4  17:5  18:4  18:5  19:4  19:5
 20:0  20:1  21:0  21:1  22:0  22:1  23:0  23:1  20:4  20:5  21:4  21:5  22:4  22:5  23:4  23:5
 24:0  24:1  25:0  25:1  26:0  26:1  27:0  27:1  24:4  24:5  25:4  25:5  26:4  26:5  27:4  27:5
 28:0  28:1  29:0  29:1  30:0  30:1  31:0  31:1  28:4  28:5  29:4  29:5  30:4  30:5  31:4  31:5
  0:2   0:3   1:2   1:3   2:2   2:3   3:2   3:3   0:6   0:7   1:6   1:7   2:6   2:7   3:6   3:7
  4:2   4:3   5:2   5:3   6:2   6:3   7:2   7:3   4:6   4:7   5:6   5:7   6:6   6:7   7:6   7:7
  8:2   8:3   9:2   9:3  10:2  10:3  11:2  11:3   8:6   8:7   9:6   9:7  10:6  10:7  11:6  11:7
 12:2  12:3  13:2  13:3  14:2  14:3  15:2  15:3  12:6  12:7  13:6  13:7  14:6  14:7  15:6  15:7
 16:2  16:3  17:2  17:3  18:2  18:3  19:2  19:3  16:6  16:7  17:6  17:7  18:6  18:7  19:6  19:7
 20:2  20:3  21:2  21:3  22:2  22:3  23:2  23:3  20:6  20:7  21:6  21:7  22:6  22:7  23:6  23:7
 24:2  24:3  25:2  25:3  26:2  26:3  27:2  27:3  24:6  24:7  25:6  25:7  26:6  26:7  27:6  27:7
 28:2  28:3  29:2  29:3  30:2  30:3  31:2  31:3  28:6  28:7  29:6  29:7  30:6  30:7  31:6  31:7
"""

MMA_M16N8K16_B = """\
  0:0   4:0   8:0  12:0  16:0  20:0  24:0  28:0
  0:1   4:1   8:1  12:1  16:1  20:1  24:1  28:1
  1:0   5:0   9:0  13:0  17:0  21:0  25:0  29:0
  1:1   5:1   9:1  13:1  17:1  21:1  25:1  29:1
  2:0   6:0  10:0  14:0  18:0  22:0  26:0  30:0
  2:1   6:1  10:1  14:1  18:1  22:1  26:1  30:1
  3:0   7:0  11:0  15:0  19:0  23:0  27:0  31:0
  3:1   7:1  11:1  15:1  19:1  23:1  27:1  31:1
  0:2   4:2   8:2  12:2  16:2  20:2  24:2  28:2
  0:3   4:3   8:3  12:3  16:3  20:3  24:3  28:3
  1:2   5:2   9:2  13:2  17:2  21:2  25:2  29:2
  1:3   5:3   9:3  13:3  17:3  21:3  25:3  29:3
  2:2   6:2  10:2  14:2  18:2  22:2  26:2  30:2
  2:3   6:3  10:3  14:3  18:3  22:3  26:3  30:3
  3:2   7:2  11:2  15:2  19:2  23:2  27:2  31:2
  3:3   7:3  11:3  15:3  19:3  23:3  27:3  31:3
"""

MMA_M16N8K16_C = """\
  0:0   0:1   1:0   1:1   2:0   2:1   3:0   3:1
  4:0   4:1   5:0   5:1   6:0   6:1   7:0   7:1
  8:0   8:1   9:0   9:1  10:0  10:1  11:0  11:1
 12:0  12:1  13:0  13:1  14:0  14:1  15:0  15:1
 16:0  16:1  17:0  17:1  18:0  18:1  19:0  19:1
 20:0  20:1  21:0  21:1  22:0  22:1  23:0  23:1
 24:0  24:1  25:0  25:1  26:0  26:1  27:0  27:1
 28:0  28:1  29:0  29:1  30:0  30:1  31:0  31:1
  0:2   0:3   1:2   1:3   2:2   2:3   3:2   3:3
  4:2   4:3   5:2   5:3   6:2   6:3   7:2   7:3
  8:2   8:3   9:2   9:3  10:2  10:3  11:2  11:3
 12:2  12:3  13:2  13:3  14:2  14:3  15:2  15:3
 16:2  16:3  17:2  17:3  18:2  18:3  19:2  19:3
 20:2  20:3  21:2  21:3  22:2  22:3  23:2  23:3
 24:2  24:3  25:2  25:3  26:2  26:3  27:2  27:3
 28:2  28:3  29:2  29:3  30:2  30:3  31:2  31:3
"""

LDMATRIX_X1 = """\
  0:0   0:1   1:0   1:1   2:0   2:1   3:0   3:1
  4:0   4:1   5:0   5:1   6:0   6:1   7:0   7:1
  8:0   8:1   9:0   9:1  10:0  10:1  11:0  11:1
 12:0  12:1  13:0  13:1  14:0  14:1  15:0  15:1
 16:0  16:1  17:0  17:1  18:0  18:1  19:0  19:1
 20:0  20:1  21:0  21:1  22:0  22:1  23:0  23:1
 24:0  24:1  25:0  25:1  26:0  26:1  27:0  27:1
 28:0  28:1  29:0  29:1  30:0  30:1  31:0  31:1
"""

LDMATRIX_X1_TRANS = """\
  0:0   4:0   8:0  12:0  16:0  20:0  24:0  28:0
  0:1   4:1   8:1  12:1  16:1  20:1  24:1  28:1
  1:0   5:0   9:0  13:0  17:0  21:0  25:0  29:0
  1:1   5:1   9:1  13:1  17:1  21:1  25:1  29:1
  2:0   6:0  10:0  14:0  18:0  22:0  26:0  30:0
  2:1   6:1  10:1  14:1  18:1  22:1  26:1  30:1
  3:0   7:0  11:0  15:0  19:0  23:0  27:0  31:0
  3:1   7:1  11:1  15:1  19:1  23:1  27:1  31:1
"""


@pytest.mark.parametrize(
    ("layout", "table"),
    [
        (mma_m16n8k16_a(), MMA_M16N8K16_A),
        (mma_m16n8k16_b(), MMA_M16N8K16_B),
        (mma_m16n8k16_c(), MMA_M16N8K16_C),
        (ldmatrix(1), LDMATRIX_X1),
        (ldmatrix(1, trans=True), LDMATRIX_X1_TRANS),
    ],
    ids=["m16n8k16.A", "m16n8k16.B", "m16n8k16.C", "ldmatrix.x1", "ldmatrix.x1.trans"],
)
def test_fragment_layouts_match_the_ptx_figures(layout, table):
    assert layout.num_threads == 32
    assert grid_of(layout) == table.rstrip("\n")


def int8_a(lane: int, i: int) -> tuple[int, int]:
    """PTX ISA, mma.m16n8k32 .s8/.u8, multiplicand A."""
    group, tig = lane >> 2, lane % 4
    row = group if (0 <= i < 4 or 8 <= i < 12) else group + 8
    col = tig * 4 + (i & 3) + (16 if i >= 8 else 0)
    return row, col


def int8_b(lane: int, i: int) -> tuple[int, int]:
    """PTX ISA, mma.m16n8k32 .s8/.u8, multiplicand B."""
    group, tig = lane >> 2, lane % 4
    return tig * 4 + (i & 3) + (16 if i >= 4 else 0), group


def accumulator(lane: int, i: int) -> tuple[int, int]:
    """PTX ISA, mma.m16n8k32 .s32 accumulators C/D."""
    group, tig = lane >> 2, lane % 4
    return group + (8 if i >= 2 else 0), tig * 2 + (i & 1)


@pytest.mark.parametrize(
    ("layout", "shape", "per_lane", "formula"),
    [
        (mma_m16n8k32_a(), (16, 32), 16, int8_a),
        (mma_m16n8k32_b(), (32, 8), 8, int8_b),
        (mma_m16n8k32_c(), (16, 8), 4, accumulator),
    ],
    ids=["A", "B", "C"],
)
def test_int8_m16n8k32_fragments_match_the_ptx_formulas(layout, shape, per_lane, formula):
    assert (layout.shape, layout.num_threads, layout.local_size) == (shape, 32, per_lane)
    for lane in range(32):
        for i in range(per_lane):
            assert layout(lane, i) == formula(lane, i), (lane, i)


@pytest.mark.parametrize("num", [2, 4])
@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix_x2_x4_put_matrix_j_in_register_j(num, trans):
    layout = ldmatrix(num, trans)
    assert (layout.shape, layout.local_size) == ((8 * num, 8), 2 * num)
    for lane in range(32):
        for j in range(num):
            for half in range(2):
                row, col = (
                    (2 * (lane % 4) + half, lane // 4)
                    if trans
                    else (lane // 4, 2 * (lane % 4) + half)
                )
                assert layout(lane, 2 * j + half) == (8 * j + row, col)


def test_ldmatrix_takes_only_1_2_or_4_matrices():
    with pytest.raises(LayoutError, match="1, 2 or 4 matrices; got num=3"):
        ldmatrix(3)


def test_the_accumulator_divides_into_the_operand_atoms():
    """A 32x16 warp tile of C made of 2x2 mma atoms divides back into the atom."""
    from tilevm.layouts.register import local

    warp_tile = local(2, 2) * mma_m16n8k16_c()
    assert warp_tile / mma_m16n8k16_c() == local(2, 2)
