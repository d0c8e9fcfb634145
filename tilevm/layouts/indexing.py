"""Index arithmetic for per-thread code: where a thread's registers sit in a tile.

A register layout spells the thread id and the register index in mixed radix
(:mod:`tilevm.layouts.register`). Every mode's digit comes either from the
thread id or from the register index, never from both, so the logical index
along a dimension is a sum of two parts::

    index_d(t, l) = thread_part_d(t) + local_part_d(l)

Each part is a :class:`DigitSum`: a sum of digits ``((x / stride) % extent) *
weight``. The generated kernel computes the thread parts once per layout from
``threadIdx.x``; the local parts are compile-time constants of the unrolled
register loops.

Worked example: ``spatial(4, 32) * local(1, 4)`` (softmax's 4 x 128 tile on
128 threads). Modes: m0 = 4 (rows), m1 = 32 and m2 = 4 (columns); threads
spell (m0, m1), registers (m2).

=========  ============================  =====================
dimension  thread part (t < 128)         local part (l < 4)
=========  ============================  =====================
0          ``t >> 5``                    0
1          ``(t & 31) * 4``              ``l``
=========  ============================  =====================

Thread 37 holds row 1, columns 20..23. A layout with fewer threads than the
block repeats over the extra threads (thread t acts as ``t % num_threads``),
so they compute copies and stores must skip them; replicated layouts have
several threads per element, and :func:`replica_terms` gives the digits that
must all be zero for the one thread that stores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .register import RegisterLayout, mode_weights


@dataclass(frozen=True, slots=True)
class Term:
    """One digit of a number x, scaled: ``((x // stride) % extent) * weight``."""

    stride: int
    extent: int
    weight: int

    def __call__(self, x):
        return ((x // self.stride) % self.extent) * self.weight

    def render(self, var: str, limit: int) -> str:
        """C text of the term for ``0 <= var < limit`` (``var`` an ``int``); ``"0"`` when it is 0.

        The text is safe as an operand of ``+`` (a shift or mask is parenthesised).
        """
        if self.weight == 0 or self.extent == 1 or self.stride >= limit:
            return "0"
        core, loose = var, False  # loose: a top-level operator binding looser than '+'
        if self.stride > 1:
            if _pow2(self.stride):
                core, loose = f"{var} >> {_log2(self.stride)}", True
            else:
                core = f"{var} / {self.stride}"
        if self.stride * self.extent < limit:
            inner = f"({core})" if loose else core
            if _pow2(self.extent):
                core, loose = f"{inner} & {self.extent - 1}", True
            else:
                core, loose = f"{inner} % {self.extent}", False
        if self.weight != 1:
            return f"({core}) * {self.weight}" if loose else f"{core} * {self.weight}"
        return f"({core})" if loose else core


@dataclass(frozen=True, slots=True)
class DigitSum:
    """``f(x) = const + sum(term(x) for term in terms)``: a digit-additive function of x."""

    terms: tuple[Term, ...]
    const: int = 0

    def __call__(self, x):
        total = x * 0 + self.const
        for term in self.terms:
            total = total + term(x)
        return total

    def render(self, var: str, limit: int, *, standalone: bool = False) -> str:
        """C text of f for ``0 <= var < limit``: terms that are always 0 are left out.

        The text is safe as an operand of ``+``; ``standalone`` drops the
        parentheses of a lone shift or mask (for the right side of ``=``).
        """
        parts = [p for p in (t.render(var, limit) for t in self.terms) if p != "0"]
        if self.const or not parts:
            parts.append(str(self.const))
        if standalone and len(parts) == 1 and parts[0].startswith("(") and parts[0].endswith(")"):
            inner = parts[0][1:-1]
            if _balanced(inner):
                return inner
        return " + ".join(parts)

    def is_zero(self, limit: int) -> bool:
        return self.render("x", limit) == "0"

    def divisor(self) -> int:
        """The largest integer known to divide every value (0 when f is identically 0)."""
        g = abs(self.const)
        for t in self.terms:
            if t.extent > 1:
                g = math.gcd(g, abs(t.weight))
        return g


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _entry_extent(layout: RegisterLayout, entry: int) -> int:
    return -entry if entry < 0 else layout.mode_shape[entry]


def _entry_strides(layout: RegisterLayout, entries: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for entry in reversed(entries):
        strides.append(acc)
        acc *= _entry_extent(layout, entry)
    return strides[::-1]


def _parts(layout: RegisterLayout, entries: Sequence[int]) -> tuple[DigitSum, ...]:
    dims, weights = layout._mode_dims(), mode_weights(layout)
    terms: list[list[Term]] = [[] for _ in layout.shape]
    for entry, stride in zip(entries, _entry_strides(layout, entries)):
        if entry >= 0:
            terms[dims[entry]].append(Term(stride, layout.mode_shape[entry], weights[entry]))
    return tuple(DigitSum(tuple(t)) for t in terms)


def thread_parts(layout: RegisterLayout) -> tuple[DigitSum, ...]:
    """Per dimension, the index part that comes from the thread id."""
    return _parts(layout, layout.spatial_modes)


def local_parts(layout: RegisterLayout) -> tuple[DigitSum, ...]:
    """Per dimension, the index part that comes from the register index."""
    return _parts(layout, layout.local_modes)


def replica_terms(layout: RegisterLayout) -> tuple[Term, ...]:
    """The replication digits of the thread id (weight 1): one owner has them all zero."""
    strides = _entry_strides(layout, layout.spatial_modes)
    return tuple(
        Term(stride, -entry, 1) for entry, stride in zip(layout.spatial_modes, strides) if entry < 0
    )


def local_radices(layout: RegisterLayout) -> tuple[tuple[int, int], ...]:
    """``(stride, extent)`` of every register digit, most significant first."""
    entries = layout.local_modes
    strides = _entry_strides(layout, entries)
    return tuple((s, layout.mode_shape[e]) for e, s in zip(entries, strides))


def index_of(layout: RegisterLayout, thread, local) -> tuple:
    """The logical index by the digit sums (ints or numpy arrays), as ``layout.table()`` has it."""
    threads = np.asarray(thread) % layout.num_threads
    parts = zip(thread_parts(layout), local_parts(layout))
    return tuple(tp(threads) + lp(local) for tp, lp in parts)


# -- fitting digit sums to tables ------------------------------------------------------------------
def _bits(radices: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Radices with power-of-two extents split into single bits (finer digits fit more maps)."""
    out = []
    for stride, extent in radices:
        if _pow2(extent):
            out.extend((stride << b, 2) for b in reversed(range(_log2(extent))))
        else:
            out.append((stride, extent))
    return out


def fit_digit_sum(values: Sequence[int], radices: Sequence[tuple[int, int]]) -> DigitSum | None:
    """A :class:`DigitSum` f over the digits ``radices`` with ``f(x) == values[x]``, or ``None``.

    ``radices`` are ``(stride, extent)`` pairs spelling every x in
    ``0 .. len(values) - 1`` in mixed radix. Adjacent digits whose weights
    continue each other merge into one term, so the text stays short.
    """
    values = [int(v) for v in values]
    n = len(values)
    assert math.prod(e for _, e in radices) == n, (radices, n)
    const = values[0]
    digits = sorted(_bits(radices), reverse=True)  # most significant first
    terms = [Term(s, e, values[s] - const if s < n else 0) for s, e in digits]
    f = DigitSum(tuple(terms), const)
    x = np.arange(n)
    if not np.array_equal(f(x), np.asarray(values)):
        return None
    return DigitSum(_merge(terms), const)


def _merge(terms: list[Term]) -> tuple[Term, ...]:
    """Merge a term into its more significant neighbour when they form one wider digit."""
    out: list[Term] = []
    for t in reversed(terms):  # least significant first
        if t.weight == 0 or t.extent == 1:
            continue
        if out:
            low = out[-1]
            if low.stride * low.extent == t.stride and t.weight == low.weight * low.extent:
                out[-1] = Term(low.stride, low.extent * t.extent, low.weight)
                continue
        out.append(t)
    return tuple(reversed(out))


# -- registers that hold the same element ----------------------------------------------------------
def local_map(
    dst: RegisterLayout,
    src: RegisterLayout,
    block_threads: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[int] | None:
    """For each register l of ``dst``, the register of ``src`` that holds the element it needs.

    Element ``i`` of ``dst`` needs element ``transform(i)`` of ``src`` (the
    same index when ``transform`` is ``None``); ``transform`` maps an int array
    ``(..., dst.rank)`` to ``(..., src.rank)``. The answer must be the same
    register in every thread of the block (threads past a layout's thread count
    act as ``t % num_threads``); ``None`` when some thread does not hold what it
    needs (the data must move between threads).
    """
    t = np.arange(block_threads)
    dst_index = dst.table()[t % dst.num_threads]
    src_index = src.table()[t % src.num_threads]
    want = dst_index if transform is None else transform(dst_index)
    src_flat = np.ravel_multi_index(np.moveaxis(src_index, -1, 0), src.shape)
    want_flat = np.ravel_multi_index(np.moveaxis(want, -1, 0), src.shape)
    # held[l, j]: register j of src holds what register l of dst needs, in every thread.
    held = (src_flat[:, None, :] == want_flat[:, :, None]).all(axis=0)
    found = held.argmax(axis=1)
    if not held[np.arange(dst.local_size), found].all():
        return None
    return [int(j) for j in found]


def broadcast_transform(dst_shape: Sequence[int], src_shape: Sequence[int]):
    """The index map of numpy broadcasting: ``src`` aligned right, its extent-1 dims pinned to 0."""
    offset = len(dst_shape) - len(src_shape)

    def transform(index: np.ndarray) -> np.ndarray:
        cols = [
            np.zeros(index.shape[:-1], np.int64) if n == 1 else index[..., offset + d]
            for d, n in enumerate(src_shape)
        ]
        return np.stack(cols, axis=-1)

    return transform


def reshape_transform(dst_shape: Sequence[int], src_shape: Sequence[int]):
    """The index map of a row-major reshape from ``src_shape`` to ``dst_shape``."""

    def transform(index: np.ndarray) -> np.ndarray:
        flat = np.ravel_multi_index(np.moveaxis(index, -1, 0), tuple(dst_shape))
        return np.stack(np.unravel_index(flat, tuple(src_shape)), axis=-1)

    return transform


__all__ = [
    "DigitSum",
    "Term",
    "broadcast_transform",
    "fit_digit_sum",
    "index_of",
    "local_map",
    "local_parts",
    "local_radices",
    "replica_terms",
    "reshape_transform",
    "thread_parts",
]
