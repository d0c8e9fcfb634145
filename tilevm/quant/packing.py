"""The pre-arranged order of packed weights, format ``tile64x64.v1``.

The kernels read a quantised weight in 64 (k) x 64 (n) tiles, one warp a tile,
each thread with ``b`` plain 16-byte loads. So the weight is stored the way a
warp's registers want it, and no shuffle or ``ldmatrix`` is needed on the GPU.

1. B = codes^T, ``[K, N]`` (k rows, n columns), is padded with the code of 0
   (``dtype.encode(0)``, which is 0 for every low-bit type) to
   ``Kp = ceil(K / 64) * 64`` rows and ``Np = ceil(N / 64) * 64`` columns.
2. Tile (i, j) = ``B[64i : 64i + 64, 64j : 64j + 64]`` is distributed by
   :func:`tile_layout` = ``local(4, 8) * mma_m16n8k16_b()``: 32 threads, 128
   codes a thread, i.e. 4 x 8 B fragments of ``mma.m16n8k16`` (k16 x n8)
   with the k16 steps outermost.
3. Each thread's 128 codes (register 0 first) are packed densely, LSB first
   (as :func:`tilevm.pack`), into ``16 * b`` bytes, and those bytes are placed
   by :func:`tilevm.layouts.packed_byte_layout`, ``local(b).spatial(32).local(16)``:
   byte r*16 + c of thread t goes to tile byte ``r*512 + t*16 + c``. A warp's
   load number r is then one contiguous, coalesced 512-byte stretch.
4. ``packed[i, j] = pack_for_layout(tile(i, j), tile_layout(), b)``: a uint8
   tensor ``[Kp / 64, Np / 64, 512 * b]``, k tiles outer, n tiles inner.

Worked example (int3, so 1536 bytes a tile): thread 0 holds the B fragments of
columns n = 0, 8, ..., 56 at rows k = 0, 1, 8, 9 of every k16 step. Its
register 0 is (k, n) = (0, 0), register 1 is (1, 0), register 2 is (8, 0),
register 3 is (9, 0), register 4 is (0, 8), and so on. Its first byte holds
registers 0 and 1 (bits 0..5) and bits 0..1 of register 2, and lands at tile
byte 0; its bytes 16..31 land at 512..527 (its second 16-byte load).

:func:`pack_codes` and :func:`unpack_codes` do all tiles at once with torch
ops on the codes' own device: the per-tile index permutations are computed
once per width from the layout tables and cached.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PackError
from ..layouts import local, mma_m16n8k16_b, packed_byte_layout

if TYPE_CHECKING:
    import torch

    from ..layouts import RegisterLayout

FORMAT = "tile64x64.v1"
"""The name of the packed order; stored with every quantised weight."""

TILE_K = 64
TILE_N = 64
_CODES_PER_TILE = TILE_K * TILE_N  # 4096
_THREADS = 32
_CODES_PER_THREAD = _CODES_PER_TILE // _THREADS  # 128


@functools.cache
def tile_layout() -> RegisterLayout:
    """The register layout of one 64 (k) x 64 (n) weight tile: 32 threads, 128 codes each."""
    layout = local(4, 8) * mma_m16n8k16_b()
    assert layout.shape == (TILE_K, TILE_N) and layout.num_threads == _THREADS
    return layout


def tile_bytes(nbits: int) -> int:
    """Bytes of one packed tile: ``4096 * nbits / 8 = 512 * nbits``."""
    return _CODES_PER_TILE * nbits // 8


def packed_shape(n: int, k: int, nbits: int) -> tuple[int, int, int]:
    """The packed shape of an ``[n, k]`` weight: ``(ceil(k / 64), ceil(n / 64), 512 * b)``."""
    return (math.ceil(k / TILE_K), math.ceil(n / TILE_N), tile_bytes(nbits))


@functools.cache
def _plan(nbits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index permutations of one tile, independent of the data.

    The work order inside a tile is (i, t, g): code i (0..7) of the 8-code group
    g (0..15) of thread t, i.e. register ``l = 8g + i``, so that each of the
    eight ``[..., i, :]`` slices the bit packing combines is a contiguous run.
    Packed bytes are first produced in the order (m, t, g): byte m (0..b-1) of
    group g of thread t, i.e. thread byte ``g*b + m``.

    Returns ``(gather, scatter, byte_src, byte_dst)``:

    - ``gather[i*512 + t*16 + g]`` is the flat tile index ``k*64 + n`` held by
      thread t in register 8g + i (from ``tile_layout().table()``); ``scatter``
      is its inverse;
    - ``byte_src[p]`` is the (m, t, g) index of the byte that lands at tile
      byte p (from ``packed_byte_layout(...).table()``); ``byte_dst`` is its inverse.
    """
    groups = _CODES_PER_THREAD // 8
    table = tile_layout().table()  # (32, 128, 2): (k, n) of every (thread, register)
    flat = (table[..., 0] * TILE_N + table[..., 1]).reshape(_THREADS, groups, 8)
    gather = flat.transpose(2, 0, 1).reshape(-1)
    # byte_table[t, g*b + m] = the tile byte where thread t's byte g*b + m goes.
    byte_table = packed_byte_layout(tile_layout(), nbits).table()[..., 0]
    by_mtg = byte_table.reshape(_THREADS, groups, nbits).transpose(2, 0, 1).reshape(-1)
    assert np.array_equal(np.sort(gather), np.arange(_CODES_PER_TILE))
    assert np.array_equal(np.sort(by_mtg), np.arange(tile_bytes(nbits)))
    return gather, np.argsort(gather), np.argsort(by_mtg), by_mtg


def _overlaps(nbits: int) -> list[tuple[int, int, int]]:
    """``(byte m, code i, shift)`` for each code i of an 8-code group that has bits in byte m.

    Eight b-bit codes make b bytes; code i holds stream bits [b*i, b*i + b), byte
    m stream bits [8m, 8m + 8). ``shift = b*i - 8m``: the code's bit 0 sits at bit
    ``shift`` of the byte (a negative shift: below it).
    """
    return [
        (m, i, nbits * i - 8 * m)
        for m in range(nbits)
        for i in range(8)
        if nbits * i < 8 * m + 8 and 8 * m < nbits * i + nbits
    ]


@functools.lru_cache(maxsize=64)
def _device_plan(nbits: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    import torch

    return tuple(torch.from_numpy(a).to(device) for a in _plan(nbits))


def _check_nbits(nbits: object, where: str) -> int:
    if not isinstance(nbits, (int, np.integer)) or isinstance(nbits, bool) or not 1 <= nbits <= 8:
        raise PackError(f"{where}: nbits must be an int in 1..8; got {nbits!r}")
    return int(nbits)


def pack_codes(codes_nk: torch.Tensor, nbits: int, *, pad_code: int = 0) -> torch.Tensor:
    """Pack an ``[N, K]`` tensor of b-bit codes into the ``tile64x64.v1`` order.

    Parameters
    ----------
    codes_nk
        Integer codes, each in ``0 .. 2**nbits - 1``, one row per output channel
        (the layout of ``nn.Linear.weight``). Any device; the work stays there.
    nbits
        The code width b, 1..8.
    pad_code
        The code written into the padding up to multiples of 64 (the code of 0).

    Returns
    -------
    torch.Tensor
        uint8 ``[ceil(K/64), ceil(N/64), 512*b]``, contiguous, on the device of
        ``codes_nk``. Tile (i, j) equals ``tilevm.layouts.pack_for_layout(B tile,
        tile_layout(), b)`` with B the padded transpose of ``codes_nk``.
    """
    import torch

    b = _check_nbits(nbits, "pack_codes")
    if not isinstance(codes_nk, torch.Tensor):
        raise PackError(
            f"pack_codes: codes_nk must be a torch.Tensor; got {type(codes_nk).__name__}"
        )
    if codes_nk.dim() != 2:
        raise PackError(
            f"pack_codes: codes_nk must be 2-D [N, K]; got shape {tuple(codes_nk.shape)}"
        )
    if (
        codes_nk.dtype.is_floating_point
        or codes_nk.dtype.is_complex
        or codes_nk.dtype == torch.bool
    ):
        raise PackError(f"pack_codes: codes_nk must be an integer tensor; got {codes_nk.dtype}")
    if not 0 <= pad_code < 1 << b:
        raise PackError(f"pack_codes: pad_code must lie in 0..{(1 << b) - 1}; got {pad_code}")
    n, k = codes_nk.shape
    if codes_nk.numel():
        lo, hi = int(codes_nk.min()), int(codes_nk.max())
        if lo < 0 or hi >= 1 << b:
            raise PackError(
                f"pack_codes: codes must lie in 0..{(1 << b) - 1} ({b} bits); "
                f"got values from {lo} to {hi}"
            )
    kt, nt, per_tile = packed_shape(n, k, b)
    codes = codes_nk.to(torch.uint8)
    if (n, k) != (nt * TILE_N, kt * TILE_K):
        padded = torch.full(
            (nt * TILE_N, kt * TILE_K), pad_code, dtype=torch.uint8, device=codes.device
        )
        padded[:n, :k] = codes
        codes = padded
    gather, _, byte_src, _ = _device_plan(b, codes.device)
    # [Nt, n, Kt, k] -> [Kt, Nt, k, n] -> flat tile index k*64 + n, then each thread's registers.
    tiles = codes.view(nt, TILE_N, kt, TILE_K).permute(2, 0, 3, 1).reshape(kt, nt, _CODES_PER_TILE)
    regs = tiles[..., gather].view(kt, nt, 8, _CODES_PER_TILE // 8)  # (i, t, g) order
    out = torch.zeros((kt, nt, b, _CODES_PER_TILE // 8), dtype=torch.uint8, device=codes.device)
    for m, i, shift in _overlaps(b):
        # uint8 shifts drop the bits that leave the byte, which is what packing wants.
        code = regs[:, :, i]
        out[:, :, m] |= code << shift if shift >= 0 else code >> -shift
    return out.view(kt, nt, per_tile)[..., byte_src].contiguous()


def unpack_codes(packed: torch.Tensor, nbits: int, n: int, k: int) -> torch.Tensor:
    """The inverse of :func:`pack_codes`: the ``[n, k]`` uint8 codes of a packed weight."""
    import torch

    b = _check_nbits(nbits, "unpack_codes")
    if not isinstance(packed, torch.Tensor):
        raise PackError(f"unpack_codes: packed must be a torch.Tensor; got {type(packed).__name__}")
    for name, v in (("n", n), ("k", k)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise PackError(f"unpack_codes: {name} must be a positive int; got {v!r}")
    expected = packed_shape(n, k, b)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != expected:
        raise PackError(
            f"unpack_codes: packed must be uint8 of shape {expected} for a [{n}, {k}] weight of "
            f"{b}-bit codes; got {packed.dtype} of shape {tuple(packed.shape)}"
        )
    kt, nt, _ = expected
    _, scatter, _, byte_dst = _device_plan(b, packed.device)
    data = packed[..., byte_dst].view(kt, nt, b, _CODES_PER_TILE // 8)  # (m, t, g) order
    regs = torch.zeros((kt, nt, 8, _CODES_PER_TILE // 8), dtype=torch.uint8, device=packed.device)
    for m, i, shift in _overlaps(b):
        byte = data[:, :, m]
        regs[:, :, i] |= byte >> shift if shift >= 0 else byte << -shift
    if b < 8:
        regs &= (1 << b) - 1
    tiles = regs.view(kt, nt, _CODES_PER_TILE)[..., scatter].view(kt, nt, TILE_K, TILE_N)
    codes = tiles.permute(1, 3, 0, 2).reshape(nt * TILE_N, kt * TILE_K)
    return codes[:n, :k].contiguous()


__all__ = [
    "FORMAT",
    "TILE_K",
    "TILE_N",
    "pack_codes",
    "packed_shape",
    "tile_bytes",
    "tile_layout",
    "unpack_codes",
]
