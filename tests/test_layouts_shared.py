"""Shared layouts: swizzles, strided offsets, the bank-conflict model and the swizzle chooser."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from layout_testing import layouts

from tilevm.errors import LayoutError
from tilevm.layouts.register import column_spatial, local, replicate, spatial
from tilevm.layouts.shared import (
    SharedLayout,
    Swizzle,
    bank_conflicts,
    choose_swizzle,
    shared_column_major,
    shared_row_major,
    shared_strided,
)

# A 64x64 fp16 tile as a 128-thread block stores it (16 bytes per thread along rows) and as
# one warp reads it with ldmatrix.x4 (thread t gives row t % 16 of column chunk t // 16 of
# each 16x16 block).
STORE_64x64 = local(4, 1) * spatial(16, 8) * local(1, 8)
WARP_STORE_64x64 = local(16, 1) * spatial(4, 8) * local(1, 8)
LDMATRIX_64x64 = local(4, 4) * column_spatial(16, 2) * local(1, 8)

# -- Swizzle -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("swizzle", "offset", "expected"),
    [
        (Swizzle(3, 3, 3), 0, 0),
        (Swizzle(3, 3, 3), 7, 7),  # bits below base never change
        (Swizzle(3, 3, 3), 64, 72),  # row 1 of a 64-wide fp16 tile: chunk 0 -> chunk 1
        (Swizzle(3, 3, 3), 128, 144),  # row 2: chunk 0 -> chunk 2
        (Swizzle(3, 3, 3), 455, 511),  # row 7, element 7: chunk 0 -> chunk 7
        (Swizzle(3, 3, 3), 512, 512),  # row 8: source field 0 again
        (Swizzle(2, 3, 3), 192, 216),  # bits 6-7 = 3 XORed into bits 3-4
        (Swizzle(1, 0, 1), 2, 3),
        (Swizzle(1, 0, 1), 3, 2),
        (Swizzle(0, 0, 0), 12345, 12345),
    ],
)
def test_swizzle_xors_the_source_field_into_the_target_field(swizzle, offset, expected):
    assert swizzle(offset) == expected


def test_swizzle_acts_elementwise_on_numpy_arrays():
    offsets = np.array([0, 64, 128, 455])
    assert Swizzle(3, 3, 3)(offsets).tolist() == [0, 72, 144, 511]


@given(
    bits=st.integers(0, 4),
    base=st.integers(0, 4),
    extra=st.integers(0, 3),
    blocks=st.integers(1, 3),
)
@example(bits=3, base=3, extra=0, blocks=1)
def test_swizzle_is_its_own_inverse_and_permutes_every_aligned_block(bits, base, extra, blocks):
    swizzle = Swizzle(bits, base, bits + extra)
    n = blocks << (swizzle.base + swizzle.shift + swizzle.bits)
    offsets = np.arange(n)
    assert sorted(swizzle(offsets).tolist()) == offsets.tolist()
    assert (swizzle(swizzle(offsets)) == offsets).all()
    block = 1 << (swizzle.base + swizzle.bits)
    assert (swizzle(offsets) // block == offsets // block).all()


def test_swizzle_rejects_overlapping_source_and_target_fields():
    with pytest.raises(
        LayoutError,
        match=re.escape(
            "Swizzle needs shift >= bits so the source bits [5, 8) do not overlap the target "
            "bits [3, 6); got bits=3, base=3, shift=2"
        ),
    ):
        Swizzle(3, 3, 2)


@pytest.mark.parametrize("fields", [(-1, 0, 0), (1, -1, 1), (1, 0, 1.5), (True, 0, 1)])
def test_swizzle_fields_must_be_non_negative_ints(fields):
    with pytest.raises(LayoutError, match="Swizzle fields must be ints >= 0; got"):
        Swizzle(*fields)


def test_a_swizzle_of_no_bits_is_the_identity_and_equals_no_swizzle():
    assert Swizzle(0, 3, 5) == Swizzle(0, 0, 0)
    assert shared_row_major(8, 8).swizzled(0, 3, 3) == shared_row_major(8, 8)


# -- strided offsets -----------------------------------------------------------------------------


def test_row_major_puts_the_last_dimension_fastest():
    layout = shared_row_major(2, 3)
    assert layout.strides == (3, 1)
    assert layout.offsets().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert layout.size == 6


def test_row_major_padding_appends_unused_elements_to_every_row():
    layout = shared_row_major(2, 3, pad=2)
    assert layout.strides == (5, 1)
    assert layout.offsets().tolist() == [[0, 1, 2], [5, 6, 7]]
    assert layout.size == 8  # the last row's padding is not spanned
    assert shared_row_major(2, 2, 3, pad=1).strides == (8, 4, 1)
    assert shared_row_major(64, 64, pad=8).strides == (72, 1)


def test_column_major_puts_dimension_zero_fastest_and_pads_columns():
    assert shared_column_major(2, 3).offsets().tolist() == [[0, 2, 4], [1, 3, 5]]
    padded = shared_column_major(2, 3, pad=1)
    assert padded.strides == (1, 3)
    assert padded.offsets().tolist() == [[0, 3, 6], [1, 4, 7]]
    assert shared_column_major(2, 3, 4).strides == (1, 2, 6)


def test_strided_layout_with_column_major_strides_is_column_major():
    assert shared_strided((2, 3), (1, 2)) == shared_column_major(2, 3)


def test_offset_of_an_index_agrees_with_the_offsets_table():
    layout = shared_row_major(16, 64, pad=8).swizzled(2, 3, 4)
    table = layout.offsets()
    for index in np.ndindex(*layout.shape):
        assert layout.offset(index) == table[index]


def test_swizzled_offsets_are_the_swizzle_of_the_strided_offsets():
    layout = shared_row_major(64, 64).swizzled(3, 3, 3)
    assert layout.offset((1, 0)) == 72
    assert layout.offset((7, 3)) == 507  # 448 + 3 -> chunk 7
    assert sorted(layout.offsets().ravel().tolist()) == list(range(64 * 64))
    assert layout.size == 64 * 64


def test_a_dimension_of_extent_one_has_stride_zero_so_equal_layouts_are_equal_maps():
    assert shared_row_major(1, 8).strides == (0, 1)
    assert shared_row_major(1, 8) == shared_strided((1, 8), (5, 1))


def test_strides_that_send_two_elements_to_one_offset_are_rejected():
    with pytest.raises(
        LayoutError,
        match=re.escape(
            "SharedLayout maps (0, 1) and (1, 0) to offset 1; got shape (2, 2), strides (1, 1)"
        ),
    ):
        shared_strided((2, 2), (1, 1))


@pytest.mark.parametrize(
    ("shape", "strides", "message"),
    [
        ((2, 2), (2, -1), "SharedLayout strides must be ints >= 0; got (2, -1)"),
        ((2, 0), (1, 1), "SharedLayout shape must be ints >= 1; got (2, 0)"),
        ((2, 2), (1,), "one stride per dimension of a non-empty shape; got shape (2, 2)"),
    ],
)
def test_shared_layout_fields_are_checked(shape, strides, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        shared_strided(shape, strides)


def test_a_swizzle_that_would_leave_the_strided_span_is_rejected():
    # Span 24: offset 16 (bit 4 set, bit 3 clear) would move to 24.
    with pytest.raises(
        LayoutError,
        match=re.escape(
            "Swizzle(1, 3, 1) moves the offset 16 of (2, 0) to 24, outside the span 0..23"
        ),
    ):
        shared_row_major(3, 8).swizzled(1, 3, 1)


def test_a_swizzled_layout_cannot_be_swizzled_again():
    with pytest.raises(LayoutError, match="swizzled\\(\\) needs an unswizzled layout"):
        shared_row_major(8, 8).swizzled(1, 0, 1).swizzled(1, 1, 1)


def test_offset_rejects_an_index_outside_the_tile():
    with pytest.raises(LayoutError, match=re.escape("shape (2, 3); got (2, 0)")):
        shared_row_major(2, 3).offset((2, 0))


def test_str_is_compact_and_grid_draws_the_offsets():
    layout = shared_row_major(2, 4).swizzled(1, 0, 2)  # bit 0 ^= bit 2
    assert str(layout) == "SharedLayout(shape=[2, 4], strides=[4, 1], swizzle=Swizzle(1, 0, 2))"
    assert layout.grid() == "0 1 2 3\n5 4 7 6"
    assert str(shared_row_major(4, 4)) == "SharedLayout(shape=[4, 4], strides=[4, 1])"


# -- bank conflicts ------------------------------------------------------------------------------


@pytest.mark.parametrize("store", [STORE_64x64, WARP_STORE_64x64])
@pytest.mark.parametrize("swizzle", [None, (3, 3, 3)])
def test_16_byte_row_stores_of_a_64x64_fp16_tile_are_conflict_free(store, swizzle):
    shared = shared_row_major(64, 64)
    shared = shared if swizzle is None else shared.swizzled(*swizzle)
    report = bank_conflicts(shared, store, 16, 8)
    # Each quarter-warp stores 8 x 16 bytes of one row: 128 contiguous bytes, one wavefront.
    # 4096 elements / 8 per access / 8 accesses per phase = 64 phases.
    assert (report.wavefronts, report.ideal, report.conflicts) == (64, 64, 0)


def test_ldmatrix_reads_of_an_unswizzled_64x64_fp16_tile_conflict_eight_ways():
    report = bank_conflicts(shared_row_major(64, 64), LDMATRIX_64x64, 16, 8)
    # A quarter-warp reads column chunk c of 8 consecutive rows. Rows are 128 bytes (32
    # words) apart, so all 8 reads cover the same banks 4c..4c+3 with 8 distinct words each:
    # 8 wavefronts per phase. 16 groups x 4 phases = 64 phases: 512 wavefronts, 64 ideal.
    assert (report.wavefronts, report.ideal, report.conflicts) == (512, 64, 448)
    assert report.worst == (0, 0, 0)
    assert report.worst_wavefronts == 8
    assert report.worst_threads == tuple(range(8))
    assert report.worst_bank == 0
    assert report.worst_words == (0, 32, 64, 96, 128, 160, 192, 224)
    assert "worst: warp 0 group 0 phase 0 (threads 0..7) takes 8" in str(report)


def test_the_3_3_3_swizzle_makes_ldmatrix_reads_conflict_free():
    report = bank_conflicts(shared_row_major(64, 64).swizzled(3, 3, 3), LDMATRIX_64x64, 16, 8)
    assert (report.wavefronts, report.conflicts) == (64, 0)


def test_padding_rows_by_8_fp16_elements_makes_ldmatrix_and_stores_conflict_free():
    # Rows 144 bytes apart: row r starts at bank 4r mod 32, so 8 rows cover all 32 banks.
    padded = shared_row_major(64, 64, pad=8)
    assert bank_conflicts(padded, LDMATRIX_64x64, 16, 8).conflicts == 0
    assert bank_conflicts(padded, STORE_64x64, 16, 8).conflicts == 0


def test_4_byte_reads_of_one_word_by_many_threads_are_a_broadcast():
    # 16 threads read word 0 and 16 read word 32: both in bank 0, two distinct words.
    halves = spatial(2, 1) * replicate(16, 2)
    report = bank_conflicts(shared_strided((2, 1), (32, 1)), halves, 32, 1)
    assert (report.wavefronts, report.ideal) == (2, 1)
    assert report.worst_words == (0, 32)
    everyone = replicate(32, 2)
    assert bank_conflicts(shared_row_major(1, 1), everyone, 32, 1).wavefronts == 1


def test_2_byte_reads_share_words_between_neighbouring_threads():
    report = bank_conflicts(shared_row_major(1, 32), spatial(1, 32), 16, 1)
    assert (report.wavefronts, report.ideal) == (1, 1)


def test_4_byte_column_reads_of_a_32_wide_fp32_tile_conflict_32_ways():
    report = bank_conflicts(shared_row_major(32, 32), spatial(32, 1) * local(1, 32), 32, 1)
    assert (report.wavefronts, report.ideal) == (32 * 32, 32)


def test_8_byte_accesses_are_served_in_half_warps():
    row = bank_conflicts(shared_row_major(1, 64), spatial(1, 32) * local(1, 2), 32, 2)
    assert (row.wavefronts, row.ideal) == (2, 2)  # each half-warp reads 128 contiguous bytes
    column = bank_conflicts(shared_strided((32, 2), (32, 1)), spatial(32, 1) * local(1, 2), 32, 2)
    assert (column.wavefronts, column.ideal) == (32, 2)  # 16 distinct words in banks 0 and 1


def test_a_partial_warp_costs_only_the_phases_that_have_threads():
    report = bank_conflicts(shared_row_major(4, 8), spatial(4, 1) * local(1, 8), 16, 8)
    assert (report.wavefronts, report.ideal) == (1, 1)  # 4 threads: one quarter-warp phase


def test_sub_byte_elements_form_whole_byte_accesses():
    report = bank_conflicts(shared_row_major(32, 32), spatial(32, 4) * local(1, 8), 4, 8)
    assert report.conflicts == 0  # 4-byte accesses, rows of 16 bytes


def test_a_vector_whose_elements_are_not_consecutive_in_shared_memory_is_rejected():
    with pytest.raises(
        LayoutError,
        match=re.escape(
            "thread 0 locals 0..7 must lie at consecutive increasing shared offsets to form one "
            "access; got offsets [0, 64, 128, 192, 256, 320, 384, 448]"
        ),
    ):
        bank_conflicts(shared_column_major(64, 64), STORE_64x64, 16, 8)


def test_a_swizzle_below_the_vector_splits_it_and_is_rejected():
    # Bits 0-2 ^= the row's bits 0-2: row 1 (threads 8..15) gets its elements pairwise swapped.
    message = "thread 8 locals 0..7 must lie at consecutive increasing shared offsets to form "
    message += "one access; got offsets [65, 64, 67, 66, 69, 68, 71, 70]"
    with pytest.raises(LayoutError, match=re.escape(message)):
        bank_conflicts(shared_row_major(64, 64).swizzled(3, 0, 6), STORE_64x64, 16, 8)


def test_an_access_not_aligned_to_its_size_is_rejected():
    with pytest.raises(
        LayoutError,
        match=re.escape(
            "thread 1 locals 0..1 start a 4-byte access at element offset 3 (bit 48), which is "
            "not 4-byte aligned"
        ),
    ):
        bank_conflicts(shared_strided((2, 2), (3, 1)), spatial(2, 1) * local(1, 2), 16, 2)


@pytest.mark.parametrize(
    ("elem_bits", "vector", "message"),
    [
        (8, 3, "must be 1, 2, 4, 8 or 16 bytes; got vector 3 of 8-bit elements (24 bits)"),
        (4, 1, "got vector 1 of 4-bit elements (4 bits)"),
        (32, 8, "got vector 8 of 32-bit elements (256 bits)"),
        (8, 0, "vector must be ints >= 1; got (0,)"),
    ],
)
def test_access_sizes_must_be_1_2_4_8_or_16_bytes(elem_bits, vector, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        bank_conflicts(shared_row_major(64, 64), STORE_64x64, elem_bits, vector)


def test_the_vector_must_divide_the_local_size_and_the_shapes_must_match():
    with pytest.raises(LayoutError, match="vector must divide the local size 2"):
        bank_conflicts(shared_row_major(1, 128), spatial(1, 64) * local(1, 2), 8, 4)
    with pytest.raises(LayoutError, match=re.escape("got layout shape (64, 64) for a tile of")):
        bank_conflicts(shared_row_major(32, 64), STORE_64x64, 16, 8)


@settings(max_examples=200, deadline=None)
@given(
    layout=layouts(rank=2, max_modes=3, extents=(1, 2, 4, 8)),
    elem_bits=st.sampled_from([8, 16, 32, 64, 128]),
    pad=st.integers(0, 3),
)
def test_wavefronts_lie_between_one_and_every_word_per_phase(layout, elem_bits, pad):
    report = bank_conflicts(shared_row_major(*layout.shape, pad=pad), layout, elem_bits, 1)
    per_phase = 32 if elem_bits <= 32 else 32 * 32 // elem_bits
    words = max(1, elem_bits // 32)
    threads = layout.num_threads
    phases = sum(-(-min(32, threads - w) // per_phase) for w in range(0, threads, 32))
    assert report.ideal == phases * layout.local_size
    assert report.ideal <= report.wavefronts <= report.ideal * per_phase * words
    assert report.conflicts >= 0


# -- choosing a swizzle --------------------------------------------------------------------------


def test_choose_swizzle_picks_3_3_3_for_stores_and_ldmatrix_of_a_64x64_fp16_tile():
    chosen = choose_swizzle((64, 64), 16, [(STORE_64x64, 8), (LDMATRIX_64x64, 8)])
    assert chosen == shared_row_major(64, 64).swizzled(3, 3, 3)
    assert bank_conflicts(chosen, STORE_64x64, 16, 8).conflicts == 0
    assert bank_conflicts(chosen, LDMATRIX_64x64, 16, 8).conflicts == 0


def test_choose_swizzle_picks_2_3_3_for_ldmatrix_of_64_byte_rows():
    # Two 64-byte rows share a 128-byte line, so only the row bits above the first (offset
    # bits 6-7) need to reach the chunk index.
    ldmatrix = local(4, 2) * column_spatial(16, 2) * local(1, 8)
    assert choose_swizzle((64, 32), 16, [(ldmatrix, 8)]) == shared_row_major(64, 32).swizzled(
        2, 3, 3
    )


def _ldmatrix_rows_of_a_k_step(rows: int, step: int) -> np.ndarray:
    """The index table of one warp's ldmatrix.x4 of the 16 x 16 block at column 16 step:
    lane l's row of 8 elements starts at (l % 16, 16 step + 8 (l // 16))."""
    lane = np.arange(32)
    table = np.zeros((32, 8, 2), np.int64)
    table[:, :, 0] = (lane % 16)[:, None] % rows
    table[:, :, 1] = 16 * step + 8 * (lane // 16)[:, None] + np.arange(8)
    return table


def test_choose_swizzle_costs_index_tables_like_the_layouts_they_spell():
    table = LDMATRIX_64x64.table()
    assert choose_swizzle((64, 64), 16, [(table, 8)]) == shared_row_major(64, 64).swizzled(3, 3, 3)
    steps = [(_ldmatrix_rows_of_a_k_step(16, s), 8) for s in range(4)]
    assert choose_swizzle((16, 64), 16, steps) == shared_row_major(16, 64).swizzled(3, 3, 3)


def test_choose_swizzle_pads_first_when_asked_for_a_tile_read_in_steps():
    steps = [(_ldmatrix_rows_of_a_k_step(16, s), 8) for s in range(4)]
    chosen = choose_swizzle((16, 64), 16, steps, pad_first=True)
    # Paddings under 8 elements break the 16-byte rows; 8 puts rows 144 bytes apart.
    assert chosen == shared_row_major(16, 64, pad=8)


def test_choose_swizzle_checks_index_tables():
    with pytest.raises(LayoutError, match=r"outside the tile \(16, 64\)"):
        choose_swizzle((16, 64), 16, [(_ldmatrix_rows_of_a_k_step(16, 4), 8)])
    with pytest.raises(LayoutError, match=r"integers of shape \(threads, locals, 2\)"):
        choose_swizzle((16, 64), 16, [(np.zeros((32, 8)), 8)])
    with pytest.raises(LayoutError, match="vector must divide the table's 6 locals; got 4"):
        choose_swizzle((16, 64), 16, [(_ldmatrix_rows_of_a_k_step(16, 0)[:, :6], 4)])


def test_choose_swizzle_keeps_plain_row_major_when_it_is_already_conflict_free():
    assert choose_swizzle((64, 64), 16, [(STORE_64x64, 8)]) == shared_row_major(64, 64)


def test_choose_swizzle_uses_word_granularity_for_4_byte_column_reads():
    columns = spatial(32, 1) * local(1, 32)
    assert choose_swizzle((32, 32), 32, [(columns, 1)]) == shared_row_major(32, 32).swizzled(
        5, 0, 5
    )


# An fp32 32x8 tile read by columns (rows 0..31) and by 4x8 blocks (rows l, l+8, l+16, l+24 at
# once). The columns need the row's bits 2-4 in the bank's bits 0-2, the blocks need its
# bits 3-4 in the bank's bits 3-4; one XOR field cannot do both inside the 256-element span.
COLUMNS_32x8 = spatial(32, 1) * local(1, 8)
BLOCKS_32x8 = column_spatial(4, 8) * local(8, 1)


def test_choose_swizzle_names_the_best_candidate_when_no_swizzle_works():
    message = (
        "no row-major layout of shape (32, 8) with 32-bit elements makes every access "
        "conflict-free after trying plain row-major and 46 swizzles (padding not allowed); "
        "the best, SharedLayout(shape=[32, 8], strides=[8, 1], swizzle=Swizzle(3, 1, 4)), "
        "still has conflicts [8, 8] (one count per access)"
    )
    with pytest.raises(LayoutError, match=re.escape(message)):
        choose_swizzle((32, 8), 32, [(COLUMNS_32x8, 1), (BLOCKS_32x8, 1)])


def test_choose_swizzle_pads_when_allowed_and_no_swizzle_works():
    chosen = choose_swizzle((32, 8), 32, [(COLUMNS_32x8, 1), (BLOCKS_32x8, 1)], pad_ok=True)
    assert chosen == shared_row_major(32, 8, pad=1)  # rows 9 words apart: an odd stride


def test_choose_swizzle_reports_accesses_that_plain_row_major_cannot_serve():
    with pytest.raises(LayoutError, match="must lie at consecutive increasing shared offsets"):
        choose_swizzle((64, 64), 16, [(local(1, 8) * spatial(8, 8) * local(8, 1), 8)])
    with pytest.raises(LayoutError, match="needs at least one"):
        choose_swizzle((64, 64), 16, [])
    with pytest.raises(LayoutError, match="pair; got"):
        choose_swizzle((64, 64), 16, [STORE_64x64])


def test_shared_layouts_are_hashable_values():
    a = shared_row_major(64, 64).swizzled(3, 3, 3)
    b = SharedLayout((64, 64), (64, 1), Swizzle(3, 3, 3))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, shared_row_major(64, 64)}) == 2
