"""Views of register bits under another bit width, and pre-packed byte layouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilevm
from tilevm.errors import LayoutError
from tilevm.layouts.fragments import mma_m16n8k16_a, mma_m16n8k16_b
from tilevm.layouts.register import local, spatial
from tilevm.layouts.view import (
    Piece,
    check_view,
    check_view_legal,
    pack_for_layout,
    packed_byte_layout,
    view_layout,
    view_moves,
)


def test_three_bytes_read_as_eight_3_bit_values_follow_the_docstring_table():
    moves = view_moves(local(3), 8, local(8), 3)
    assert moves[(0,)] == (Piece((0,), 0, 0, 3),)
    assert moves[(2,)] == (Piece((0,), 6, 0, 2), Piece((1,), 0, 2, 1))
    assert moves[(7,)] == (Piece((2,), 5, 0, 3),)
    check_view(local(3), 8, local(8), 3)


def test_a_view_must_keep_threads_and_bits_per_thread():
    with pytest.raises(LayoutError, match=r"a view keeps the threads: .* has 4, .* has 2"):
        check_view_legal(spatial(4), 8, spatial(2), 8)
    with pytest.raises(LayoutError, match=r"2 x 8 bits = 16 in .* but 5 x 3 bits = 15"):
        check_view_legal(local(2), 8, local(5), 3)


@pytest.mark.parametrize(
    ("src_bits", "dst_bits"), [(8, 4), (8, 2), (8, 1), (4, 8), (8, 16), (16, 8)]
)
def test_view_layout_rescales_the_innermost_run_and_is_faithful(src_bits, dst_bits):
    layout = spatial(8, 4) * local(1, 4)  # four bytes per thread along a row
    viewed = view_layout(layout, src_bits, dst_bits)
    assert viewed.num_threads == layout.num_threads
    assert viewed.local_size * dst_bits == layout.local_size * src_bits
    check_view(layout, src_bits, viewed, dst_bits)


@pytest.mark.parametrize("nbits", [1, 2, 3, 5, 6, 7])
def test_any_width_views_a_run_of_nbits_bytes_as_eight_values(nbits):
    layout = spatial(4, 2) * local(1, nbits)  # nbits bytes hold 8 nbits-wide values
    viewed = view_layout(layout, 8, nbits)
    assert viewed == spatial(4, 2) * local(1, 8)
    check_view(layout, 8, viewed, nbits)


def test_view_layout_explains_when_no_faithful_view_exists():
    assert view_layout(local(4, 1) * spatial(1, 8), 8, 4) == local(4, 1) * spatial(1, 8) * local(
        1, 2
    )
    with pytest.raises(LayoutError, match=r"run .* has 1 element\(s\) \(4 bits\), which does not"):
        view_layout(local(4, 1) * spatial(1, 8), 4, 8)
    with pytest.raises(LayoutError, match=r"has 2 element\(s\) \(16 bits\), which does not split"):
        view_layout(local(3, 2), 8, 3)
    with pytest.raises(LayoutError, match="2 x 8 bits is not a multiple of 3"):
        view_layout(local(1, 2), 8, 3)


def test_a_wrong_pairing_of_layouts_is_caught_with_the_elements_it_moves():
    # Bytes laid out along rows, read as nibbles laid out along columns: legal, but scrambled.
    src = spatial(8, 4) * local(1, 2)
    wrong = spatial(8, 4) * local(2, 2)  # 4 nibbles per thread, but 2 rows x 2 cols
    check_view_legal(src, 8, wrong, 4)
    with pytest.raises(
        LayoutError, match=r"moves elements:\n  element \(0, 2\) would take"
    ) as info:
        check_view(src, 8, wrong, 4)
    assert (
        "element (0, 2) would take bits 0..3 of source (0, 2); a row-major reinterpretation "
        "needs 4 bits from bit 0 of source (0, 1)"
    ) in str(info.value)


def test_replicated_views_must_agree_between_replicas():
    src = spatial(2) * local(2)
    dst = spatial(1).replicate(2) * local(2)  # both threads claim to hold the same elements
    with pytest.raises(LayoutError, match="replicating element"):
        view_moves(src, 8, dst, 8)


@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize(
    "target",
    [
        local(4, 1) * mma_m16n8k16_b(),  # a 64 x 8 weight tile in mma B fragments
        local(1, 2) * mma_m16n8k16_a(),  # weights as the A operand
        spatial(4, 8) * local(2, 4),
    ],
    ids=["mma_b", "mma_a", "plain"],
)
def test_prepacked_bytes_give_every_thread_its_target_codes(target, nbits):
    rng = np.random.default_rng(nbits)
    codes = rng.integers(0, 1 << nbits, target.shape)
    data = pack_for_layout(codes, target, nbits)
    byte_layout = packed_byte_layout(target, nbits)
    assert data.dtype == np.uint8 and data.shape == byte_layout.shape
    check_view_legal(byte_layout, 8, target, nbits)
    # Simulate the kernel: each thread loads its bytes and reinterprets them as nbits codes.
    byte_table = byte_layout.table()[..., 0]
    table = target.table()
    for t in range(target.num_threads):
        mine = tilevm.unpack(data[byte_table[t]], nbits, target.local_size)
        np.testing.assert_array_equal(mine, codes[tuple(table[t].T)])


def test_prepacked_threads_load_16_byte_runs_that_coalesce():
    target = local(4, 1) * mma_m16n8k16_b()  # 16 halves per thread -> 6 bytes at 3 bits
    layout = packed_byte_layout(target, 4)  # 16 nibbles = 8 bytes per thread
    assert layout == local(1).spatial(32).local(8)
    wide = packed_byte_layout(local(16, 1) * mma_m16n8k16_b(), 4)  # 32 bytes per thread
    table = wide.table()[..., 0]
    assert (
        table[:, 16:] - table[:, :16] == 32 * 16
    ).all()  # second run after the whole warp's first
    assert (np.diff(table[:, :16], axis=1) == 1).all()


def test_prepacking_rejects_replicated_targets_and_partial_bytes():
    with pytest.raises(LayoutError, match="must not be replicated"):
        packed_byte_layout(spatial(4).replicate(2), 8)
    with pytest.raises(LayoutError, match=r"holds 2 x 3 = 6 bits, not a whole number of bytes"):
        packed_byte_layout(spatial(4) * local(2), 3)
    with pytest.raises(LayoutError, match=r"codes must have shape \(4, 2\); got \(2, 4\)"):
        pack_for_layout(np.zeros((2, 4), np.int64), spatial(4, 1) * local(1, 2), 4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4, 8]))
def test_view_round_trips_between_bytes_and_nbits(nbits, threads, runs):
    layout = spatial(threads, 1) * local(runs, nbits)
    there = view_layout(layout, 8, nbits)
    back = view_layout(there, nbits, 8)
    assert back == layout
