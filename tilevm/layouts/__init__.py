"""Layouts: which thread holds which element of a tile, in which register, and where in memory.

- :mod:`.register`: register layouts, their primitives, product and division;
- :mod:`.ops`: concat, permute, reshape, reduce, broadcast;
- :mod:`.view`: reinterpreting each thread's bits under another bit width;
- :mod:`.fragments`: mma.sync and ldmatrix fragments written in the algebra;
- :mod:`.shared`: shared-memory layouts, XOR swizzles, bank conflicts, a swizzle chooser;
- :mod:`.global_layout`: global tensors with symbolic sizes, contiguity and alignment;
- :func:`show` / :func:`format_grid` (text grids), :func:`draw` (SVG/PNG pictures) and
  :func:`parse_layout` (the safe expression language of ``python -m tilevm layout``).

Pure functions over immutable values; nothing here imports the IR.
"""

from .draw import draw
from .expr import parse_layout
from .fragments import (
    ldmatrix,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    mma_m16n8k32_a,
    mma_m16n8k32_b,
    mma_m16n8k32_c,
)
from .global_layout import (
    AccessInfo,
    GlobalLayout,
    access_info,
    global_column_major,
    global_row_major,
    global_strided,
    known_divisor,
    size_symbol,
)
from .ops import broadcast, concat, flatten, part, permute, reduce, reshape
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
from .shared import (
    BankReport,
    SharedLayout,
    Swizzle,
    bank_conflicts,
    choose_swizzle,
    shared_column_major,
    shared_row_major,
    shared_strided,
)
from .show import format_grid, show
from .view import (
    check_view,
    check_view_legal,
    pack_for_layout,
    packed_byte_layout,
    view_layout,
    view_moves,
)

__all__ = [
    "AccessInfo",
    "BankReport",
    "GlobalLayout",
    "RegisterLayout",
    "SharedLayout",
    "Swizzle",
    "access_info",
    "bank_conflicts",
    "broadcast",
    "check_view",
    "check_view_legal",
    "choose_swizzle",
    "column_local",
    "column_spatial",
    "concat",
    "divide",
    "draw",
    "flatten",
    "format_grid",
    "global_column_major",
    "global_row_major",
    "global_strided",
    "known_divisor",
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
    "parse_layout",
    "part",
    "permute",
    "product",
    "reduce",
    "replicate",
    "reshape",
    "shared_column_major",
    "shared_row_major",
    "shared_strided",
    "show",
    "size_symbol",
    "spatial",
    "view_layout",
    "view_moves",
]
