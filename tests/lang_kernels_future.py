"""Kernels whose annotations are strings (``from __future__ import annotations``)."""

from __future__ import annotations

import tilevm
import tilevm.lang as tl


@tilevm.kernel
def scale_rows(
    x: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    m: tilevm.int32,
    factor: tilevm.float32,
    N: int,
    SQUARE: bool = False,
    OFFSET: float = 0.0,
    MODE: str = "plain",
):
    """out[i] = x[i] * factor (then squared, shifted, negated as the constants say), row by row."""
    row = tl.block_idx()
    t = tl.load(tl.global_view(x, [m, N]), [row, 0], [1, N]) * factor
    if SQUARE:
        t = t * t
    t = t + OFFSET
    if MODE == "negate":
        t = -t
    tl.store(tl.global_view(out, [m, N]), t, [row, 0])


@tilevm.kernel
def fill(out: tilevm.Ptr[tilevm.int32], value: tilevm.int32, N: tilevm.constexpr = 8):
    tl.store(tl.global_view(out, [N]), tl.full([N], value, tilevm.int32), [0])
