"""Register layouts: primitives, product, division, canonical form, owners, and their laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from layout_testing import assert_function, layouts, same_rank_pair

from tilevm.errors import LayoutError
from tilevm.layouts.register import (
    RegisterLayout,
    column_local,
    column_spatial,
    divide,
    left_divide,
    local,
    product,
    replicate,
    spatial,
)

# -- primitives ----------------------------------------------------------------------------------


def test_local_puts_the_whole_tile_in_one_thread_row_major():
    layout = local(2, 3)
    assert (layout.shape, layout.num_threads, layout.local_size) == ((2, 3), 1, 6)
    assert_function(layout, lambda t, v: (v // 3, v % 3))


def test_column_local_orders_registers_with_dimension_0_fastest():
    assert_function(column_local(2, 3), lambda t, v: (v % 2, v // 2))


def test_spatial_gives_each_thread_one_element_row_major():
    layout = spatial(4, 8)
    assert (layout.num_threads, layout.local_size) == (32, 1)
    assert_function(layout, lambda t, v: (t // 8, t % 8))


def test_column_spatial_orders_threads_with_dimension_0_fastest():
    assert_function(column_spatial(4, 8), lambda t, v: (t % 4, t // 4))


def test_replicate_gives_every_thread_the_single_element():
    layout = replicate(4, rank=2)
    assert (layout.shape, layout.num_threads, layout.replication) == ((1, 1), 4, 4)
    assert layout.owners((0, 0)) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_the_module_docstring_example_holds():
    layout = spatial(2, 2) * local(1, 2)
    assert_function(layout, lambda t, v: (t // 2, 2 * (t % 2) + v))
    assert layout.owners((1, 3)) == [(3, 1)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: local(0, 2), r"local\(\) shape must be ints >= 1; got \(0, 2\)"),
        (lambda: spatial(), r"spatial\(\) needs at least one dimension"),
        (lambda: spatial(2.0), r"got \(2\.0,\)"),
        (lambda: replicate(0), r"replicate\(\) copies must be ints >= 1; got \(0,\)"),
        (lambda: RegisterLayout((4,), (2,), (0,), ()), r"does not factor shape \(4,\)"),
        (lambda: RegisterLayout((4,), (2, 2), (0,), (0,)), r"spatial or local exactly once"),
        (lambda: RegisterLayout((2,), (2,), (), (-2, 0)), r"local_modes cannot hold replications"),
    ],
)
def test_malformed_layouts_are_rejected_with_the_offending_values(call, message):
    with pytest.raises(LayoutError, match=message):
        call()


def test_calls_outside_the_domain_are_rejected():
    layout = spatial(2) * local(2)
    with pytest.raises(LayoutError, match=r"thread must lie in 0\.\.1; got 2"):
        layout(2, 0)
    with pytest.raises(LayoutError, match=r"local must lie in 0\.\.1; got -1"):
        layout(0, -1)
    with pytest.raises(LayoutError, match=r"shape \(4,\); got \(4,\)"):
        layout.owners((4,))


# -- product -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(same_rank_pair())
@example((spatial(2, 2), local(1, 2)))
def test_product_repeats_b_in_a_pattern_with_b_fastest(pair):
    a, b = pair
    c = a * b
    assert c.shape == tuple(x * y for x, y in zip(a.shape, b.shape))
    assert (c.num_threads, c.local_size) == (
        a.num_threads * b.num_threads,
        a.local_size * b.local_size,
    )

    def expected(t, v):
        ta, tb = divmod(t, b.num_threads)
        la, lb = divmod(v, b.local_size)
        return tuple(i * s + j for i, j, s in zip(a(ta, la), b(tb, lb), b.shape))

    assert_function(c, expected)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 2).flatmap(lambda r: st.tuples(*(layouts(rank=r) for _ in range(3)))))
def test_product_is_associative(triple):
    a, b, c = triple
    assert (a * b) * c == a * (b * c)


def test_product_is_not_commutative():
    assert spatial(2) * local(2) != local(2) * spatial(2)


def test_product_of_different_ranks_is_an_error_naming_both():
    with pytest.raises(
        LayoutError, match=r"same rank; got RegisterLayout\(shape=\[2\].*shape=\[2, 2\]"
    ):
        product(spatial(2), local(2, 2))


def test_fluent_forms_are_the_product():
    assert local(2, 1).spatial(8, 4).local(1, 2) == local(2, 1) * spatial(8, 4) * local(1, 2)
    assert spatial(4).replicate(2) == spatial(4) * replicate(2)
    assert local(2).column_spatial(3) == local(2) * column_spatial(3)


# -- canonical form ------------------------------------------------------------------------------


def test_equal_functions_written_differently_are_equal_and_hash_alike():
    pairs = [
        (spatial(4, 1) * spatial(2, 1), spatial(8, 1)),
        (local(2) * local(3), local(6)),
        (replicate(2) * replicate(3), replicate(6)),
        (spatial(2, 3) * local(1, 1), spatial(2, 3)),
        (RegisterLayout((6,), (2, 3), (0, 1), ()), spatial(6)),
    ]
    for a, b in pairs:
        assert a == b and hash(a) == hash(b), (str(a), str(b))
    assert len({spatial(8), spatial(2) * spatial(4), spatial(4) * spatial(2)}) == 1


@settings(max_examples=300, deadline=None)
@given(layouts(), st.data())
def test_splitting_a_mode_keeps_the_layout_equal(layout, data):
    splittable = [m for m, e in enumerate(layout.mode_shape) if e in (4, 6, 8, 9, 12, 16)]
    if not splittable:
        return
    m = data.draw(st.sampled_from(splittable))
    e = layout.mode_shape[m]
    low = data.draw(st.sampled_from([d for d in range(2, e) if e % d == 0]))
    mode_shape = layout.mode_shape[:m] + (e // low, low) + layout.mode_shape[m + 1 :]

    def renumber(entries):
        out = []
        for x in entries:
            if x < 0 or x < m:
                out.append(x)
            elif x == m:
                out += [m, m + 1]
            else:
                out.append(x + 1)
        return tuple(out)

    split = RegisterLayout(
        layout.shape, mode_shape, renumber(layout.spatial_modes), renumber(layout.local_modes)
    )
    assert split == layout and hash(split) == hash(layout)
    np.testing.assert_array_equal(split.table(), layout.table())


@settings(max_examples=300, deadline=None)
@given(same_rank_pair())
def test_layouts_are_equal_exactly_when_their_functions_are(pair):
    a, b = pair
    same_function = (a.shape, a.num_threads, a.local_size) == (
        b.shape,
        b.num_threads,
        b.local_size,
    ) and (np.array_equal(a.table(), b.table()))
    assert (a == b) == same_function


def test_layouts_are_immutable():
    with pytest.raises(AttributeError):
        spatial(2).shape = (3,)


# -- owners --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_owners_inverts_the_function_and_every_element_has_replication_owners(layout):
    table = layout.table()
    for index in np.ndindex(*layout.shape):
        owners = layout.owners(index)
        assert len(owners) == layout.replication
        for t, v in owners:
            assert tuple(table[t, v]) == index
    assert layout.num_threads * layout.local_size == layout.size * layout.replication


# -- division ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(same_rank_pair())
@example((spatial(3), spatial(2)))
@example((spatial(2) * replicate(2), replicate(3) * local(2)))
def test_right_division_undoes_the_product(pair):
    a, b = pair
    assert (a * b) / b == a


@settings(max_examples=300, deadline=None)
@given(same_rank_pair())
def test_left_division_undoes_the_product(pair):
    a, b = pair
    assert left_divide(a, a * b) == b


def test_division_splits_merged_modes():
    c = local(2, 1) * spatial(8, 4) * local(1, 2)
    assert c / local(1, 2) == local(2, 1) * spatial(8, 4)
    assert c / (spatial(8, 4) * local(1, 2)) == local(2, 1)
    assert spatial(6) / spatial(2) == spatial(3)
    assert spatial(4).replicate(6) / replicate(2) == spatial(4).replicate(3)
    assert left_divide(local(2, 1), c) == spatial(8, 4) * local(1, 2)


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        (spatial(8, 4), local(1, 2), "the divisor has more thread or register factors"),
        (spatial(6), spatial(4), r"shape \(4,\) does not divide \(6,\)"),
        (spatial(2) * local(2), spatial(2), "is not where the dividend has it"),
        (spatial(4) * replicate(3), replicate(2), "replication by 2 does not line up"),
        (spatial(2, 3), spatial(2, 1), "is not where the dividend has it"),
        (spatial(2), spatial(2, 1), "same rank"),
    ],
)
def test_division_by_a_non_factor_says_why_and_names_both_layouts(a, b, reason):
    with pytest.raises(LayoutError, match=reason) as info:
        divide(a, b)
    assert str(b) in str(info.value)
    if "rank" not in reason:
        assert str(a) in str(info.value)


def test_operators_are_sugar_for_the_functions():
    a, b = spatial(2, 2), local(1, 2)
    assert a * b == product(a, b) and (a * b) / b == divide(a * b, b)


def test_sizes_are_products_of_the_modes():
    layout = local(2, 1) * spatial(8, 4) * local(1, 2) * replicate(2, rank=2)
    assert layout.num_threads == 64 and layout.local_size == 4 and layout.replication == 2
    assert layout.size == math.prod(layout.shape) == 128
