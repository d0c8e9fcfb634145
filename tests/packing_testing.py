"""Test helpers for packed weights: every packed order, packed independently of tilevm's packer."""

from __future__ import annotations

import numpy as np
import torch

from tilevm.layouts import pack_for_layout
from tilevm.quant import code_layout, packed_shape, tile_layout


def packed_columns(n_padded: int, format: str) -> np.ndarray:
    """Which weight column each column of the padded, tiled B holds: in ``tile64x64.v3`` tile
    column ``8 a + c`` of tile j is weight column ``64 j + 8 c + a``; before, its own."""
    columns = np.arange(n_padded)
    if format != "tile64x64.v3":
        return columns
    j, a, c = columns // 64, columns % 64 // 8, columns % 8
    return 64 * j + 8 * c + a


def pack_reference(codes_nk: torch.Tensor, nbits: int, format: str) -> torch.Tensor:
    """``codes_nk`` packed tile by tile with :func:`pack_for_layout` in the order ``format``
    names: ``tile64x64.v1`` (the fragments' own register order), ``v2`` (:func:`code_layout`'s)
    or ``v3`` (``v2`` with the tiles' columns in mma order)."""
    n, k = codes_nk.shape
    kt, nt, _ = packed_shape(n, k, nbits)
    b = np.zeros((kt * 64, nt * 64), np.int64)
    b[:k, :n] = codes_nk.numpy().T
    b = b[:, packed_columns(nt * 64, format)]
    layout = tile_layout() if format == "tile64x64.v1" else code_layout(nbits)
    tiles = [
        [pack_for_layout(b[64 * i : 64 * i + 64, 64 * j : 64 * j + 64], layout, nbits)]
        for i in range(kt)
        for j in range(nt)
    ]
    return torch.from_numpy(np.concatenate(tiles).reshape(kt, nt, -1))


def pack_v1(codes_nk: torch.Tensor, nbits: int) -> torch.Tensor:
    """``codes_nk`` packed in the ``tile64x64.v1`` order."""
    return pack_reference(codes_nk, nbits, "tile64x64.v1")
