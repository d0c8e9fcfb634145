"""The dense interchange format: tilevm.pack and tilevm.unpack."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilevm


def reference_pack(codes: list[int], nbits: int) -> list[int]:
    """Bit by bit: element i's bit j is stream bit i*nbits + j, which is bit k%8 of byte k//8."""
    out = [0] * ((len(codes) * nbits + 7) // 8)
    for i, code in enumerate(codes):
        for j in range(nbits):
            k = i * nbits + j
            out[k // 8] |= ((code >> j) & 1) << (k % 8)
    return out


@pytest.mark.parametrize(
    ("codes", "nbits", "expected"),
    [
        ([1, 2, 3], 3, [0xD1, 0x00]),  # 001 010 011 read LSB first: 1000 1011 0
        ([1, 2], 4, [0x21]),  # element 0 in the low nibble
        ([1] * 8, 1, [0xFF]),
        ([1, 0, 1], 1, [0b101]),
        ([0xAB, 0xCD], 8, [0xAB, 0xCD]),
        ([0x3F, 0, 0x3F, 0], 6, [0x3F, 0xF0, 0x03]),  # 6-bit values straddle bytes
        ([], 5, []),
    ],
)
def test_pack_writes_the_lsb_first_bit_stream(codes, nbits, expected):
    assert tilevm.pack(np.array(codes, dtype=np.int64), nbits).tolist() == expected


@pytest.mark.parametrize("nbits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 9, 13, 31, 1001])
def test_pack_matches_the_bitwise_reference_and_unpack_inverts_it(nbits, count):
    rng = np.random.default_rng(nbits * 10_000 + count)
    codes = rng.integers(0, 1 << nbits, count)
    packed = tilevm.pack(codes, nbits)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    assert packed.tolist() == reference_pack(codes.tolist(), nbits)
    unpacked = tilevm.unpack(packed, nbits, count)
    assert unpacked.dtype == np.uint8
    np.testing.assert_array_equal(unpacked, codes)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 8).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, 2**b - 1))))
)
def test_unpack_inverts_pack_for_any_width_and_count(case):
    nbits, codes = case
    packed = tilevm.pack(np.array(codes, dtype=np.int64), nbits)
    assert len(packed) == (len(codes) * nbits + 7) // 8
    assert tilevm.unpack(packed, nbits, len(codes)).tolist() == codes


def test_bits_past_the_last_element_are_zero_and_trailing_bytes_are_ignored():
    packed = tilevm.pack([7, 7, 7], 3)  # 9 bits: the second byte holds one bit
    assert packed.tolist() == [0xFF, 0x01]
    padded = np.concatenate([packed, np.array([0xFF, 0xFF], np.uint8)])
    assert tilevm.unpack(padded, 3, 3).tolist() == [7, 7, 7]


def test_pack_reads_codes_in_c_order_and_accepts_a_type_for_the_width():
    codes = tilevm.int3.encode(np.arange(-4, 4).reshape(2, 4))
    packed = tilevm.pack(codes, tilevm.int3)
    assert packed.tolist() == [0xAC, 0x8F, 0x68]
    np.testing.assert_array_equal(tilevm.unpack(packed, "i3", 8), codes.reshape(-1))


@pytest.mark.parametrize(
    ("codes", "nbits", "message"),
    [
        (
            [0, 8],
            3,
            r"codes for 3-bit packing must lie in 0\.\.7 \(3 bits\); got 8 at index \(1,\)",
        ),
        ([-1], 4, r"got -1 at index \(0,\)"),
        ([1.5], 4, r"must be an integer array; got an array of float64"),
        ([1], 0, r"nbits must be an int in 1\.\.8 .*; got 0"),
        ([1], 9, r"got 9"),
        ([1], True, r"got True"),
        ([1], 2.0, r"got 2\.0"),
        ([1], tilevm.int16, r"got 16"),
    ],
)
def test_pack_rejects_codes_that_do_not_fit_and_bad_widths(codes, nbits, message):
    with pytest.raises(tilevm.PackError, match=message):
        tilevm.pack(codes, nbits)


@pytest.mark.parametrize(
    ("data", "nbits", "count", "message"),
    [
        (np.zeros(2, np.uint8), 3, 6, r"6 codes of 3 bits need 3 bytes of data; got 2"),
        (np.zeros(2, np.int32), 3, 1, r"data must be a uint8 array; got an array of int32"),
        (np.zeros(2, np.uint8), 3, -1, r"count must be a non-negative int; got -1"),
        (np.zeros(2, np.uint8), 3, 1.0, r"count must be a non-negative int; got 1\.0"),
        (np.zeros(2, np.uint8), 12, 1, r"nbits must be an int in 1\.\.8"),
    ],
)
def test_unpack_rejects_short_or_mistyped_data(data, nbits, count, message):
    with pytest.raises(tilevm.PackError, match=message):
        tilevm.unpack(data, nbits, count)


def test_packing_a_large_tensor_is_vectorised():
    codes = np.random.default_rng(0).integers(0, 64, 1 << 22)
    packed = tilevm.pack(codes, 6)
    assert packed.size == 3 << 20
    np.testing.assert_array_equal(tilevm.unpack(packed, 6, codes.size), codes)
