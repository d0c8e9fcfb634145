"""Global layouts: symbolic shapes and strides, known divisors, and vector access widths."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as st
from layout_testing import layouts

from tilevm.errors import LayoutError
from tilevm.layouts.global_layout import (
    AccessInfo,
    GlobalLayout,
    access_info,
    global_column_major,
    global_row_major,
    global_strided,
    known_divisor,
    size_symbol,
)
from tilevm.layouts.register import local, spatial

M, N, K = (size_symbol(name) for name in "MNK")
# Thread t holds row t // 8 and columns 8 * (t % 8) .. + 7 of a 16x64 tile.
ROWS_OF_8 = spatial(16, 8) * local(1, 8)


def info(contiguous: int, alignment: int, vector: int, elem_bits: int) -> AccessInfo:
    return AccessInfo(contiguous, alignment, vector, vector * elem_bits // 8)


# -- layouts and offsets -------------------------------------------------------------------------


def test_size_symbols_are_positive_integers():
    assert K.is_integer and K.is_positive
    assert size_symbol("K") == sympy.Symbol("K", integer=True, positive=True)


def test_global_layouts_are_hashable_values_equal_when_their_fields_are():
    a, b = GlobalLayout((M, K), (K, 1)), global_row_major(M, K)
    assert a == b and hash(a) == hash(b)
    assert a != global_column_major(M, K)


def test_row_major_strides_are_products_of_the_later_extents():
    assert global_row_major(M, N, K).strides == (N * K, K, 1)
    assert global_row_major(4, 5, 6).strides == (30, 6, 1)


def test_column_major_strides_are_products_of_the_earlier_extents():
    assert global_column_major(M, N, K).strides == (1, M, M * N)


def test_offset_is_symbolic_with_runtime_sizes_and_an_int_without():
    assert global_row_major(M, K).offset((2, 3)) == 2 * K + 3
    assert global_row_major(M, K).offset((M - 1, 0)) == M * K - K
    offset = global_row_major(4, 5).offset((1, 2))
    assert offset == 7 and isinstance(offset, int)


def test_sympy_integers_are_stored_as_ints():
    layout = global_strided((sympy.Integer(4), K), (K, sympy.Integer(1)))
    assert layout.shape == (4, K) and isinstance(layout.shape[0], int)
    assert layout == global_row_major(4, K)


def test_str_shows_the_symbols():
    assert str(global_row_major(M, K)) == "GlobalLayout(shape=[M, K], strides=[K, 1])"


@pytest.mark.parametrize(
    ("shape", "strides", "message"),
    [
        ((M, K), (K,), "one stride per dimension of a non-empty shape; got shape [M, K]"),
        ((4, 0), (1, 1), "GlobalLayout shape entries must be >= 1; got 0"),
        ((4, 4), (4, -1), "GlobalLayout strides must be >= 0; got -1"),
        ((4, 4), (-K, 1), "GlobalLayout strides must be >= 0; got -K"),
        ((4, "K"), (4, 1), "must be an int or a sympy expression; got 'K'"),
        ((4, K / 2), (4, 1), "must be an integer expression (make sizes with size_symbol()); got"),
        ((4, sympy.Symbol("x")), (4, 1), "must be an integer expression"),
    ],
)
def test_global_layout_entries_are_checked(shape, strides, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        global_strided(shape, strides)


def test_offset_needs_one_index_per_dimension():
    with pytest.raises(LayoutError, match=re.escape("index must have 2 entries; got [1]")):
        global_row_major(M, K).offset((1,))


# -- known divisors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "facts", "expected"),
    [
        (K * N + 4 * K, {K: 8}, 8),  # monomials contribute 8 and 32
        (3 * K**2, {K: 2}, 12),
        (6 * K + 9 * N, {K: 4, N: 2}, 6),  # gcd(24, 18)
        (K + 1, {K: 8}, 1),
        (K + 8, {K: 8}, 8),
        (K / 2, {K: 8}, 4),  # K = 8j, so K/2 = 4j
        (K / 2, {}, 1),  # K/2 alone might not be an integer: nothing beyond 1 is known
        (8 * sympy.floor(K / 4), {K: 8}, 8),  # an integer factor of unknown divisibility counts 1
        (K * N, {}, 1),
        ((K + 2) * (K - 2), {K: 4}, 4),  # K**2 - 4: 16 and 4
    ],
)
def test_known_divisor_is_the_gcd_of_what_each_monomial_is_known_to_be_divisible_by(
    expr, facts, expected
):
    assert known_divisor(expr, facts) == expected


def test_known_divisor_of_ints_is_their_absolute_value():
    assert known_divisor(12) == 12
    assert known_divisor(-12) == 12
    assert known_divisor(sympy.Integer(6)) == 6


def test_zero_is_divisible_by_everything_so_its_known_divisor_is_the_cap():
    assert known_divisor(0) == 2**31
    assert known_divisor(K - K) == 2**31
    assert known_divisor(0, cap=64) == 64
    assert known_divisor(3 * 2**40) == 2**31  # every answer is at most the cap


def test_known_divisor_checks_its_facts():
    with pytest.raises(LayoutError, match="divisibility keys must be sympy Symbols; got 'K'"):
        known_divisor(K, {"K": 8})
    with pytest.raises(LayoutError, match="divisibility of K must be an int >= 1; got 0"):
        known_divisor(K, {K: 0})


@settings(max_examples=200, deadline=None)
@given(
    coeffs=st.lists(st.integers(-12, 12), min_size=4, max_size=4),
    facts=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    values=st.tuples(st.integers(1, 9), st.integers(1, 9)),
)
@example(coeffs=[0, 4, 6, 0], facts=(8, 2), values=(1, 1))
def test_the_known_divisor_divides_every_value_the_facts_allow(coeffs, facts, values):
    a, b, c, d = coeffs
    expr = a + b * K + c * N * K + d * N**2
    divisor = known_divisor(expr, {K: facts[0], N: facts[1]})
    value = expr.subs({K: facts[0] * values[0], N: facts[1] * values[1]})
    assert int(value) % divisor == 0 or expr == 0


# -- access info ---------------------------------------------------------------------------------


def test_rows_of_8_fp16_with_k_a_multiple_of_8_load_16_bytes_at_once():
    # Run starts are r*K + 8*c: 8 | K makes them multiples of 8 elements, 16 bytes.
    got = access_info(global_row_major(M, K), ROWS_OF_8, 16, divisibility={K: 8})
    assert got == info(contiguous=8, alignment=16, vector=8, elem_bits=16)


def test_rows_of_8_fp16_with_k_only_even_load_4_bytes_at_once():
    got = access_info(global_row_major(M, K), ROWS_OF_8, 16, divisibility={K: 2})
    assert got == info(contiguous=8, alignment=4, vector=2, elem_bits=16)


def test_nothing_known_about_k_leaves_single_element_accesses():
    got = access_info(global_row_major(M, K), ROWS_OF_8, 16)
    assert got == info(contiguous=8, alignment=2, vector=1, elem_bits=16)


def test_a_column_major_tensor_read_along_rows_is_not_contiguous():
    got = access_info(global_column_major(M, K), ROWS_OF_8, 16, divisibility={M: 8, K: 8})
    assert got == info(contiguous=1, alignment=2, vector=1, elem_bits=16)


def test_a_stride_that_might_be_one_is_not_assumed_to_be():
    got = access_info(global_strided((M, K), (K, N)), ROWS_OF_8, 16, divisibility={K: 8})
    assert got.contiguous == 1


def test_int_strides_need_no_facts():
    got = access_info(global_row_major(64, 64), ROWS_OF_8, 16)
    assert got == info(contiguous=8, alignment=16, vector=8, elem_bits=16)


def test_the_base_alignment_and_max_bytes_bound_the_vector():
    layout = global_row_major(64, 64)
    assert access_info(layout, ROWS_OF_8, 16, base_alignment=4) == info(8, 4, 2, 16)
    assert access_info(layout, ROWS_OF_8, 16, max_bytes=8) == info(8, 16, 4, 16)


def test_contiguous_stops_at_the_jump_between_register_runs():
    # Thread t holds columns 4t..4t+3 and 16 + 4t..16 + 4t + 3.
    runs = local(1, 2) * spatial(1, 4) * local(1, 4)
    assert access_info(global_row_major(K, 32), runs, 32).contiguous == 4
    assert access_info(global_row_major(K, 32), spatial(1, 4) * local(1, 8), 32).contiguous == 8


def test_a_run_longer_than_the_widest_access_is_split_into_aligned_16_byte_accesses():
    got = access_info(
        global_row_major(M, K), spatial(8, 1) * local(1, 16), 16, divisibility={K: 16}
    )
    assert got == info(contiguous=16, alignment=16, vector=8, elem_bits=16)


def test_sub_byte_elements_vectorise_in_whole_bytes():
    got = access_info(global_row_major(M, K), ROWS_OF_8, 4, divisibility={K: 32})
    assert got == info(contiguous=8, alignment=4, vector=8, elem_bits=4)  # 8 nibbles, 4 bytes
    lone = access_info(global_column_major(M, K), ROWS_OF_8, 4, divisibility={M: 32})
    assert lone == info(contiguous=1, alignment=0, vector=0, elem_bits=4)  # starts mid-byte


def test_one_thread_at_the_origin_is_as_aligned_as_the_base_pointer():
    got = access_info(global_row_major(M, K), local(1, 4), 32, base_alignment=64, max_bytes=32)
    assert got == info(contiguous=4, alignment=64, vector=4, elem_bits=32)


def test_access_info_needs_a_register_layout_of_the_tensors_rank():
    with pytest.raises(
        LayoutError,
        match=re.escape("needs a register layout of the tensor's rank 2; got rank 1"),
    ):
        access_info(global_row_major(M, K), spatial(32) * local(8), 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_alignment": 12}, "base_alignment must be a power of two >= 1; got 12"),
        ({"max_bytes": 0}, "max_bytes must be a power of two >= 1; got 0"),
        ({"divisibility": {K: -2}}, "divisibility of K must be an int >= 1; got -2"),
    ],
)
def test_access_info_checks_its_parameters(kwargs, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        access_info(global_row_major(M, K), ROWS_OF_8, 16, **kwargs)


@settings(max_examples=150, deadline=None)
@given(
    layout=layouts(rank=2, max_modes=3, extents=(1, 2, 4)),
    elem_bits=st.sampled_from([4, 8, 16, 32]),
    column_major=st.booleans(),
    extra=st.integers(0, 3),
)
def test_every_vector_is_consecutive_and_aligned_to_its_size(
    layout, elem_bits, column_major, extra
):
    shape = (layout.shape[0] + extra, layout.shape[1] + extra)
    glayout = global_column_major(*shape) if column_major else global_row_major(*shape)
    got = access_info(glayout, layout, elem_bits, base_alignment=16)
    assert layout.local_size % got.contiguous == 0
    if got.vector == 0:
        return
    offsets = np.einsum("tld,d->tl", layout.table(), np.array(glayout.strides))
    groups = offsets.reshape(layout.num_threads, -1, got.vector)
    assert (groups == groups[:, :, :1] + np.arange(got.vector)).all()
    assert (groups[:, :, 0] * elem_bits % (8 * got.access_bytes) == 0).all()
    assert got.access_bytes in (1, 2, 4, 8, 16)
