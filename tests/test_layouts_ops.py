"""Shape operations on register layouts: concat, permute, reshape, reduce, broadcast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layout_testing import assert_function, layouts, same_rank_pair

from tilevm.errors import LayoutError
from tilevm.layouts.ops import broadcast, concat, flatten, permute, reduce, reshape
from tilevm.layouts.register import local, spatial

EXAMPLE = spatial(2, 4) * local(1, 2)  # the ops module docstring's example


@settings(max_examples=150, deadline=None)
@given(same_rank_pair())
def test_concat_places_the_tiles_in_separate_dimensions(pair):
    a, b = pair
    c = concat(a, b)
    assert c.shape == a.shape + b.shape

    def expected(t, v):
        ta, tb = divmod(t, b.num_threads)
        la, lb = divmod(v, b.local_size)
        return a(ta, la) + b(tb, lb)

    assert_function(c, expected)


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_permute_reorders_coordinates_and_keeps_threads_and_registers(layout, data):
    dims = data.draw(st.permutations(range(layout.rank)))
    p = permute(layout, dims)
    assert_function(p, lambda t, v: tuple(layout(t, v)[d] for d in dims))
    assert permute(p, np.argsort(dims).tolist()) == layout


def test_permute_rejects_a_non_permutation():
    with pytest.raises(LayoutError, match=r"dims must order 0\.\.1; got \(0, 0\)"):
        permute(EXAMPLE, (0, 0))


def row_major(index, shape):
    return int(np.ravel_multi_index(index, shape))


@settings(max_examples=200, deadline=None)
@given(layouts(), st.data())
def test_reshape_keeps_every_element_at_its_row_major_position(layout, data):
    size = layout.size
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    first = data.draw(st.sampled_from(divisors))
    shape = (first, size // first)
    try:
        r = reshape(layout, shape)
    except LayoutError as err:
        assert "cannot be split" in str(err)
        return
    assert_function(
        r, lambda t, v: tuple(np.unravel_index(row_major(layout(t, v), layout.shape), shape))
    )
    assert reshape(r, layout.shape) == layout


def test_reshape_examples_from_the_docstring():
    assert_function(reshape(EXAMPLE, (16,)), lambda t, v: (8 * (t // 4) + 2 * (t % 4) + v,))
    r = reshape(EXAMPLE, (4, 4))
    for t in range(8):
        for v in range(2):
            i, j = EXAMPLE(t, v)
            assert r(t, v) == (i * 2 + j // 4, j % 4)
    assert flatten(EXAMPLE) == reshape(EXAMPLE, (16,))


def test_reshape_that_would_split_a_mode_unevenly_is_an_error():
    with pytest.raises(LayoutError, match="mode of extent 3 at weight 1 that cannot be split"):
        reshape(spatial(2, 3), (3, 2))
    with pytest.raises(LayoutError, match=r"shape \(5,\) has 5 elements, the layout 6"):
        reshape(spatial(2, 3), (5,))


@settings(max_examples=200, deadline=None)
@given(layouts(), st.data())
def test_reduce_turns_spatial_modes_into_replication_and_drops_local_ones(layout, data):
    dims = data.draw(st.lists(st.integers(0, layout.rank - 1), unique=True))
    r = reduce(layout, dims)
    assert r.num_threads == layout.num_threads
    assert r.shape == tuple(1 if d in dims else s for d, s in enumerate(layout.shape))
    kept_locals = layout.local_size // r.local_size
    assert layout.local_size % r.local_size == 0
    # every element a thread held maps to the reduced element it contributes to
    table = layout.table()
    for t in range(layout.num_threads):
        held = {
            tuple(0 if d in dims else i for d, i in enumerate(table[t, v]))
            for v in range(layout.local_size)
        }
        assert held == {r(t, v) for v in range(r.local_size)}
    assert kept_locals * r.local_size == layout.local_size
    assert reduce(layout, dims, keepdims=False).size == math.prod(r.shape)


def test_reduce_along_a_row_replicates_over_the_threads_of_the_row():
    r = reduce(EXAMPLE, [1])
    assert r.shape == (2, 1) and r.local_size == 1 and r.replication == 4
    assert r.owners((1, 0)) == [(4, 0), (5, 0), (6, 0), (7, 0)]
    assert reduce(EXAMPLE, [1], keepdims=False).shape == (2,)
    with pytest.raises(LayoutError, match=r"dims must lie in 0\.\.1; got \(2,\)"):
        reduce(EXAMPLE, [2])


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_broadcast_is_a_right_inverse_of_reduce(layout, data):
    dims = data.draw(st.lists(st.integers(0, layout.rank - 1), unique=True, min_size=1))
    reduced = reduce(layout, dims)
    widened = broadcast(reduced, layout.shape)
    assert widened.shape == layout.shape and widened.num_threads == layout.num_threads
    assert reduce(widened, dims) == reduced


def test_broadcast_gives_each_thread_all_copies_in_registers():
    b = broadcast(reduce(EXAMPLE, [1]), (2, 8))
    assert b.local_size == 8
    assert_function(b, lambda t, v: (t // 4, v))
    with pytest.raises(
        LayoutError, match=r"only extent-1 dimensions widen; got \(2, 8\) to \(4, 8\)"
    ):
        broadcast(EXAMPLE, (4, 8))
