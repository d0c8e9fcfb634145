"""Views: the same register bits read under another data type and layout.

A thread's registers form one bit string: local 0 in the lowest bits, local 1
next, and so on, each ``nbits`` wide (LSB first, as :func:`tilevm.pack`).
Viewing (layout L, b bits) as (layout L', b' bits) re-slices each thread's bit
string into b'-bit pieces, so it is legal when the thread counts match and
``L.local_size * b == L'.local_size * b'``.

Worked example: a thread holding 3 bytes ``local(3)`` (24 bits) can be read as
8 values of 3 bits ``local(8)``: value k takes bits [3k, 3k+3), so value 2 is
bits 6..7 of byte 0 and bit 0 of byte 1.

==========  ============  =============================
int3 value  bits (of 24)  comes from
==========  ============  =============================
0           0..2          byte 0 bits 0..2
1           3..5          byte 0 bits 3..5
2           6..8          byte 0 bits 6..7, byte 1 bit 0
...         ...           ...
7           21..23        byte 2 bits 5..7
==========  ============  =============================

Which *logical* element lands where depends on both layouts; :func:`view_moves`
says it element by element and :func:`check_view` compares it with a row-major
reinterpretation of the tile's bits, so pairing a byte layout with the wrong
low-bit layout fails with a message. A pre-packed weight goes the other way:
:func:`packed_byte_layout` gives the byte layout whose threads hold exactly the
bits of a target low-bit layout, and :func:`pack_for_layout` writes a tile of
codes in that byte order on the host.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..dtypes import pack
from ..errors import LayoutError
from .register import RegisterLayout, local


@dataclass(frozen=True, slots=True)
class Piece:
    """``nbits`` bits of a source element from its bit ``src_bit``, placed at ``dst_bit``."""

    src_index: tuple[int, ...]
    src_bit: int
    dst_bit: int
    nbits: int


def check_view_legal(
    src: RegisterLayout, src_bits: int, dst: RegisterLayout, dst_bits: int
) -> None:
    """Raise :class:`LayoutError` unless threads match and each thread's bit count is equal."""
    if src.num_threads != dst.num_threads:
        raise LayoutError(
            f"a view keeps the threads: {src} has {src.num_threads}, {dst} has {dst.num_threads}"
        )
    if src.local_size * src_bits != dst.local_size * dst_bits:
        raise LayoutError(
            f"a view keeps each thread's bits: {src.local_size} x {src_bits} bits = "
            f"{src.local_size * src_bits} in {src}, but {dst.local_size} x {dst_bits} bits = "
            f"{dst.local_size * dst_bits} in {dst}"
        )


def view_moves(
    src: RegisterLayout, src_bits: int, dst: RegisterLayout, dst_bits: int
) -> dict[tuple[int, ...], tuple[Piece, ...]]:
    """For every logical element of ``dst``, the source bits it is made of.

    Raises :class:`LayoutError` when the view is illegal, or when the threads
    that replicate a ``dst`` element would hold different bits for it.
    """
    check_view_legal(src, src_bits, dst, dst_bits)
    src_table, dst_table = src.table(), dst.table()
    moves: dict[tuple[int, ...], tuple[Piece, ...]] = {}
    for t in range(dst.num_threads):
        for v in range(dst.local_size):
            pieces = []
            lo, hi = v * dst_bits, (v + 1) * dst_bits
            while lo < hi:
                s, offset = divmod(lo, src_bits)
                n = min(hi - lo, src_bits - offset)
                index = tuple(int(i) for i in src_table[t, s])
                pieces.append(Piece(index, offset, lo - v * dst_bits, n))
                lo += n
            key = tuple(int(i) for i in dst_table[t, v])
            if moves.setdefault(key, tuple(pieces)) != tuple(pieces):
                raise LayoutError(
                    f"view: threads replicating element {key} of {dst} would hold different bits"
                )
    return moves


def check_view(
    src: RegisterLayout, src_bits: int, dst: RegisterLayout, dst_bits: int, *, limit: int = 3
) -> None:
    """Check that a view reinterprets the tile's row-major bit stream element for element.

    Reading both tiles row-major as bit streams (source element j at bits
    [j*b, (j+1)*b), destination element k at [k*b', (k+1)*b')), every
    destination element must receive exactly its own stretch of the stream.
    Raises :class:`LayoutError` listing up to ``limit`` elements that would
    receive other bits, so a wrong pairing of layouts is caught.
    """
    if src.size * src_bits != dst.size * dst_bits:
        raise LayoutError(
            f"a faithful view keeps the tile's bits: {src.shape} x {src_bits} bits != "
            f"{dst.shape} x {dst_bits} bits"
        )
    moves = view_moves(src, src_bits, dst, dst_bits)
    wrong = []
    for index in np.ndindex(*dst.shape):
        k = int(np.ravel_multi_index(index, dst.shape))
        got = [
            (int(np.ravel_multi_index(p.src_index, src.shape)) * src_bits + p.src_bit, p.nbits)
            for p in moves[index]
        ]
        start = got[0][0]
        contiguous = all(a + n == b for (a, n), (b, _) in itertools.pairwise(got))
        if start != k * dst_bits or not contiguous:
            wrong.append(
                _describe(index, moves[index], src.shape, dst_bits, k * dst_bits, src_bits)
            )
            if len(wrong) == limit:
                break
    if wrong:
        raise LayoutError(
            f"view of {src} ({src_bits}-bit) as {dst} ({dst_bits}-bit) moves elements:\n  "
            + "\n  ".join(wrong)
        )


def _describe(index, pieces, src_shape, dst_bits, want_bit, src_bits) -> str:
    have = " + ".join(
        f"bits {p.src_bit}..{p.src_bit + p.nbits - 1} of source {p.src_index}" for p in pieces
    )
    j, offset = divmod(want_bit, src_bits)
    want = tuple(int(i) for i in np.unravel_index(j, src_shape))
    return (
        f"element {index} would take {have}; a row-major reinterpretation needs "
        f"{dst_bits} bits from bit {offset} of source {want}"
    )


def view_layout(layout: RegisterLayout, src_bits: int, dst_bits: int) -> RegisterLayout:
    """The layout of ``layout``'s registers read as ``dst_bits``-wide elements, row-major faithful.

    Each thread's innermost registers form a run of e consecutive elements of
    the last dimension (e = 1 when they do not); the run becomes
    ``e * src_bits / dst_bits`` elements, which must be a whole number.
    The result passes :func:`check_view`.
    """
    if src_bits == dst_bits:
        return layout
    context = f"view of {layout} from {src_bits} to {dst_bits} bits"
    if (layout.local_size * src_bits) % dst_bits:
        raise LayoutError(
            f"{context}: {layout.local_size} x {src_bits} bits is not a multiple of {dst_bits}"
        )
    mode_shape, local_modes = layout.mode_shape, layout.local_modes
    dims = layout._mode_dims()
    last = len(mode_shape) - 1
    if not local_modes or local_modes[-1] != last or dims[last] != layout.rank - 1:
        # No run along the last dimension: give each thread a run of one element (a unit mode
        # may be inserted anywhere), which narrowing views can split.
        mode_shape, local_modes, last = mode_shape + (1,), local_modes + (last + 1,), last + 1
    extent = mode_shape[last]
    if (extent * src_bits) % dst_bits:
        raise LayoutError(
            f"{context}: each thread's innermost run along the last dimension has {extent} "
            f"element(s) ({extent * src_bits} bits), which does not split into {dst_bits}-bit "
            "elements"
        )
    new_extent = extent * src_bits // dst_bits
    shape = layout.shape[:-1] + (layout.shape[-1] // extent * new_extent,)
    return RegisterLayout(shape, mode_shape[:-1] + (new_extent,), layout.spatial_modes, local_modes)


def packed_byte_layout(target: RegisterLayout, nbits: int, *, vector_bytes: int = 16):
    """The 1-D uint8 layout whose threads hold exactly ``target``'s bits (a pre-packed tile).

    With B = ``target.local_size * nbits / 8`` bytes per thread and
    g = gcd(B, vector_bytes), it is ``local(B // g).spatial(T).local(g)``: each
    thread's bytes come in g-byte runs (one vector load each) and a warp's
    loads of one run index cover a contiguous stretch, so loads coalesce.
    Viewing it (8 bits) as ``target`` (nbits) is legal by construction.
    """
    if target.replication != 1:
        raise LayoutError(f"packed_byte_layout: the target must not be replicated; got {target}")
    bits = target.local_size * nbits
    if bits % 8:
        raise LayoutError(
            f"packed_byte_layout: each thread of {target} holds {target.local_size} x {nbits} = "
            f"{bits} bits, not a whole number of bytes"
        )
    per_thread = bits // 8
    g = math.gcd(per_thread, vector_bytes)
    return local(per_thread // g).spatial(target.num_threads).local(g)


def pack_for_layout(codes: np.ndarray, target: RegisterLayout, nbits: int) -> np.ndarray:
    """Host-side packer: the bytes of :func:`packed_byte_layout` for a tile of codes.

    ``codes`` has ``target.shape``; byte i of the result is the byte held at
    logical index i of the byte layout, so thread t's bytes read as ``nbits``
    values give ``codes[target(t, l)]`` for every register l.
    """
    codes = np.asarray(codes)
    if codes.shape != target.shape:
        raise LayoutError(
            f"pack_for_layout: codes must have shape {target.shape}; got {codes.shape}"
        )
    byte_layout = packed_byte_layout(target, nbits)
    table = target.table()
    per_thread = codes[tuple(np.moveaxis(table, -1, 0))]  # (threads, locals)
    out = np.zeros(byte_layout.size, dtype=np.uint8)
    byte_table = byte_layout.table()[..., 0]
    for t in range(target.num_threads):
        out[byte_table[t]] = pack(per_thread[t], nbits)
    return out


__all__ = [
    "Piece",
    "check_view",
    "check_view_legal",
    "pack_for_layout",
    "packed_byte_layout",
    "view_layout",
    "view_moves",
]
