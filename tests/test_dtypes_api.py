"""Names, lookup, structural equality, validation and error messages of data types."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

import tilevm
from tilevm.dtypes import ALL_DTYPES, DataType, float_type, int_type, uint_type

ISSUE_NAMES = [
    *(f"int{b}" for b in range(1, 9)),
    *(f"uint{b}" for b in range(1, 9)),
    "float3_e1m1",
    "float4_e2m1",
    "float5_e2m2",
    "float6_e3m2",
    "float6_e2m3",
    "float7_e3m3",
    "float8_e4m3",
    "float8_e5m2",
    "float16",
    "bfloat16",
    "float32",
    "int16",
    "int32",
    "int64",
    "uint16",
    "uint32",
]


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_every_named_type_is_a_tilevm_attribute_and_found_by_name(name):
    t = getattr(tilevm, name)
    assert isinstance(t, DataType)
    assert t.name == name == str(t)
    assert tilevm.dtype(name) is t or tilevm.dtype(name) == t
    assert repr(t) == f"tilevm.{name}"


def test_every_float_split_up_to_8_bits_exists():
    for n in range(2, 9):
        for e in range(1, n):
            t = getattr(tilevm, f"float{n}_e{e}m{n - 1 - e}")
            assert (t.nbits, t.exponent_bits, t.mantissa_bits) == (n, e, n - 1 - e)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("i3", "int3"),
        ("u5", "uint5"),
        ("i32", "int32"),
        ("u16", "uint16"),
        ("f6e3m2", "float6_e3m2"),
        ("f4e2m1", "float4_e2m1"),
        ("e4m3", "float8_e4m3"),
        ("f16", "float16"),
        ("bf16", "bfloat16"),
        ("f32", "float32"),
        ("half", "float16"),
        ("float8_e4m3fn", "float8_e4m3"),
        (" Int3 ", "int3"),
    ],
)
def test_short_names_and_aliases_name_the_same_type(short, full):
    assert tilevm.dtype(short) == getattr(tilevm, full)


def test_every_type_round_trips_through_its_name_and_short_name():
    for t in ALL_DTYPES:
        assert tilevm.dtype(t.name) == t
        assert tilevm.dtype(t.short_name) == t
        assert tilevm.dtype(t) is t


def test_numpy_ml_dtypes_and_torch_dtypes_are_accepted():
    torch = pytest.importorskip("torch")
    assert tilevm.dtype(np.float16) == tilevm.float16
    assert tilevm.dtype(np.dtype("int8")) == tilevm.int8
    assert tilevm.dtype(ml_dtypes.float6_e3m2fn) == tilevm.float6_e3m2
    assert tilevm.dtype(torch.bfloat16) == tilevm.bfloat16
    assert tilevm.dtype(torch.float8_e4m3fn) == tilevm.float8_e4m3
    assert tilevm.dtype(torch.uint8) == tilevm.uint8


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("int9", r"int widths are 1\.\.8 and 16, 32, 64; got nbits=9"),
        ("uint64", r"uint widths are 1\.\.8 and 16, 32; got nbits=64"),
        ("float6_e3m3", r"1 \+ 3 \+ 3 = 7 bits, not 6"),
        ("e0m3", r"exponent_bits >= 1"),
        ("f9e4m4", r"floats wider than 8 bits are float16"),
        ("fp4", ""),
        (np.float64, ""),
    ],
)
def test_an_unknown_name_is_an_error_listing_the_accepted_forms(spec, reason):
    with pytest.raises(tilevm.DTypeError, match=r"accepted forms: int1\.\.int8") as info:
        tilevm.dtype(spec)
    assert repr(spec) in str(info.value)
    if reason:
        assert info.match(reason)


@pytest.mark.parametrize("spec", [None, 3, 2.5, ["int3"]])
def test_dtype_of_something_that_is_no_name_says_what_it_takes(spec):
    with pytest.raises(tilevm.DTypeError, match="takes a DataType, a name or a numpy/torch"):
        tilevm.dtype(spec)


def test_types_compare_and_hash_by_structure():
    assert DataType("int", 3) == tilevm.int3 == int_type(3)
    assert hash(DataType("float", 6, 3, 2)) == hash(tilevm.float6_e3m2)
    assert float_type(2, 3) != float_type(3, 2)
    assert int_type(4) != uint_type(4)
    assert len({tilevm.dtype(n) for n in ("i3", "int3", "I3")}) == 1


def test_types_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tilevm.int3.nbits = 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("int", 0), r"int widths are 1\.\.8 and 16, 32, 64; got nbits=0"),
        (("int", True), r"nbits must be an int; got True"),
        (("uint", 3, 1, 1), r"uint types take no exponent/mantissa bits; got 1, 1"),
        (
            ("float", 5, 2, 1),
            r"2 exponent and 1 mantissa bits has 1 \+ 2 \+ 1 = 4 bits; got nbits=5",
        ),
        (("float", 4, 0, 3), r"exponent_bits >= 1 and mantissa_bits >= 0; got exponent_bits=0"),
        (("float", 10, 4, 5), r"floats wider than 8 bits .* got e4m5 \(10 bits\)"),
        (("complex", 8), r"kind must be 'int', 'uint' or 'float'; got 'complex'"),
    ],
)
def test_constructing_an_invalid_type_says_what_was_expected(args, message):
    with pytest.raises(tilevm.DTypeError, match=message):
        DataType(*args)


def test_properties_of_integer_types():
    t = tilevm.int5
    assert (t.is_float, t.is_integer, t.is_signed) == (False, True, True)
    assert (t.min_value, t.max_value) == (-16, 15)
    assert (t.exponent_bits, t.mantissa_bits, t.bias) == (None, None, None)
    assert (t.smallest_normal, t.smallest_subnormal) == (None, None)
    assert (tilevm.uint5.min_value, tilevm.uint5.max_value, tilevm.uint5.is_signed) == (
        0,
        31,
        False,
    )
    assert (tilevm.int64.min_value, tilevm.uint32.max_value) == (-(2**63), 2**32 - 1)
    assert t.code_dtype == np.uint8 and tilevm.int32.code_dtype == np.uint32


def test_properties_of_float_types():
    t = tilevm.float6_e3m2
    assert (t.is_float, t.is_signed, t.has_inf, t.has_nan) == (True, True, False, False)
    assert (t.nbits, t.exponent_bits, t.mantissa_bits, t.bias) == (6, 3, 2, 3)
    assert tilevm.float16.code_dtype == np.uint16 and tilevm.float16.value_dtype == np.float32
    assert tilevm.float8_e7m0.smallest_subnormal is None  # M = 0: no subnormals


def test_wide_integer_types_round_trip_their_extremes():
    for t in (tilevm.int16, tilevm.int32, tilevm.int64, tilevm.uint16, tilevm.uint32):
        extremes = np.array([t.min_value, -1 if t.is_signed else 1, 0, t.max_value], dtype=np.int64)
        codes = t.encode(extremes)
        assert codes.dtype == t.code_dtype
        np.testing.assert_array_equal(t.decode(codes), extremes)
    assert tilevm.int64.decode(np.array([2**64 - 1], dtype=np.uint64))[0] == -1
    assert tilevm.int64.encode(1e30) == 2**63 - 1 and tilevm.int16.encode(-1) == 0xFFFF


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([0, 8], r"codes for int3 must lie in 0\.\.7 \(3 bits\); got 8 at index \(1,\)"),
        ([[0, 1], [-1, 2]], r"got -1 at index \(1, 0\)"),
        ([0.0, 1.0], r"codes for int3 must be an integer array; got an array of float64"),
    ],
)
def test_decoding_bad_codes_says_which_code_is_wrong(codes, message):
    with pytest.raises(tilevm.DTypeError, match=message):
        tilevm.int3.decode(codes)


def test_encoding_non_numbers_is_an_error():
    with pytest.raises(
        tilevm.DTypeError, match=r"values must be real numbers; got an array of <U3"
    ):
        tilevm.int3.encode(["abc"])
    with pytest.raises(tilevm.DTypeError, match="int3 has no NaN"):
        tilevm.int3.encode(np.nan)


def test_errors_are_value_errors_too():
    with pytest.raises(ValueError):
        tilevm.dtype("nope")
