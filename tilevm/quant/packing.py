"""The pre-arranged order of packed weights, format ``tile64x64.v3``.

The kernels read a quantised weight in 64 (k) x 64 (n) tiles, one warp a tile,
each thread with ``b`` plain 16-byte loads. So the weight is stored the way a
warp's registers want it, and no shuffle or ``ldmatrix`` is needed on the GPU.

1. B = codes^T, ``[K, N]`` (k rows, n columns), is padded with the code of 0
   (``dtype.encode(0)``, which is 0 for every low-bit type) to
   ``Kp = ceil(K / 64) * 64`` rows and ``Np = ceil(N / 64) * 64`` columns.
2. Tile (i, j) holds ``B[64i : 64i + 64, 64j : 64j + 64]`` with its columns in mma order
   (:func:`tile_columns`): tile column ``8 a + c`` is weight column ``64 j + 8 c + a``. A
   thread's mma fragments hold tile columns ``g, g + 8, ..., g + 56`` (``g = lane / 4``),
   so it holds the eight weight columns ``64 j + 8 g ... 64 j + 8 g + 7``: their scales,
   zero points, bias and outputs are one 16-byte run. The tile is distributed over 32
   threads, 128 codes a thread, as 4 x 8 B fragments of ``mma.m16n8k16``
   (k16 x n8) with the k16 steps outermost: :func:`tile_layout`, whose
   registers ``2p`` and ``2p + 1`` (k rows ``k`` and ``k + 1`` of one column)
   are the two lanes of the ``half2`` that ``mma`` reads.
3. Each thread's 128 codes are packed densely, LSB first (as
   :func:`tilevm.pack`), into ``16 * b`` bytes in the register order of
   :func:`code_layout`: the same elements in the same threads, its registers
   reordered within each k step (32 codes, ``b`` words) so that the two codes
   of a lane pair sit about 16 bits apart, ideally code 0 in the low half of a
   32-bit word and code 1 in the high half. The word then *is* the pair's
   ``half2`` after one mask: no byte permute (``prmt``) a pair.
4. The bytes are placed by :func:`tilevm.layouts.packed_byte_layout`,
   ``local(b).spatial(32).local(16)``: byte r*16 + c of thread t goes to tile
   byte ``r*512 + t*16 + c``. A warp's load number r is then one contiguous,
   coalesced 512-byte stretch.
5. ``packed[i, j] = pack_for_layout(tile(i, j), code_layout(b), b)``: a uint8
   tensor ``[Kp / 64, Np / 64, 512 * b]``, k tiles outer, n tiles inner.

The reordering (step 3). A thread's codes of one k step have five binary
local modes: the three bits of the n block (``nb``, 8 blocks of 8 columns),
the fragment's k half (``kh``: rows 0..7 or 8..15) and the pair (``pr``: row
``2q`` or ``2q + 1``). :func:`tile_layout` orders them ``nb, kh, pr``, so the
lanes of a pair are ``b`` bits apart. :func:`code_layout` puts ``kh`` first
and ``pr`` where the modes below it number ``P = 2^round(log2(16 / b))``
codes, so the lanes are ``P * b`` bits apart:

=====  ==  =====================  ==========================================
b      P   local order of a step  lanes of a pair
=====  ==  =====================  ==========================================
1      16  pr, kh, nb             bits j and j + 16 of one word: all 16 pairs
2      8   kh, pr, nb             the same, 8 pairs a word
3      4   kh, nb2, pr, nb1 nb0   12 bits apart: 4 of 16 pairs in lanes
4      4   kh, nb2, pr, nb1 nb0   bits j and j + 16: all
5      4   kh, nb2, pr, nb1 nb0   20 bits apart: 4 of 16 pairs in lanes
6      2   kh, nb2 nb1, pr, nb0   12 bits apart
7      2   kh, nb2 nb1, pr, nb0   14 bits apart: 4 of 16 pairs in lanes
8      2   kh, nb2 nb1, pr, nb0   bits j and j + 16: all
=====  ==  =====================  ==========================================

Worked example (int4, so 2048 bytes a tile): thread 0 holds the B fragments
of columns n = 0, 8, ..., 56 at rows k = 0, 1, 8, 9 of every k16 step. In the
first step its code registers 0..3 are (k, n) = (0, 0), (0, 8), (0, 16),
(0, 24) and registers 4..7 are (1, 0), (1, 8), (1, 16), (1, 24): its first
32-bit word holds row 0 of four columns in its low half and row 1 of the same
columns in its high half, so bits 0..3 and 16..19 are the pair (k = 0, 1) of
column 0. That word is its bytes 0..3, at tile bytes 0..3; its bytes 16..31
land at 512..527 (its second 16-byte load).

``tile64x64.v1`` packed in :func:`tile_layout`'s order, ``tile64x64.v2`` in this order
with the weight's columns in their own order (no step 2 relabelling); :func:`convert_packed`
turns such a weight into this order (loading an old checkpoint does it).

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
from ..layouts import RegisterLayout, local, mma_m16n8k16_b, packed_byte_layout

if TYPE_CHECKING:
    import torch

FORMAT = "tile64x64.v3"
"""The name of the packed order; stored with every quantised weight."""

FORMATS = ("tile64x64.v1", "tile64x64.v2", FORMAT)
"""Every packed order this version reads (:func:`convert_packed` brings the older ones up)."""

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


# The modes of a tile as :func:`code_layout` spells them (k: step, kh, the thread's k pair
# index, pr; n: nb2, nb1, nb0, the thread's column), and which of them are the thread's.
_MODES = (4, 2, 4, 2, 2, 2, 2, 8)
_STEP, _KH, _PR, _NB = 0, 1, 3, (4, 5, 6)
_THREAD_MODES = (7, 2)


@functools.cache
def code_layout(nbits: int, format: str = FORMAT) -> RegisterLayout:
    """The register order in which a thread's codes of one tile are packed (see the module docs):
    :func:`tile_layout`'s elements in the same threads, each k step's registers reordered so that
    the lanes of a pair lie ``P * b`` bits apart. ``tile64x64.v1`` is :func:`tile_layout` itself."""
    b = _check_nbits(nbits, "code_layout")
    if format not in FORMATS:
        raise PackError(f"code_layout: format must be one of {FORMATS}; got {format!r}")
    if format == "tile64x64.v1":
        return tile_layout()
    below = round(math.log2(16 / b))  # binary modes below the pair's: P = 2^below codes
    rest = (_KH, *_NB)
    order = (*rest[: 4 - below], _PR, *rest[4 - below :])
    layout = RegisterLayout((TILE_K, TILE_N), _MODES, _THREAD_MODES, (_STEP, *order))
    same = np.sort(_flat(layout), axis=1) == np.sort(_flat(tile_layout()), axis=1)
    assert same.all(), "a thread's codes are its fragments' elements, reordered"
    return layout


def _flat(layout: RegisterLayout) -> np.ndarray:
    """``[thread, register]``: the flat tile index ``k * 64 + n`` each register holds."""
    table = layout.table()
    return table[..., 0] * TILE_N + table[..., 1]


def tile_columns(rows: torch.Tensor) -> torch.Tensor:
    """``rows [64 t, ...]`` (weight columns, one a row, as in ``[N, K]`` codes) in the order of
    packed tiles' columns, and back (the order is its own inverse): row ``64 j + 8 a + c`` moves
    to ``64 j + 8 c + a``. The kernels relabel scales and outputs the same way in registers
    (:func:`tilevm.ops.qgemm.swap_octets`)."""
    n = rows.shape[0] if rows.dim() else 0
    if not rows.dim() or n % TILE_N:
        raise PackError(
            f"tile_columns: rows must have a first dimension that is a multiple of {TILE_N} "
            f"(padded weight columns); got shape {tuple(rows.shape)}"
        )
    return rows.reshape(n // TILE_N, 8, 8, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def tile_bytes(nbits: int) -> int:
    """Bytes of one packed tile: ``4096 * nbits / 8 = 512 * nbits``."""
    return _CODES_PER_TILE * nbits // 8


def packed_shape(n: int, k: int, nbits: int) -> tuple[int, int, int]:
    """The packed shape of an ``[n, k]`` weight: ``(ceil(k / 64), ceil(n / 64), 512 * b)``."""
    return (math.ceil(k / TILE_K), math.ceil(n / TILE_N), tile_bytes(nbits))


@functools.cache
def _plan(nbits: int, format: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index permutations of one tile, independent of the data.

    The work order inside a tile is (i, t, g): code i (0..7) of the 8-code group
    g (0..15) of thread t, i.e. register ``l = 8g + i``, so that each of the
    eight ``[..., i, :]`` slices the bit packing combines is a contiguous run.
    Packed bytes are first produced in the order (m, t, g): byte m (0..b-1) of
    group g of thread t, i.e. thread byte ``g*b + m``.

    Returns ``(gather, scatter, byte_src, byte_dst)``:

    - ``gather[i*512 + t*16 + g]`` is the flat tile index ``k*64 + n`` held by
      thread t in code register 8g + i (from ``code_layout(nbits, format)``); ``scatter``
      is its inverse;
    - ``byte_src[p]`` is the (m, t, g) index of the byte that lands at tile
      byte p (from ``packed_byte_layout(...).table()``); ``byte_dst`` is its inverse.
    """
    groups = _CODES_PER_THREAD // 8
    layout = code_layout(nbits, format)
    gather = _flat(layout).reshape(_THREADS, groups, 8).transpose(2, 0, 1).reshape(-1)
    # byte_table[t, g*b + m] = the tile byte where thread t's byte g*b + m goes.
    byte_table = packed_byte_layout(layout, nbits).table()[..., 0]
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
def _device_plan(nbits: int, device: torch.device, format: str) -> tuple[torch.Tensor, ...]:
    import torch

    return tuple(torch.from_numpy(a).to(device) for a in _plan(nbits, format))


def _check_nbits(nbits: object, where: str) -> int:
    if not isinstance(nbits, (int, np.integer)) or isinstance(nbits, bool) or not 1 <= nbits <= 8:
        raise PackError(f"{where}: nbits must be an int in 1..8; got {nbits!r}")
    return int(nbits)


def pack_codes(codes_nk: torch.Tensor, nbits: int, *, pad_code: int = 0) -> torch.Tensor:
    """Pack an ``[N, K]`` tensor of b-bit codes into the :data:`FORMAT` order.

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
        code_layout(b), b)`` with B the padded transpose of ``tile_columns(codes_nk)``.
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
    codes = tile_columns(codes)
    gather, _, byte_src, _ = _device_plan(b, codes.device, FORMAT)
    # [Nt, n, Kt, k] -> [Kt, Nt, k, n] -> flat tile index k*64 + n, then each thread's registers.
    tiles = codes.view(nt, TILE_N, kt, TILE_K).permute(2, 0, 3, 1).reshape(kt, nt, _CODES_PER_TILE)
    regs = tiles[..., gather].view(kt, nt, 8, _CODES_PER_TILE // 8)  # (i, t, g) order
    out = torch.zeros((kt, nt, b, _CODES_PER_TILE // 8), dtype=torch.uint8, device=codes.device)
    for m, i, shift in _overlaps(b):
        # uint8 shifts drop the bits that leave the byte, which is what packing wants.
        code = regs[:, :, i]
        out[:, :, m] |= code << shift if shift >= 0 else code >> -shift
    return out.view(kt, nt, per_tile)[..., byte_src].contiguous()


def _check_packed(packed, nbits, n: int, k: int, format: str, where: str) -> int:
    """The width b, once ``packed`` is a ``format`` weight of ``[n, k]`` b-bit codes."""
    import torch

    b = _check_nbits(nbits, where)
    if format not in FORMATS:
        raise PackError(f"{where}: format must be one of {FORMATS}; got {format!r}")
    if not isinstance(packed, torch.Tensor):
        raise PackError(f"{where}: packed must be a torch.Tensor; got {type(packed).__name__}")
    for name, v in (("n", n), ("k", k)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise PackError(f"{where}: {name} must be a positive int; got {v!r}")
    expected = packed_shape(n, k, b)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != expected:
        raise PackError(
            f"{where}: packed must be uint8 of shape {expected} for a [{n}, {k}] weight of "
            f"{b}-bit codes; got {packed.dtype} of shape {tuple(packed.shape)}"
        )
    return b


def unpack_codes(
    packed: torch.Tensor, nbits: int, n: int, k: int, format: str = FORMAT
) -> torch.Tensor:
    """The inverse of :func:`pack_codes`: the ``[n, k]`` uint8 codes of a packed weight (packed
    in the order ``format`` names, one of :data:`FORMATS`)."""
    import torch

    b = _check_packed(packed, nbits, n, k, format, "unpack_codes")
    expected = packed_shape(n, k, b)
    kt, nt, _ = expected
    _, scatter, _, byte_dst = _device_plan(b, packed.device, format)
    data = packed[..., byte_dst].view(kt, nt, b, _CODES_PER_TILE // 8)  # (m, t, g) order
    regs = torch.zeros((kt, nt, 8, _CODES_PER_TILE // 8), dtype=torch.uint8, device=packed.device)
    for m, i, shift in _overlaps(b):
        byte = data[:, :, m]
        regs[:, :, i] |= byte >> shift if shift >= 0 else byte << -shift
    if b < 8:
        regs &= (1 << b) - 1
    tiles = regs.view(kt, nt, _CODES_PER_TILE)[..., scatter].view(kt, nt, TILE_K, TILE_N)
    codes = tiles.permute(1, 3, 0, 2).reshape(nt * TILE_N, kt * TILE_K)
    if format == FORMAT:
        codes = tile_columns(codes)
    return codes[:n, :k].contiguous()


def convert_packed(packed: torch.Tensor, nbits: int, n: int, k: int, format: str) -> torch.Tensor:
    """A weight packed in the older order ``format`` (one of :data:`FORMATS`), packed anew in
    :data:`FORMAT`'s (the same tensor when it already is)."""
    _check_packed(packed, nbits, n, k, format, "convert_packed")
    if format == FORMAT:
        return packed
    return pack_codes(unpack_codes(packed, nbits, n, k, format), nbits)


__all__ = [
    "FORMAT",
    "FORMATS",
    "TILE_K",
    "TILE_N",
    "code_layout",
    "convert_packed",
    "pack_codes",
    "packed_shape",
    "tile_bytes",
    "tile_columns",
    "tile_layout",
    "unpack_codes",
]
