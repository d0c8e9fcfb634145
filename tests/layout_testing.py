"""Shared helpers for layout tests: whole-domain post-condition checks and random layouts."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import strategies as st

from tilevm.layouts.register import RegisterLayout


def assert_function(layout: RegisterLayout, expected: Callable[[int, int], tuple[int, ...]]):
    """Check ``layout(t, l) == expected(t, l)`` for every thread and register, and the table."""
    table = layout.table()
    for t, v in itertools.product(range(layout.num_threads), range(layout.local_size)):
        want = tuple(expected(t, v))
        assert layout(t, v) == want, f"{layout}: ({t}, {v}) -> {layout(t, v)}, expected {want}"
        assert tuple(table[t, v]) == want


def grid_of(layout: RegisterLayout) -> str:
    """A rank-2 layout as 'lane:register' cells, the way the PTX ISA's fragment figures draw it."""
    rows, cols = layout.shape
    cells = [["" for _ in range(cols)] for _ in range(rows)]
    for t, v in itertools.product(range(layout.num_threads), range(layout.local_size)):
        r, c = layout(t, v)
        cells[r][c] = f"{t}:{v}"
    return "\n".join(" ".join(f"{x:>5}" for x in row) for row in cells)


@st.composite
def layouts(draw, rank: int | None = None, max_modes: int = 2, extents=(1, 2, 3, 4)):
    """Random small register layouts: modes per dimension, spatial/local split, replication."""
    rank = draw(st.integers(1, 3)) if rank is None else rank
    mode_shape: list[int] = []
    shape = []
    for _ in range(rank):
        modes = draw(st.lists(st.sampled_from(extents), min_size=0, max_size=max_modes))
        mode_shape += modes
        size = 1
        for m in modes:
            size *= m
        shape.append(size)
    ids = list(range(len(mode_shape)))
    is_spatial = [draw(st.booleans()) for _ in ids]
    spatial = draw(st.permutations([m for m in ids if is_spatial[m]]))
    local = draw(st.permutations([m for m in ids if not is_spatial[m]]))
    spatial = list(spatial)
    for _ in range(draw(st.integers(0, 1))):
        spatial.insert(draw(st.integers(0, len(spatial))), -draw(st.sampled_from([2, 3])))
    return RegisterLayout(tuple(shape), tuple(mode_shape), tuple(spatial), tuple(local))


def same_rank_pair(rank: int | None = None):
    r = st.integers(1, 3) if rank is None else st.just(rank)
    return r.flatmap(lambda k: st.tuples(layouts(rank=k), layouts(rank=k)))
