"""Shared-memory layouts: strided maps, XOR swizzles and the bank-conflict model.

A shared layout maps a logical index of a tile to an element offset in a
shared-memory buffer in two steps:

1. strided: ``o = sum(index[d] * strides[d])``. Row-major with ``pad`` elements
   appended to each row of a ``W``-wide tile has strides ``(W + pad, 1)``.
2. swizzle: ``Swizzle(bits, base, shift)`` XORs the ``bits``-bit field that
   starts at bit ``base + shift`` of ``o`` into the field that starts at bit
   ``base``: ``o ^ (((o >> (base + shift)) & (2**bits - 1)) << base)``. The rule
   ``shift >= bits`` keeps the two fields apart, so the source field passes
   through unchanged and a second application undoes the first: a swizzle is
   its own inverse, hence a bijection on offsets. It only changes bits below
   ``base + bits``, so it maps every aligned block of ``2**(base + bits)``
   offsets onto itself.

Banks. Shared memory has 32 banks of 4-byte words: byte ``a`` lies in word
``a // 4``, and word ``w`` in bank ``w % 32``. A warp's access is served in
phases: accesses of at most 4 bytes per thread in one phase of 32 threads,
8-byte accesses in two phases of 16 threads (half-warps), 16-byte accesses in
four phases of 8 threads (quarter-warps). A phase takes as many wavefronts as
the most *distinct* words any one bank must deliver; threads that touch the
same word share it (a broadcast). The ideal is one wavefront per phase that
has threads; the excess is the conflict count.

Worked example: the first phase of an ``ldmatrix.x4`` read of a 64x64 fp16
tile, ``local(4, 4) * column_spatial(16, 2) * local(1, 8)``, vector 8: threads
0..7 each read 16 bytes, column 0..7 of rows 0..7.

======  =====  ===========  ==========  ======================  ==========
thread  index  row-major o  banks       with Swizzle(3, 3, 3)   banks
======  =====  ===========  ==========  ======================  ==========
0       (0,0)  0            0-3         0                       0-3
1       (1,0)  64           0-3         64 ^ (1 << 3) = 72      4-7
2       (2,0)  128          0-3         128 ^ (2 << 3) = 144    8-11
7       (7,0)  448          0-3         448 ^ (7 << 3) = 504    28-31
======  =====  ===========  ==========  ======================  ==========

Row-major, each of banks 0-3 holds 8 distinct words (one per row, 128 bytes
apart): 8 wavefronts where 1 is ideal. The swizzle XORs the row's low 3 bits
(offset bits 6-8) into the 16-byte chunk index (offset bits 3-5), so the 8
rows land in 8 different chunks of the 128-byte bank window: 1 wavefront.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LayoutError
from .register import RegisterLayout, _ints

BANKS = 32
WORD_BYTES = 4
WARP = 32
ACCESS_BYTES = (1, 2, 4, 8, 16)


@dataclass(frozen=True, slots=True)
class Swizzle:
    """XOR of offset bits ``[base + shift, base + shift + bits)`` into bits ``[base, base + bits)``.

    Parameters are ints ``>= 0`` and, when ``bits > 0``, ``shift >= bits`` so the
    source and target fields do not overlap; that makes the swizzle its own
    inverse. ``bits == 0`` is the identity and is canonicalised to
    ``Swizzle(0, 0, 0)``, so ``==`` means "same mapping".
    """

    bits: int
    base: int
    shift: int

    def __post_init__(self) -> None:
        bits, base, shift = _ints((self.bits, self.base, self.shift), "Swizzle fields", minimum=0)
        if bits and shift < bits:
            raise LayoutError(
                f"Swizzle needs shift >= bits so the source bits [{base + shift}, "
                f"{base + shift + bits}) do not overlap the target bits [{base}, {base + bits}); "
                f"got bits={bits}, base={base}, shift={shift}"
            )
        if not bits:
            base = shift = 0
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "shift", shift)

    def __call__(self, offset):
        """The swizzled offset(s); ``offset`` is an int ``>= 0`` or a numpy int array."""
        field = (offset >> (self.base + self.shift)) & ((1 << self.bits) - 1)
        return offset ^ (field << self.base)

    def __str__(self) -> str:
        return f"Swizzle({self.bits}, {self.base}, {self.shift})"


@dataclass(frozen=True, slots=True)
class SharedLayout:
    """A tile in shared memory: ``swizzle(sum(index[d] * strides[d]))``, in elements.

    Checked on construction: strides are ints ``>= 0``, distinct elements get
    distinct offsets, and the swizzle keeps every offset below :attr:`size`.
    A dimension of extent 1 gets stride 0 and an identity swizzle becomes
    ``None``, so ``==`` means "same mapping".

    Parameters
    ----------
    shape
        The tile's logical shape.
    strides
        Elements between neighbours along each dimension, before the swizzle.
    swizzle
        Applied to the strided offset, or ``None``.
    """

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    swizzle: Swizzle | None = None

    def __post_init__(self) -> None:
        shape = _ints(self.shape, "SharedLayout shape", minimum=1)
        strides = _ints(self.strides, "SharedLayout strides", minimum=0)
        if not shape or len(shape) != len(strides):
            raise LayoutError(
                f"SharedLayout needs one stride per dimension of a non-empty shape; "
                f"got shape {shape}, strides {strides}"
            )
        strides = tuple(0 if n == 1 else s for n, s in zip(shape, strides))
        swizzle = self.swizzle
        if swizzle is not None and not isinstance(swizzle, Swizzle):
            raise LayoutError(f"SharedLayout swizzle must be a Swizzle or None; got {swizzle!r}")
        if swizzle is not None and swizzle.bits == 0:
            swizzle = None
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "swizzle", swizzle)
        strided = self._strided()
        values, counts = np.unique(strided, return_counts=True)
        if (counts > 1).any():
            clash = values[counts > 1][0]
            a, b = np.argwhere(strided == clash)[:2]
            raise LayoutError(
                f"SharedLayout maps {tuple(a.tolist())} and {tuple(b.tolist())} to offset "
                f"{clash}; got shape {shape}, strides {strides}"
            )
        if swizzle is not None:
            moved = swizzle(strided)
            if moved.max() >= self.size:
                at = tuple(np.argwhere(moved >= self.size)[0])
                raise LayoutError(
                    f"{swizzle} moves the offset {strided[at]} of {tuple(int(i) for i in at)} to "
                    f"{moved[at]}, outside the span 0..{self.size - 1} of shape {shape}, "
                    f"strides {strides}"
                )

    def _strided(self) -> np.ndarray:
        out = np.zeros(self.shape, np.int64)
        for dim, (n, s) in enumerate(zip(self.shape, self.strides)):
            axis = [1] * len(self.shape)
            axis[dim] = n
            out = out + (np.arange(n, dtype=np.int64) * s).reshape(axis)
        return out

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Elements the buffer spans: the largest offset plus one, padding included.

        A swizzle never changes it: construction rejects one that would move an
        offset past the strided span.
        """
        return sum((n - 1) * s for n, s in zip(self.shape, self.strides)) + 1

    def offset(self, index: Sequence[int]) -> int:
        """The element offset of the logical ``index``."""
        index = tuple(index)
        if len(index) != self.rank or not all(
            isinstance(i, (int, np.integer)) and 0 <= i < n for i, n in zip(index, self.shape)
        ):
            raise LayoutError(f"index must lie in a tile of shape {self.shape}; got {index}")
        strided = sum(int(i) * s for i, s in zip(index, self.strides))
        return strided if self.swizzle is None else self.swizzle(strided)

    def offsets(self) -> np.ndarray:
        """Every element's offset: an int64 array of :attr:`shape`."""
        strided = self._strided()
        return strided if self.swizzle is None else self.swizzle(strided)

    def swizzled(self, bits: int, base: int, shift: int) -> SharedLayout:
        """This layout with ``Swizzle(bits, base, shift)`` applied after the strides."""
        if self.swizzle is not None:
            raise LayoutError(f"swizzled() needs an unswizzled layout; got {self}")
        return SharedLayout(self.shape, self.strides, Swizzle(bits, base, shift))

    def grid(self) -> str:
        """The offsets of a rank-1 or rank-2 layout as rows of text, one row of the tile a line."""
        if self.rank > 2:
            raise LayoutError(f"grid() draws rank 1 or 2; got shape {self.shape}")
        offsets = self.offsets().reshape(-1, self.shape[-1])
        width = len(str(self.size - 1))
        return "\n".join(" ".join(f"{o:>{width}}" for o in row) for row in offsets.tolist())

    def __str__(self) -> str:
        swizzle = "" if self.swizzle is None else f", swizzle={self.swizzle}"
        return f"SharedLayout(shape={list(self.shape)}, strides={list(self.strides)}{swizzle})"


def shared_strided(shape: Sequence[int], strides: Sequence[int]) -> SharedLayout:
    """A layout with the given strides (in elements) and no swizzle."""
    return SharedLayout(tuple(shape), tuple(strides))


def _packed_strides(extents: Sequence[int]) -> list[int]:
    """Row-major strides of ``extents``: the last dimension fastest."""
    strides = [1] * len(extents)
    for dim in reversed(range(len(extents) - 1)):
        strides[dim] = strides[dim + 1] * extents[dim + 1]
    return strides


def shared_row_major(*shape: int, pad: int = 0) -> SharedLayout:
    """Row-major, with ``pad`` unused elements after each row of the last dimension.

    ``shared_row_major(64, 64, pad=8)`` has strides ``(72, 1)``.
    """
    shape = _ints(shape, "shared_row_major() shape", minimum=1)
    (pad,) = _ints([pad], "shared_row_major() pad", minimum=0)
    if not shape:
        raise LayoutError("shared_row_major() needs at least one dimension")
    return SharedLayout(shape, tuple(_packed_strides([*shape[:-1], shape[-1] + pad])))


def shared_column_major(*shape: int, pad: int = 0) -> SharedLayout:
    """Column-major (dimension 0 fastest), with ``pad`` unused elements after each column."""
    shape = _ints(shape, "shared_column_major() shape", minimum=1)
    (pad,) = _ints([pad], "shared_column_major() pad", minimum=0)
    if not shape:
        raise LayoutError("shared_column_major() needs at least one dimension")
    extents = [shape[0] + pad, *shape[1:]]
    return SharedLayout(shape, tuple(reversed(_packed_strides(extents[::-1]))))


# -- the bank model ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BankReport:
    """What a warp-by-warp access costs under the bank model of the module docs.

    Attributes
    ----------
    wavefronts
        Wavefronts summed over every warp, vector group and phase.
    ideal
        The number of phases that have threads: one wavefront each at best.
    worst
        ``(warp, group, phase)`` of the first phase that takes the most wavefronts,
        where group ``g`` is locals ``g*vector .. g*vector + vector - 1``.
    worst_wavefronts
        The wavefronts that phase takes.
    worst_threads
        The threads of that phase.
    worst_bank, worst_words
        Its most loaded bank and the distinct words that bank must deliver.
    """

    wavefronts: int
    ideal: int
    worst: tuple[int, int, int]
    worst_wavefronts: int
    worst_threads: tuple[int, ...]
    worst_bank: int
    worst_words: tuple[int, ...]

    @property
    def conflicts(self) -> int:
        """Wavefronts beyond the ideal; 0 means conflict-free."""
        return self.wavefronts - self.ideal

    def __str__(self) -> str:
        warp, group, phase = self.worst
        return (
            f"BankReport(wavefronts={self.wavefronts}, ideal={self.ideal}, "
            f"conflicts={self.conflicts}; worst: warp {warp} group {group} phase {phase} "
            f"(threads {self.worst_threads[0]}..{self.worst_threads[-1]}) takes "
            f"{self.worst_wavefronts}, "
            f"bank {self.worst_bank} holds words {list(self.worst_words)})"
        )


def _access_bytes(elem_bits: int, vector: int) -> int:
    (elem_bits,) = _ints([elem_bits], "elem_bits", minimum=1)
    (vector,) = _ints([vector], "vector", minimum=1)
    if (vector * elem_bits) % 8 or vector * elem_bits // 8 not in ACCESS_BYTES:
        raise LayoutError(
            f"an access of vector * elem_bits must be 1, 2, 4, 8 or 16 bytes; got vector "
            f"{vector} of {elem_bits}-bit elements ({vector * elem_bits} bits)"
        )
    return vector * elem_bits // 8


def _check_access(shape: tuple[int, ...], layout: RegisterLayout, vector: int) -> None:
    if not isinstance(layout, RegisterLayout):
        raise LayoutError(f"an access needs a RegisterLayout; got {layout!r}")
    if layout.shape != shape:
        raise LayoutError(
            f"the register layout must cover the shared tile; got layout shape {layout.shape} "
            f"for a tile of shape {shape}"
        )
    if layout.local_size % vector:
        raise LayoutError(
            f"vector must divide the local size {layout.local_size} of {layout}; got {vector}"
        )


def _check_table(shape: tuple[int, ...], table, vector: int) -> np.ndarray:
    """An index table ``(threads, locals, rank)`` of elements inside ``shape``, as an array."""
    table = np.asarray(table)
    if table.dtype.kind not in "iu" or table.ndim != 3 or table.shape[2] != len(shape):
        raise LayoutError(
            f"an index table must be integers of shape (threads, locals, {len(shape)}); got "
            f"{table.dtype} of shape {table.shape}"
        )
    if table.shape[1] % vector:
        raise LayoutError(f"vector must divide the table's {table.shape[1]} locals; got {vector}")
    outside = (table < 0) | (table >= np.asarray(shape))
    if outside.any():
        t, i, _ = np.argwhere(outside)[0]
        raise LayoutError(
            f"thread {t} local {i} indexes {tuple(table[t, i].tolist())}, outside the tile "
            f"{tuple(shape)}"
        )
    return table


def _gather(shared: SharedLayout, table: np.ndarray) -> np.ndarray:
    """Offsets of a register table ``(threads, locals, rank)``: shape ``(threads, locals)``."""
    return shared.offsets()[tuple(table[..., d] for d in range(table.shape[-1]))]


def bank_conflicts(
    shared: SharedLayout, layout: RegisterLayout, elem_bits: int, vector: int
) -> BankReport:
    """Shared-memory wavefronts for every warp of ``layout`` accessing ``shared``.

    Thread ``t`` is in warp ``t // 32``. Each thread accesses its locals in groups
    of ``vector`` consecutive local indices, one access of ``vector * elem_bits / 8``
    bytes per group; the warp issues group ``g`` of all its threads together.
    Each access is split into phases and costed as in the module docs.

    Parameters
    ----------
    shared
        Where the tile lives.
    layout
        Which thread accesses which element; its shape must be ``shared.shape``.
    elem_bits
        Bits per element; sub-byte widths are fine when accesses are whole bytes.
    vector
        Elements per access; must divide ``layout.local_size`` and give 1, 2, 4, 8
        or 16 bytes.

    Returns
    -------
    BankReport
        ``wavefronts >= ideal``; ``conflicts == 0`` means conflict-free.

    Raises
    ------
    LayoutError
        If a group's elements are not at consecutive increasing offsets, or an
        access is not aligned to its own size (naming the thread and locals).
    """
    access = _access_bytes(elem_bits, vector)
    _check_access(shared.shape, layout, vector)
    return _cost(_gather(shared, layout.table()), elem_bits, vector, access)


def _cost(offsets: np.ndarray, elem_bits: int, vector: int, access: int) -> BankReport:
    threads, size = offsets.shape
    groups = offsets.reshape(threads, size // vector, vector)
    starts = groups[:, :, 0]
    broken = groups != starts[:, :, None] + np.arange(vector)
    if broken.any():
        t, g, _ = np.argwhere(broken)[0]
        raise LayoutError(
            f"thread {t} locals {g * vector}..{g * vector + vector - 1} must lie at consecutive "
            f"increasing shared offsets to form one access; got offsets {groups[t, g].tolist()}"
        )
    misaligned = (starts * elem_bits) % (access * 8) != 0
    if misaligned.any():
        t, g = np.argwhere(misaligned)[0]
        raise LayoutError(
            f"thread {t} locals {g * vector}..{g * vector + vector - 1} start a {access}-byte "
            f"access at element offset {starts[t, g]} (bit {starts[t, g] * elem_bits}), which "
            f"is not {access}-byte aligned"
        )
    per_phase = WARP if access <= WORD_BYTES else WARP * WORD_BYTES // access
    phases = WARP // per_phase
    thread = np.arange(threads)
    # One id per (warp, group, phase), numbered warp-major.
    phase_id = ((thread // WARP)[:, None] * groups.shape[1] + np.arange(groups.shape[1])) * phases
    phase_id = phase_id + ((thread % WARP) // per_phase)[:, None]
    # Accesses are aligned to their size, so one covers max(1, access / 4) whole words.
    words = (starts * elem_bits // 8 // WORD_BYTES)[:, :, None] + np.arange(
        max(1, access // WORD_BYTES)
    )
    phase_id = np.broadcast_to(phase_id[:, :, None], words.shape).ravel()
    words = words.ravel()
    span = int(words.max()) + 1
    distinct = np.unique(phase_id * span + words)  # a broadcast word counts once
    pid, word = distinct // span, distinct % span
    banks, load = np.unique(pid * BANKS + word % BANKS, return_counts=True)
    cost = np.zeros(int(pid.max()) + 1, np.int64)
    np.maximum.at(cost, banks // BANKS, load)
    worst = int(cost.argmax())
    in_worst = banks // BANKS == worst
    worst_bank = int(banks[in_worst][load[in_worst].argmax()]) % BANKS
    warp_group, phase = divmod(worst, phases)
    warp, group = divmod(warp_group, groups.shape[1])
    first = warp * WARP + phase * per_phase
    return BankReport(
        wavefronts=int(cost.sum()),
        ideal=int(np.unique(pid).size),
        worst=(warp, group, phase),
        worst_wavefronts=int(cost[worst]),
        worst_threads=tuple(range(first, min(first + per_phase, threads))),
        worst_bank=worst_bank,
        worst_words=tuple(int(w) for w in word[(pid == worst) & (word % BANKS == worst_bank)]),
    )


# -- choosing a swizzle --------------------------------------------------------------------------
def _log2_ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _swizzle_candidates(elem_bits: int, max_vector: int, size: int) -> Iterator[Swizzle]:
    """The swizzles :func:`choose_swizzle` tries, in its order; see its docs."""
    low = _log2_ceil(max_vector)
    line = _log2_ceil(max(1, 1024 // elem_bits))
    chunk = _log2_ceil(max(1, 128 // elem_bits))
    span = _log2_ceil(size)
    bases = sorted(range(low, line), key=lambda b: (b != chunk, b))
    for bits in range(1, line - low + 1):
        for base in bases:
            if base + bits > line:
                continue
            for shift in range(bits, span - base - bits + 1):
                yield Swizzle(bits, base, shift)


def choose_swizzle(
    shape: Sequence[int],
    elem_bits: int,
    accesses: Sequence[tuple[RegisterLayout, int]],
    *,
    pad_ok: bool = False,
    pad_first: bool = False,
) -> SharedLayout:
    """A row-major layout of ``shape`` on which every access is bank-conflict free.

    Tries, in order: plain row-major; row-major with each swizzle below; with
    ``pad_ok``, row-major with 1, 2, ... elements of padding per row, up to one
    128-byte line (with ``pad_first``, the paddings before the swizzles).
    Returns the first candidate on which :func:`bank_conflicts` reports zero
    conflicts for every access in ``accesses``.

    The swizzles are every ``Swizzle(bits, base, shift)`` that can matter:

    - ``base >= log2(largest vector)``: a lower target field would split a vector;
    - ``base + bits <= log2(1024 / elem_bits)``, the elements of one 128-byte
      line (all 32 banks): target bits above the line never change a bank;
    - ``base + shift + bits <= log2(size)``: source bits above the span are 0;
    - and the swizzle keeps offsets inside the span, so it costs no memory.

    They are tried simplest first: fewer bits; then the 16-byte-chunk base
    ``log2(128 / elem_bits)`` (the unit of ``ldmatrix`` rows and of the widest
    access) before other bases; then smaller shifts, which draw on the lowest
    bits above the target field: the row bits, when rows fill whole lines.
    For 64x64 fp16 that finds ``Swizzle(3, 3, 3)``: the row's low 3 bits XORed
    into the 16-byte chunk index.

    Parameters
    ----------
    shape
        The tile's shape; every access's register layout must have it.
    elem_bits
        Bits per element.
    accesses
        ``(register layout, vector)`` pairs, as for :func:`bank_conflicts`, or
        ``(index table, vector)`` pairs: an integer array ``(threads, locals,
        rank)`` whose ``[t, i]`` is the tile index of thread ``t``'s local ``i``,
        as :meth:`RegisterLayout.table` gives it. A table describes what a
        layout cannot: a part of the tile (the part's table plus its offsets),
        or ``ldmatrix`` rows (each thread's 8 elements, ``vector`` 8).
    pad_ok
        Whether padding (which costs memory) may be used when no swizzle works.
    pad_first
        Try the paddings before the swizzles (implies ``pad_ok``): for a tile
        read in parts at fixed steps, where a padded row keeps each step an
        immediate offset from one address a thread computes once, and a
        swizzle costs an XOR a step (and a register for each address it keeps).

    Raises
    ------
    LayoutError
        If no candidate is conflict-free, naming the best one and its conflicts
        per access; or if an access is invalid on plain row-major storage.
    """
    plain = shared_row_major(*shape)
    accesses = list(accesses)
    if not accesses:
        raise LayoutError("choose_swizzle() needs at least one (layout, vector) access; got none")
    prepared = []
    for pair in accesses:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise LayoutError(
                f"each access must be a (RegisterLayout or index table, vector) pair; got {pair!r}"
            )
        who, vector = pair
        nbytes = _access_bytes(elem_bits, vector)
        if isinstance(who, RegisterLayout):
            _check_access(plain.shape, who, vector)
            table = who.table()
        else:
            table = _check_table(plain.shape, who, vector)
        prepared.append((table, vector, nbytes))

    def conflicts(shared: SharedLayout) -> list[int]:
        return [_cost(_gather(shared, t), elem_bits, v, b).conflicts for t, v, b in prepared]

    best = (plain, conflicts(plain))  # an access invalid on plain storage raises here
    if not any(best[1]):
        return plain
    swizzled: list[SharedLayout] = []
    for swizzle in _swizzle_candidates(elem_bits, max(v for _, v, _ in prepared), plain.size):
        try:
            swizzled.append(SharedLayout(plain.shape, plain.strides, swizzle))
        except LayoutError:
            continue  # the swizzle would leave the span
    tried = f"plain row-major and {len(swizzled)} swizzles"
    padded: list[SharedLayout] = []
    if pad_ok or pad_first:
        pads = range(1, max(1, 1024 // elem_bits) + 1)
        # rows that would misalign the widest access are never conflict-free candidates
        widest = max(v for _, v, _ in prepared)
        rows = len(shape) > 1 and shape[-2] > 1
        fits = [p for p in pads if not rows or (shape[-1] + p) % widest == 0]
        padded = [shared_row_major(*shape, pad=p) for p in fits]
        tried += f" and paddings of 1..{pads[-1]} elements"
    else:
        tried += " (padding not allowed)"
    candidates = padded + swizzled if pad_first else swizzled + padded
    for shared in candidates:
        try:
            cost = conflicts(shared)
        except LayoutError:
            continue  # splits a vector or misaligns an access
        if not any(cost):
            return shared
        if sum(cost) < sum(best[1]):
            best = (shared, cost)
    raise LayoutError(
        f"no row-major layout of shape {tuple(shape)} with {elem_bits}-bit elements makes every "
        f"access conflict-free after trying {tried}; the best, {best[0]}, still has conflicts "
        f"{best[1]} (one count per access)"
    )


__all__ = [
    "BankReport",
    "SharedLayout",
    "Swizzle",
    "bank_conflicts",
    "choose_swizzle",
    "shared_column_major",
    "shared_row_major",
    "shared_strided",
]
