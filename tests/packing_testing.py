"""Test helpers for packed weights: the older ``tile64x64.v1`` order, packed independently."""

from __future__ import annotations

import numpy as np
import torch

from tilevm.layouts import pack_for_layout
from tilevm.quant import packed_shape, tile_layout


def pack_v1(codes_nk: torch.Tensor, nbits: int) -> torch.Tensor:
    """``codes_nk`` packed tile by tile in the ``tile64x64.v1`` order (the fragments' own)."""
    n, k = codes_nk.shape
    kt, nt, _ = packed_shape(n, k, nbits)
    b = np.zeros((kt * 64, nt * 64), np.int64)
    b[:k, :n] = codes_nk.numpy().T
    tiles = [
        [pack_for_layout(b[64 * i : 64 * i + 64, 64 * j : 64 * j + 64], tile_layout(), nbits)]
        for i in range(kt)
        for j in range(nt)
    ]
    return torch.from_numpy(np.concatenate(tiles).reshape(kt, nt, -1))
