"""Low-bit weight quantisation: :func:`quantize`, :class:`QuantizedWeight`, the packed order.

``tilevm.quantize(w, "int3", group_size=128)`` turns a float ``[N, K]`` weight
into codes packed in the kernels' order (:mod:`.packing`, format
``tile64x64.v3``) with per-group float16/bfloat16 scales and, for uint types,
optional zero points; :mod:`.weight` states the exact formulas. Imports torch.
"""

from .checkpoints import AWQ_ORDER, GPTQ_FORMATS, from_awq, from_gptq, unpack_int32
from .packing import (
    FORMAT,
    FORMATS,
    TILE_K,
    TILE_N,
    code_layout,
    convert_packed,
    pack_codes,
    packed_shape,
    tile_columns,
    tile_layout,
    unpack_codes,
)
from .weight import (
    GROUP_SIZES,
    SCALE_DTYPES,
    QuantError,
    QuantizedWeight,
    QuantTypeError,
    quantize,
)

__all__ = [
    "AWQ_ORDER",
    "FORMAT",
    "FORMATS",
    "GPTQ_FORMATS",
    "GROUP_SIZES",
    "SCALE_DTYPES",
    "TILE_K",
    "TILE_N",
    "QuantError",
    "QuantTypeError",
    "QuantizedWeight",
    "code_layout",
    "convert_packed",
    "from_awq",
    "from_gptq",
    "pack_codes",
    "packed_shape",
    "quantize",
    "tile_columns",
    "tile_layout",
    "unpack_codes",
    "unpack_int32",
]
