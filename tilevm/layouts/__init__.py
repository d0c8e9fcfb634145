"""Layouts: which thread holds which element of a tile, in which register, and where in memory.

- :mod:`.register`: register layouts, their primitives, product and division;
- :mod:`.ops`: concat, permute, reshape, reduce, broadcast;
- :mod:`.view`: reinterpreting each thread's bits under another bit width;
- :mod:`.fragments`: mma.sync and ldmatrix fragments written in the algebra.

Pure functions over immutable values; nothing here imports the IR.
"""

from .fragments import (
    ldmatrix,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    mma_m16n8k32_a,
    mma_m16n8k32_b,
    mma_m16n8k32_c,
)
from .ops import broadcast, concat, flatten, permute, reduce, reshape
from .register import (
    RegisterLayout,
    column_local,
    column_spatial,
    divide,
    left_divide,
    local,
    product,
    replicate,
    spatial,
)
from .view import (
    check_view,
    check_view_legal,
    pack_for_layout,
    packed_byte_layout,
    view_layout,
    view_moves,
)

__all__ = [
    "RegisterLayout",
    "broadcast",
    "check_view",
    "check_view_legal",
    "column_local",
    "column_spatial",
    "concat",
    "divide",
    "flatten",
    "ldmatrix",
    "left_divide",
    "local",
    "mma_m16n8k16_a",
    "mma_m16n8k16_b",
    "mma_m16n8k16_c",
    "mma_m16n8k32_a",
    "mma_m16n8k32_b",
    "mma_m16n8k32_c",
    "pack_for_layout",
    "packed_byte_layout",
    "permute",
    "product",
    "reduce",
    "replicate",
    "reshape",
    "spatial",
    "view_layout",
    "view_moves",
]
