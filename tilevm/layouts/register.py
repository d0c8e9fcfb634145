"""Register layouts: which thread holds which element of a tile, in which register.

A register layout is a function ``(thread, local) -> logical index``. Each
dimension of the tile is split into factors called *modes* (most significant
first); a logical index is the mixed-radix number of its modes' digits. Every
mode is either *spatial* (its digit comes from the thread id) or *local* (it
comes from the register index). The spatial entries, most significant first,
spell the thread id in mixed radix, and the local entries spell the register
index. A spatial entry may also be a *replication* ``-r``: r threads that hold
the same elements.

Worked example: ``spatial(2, 2) * local(1, 2)``, a 2x4 tile over 4 threads.

- Dimension 0 (extent 2) has one mode m0 = 2; dimension 1 (extent 4) has the
  modes m1 = 2 (from the spatial factor) and m2 = 2 (from the local factor).
- spatial entries: (m0, m1), so thread = 2*m0 + m1; local entries: (m2,).
- The element (i, j) is held by thread 2*i + j // 2 in register j % 2:

  ======  =========  =========  =========  =========
  row     col 0      col 1      col 2      col 3
  ======  =========  =========  =========  =========
  0       t0:r0      t0:r1      t1:r0      t1:r1
  1       t2:r0      t2:r1      t3:r0      t3:r1
  ======  =========  =========  =========  =========

The product ``A * B`` repeats B's tile in A's pattern: per dimension the index
is ``a_index * B.shape + b_index``, the thread ``a_thread * B.num_threads +
b_thread`` and the register ``a_local * B.local_size + b_local``, B fastest.
So its modes are A's then B's in every dimension, its spatial entries A's then
B's, and its local entries A's then B's.

Canonical form: modes of extent 1 and replications of 1 are dropped, and two
entries that are adjacent in the spatial or local list merge when both are
replications, or when both are consecutive modes of the same dimension (the
first one more significant). Two layouts with the same function then have the
same fields, so ``==`` and ``hash`` mean "same mapping".
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LayoutError


def _ints(values: Iterable[int], what: str, *, minimum: int = 1) -> tuple[int, ...]:
    out = tuple(values)
    for v in out:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
            raise LayoutError(f"{what} must be ints >= {minimum}; got {out}")
    return tuple(int(v) for v in out)


@dataclass(frozen=True, slots=True)
class RegisterLayout:
    """A map from (thread, register index) to a logical index of a tile; see the module docs.

    Fields are canonicalised on construction. Build layouts from the primitives
    (:func:`local`, :func:`spatial`, :func:`replicate`, ...) and operators rather
    than from fields.

    Parameters
    ----------
    shape
        The tile's logical shape.
    mode_shape
        The modes of dimension 0 (most significant first), then of dimension 1, ...
    spatial_modes
        Mode indices (``>= 0``) or replications (``-r``) whose digits spell the
        thread id, most significant first.
    local_modes
        Mode indices whose digits spell the register index, most significant first.
    """

    shape: tuple[int, ...]
    mode_shape: tuple[int, ...]
    spatial_modes: tuple[int, ...]
    local_modes: tuple[int, ...]

    def __post_init__(self) -> None:
        form = _Form.from_fields(self.shape, self.mode_shape, self.spatial_modes, self.local_modes)
        form.canonicalise()
        shape, mode_shape, spatial, local = form.fields()
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "mode_shape", mode_shape)
        object.__setattr__(self, "spatial_modes", spatial)
        object.__setattr__(self, "local_modes", local)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def num_threads(self) -> int:
        return math.prod(self._entry_extent(e) for e in self.spatial_modes)

    @property
    def local_size(self) -> int:
        return math.prod(self.mode_shape[m] for m in self.local_modes)

    @property
    def size(self) -> int:
        """Number of logical elements, ``prod(shape)``."""
        return math.prod(self.shape)

    @property
    def replication(self) -> int:
        """How many threads hold each element (1 when nothing is replicated)."""
        return math.prod(-e for e in self.spatial_modes if e < 0)

    def _entry_extent(self, entry: int) -> int:
        return -entry if entry < 0 else self.mode_shape[entry]

    def _mode_dims(self) -> tuple[int, ...]:
        return _mode_dims(self.shape, self.mode_shape)

    # -- the function --------------------------------------------------------------------------
    def __call__(self, thread: int, local: int) -> tuple[int, ...]:
        """The logical index held by ``thread`` in register ``local``."""
        if not 0 <= thread < self.num_threads:
            raise LayoutError(f"thread must lie in 0..{self.num_threads - 1}; got {thread}")
        if not 0 <= local < self.local_size:
            raise LayoutError(f"local must lie in 0..{self.local_size - 1}; got {local}")
        digits = [0] * len(self.mode_shape)
        for entries, number in ((self.spatial_modes, thread), (self.local_modes, local)):
            for entry in reversed(entries):
                extent = self._entry_extent(entry)
                if entry >= 0:
                    digits[entry] = number % extent
                number //= extent
        index = [0] * self.rank
        for mode, dim in enumerate(self._mode_dims()):
            index[dim] = index[dim] * self.mode_shape[mode] + digits[mode]
        return tuple(index)

    def table(self) -> np.ndarray:
        """The whole function as an int64 array of shape ``(num_threads, local_size, rank)``."""
        t = np.arange(self.num_threads)[:, None]
        v = np.arange(self.local_size)[None, :]
        digits = [np.zeros((1, 1), np.int64)] * len(self.mode_shape)
        for entries, number in ((self.spatial_modes, t), (self.local_modes, v)):
            for entry in reversed(entries):
                extent = self._entry_extent(entry)
                if entry >= 0:
                    digits[entry] = number % extent
                number = number // extent
        index = [np.zeros((1, 1), np.int64) for _ in self.shape]
        for mode, dim in enumerate(self._mode_dims()):
            index[dim] = index[dim] * self.mode_shape[mode] + digits[mode]
        out = np.zeros((self.num_threads, self.local_size, self.rank), np.int64)
        for dim in range(self.rank):
            out[:, :, dim] = index[dim]
        return out

    def owners(self, index: Sequence[int]) -> list[tuple[int, int]]:
        """Every ``(thread, local)`` that holds the element ``index`` (several when replicated)."""
        index = tuple(index)
        if len(index) != self.rank or not all(0 <= i < s for i, s in zip(index, self.shape)):
            raise LayoutError(f"index must lie in a tile of shape {self.shape}; got {index}")
        digits = [0] * len(self.mode_shape)
        dims = self._mode_dims()
        rest = list(index)
        for mode in reversed(range(len(self.mode_shape))):
            digits[mode] = rest[dims[mode]] % self.mode_shape[mode]
            rest[dims[mode]] //= self.mode_shape[mode]
        local = 0
        for entry in self.local_modes:
            local = local * self.mode_shape[entry] + digits[entry]
        threads = [0]
        for entry in self.spatial_modes:
            extent = self._entry_extent(entry)
            choices = range(extent) if entry < 0 else (digits[entry],)
            threads = [t * extent + c for t in threads for c in choices]
        return [(t, local) for t in threads]

    # -- sugar over the free functions ---------------------------------------------------------
    def __mul__(self, other: RegisterLayout) -> RegisterLayout:
        return product(self, other)

    def __truediv__(self, other: RegisterLayout) -> RegisterLayout:
        return divide(self, other)

    def spatial(self, *shape: int) -> RegisterLayout:
        return product(self, spatial(*shape))

    def column_spatial(self, *shape: int) -> RegisterLayout:
        return product(self, column_spatial(*shape))

    def local(self, *shape: int) -> RegisterLayout:
        return product(self, local(*shape))

    def column_local(self, *shape: int) -> RegisterLayout:
        return product(self, column_local(*shape))

    def replicate(self, copies: int) -> RegisterLayout:
        return product(self, replicate(copies, rank=self.rank))

    def __str__(self) -> str:
        def entry(e: int) -> str:
            return f"r{-e}" if e < 0 else f"m{e}"

        modes = ", ".join(f"m{i}={s}" for i, s in enumerate(self.mode_shape))
        return (
            f"RegisterLayout(shape={list(self.shape)}, modes=[{modes}], "
            f"threads=[{' '.join(entry(e) for e in self.spatial_modes)}] ({self.num_threads}), "
            f"locals=[{' '.join(entry(e) for e in self.local_modes)}] ({self.local_size}))"
        )


def _mode_dims(shape: tuple[int, ...], mode_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The dimension of every mode, walking the modes against the shape."""
    dims: list[int] = []
    mode = 0
    for dim, extent in enumerate(shape):
        covered = 1
        while covered < extent:
            covered *= mode_shape[mode]
            dims.append(dim)
            mode += 1
    return tuple(dims)


class _Form:
    """A mutable working copy of a layout: per-dimension mode lists, refined and matched freely.

    Modes are keys into ``extent``; ``dims[d]`` lists dimension d's modes most
    significant first. Spatial entries are mode keys or ``("r", count)`` tuples.
    """

    def __init__(self, shape, dims, extent, spatial, local):
        self.shape = list(shape)
        self.dims: list[list[int]] = dims
        self.extent: dict[int, int] = extent
        self.spatial: list = spatial
        self.local: list = local
        self._next = max(extent, default=-1) + 1

    @classmethod
    def of(cls, layout: RegisterLayout) -> _Form:
        return cls.from_fields(
            layout.shape, layout.mode_shape, layout.spatial_modes, layout.local_modes
        )

    @classmethod
    def from_fields(cls, shape, mode_shape, spatial_modes, local_modes) -> _Form:
        shape = _ints(shape, "shape")
        mode_shape = _ints(mode_shape, "mode_shape")
        spatial_modes = tuple(int(e) for e in spatial_modes)
        local_modes = tuple(int(e) for e in local_modes)
        dims: list[list[int]] = [[] for _ in shape]
        mode = 0
        for dim, size in enumerate(shape):
            covered = 1
            while covered < size and mode < len(mode_shape):
                covered *= mode_shape[mode]
                dims[dim].append(mode)
                mode += 1
            while covered == size and mode < len(mode_shape) and mode_shape[mode] == 1:
                dims[dim].append(mode)  # size-1 modes belong to the dimension before them
                mode += 1
            if covered != size:
                raise LayoutError(
                    f"mode_shape {mode_shape} does not factor shape {shape} (dimension {dim})"
                )
        if mode != len(mode_shape):
            raise LayoutError(f"mode_shape {mode_shape} has more modes than shape {shape} needs")
        if any(e < 0 for e in local_modes):
            raise LayoutError(f"local_modes cannot hold replications; got {local_modes}")
        used = [e for e in spatial_modes if e >= 0] + list(local_modes)
        if sorted(used) != list(range(len(mode_shape))):
            raise LayoutError(
                f"every mode must be spatial or local exactly once; got spatial {spatial_modes}, "
                f"local {local_modes} for {len(mode_shape)} modes"
            )
        extent = dict(enumerate(mode_shape))
        spatial = [("r", -e) if e < 0 else e for e in spatial_modes]
        return cls(shape, dims, extent, spatial, list(local_modes))

    def entry_extent(self, entry) -> int:
        return entry[1] if isinstance(entry, tuple) else self.extent[entry]

    def dim_of(self, mode: int) -> int:
        return next(d for d, modes in enumerate(self.dims) if mode in modes)

    # -- refinement ----------------------------------------------------------------------------
    def split(self, mode: int, high: int, low: int) -> tuple[int, int]:
        """Replace ``mode`` by two modes (high, low) wherever it appears."""
        assert high * low == self.extent[mode]
        hi, lo = self._next, self._next + 1
        self._next += 2
        self.extent[hi], self.extent[lo] = high, low
        del self.extent[mode]
        for seq in [*self.dims, self.spatial, self.local]:
            if mode in seq:
                at = seq.index(mode)
                seq[at : at + 1] = [hi, lo]
        return hi, lo

    def refine(self, dim: int, weight: int, context: str) -> None:
        """Make ``weight`` (counted from the least significant digit) a mode boundary of ``dim``."""
        covered = 1
        for mode in reversed(self.dims[dim]):
            e = self.extent[mode]
            if covered >= weight:
                return
            if covered * e > weight:
                if weight % covered or (covered * e) % weight:
                    raise LayoutError(
                        f"{context}: dimension {dim} has a mode of extent {e} at weight {covered} "
                        f"that cannot be split at weight {weight}"
                    )
                self.split(mode, covered * e // weight, weight // covered)
                return
            covered *= e
        if covered < weight:
            raise LayoutError(f"{context}: dimension {dim} is smaller than {weight}")

    def low_modes(self, dim: int, weight: int) -> list[int]:
        """The modes of ``dim`` below ``weight`` (a boundary), least significant first."""
        out, covered = [], 1
        for mode in reversed(self.dims[dim]):
            if covered >= weight:
                break
            out.append(mode)
            covered *= self.extent[mode]
        return out

    # -- canonical form ------------------------------------------------------------------------
    def canonicalise(self) -> None:
        unit = [m for m, e in self.extent.items() if e == 1]
        for m in unit:
            del self.extent[m]
        for seq in [*self.dims, self.local]:
            seq[:] = [m for m in seq if m not in unit]
        self.spatial = [
            e for e in self.spatial if not (e in unit or (isinstance(e, tuple) and e[1] == 1))
        ]
        changed = True
        while changed:
            changed = self._merge_once(self.spatial) or self._merge_once(self.local)

    def _merge_once(self, seq: list) -> bool:
        for i in range(len(seq) - 1):
            a, b = seq[i], seq[i + 1]
            if isinstance(a, tuple) and isinstance(b, tuple):
                seq[i : i + 2] = [("r", a[1] * b[1])]
                return True
            if isinstance(a, tuple) or isinstance(b, tuple):
                continue
            modes = self.dims[self.dim_of(a)]
            at = modes.index(a)
            if at + 1 < len(modes) and modes[at + 1] == b:
                self.extent[a] *= self.extent.pop(b)
                modes.remove(b)
                seq.pop(i + 1)
                return True
        return False

    def fields(self) -> tuple[tuple[int, ...], ...]:
        order = [m for modes in self.dims for m in modes]
        index = {m: i for i, m in enumerate(order)}
        spatial = tuple(-e[1] if isinstance(e, tuple) else index[e] for e in self.spatial)
        return (
            tuple(self.shape),
            tuple(self.extent[m] for m in order),
            spatial,
            tuple(index[m] for m in self.local),
        )

    def layout(self) -> RegisterLayout:
        return RegisterLayout(*self.fields())


# -- primitives ----------------------------------------------------------------------------------
def _primitive(shape: Sequence[int], *, spatial_kind: bool, column: bool, name: str):
    shape = _ints(shape, f"{name}() shape")
    if not shape:
        raise LayoutError(f"{name}() needs at least one dimension")
    order = tuple(reversed(range(len(shape)))) if column else tuple(range(len(shape)))
    if spatial_kind:
        return RegisterLayout(shape, shape, order, ())
    return RegisterLayout(shape, shape, (), order)


def local(*shape: int) -> RegisterLayout:
    """One thread holds the whole tile; registers in row-major order."""
    return _primitive(shape, spatial_kind=False, column=False, name="local")


def column_local(*shape: int) -> RegisterLayout:
    """One thread holds the whole tile; registers in column-major order (dimension 0 fastest)."""
    return _primitive(shape, spatial_kind=False, column=True, name="column_local")


def spatial(*shape: int) -> RegisterLayout:
    """Each thread holds one element; threads in row-major order."""
    return _primitive(shape, spatial_kind=True, column=False, name="spatial")


def column_spatial(*shape: int) -> RegisterLayout:
    """Each thread holds one element; threads in column-major order (dimension 0 fastest)."""
    return _primitive(shape, spatial_kind=True, column=True, name="column_spatial")


def replicate(copies: int, rank: int = 1) -> RegisterLayout:
    """``copies`` threads that all hold the single element of a tile of shape ``(1,) * rank``."""
    (copies,) = _ints([copies], "replicate() copies")
    (rank,) = _ints([rank], "replicate() rank")
    return RegisterLayout((1,) * rank, (), (-copies,), ())


# -- the algebra ---------------------------------------------------------------------------------
def mode_weights(layout: RegisterLayout) -> list[int]:
    """Per mode, the step of the logical index along its dimension per unit of its digit."""
    dims = layout._mode_dims()
    weights = [1] * len(layout.mode_shape)
    for m in range(len(layout.mode_shape)):
        for later in range(m + 1, len(layout.mode_shape)):
            if dims[later] == dims[m]:
                weights[m] *= layout.mode_shape[later]
    return weights


def _same_rank(a: RegisterLayout, b: RegisterLayout, op: str) -> None:
    if a.rank != b.rank:
        raise LayoutError(f"{op} needs layouts of the same rank; got {a} and {b}")


def product(a: RegisterLayout, b: RegisterLayout) -> RegisterLayout:
    """``a * b``: b's tile repeated in a's pattern.

    Post-condition: ``(a * b)(ta * b.num_threads + tb, la * b.local_size + lb) ==
    a(ta, la) * b.shape + b(tb, lb)`` per dimension, for every ta, la, tb, lb.
    """
    _same_rank(a, b, "product")
    n = len(a.mode_shape)
    a_dims, b_dims = a._mode_dims(), b._mode_dims()
    order = [(0, m) for m in range(n)] + [(1, m) for m in range(len(b.mode_shape))]
    dim_of = {(0, m): a_dims[m] for m in range(n)} | {
        (1, m): b_dims[m] for m in range(len(b.mode_shape))
    }
    order.sort(key=lambda key: (dim_of[key], key[0]))  # stable: each side keeps its order
    index = {key: i for i, key in enumerate(order)}
    extents = [a.mode_shape[m] if side == 0 else b.mode_shape[m] for side, m in order]

    def remap(entries: tuple[int, ...], side: int) -> list[int]:
        return [e if e < 0 else index[(side, e)] for e in entries]

    return RegisterLayout(
        tuple(x * y for x, y in zip(a.shape, b.shape)),
        tuple(extents),
        tuple(remap(a.spatial_modes, 0) + remap(b.spatial_modes, 1)),
        tuple(remap(a.local_modes, 0) + remap(b.local_modes, 1)),
    )


def _weights(form: _Form, dim: int) -> list[int]:
    """Cumulative extents of a dimension's modes from the least significant: its mode boundaries."""
    extents = [form.extent[m] for m in reversed(form.dims[dim])]
    return list(itertools.accumulate(extents, operator.mul))[:-1]


def _match(entries: list, other: _Form, other_entries: list, pair, side, context) -> list:
    """Remove the divisor's ``other_entries`` from the ``side`` end of ``entries``."""
    rest = list(entries)
    todo = list(other_entries)
    while todo:
        want = todo.pop() if side == "right" else todo.pop(0)
        if not rest:
            raise LayoutError(f"{context}: the divisor has more thread or register factors")
        have = rest[-1] if side == "right" else rest[0]
        at = len(rest) - 1 if side == "right" else 0
        if isinstance(want, tuple):
            if not isinstance(have, tuple) or have[1] % want[1]:
                raise LayoutError(f"{context}: replication by {want[1]} does not line up")
            left = have[1] // want[1]
            if left == 1:
                rest.pop(at)
            else:
                rest[at] = ("r", left)
        elif have != pair.get(want):
            raise LayoutError(
                f"{context}: the divisor's factor of extent {other.extent[want]} is not where "
                "the dividend has it in thread or register order"
            )
        else:
            rest.pop(at)
    return rest


def _divide(layout: RegisterLayout, divisor: RegisterLayout, side: str) -> RegisterLayout:
    op = "divide" if side == "right" else "left_divide"
    context = f"{op}({layout}, {divisor})"
    _same_rank(layout, divisor, op)
    for s, d in zip(layout.shape, divisor.shape):
        if s % d:
            raise LayoutError(f"{context}: shape {divisor.shape} does not divide {layout.shape}")
    f, g = _Form.of(layout), _Form.of(divisor)
    pair: dict[int, int] = {}
    for dim, (s, d) in enumerate(zip(layout.shape, divisor.shape)):
        # The divisor's digits sit below `base` (right) or at and above it (left).
        base = 1 if side == "right" else s // d
        f.refine(dim, base, context)
        f.refine(dim, base * d, context)
        for w in _weights(g, dim):
            f.refine(dim, base * w, context)
        for w in _weights(f, dim):
            if base < w < base * d:
                g.refine(dim, w // base, context)
        high = f.low_modes(dim, base * d)
        low = f.low_modes(dim, base)
        f_part = high[len(low) :]
        g_part = g.low_modes(dim, d)
        assert [f.extent[m] for m in f_part] == [g.extent[m] for m in g_part]
        pair.update(zip(g_part, f_part))
    spatial = _match(f.spatial, g, g.spatial, pair, side, context)
    local_rest = _match(f.local, g, g.local, pair, side, context)
    removed = set(pair.values())
    quotient_shape = [s // d for s, d in zip(layout.shape, divisor.shape)]
    dims = [[m for m in modes if m not in removed] for modes in f.dims]
    extent = {m: e for m, e in f.extent.items() if m not in removed}
    result = _Form(quotient_shape, dims, extent, spatial, local_rest).layout()
    check = product(result, divisor) if side == "right" else product(divisor, result)
    if check != layout:
        raise LayoutError(f"{context}: no layout q satisfies the division")
    return result


def divide(layout: RegisterLayout, divisor: RegisterLayout) -> RegisterLayout:
    """Right division ``layout / divisor``: the q with ``q * divisor == layout``.

    Raises :class:`LayoutError` naming both layouts when no such q exists.
    """
    return _divide(layout, divisor, "right")


def left_divide(divisor: RegisterLayout, layout: RegisterLayout) -> RegisterLayout:
    """Left division: the q with ``divisor * q == layout``; :class:`LayoutError` if none exists."""
    return _divide(layout, divisor, "left")
