"""tilevm.quantize, QuantizedWeight and the packed orders.

The reference here is numpy: quantisation redone in float32 with np.rint, scales
rounded by numpy (float16) and ml_dtypes (bfloat16), codes decoded in float64
from the format's formula, and the dequantised product rounded once.
"""

from __future__ import annotations

import functools
import io
import time

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from packing_testing import pack_reference, pack_v1, packed_columns

import tilevm
from tilevm.layouts import pack_for_layout
from tilevm.quant import (
    FORMAT,
    QuantError,
    QuantizedWeight,
    QuantTypeError,
    code_layout,
    convert_packed,
    pack_codes,
    packed_shape,
    quantize,
    tile_columns,
    tile_layout,
    unpack_codes,
)

N, K = 72, 256  # N is not a multiple of 64, so the last n tile is padded

# (group_size, scale_dtype): each group size once, both scale dtypes.
GROUPINGS = [(32, torch.float16), (64, torch.bfloat16), (128, torch.float16), (-1, torch.bfloat16)]


def _variants():
    for t in tilevm.dtypes.LOW_BIT_DTYPES:
        for zero_point in (False, True) if t.kind == "uint" else (False,):
            if t.nbits == 1 and t.kind != "float" and not zero_point:
                continue  # int1 and uint1 without zero points are errors (tested below)
            name = f"{t.name}{'-zp' if zero_point else ''}"
            yield pytest.param(t, zero_point, id=name)


VARIANTS = list(_variants())


def test_every_low_bit_type_is_covered():
    assert len(tilevm.dtypes.LOW_BIT_DTYPES) == 44
    assert len(VARIANTS) == 44 - 2 + 8  # int1 and uint1 only exist with zero points; uints twice


# -- the numpy reference --------------------------------------------------------------------------
def decode64(t: tilevm.DataType, codes: np.ndarray) -> np.ndarray:
    """Values of codes in float64 from the format's definition (not tilevm's decoder)."""
    c = codes.astype(np.int64)
    b = t.nbits
    if t.kind == "uint":
        return c.astype(np.float64)
    if t.kind == "int":
        return np.where(c >= 1 << (b - 1), c - (1 << b), c).astype(np.float64)
    e_bits, m_bits = t.exponent_bits, t.mantissa_bits
    bias = (1 << (e_bits - 1)) - 1
    sign = np.where((c >> (b - 1)) & 1, -1.0, 1.0)
    e = (c >> m_bits) & ((1 << e_bits) - 1)
    m = c & ((1 << m_bits) - 1)
    normal = (2.0**m_bits + m) * 2.0 ** (e - bias - m_bits)
    subnormal = m * 2.0 ** (1 - bias - m_bits)
    return sign * np.where(e == 0, subnormal, normal)


def round_to(x32: np.ndarray, scale_dtype: torch.dtype) -> np.ndarray:
    """float32 values rounded (ties to even) to float16/bfloat16, returned as float64."""
    assert x32.dtype == np.float32
    target = np.float16 if scale_dtype == torch.float16 else ml_dtypes.bfloat16
    return x32.astype(target).astype(np.float64)


def reference_quantize(w: np.ndarray, t, group_size: int, zero_point: bool, scale_dtype):
    """(codes [N, K], scales [N, G], zeros [N, G] or None, zero_offset), all in numpy float32."""
    n, k = w.shape
    gs = k if group_size == -1 else group_size
    x = w.astype(np.float32).reshape(n, k // gs, gs)
    b = t.nbits
    f32 = np.float32

    def scale(s32):
        s = round_to(s32.astype(np.float32), scale_dtype)
        return np.where(s == 0, 1.0, s)

    zeros, offset = None, 0
    if t.is_float:
        s = scale(np.abs(x).max(-1) / f32(t.max_value))
        codes = t.encode(x / s.astype(np.float32)[..., None]).astype(np.int64)
    elif t.kind == "int":
        qmax = 2 ** (b - 1) - 1
        s = scale(np.abs(x).max(-1) / f32(qmax))
        q = np.clip(np.rint(x / s.astype(np.float32)[..., None]), -(2 ** (b - 1)), qmax)
        codes = q.astype(np.int64) & (2**b - 1)
    elif zero_point:
        top = 2**b - 1
        lo, hi = np.minimum(x.min(-1), f32(0)), np.maximum(x.max(-1), f32(0))
        s = scale((hi - lo) / f32(top))
        s32 = s.astype(np.float32)
        zeros = np.clip(np.rint(-lo / s32), 0, top)
        codes = np.clip(np.rint(x / s32[..., None]) + zeros[..., None], 0, top).astype(np.int64)
        zeros = zeros.astype(np.float64)
    else:
        offset = 2 ** (b - 1)
        s = scale(np.abs(x).max(-1) / f32(offset - 1))
        q = np.rint(x / s.astype(np.float32)[..., None]) + offset
        codes = np.clip(q, 0, 2**b - 1).astype(np.int64)
    return codes.reshape(n, k), s, zeros, offset


def reference_dequantize(qw: QuantizedWeight) -> np.ndarray:
    """scale_dtype(float32(decode(q) - z) * float32(s)), the product taken exactly in float64."""
    n, k = qw.shape
    g = qw.scales.shape[0]
    v = decode64(qw.dtype, qw.codes().numpy()).reshape(n, g, k // g)
    s = qw.scales.float().numpy().astype(np.float64).T[..., None]
    z = qw.zeros.float().numpy().astype(np.float64).T[..., None] if qw.zeros is not None else 0.0
    product = (v - (z if qw.zeros is not None else qw.zero_offset)) * s
    product32 = product.astype(np.float32)
    assert np.array_equal(product32.astype(np.float64), product)  # exact in float32
    return round_to(product32, qw.scale_dtype).reshape(n, k)


def sample_weight(n: int = N, k: int = K, seed: int = 0) -> np.ndarray:
    """Normal values with per-row magnitudes, an all-zero group, one-signed rows and ties."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32) * np.exp2(rng.integers(-3, 3, (n, 1)))
    w[0, :32] = 0.0  # a zero group: its scale is stored as 1
    w[1] = np.abs(w[1])  # zero points: lo = 0
    w[2] = -np.abs(w[2])  # zero points: hi = 0
    w[3, :8] = [0.5, -0.5, 1.5, -2.5, 3.5, 0.25, 7.0, -7.0]  # exact quotients, ties
    return w.astype(np.float32)


@functools.cache
def quantized(t, zero_point: bool, group_size: int, scale_dtype) -> QuantizedWeight:
    return quantize(torch.from_numpy(sample_weight()), t, group_size, zero_point, scale_dtype)


# -- quantisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("group_size", "scale_dtype"), GROUPINGS)
@pytest.mark.parametrize(("t", "zero_point"), VARIANTS)
def test_quantize_matches_the_reference_formulas(t, zero_point, group_size, scale_dtype):
    qw = quantized(t, zero_point, group_size, scale_dtype)
    codes, s, zeros, offset = reference_quantize(
        sample_weight(), t, group_size, zero_point, scale_dtype
    )
    g = 1 if group_size == -1 else K // group_size
    assert qw.dtype == t and qw.shape == (N, K) and qw.group_size == group_size
    assert qw.packed.dtype == torch.uint8 and qw.packed.shape == packed_shape(N, K, t.nbits)
    assert qw.scales.dtype == scale_dtype and qw.scales.shape == (g, N)
    assert qw.scales.is_contiguous() and qw.format == FORMAT
    got = qw.codes()
    assert got.dtype == torch.uint8 and int(got.max()) < 2**t.nbits
    np.testing.assert_array_equal(got.numpy(), codes)
    np.testing.assert_array_equal(qw.scales.float().numpy(), s.T)
    assert qw.zero_offset == offset
    if zeros is None:
        assert qw.zeros is None
    else:
        assert qw.zeros.dtype == scale_dtype and qw.zeros.shape == (g, N)
        np.testing.assert_array_equal(qw.zeros.float().numpy(), zeros.T)


@pytest.mark.parametrize(("group_size", "scale_dtype"), GROUPINGS)
@pytest.mark.parametrize(("t", "zero_point"), VARIANTS)
def test_dequantize_is_the_reference_product_rounded_once(t, zero_point, group_size, scale_dtype):
    qw = quantized(t, zero_point, group_size, scale_dtype)
    deq = qw.dequantize()
    assert deq.dtype == scale_dtype and deq.shape == (N, K)
    np.testing.assert_array_equal(deq.float().numpy().astype(np.float64), reference_dequantize(qw))


def _half_spacing(t, y: np.ndarray) -> np.ndarray:
    """Half the distance between neighbouring values of float type t around |y| <= max."""
    bias = (1 << (t.exponent_bits - 1)) - 1
    _, ex = np.frexp(np.maximum(y, np.finfo(np.float64).tiny))
    binade = np.maximum(ex - 1, 1 - bias)
    return np.where(y > 0, 0.5 * np.exp2(binade - t.mantissa_bits), 0.0)


@pytest.mark.parametrize(("group_size", "scale_dtype"), GROUPINGS)
@pytest.mark.parametrize(("t", "zero_point"), VARIANTS)
def test_quantisation_error_is_bounded(t, zero_point, group_size, scale_dtype):
    """Half a step of the format, plus what the rounded scale shifts at the clamp, plus the
    final rounding of the product to the scale dtype."""
    qw = quantized(t, zero_point, group_size, scale_dtype)
    w = sample_weight().astype(np.float64)
    n, k = w.shape
    g = qw.scales.shape[0]
    x = w.reshape(n, g, k // g)
    s = qw.scales.float().numpy().astype(np.float64).T[..., None]
    b = t.nbits
    if t.is_float:
        top = t.max_value
        y = np.abs(x) / s
        bound = s * (_half_spacing(t, np.minimum(y, top)) + np.maximum(y - top, 0))
    else:
        top = 2**b - 1 if zero_point else 2 ** (b - 1) - 1
        if zero_point:
            span = np.maximum(x.max(-1), 0) - np.minimum(x.min(-1), 0)
        else:
            span = np.abs(x).max(-1)
        exact = span[..., None] / top
        bound = 0.5 * s + top * np.abs(exact - s)
    eps = 2.0**-11 if scale_dtype == torch.float16 else 2.0**-8
    deq = qw.dequantize().float().numpy().astype(np.float64).reshape(x.shape)
    bound = bound + eps * np.abs(deq) + 1e-6 * np.abs(x) + 2.0**-24
    excess = np.abs(x - deq) - bound
    assert excess.max() <= 0, (
        f"worst excess {excess.max()} at {np.unravel_index(excess.argmax(), x.shape)}"
    )


def test_all_zero_groups_get_scale_one_and_dequantise_to_zero():
    w = torch.zeros(64, 128)
    w[:, 64:] = 1.0
    qw = quantize(w, "int4", group_size=64)
    assert qw.scales[0].tolist() == [1.0] * 64
    assert qw.dequantize()[:, :64].abs().max() == 0


def test_the_docstring_example():
    w = torch.tensor([[0.7, -0.35, 0.1, 0.0] * 8])
    qw = quantize(w, "int4", group_size=32)
    assert qw.scales.item() == 0.0999755859375
    assert qw.codes()[0, :4].tolist() == [7, 12, 1, 0]
    assert qw.dequantize()[0, :4].tolist() == [0.69970703125, -0.39990234375, 0.0999755859375, 0]


def test_scale_dtype_defaults_to_the_weights_half_type_else_float16():
    w = torch.randn(64, 128)
    assert quantize(w, "int4").scale_dtype == torch.float16
    assert quantize(w.bfloat16(), "int4").scale_dtype == torch.bfloat16
    assert quantize(w.half(), "int4").scale_dtype == torch.float16
    assert quantize(w.bfloat16(), "int4", scale_dtype="float16").scale_dtype == torch.float16


def test_numpy_weights_are_quantised_on_the_cpu():
    w = sample_weight()
    qw = quantize(w, "uint5", group_size=64, zero_point=True)
    assert qw.device == torch.device("cpu")
    assert qw.equal(quantize(torch.from_numpy(w), "uint5", group_size=64, zero_point=True))


def test_float16_weights_round_as_float32():
    w = torch.from_numpy(sample_weight()).half()
    assert quantize(w, "int3").equal(quantize(w.float(), "int3", scale_dtype=torch.float16))


@settings(max_examples=40, deadline=None)
@given(
    t=st.sampled_from(
        [t for t in tilevm.dtypes.LOW_BIT_DTYPES if t.nbits > 1 or t.kind == "float"]
    ),
    zero_point=st.booleans(),
    values=st.lists(
        st.sampled_from([0.0, 0.5, -0.5, 1.5, -2.5, 1.0, 3.0, -7.0, 0.125, 1e-3, 65504.0 / 8]),
        min_size=32,
        max_size=32,
    ),
)
@example(t=tilevm.int4, zero_point=False, values=[3.5, -3.5, 7.0] + [0.0] * 29)
def test_ties_and_edges_round_like_the_reference(t, zero_point, values):
    zero_point = zero_point and t.kind == "uint"
    w = np.array([values, values[::-1]], dtype=np.float32)
    qw = quantize(w, t, group_size=32, zero_point=zero_point)
    codes, s, _, _ = reference_quantize(w, t, 32, zero_point, torch.float16)
    np.testing.assert_array_equal(qw.codes().numpy(), codes)
    np.testing.assert_array_equal(qw.scales.float().numpy(), s.T)
    np.testing.assert_array_equal(qw.dequantize().float().numpy(), reference_dequantize(qw))


# -- state and import -----------------------------------------------------------------------------
@pytest.mark.parametrize(("t", "zero_point"), VARIANTS)
def test_state_dict_round_trips_through_torch_save(t, zero_point):
    qw = quantized(t, zero_point, 64, torch.bfloat16)
    state = qw.state_dict()
    assert {type(v) for k, v in state.items() if k not in ("packed", "scales", "zeros")} <= {
        str,
        int,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = QuantizedWeight.from_state_dict(torch.load(buffer))  # weights_only by default
    assert loaded.equal(qw)
    assert torch.equal(loaded.dequantize(), qw.dequantize())


@pytest.mark.parametrize(("t", "zero_point"), VARIANTS)
def test_from_codes_of_a_quantized_weight_gives_it_back(t, zero_point):
    qw = quantized(t, zero_point, 32, torch.float16)
    again = QuantizedWeight.from_codes(qw.codes(), qw.scales, qw.zeros, t, 32)
    assert again.equal(qw)


def test_from_codes_takes_signed_ints_uint_offsets_and_float_zeros():
    rng = np.random.default_rng(1)
    q = rng.integers(-4, 4, (64, 128))
    scales = torch.rand(1, 64).half() + 0.5
    qw = QuantizedWeight.from_codes(torch.from_numpy(q), scales, dtype="int3", group_size=-1)
    expected = (q * scales.float().numpy().T).astype(np.float16)
    np.testing.assert_array_equal(qw.dequantize().numpy(), expected)
    # uint without zeros: offset binary by default, or any fixed zero_offset.
    u = torch.from_numpy(rng.integers(0, 16, (64, 128)))
    assert QuantizedWeight.from_codes(u, scales, dtype="uint4", group_size=-1).zero_offset == 8
    plain = QuantizedWeight.from_codes(u, scales, dtype="uint4", group_size=-1, zero_offset=0)
    np.testing.assert_array_equal(
        plain.dequantize().numpy(), (u.numpy() * scales.float().numpy().T).astype(np.float16)
    )
    # zeros as an integer tensor become the scale dtype
    zeros = torch.full((2, 64), 7, dtype=torch.int32)
    zq = QuantizedWeight.from_codes(u, scales.repeat(2, 1), zeros, "uint4", 64)
    assert zq.zeros.dtype == torch.float16 and zq.zeros.unique().tolist() == [7.0]


def test_to_moves_every_tensor():
    qw = quantized(tilevm.uint3, True, 64, torch.bfloat16)
    meta = qw.to("meta")
    assert {meta.packed.device.type, meta.scales.device.type, meta.zeros.device.type} == {"meta"}
    assert qw.to("cpu").equal(qw)


@pytest.mark.gpu
@pytest.mark.parametrize("t", [tilevm.int3, tilevm.uint4, tilevm.float6_e3m2, tilevm.float8_e4m3])
def test_quantizing_on_the_gpu_gives_the_cpu_bits(t):
    w = torch.from_numpy(sample_weight(256, 512))
    zero_point = t.kind == "uint"
    on_gpu = quantize(w.cuda(), t, 128, zero_point)
    assert on_gpu.device.type == "cuda"
    assert on_gpu.cpu().equal(quantize(w, t, 128, zero_point))
    assert torch.equal(on_gpu.codes().cpu(), on_gpu.cpu().codes())
    assert torch.equal(on_gpu.dequantize().cpu(), on_gpu.cpu().dequantize())


def test_repr_names_the_essentials():
    text = repr(quantized(tilevm.uint3, True, 64, torch.bfloat16))
    assert text.startswith("QuantizedWeight(uint3, out_features=72, in_features=256")
    assert "group_size=64" in text and "bfloat16" in text and "zeros=per-group" in text


def test_tilevm_exposes_quantize_lazily():
    assert tilevm.quantize is quantize and tilevm.QuantizedWeight is QuantizedWeight
    with pytest.raises(AttributeError, match="no attribute 'quantise'"):
        tilevm.quantise  # noqa: B018


# -- errors ---------------------------------------------------------------------------------------
W = torch.randn(64, 128)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: quantize(W, "float16"), QuantError, "dtype must be a low-bit type"),
        (lambda: quantize(W, "int9"), QuantError, "dtype must name a low-bit type"),
        (lambda: quantize(W, "int4", group_size=100), QuantError, "group_size must be one of"),
        (lambda: quantize(W[:, :96], "int4", 64), QuantError, "K = 96 must be a multiple"),
        (lambda: quantize(W, "int4", zero_point=True), QuantError, "zero points apply to uint"),
        (lambda: quantize(W, "e2m1", zero_point=True), QuantError, "zero points apply to uint"),
        (lambda: quantize(W, "int1"), QuantError, "use dtype='uint1' with zero_point=True"),
        (lambda: quantize(W, "uint1"), QuantError, "uint1 without zero points"),
        (lambda: quantize(W[None], "int4"), QuantError, "weight \\[N, K\\] must have a 2-D"),
        (lambda: quantize(W.int(), "int4"), QuantError, "weight must be a float tensor"),
        (lambda: quantize(W.tolist(), "int4"), QuantTypeError, "weight must be a torch.Tensor"),
        (lambda: quantize(W / 0, "int4"), QuantError, "weight must be finite"),
        (lambda: quantize(W, "int4", scale_dtype=torch.float32), QuantError, "scale_dtype must"),
        (lambda: quantize(W * 1e9, "int8"), QuantError, "overflows torch.float16"),
        (lambda: quantize(W, "int4", zero_point=1), QuantTypeError, "zero_point must be a bool"),
    ],
)
def test_quantize_rejects_bad_arguments_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _from_codes(**kwargs):
    args = {
        "codes": torch.zeros(64, 128, dtype=torch.int64),
        "scales": torch.ones(1, 64, dtype=torch.float16),
        "zeros": None,
        "dtype": "uint4",
        "group_size": 128,
    }
    args.update(kwargs)
    return QuantizedWeight.from_codes(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dtype": None}, QuantError, "dtype is required"),
        ({"codes": torch.full((64, 128), 16)}, QuantError, "uint4 codes 0..15; got 16 at"),
        ({"codes": torch.full((64, 128), -1)}, QuantError, "uint4 codes 0..15; got -1"),
        ({"codes": torch.full((64, 128), -9), "dtype": "int4"}, QuantError, "signed int4 values"),
        ({"codes": torch.zeros(64, 128)}, QuantError, "codes must be an integer tensor"),
        (
            {"codes": torch.zeros(64, dtype=torch.int64)},
            QuantError,
            "codes \\[N, K\\] must have a 2-D shape",
        ),
        ({"codes": [[0]]}, QuantTypeError, "codes must be a torch.Tensor or numpy array"),
        ({"scales": torch.ones(2, 64).half()}, QuantError, "scales \\[G, N\\] must have shape"),
        ({"scales": torch.ones(1, 64)}, QuantError, "scales must be float16 or bfloat16"),
        ({"scales": torch.full((1, 64), float("inf")).half()}, QuantError, "scales must be fin"),
        ({"zeros": torch.ones(1, 64), "dtype": "int4"}, QuantError, "zero points apply to uint"),
        ({"zeros": torch.full((1, 64), 1.5)}, QuantError, "zeros must be whole numbers in 0..15"),
        ({"zeros": torch.full((1, 64), 16)}, QuantError, "zeros must be whole numbers"),
        ({"zeros": torch.ones(2, 64)}, QuantError, "zeros \\[G, N\\] must have shape"),
        ({"group_size": 256}, QuantError, "group_size must be one of"),
        (
            {"codes": torch.full((64, 128), 0x7F), "dtype": "float8_e4m3"},
            QuantError,
            "inf/NaN code 127",
        ),
        ({"zeros": torch.ones(1, 64), "zero_offset": 3}, QuantError, "zeros or zero_offset"),
        ({"zero_offset": 16}, QuantError, "zero_offset must lie in 0..15"),
        ({"zero_offset": 1, "dtype": "int4"}, QuantError, "zero_offset must be 0 for int4"),
        ({"scales": torch.ones(1, 64, device="meta").half()}, QuantError, "scales must be on cpu"),
    ],
)
def test_from_codes_rejects_bad_arguments_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        _from_codes(**kwargs)


def test_from_state_dict_checks_format_keys_and_shapes():
    state = quantized(tilevm.int3, False, 64, torch.bfloat16).state_dict()
    with pytest.raises(QuantError, match=r"unsupported packing format 'tile32x32\.v0'"):
        QuantizedWeight.from_state_dict({**state, "format": "tile32x32.v0"})
    with pytest.raises(QuantError, match="state lacks 'scales'"):
        QuantizedWeight.from_state_dict({k: v for k, v in state.items() if k != "scales"})
    with pytest.raises(QuantError, match="unknown keys 'extra'"):
        QuantizedWeight.from_state_dict({**state, "extra": 1})
    with pytest.raises(QuantError, match="packed must be uint8 of shape \\[4, 2, 1536\\]"):
        QuantizedWeight.from_state_dict({**state, "packed": state["packed"][:, :1]})
    with pytest.raises(QuantError, match=r"int4 weight; got torch\.uint8 of shape \[4, 2, 1536\]"):
        QuantizedWeight.from_state_dict({**state, "dtype": "int4"})
    with pytest.raises(QuantError, match="scales must be contiguous"):
        QuantizedWeight.from_state_dict({**state, "scales": state["scales"].T.contiguous().T})
    with pytest.raises(QuantError, match="zero points apply to uint types"):
        QuantizedWeight.from_state_dict({**state, "zeros": state["scales"]})
    with pytest.raises(QuantTypeError, match="state must be a mapping"):
        QuantizedWeight.from_state_dict([state])


# -- packing --------------------------------------------------------------------------------------
def test_tile_layout_is_four_by_eight_mma_b_fragments():
    layout = tile_layout()
    assert layout.shape == (64, 64) and layout.num_threads == 32 and layout.local_size == 128
    table = layout.table()
    assert [tuple(int(v) for v in table[0, r]) for r in range(5)] == [
        (0, 0),
        (1, 0),
        (8, 0),
        (9, 0),
        (0, 8),
    ]


@pytest.mark.parametrize("nbits", range(1, 9))
def test_code_layout_reorders_each_threads_fragments_within_each_k_step(nbits):
    frags, codes = tile_layout().table(), code_layout(nbits).table()  # (thread, register, 2)
    for step in range(4):  # a step's 32 registers hold the same elements, in another order
        part = slice(32 * step, 32 * step + 32)
        for t in range(32):
            assert sorted(map(tuple, frags[t, part])) == sorted(map(tuple, codes[t, part]))


def _pair_bits(nbits):
    """Per mma lane pair of thread 0 (registers 2p, 2p + 1 of the fragments), the bit positions
    of its two codes in the thread's packed bit string."""
    frags, codes = tile_layout().table()[0], code_layout(nbits).table()[0]
    where = {tuple(c): r for r, c in enumerate(codes)}
    return [tuple(where[tuple(frags[2 * p + q])] * nbits for q in (0, 1)) for p in range(64)]


@pytest.mark.parametrize("nbits", [1, 2, 4, 8])
def test_where_the_width_allows_each_pair_sits_in_the_two_halves_of_one_word(nbits):
    for p0, p1 in _pair_bits(nbits):
        assert p1 - p0 == 16 and (p0 // 32, p0 % 32 < 16) == (p1 // 32, True)


def test_the_module_docs_worked_example_of_the_int4_code_order():
    codes = code_layout(4).table()[0]
    assert [tuple(int(v) for v in codes[r]) for r in range(8)] == [
        (0, 0),
        (0, 8),
        (0, 16),
        (0, 24),
        (1, 0),
        (1, 8),
        (1, 16),
        (1, 24),
    ]
    assert _pair_bits(4)[0] == (0, 16)
    assert code_layout(4, "tile64x64.v1") == tile_layout()
    with pytest.raises(tilevm.PackError, match="format must be one of"):
        code_layout(4, "tile64x64.v9")


@pytest.mark.parametrize("older", ["tile64x64.v1", "tile64x64.v2"])
@pytest.mark.parametrize("nbits", [1, 3, 4, 8])
def test_weights_packed_in_an_older_order_convert_to_the_current_one(nbits, older):
    n, k = 70, 130
    codes = torch.from_numpy(np.random.default_rng(nbits).integers(0, 2**nbits, (n, k)))
    old = pack_reference(codes, nbits, older)
    assert torch.equal(unpack_codes(old, nbits, n, k, older), codes.to(torch.uint8))
    current = pack_codes(codes, nbits)
    assert not torch.equal(old, current)
    assert torch.equal(convert_packed(old, nbits, n, k, older), current)
    assert convert_packed(current, nbits, n, k, FORMAT) is current


def test_a_thread_of_a_tile_holds_eight_adjacent_weight_columns():
    """What the v3 column order is for: the tile columns a lane's fragments hold (g, g + 8,
    ..., g + 56) are the weight columns 8 g ... 8 g + 7, so their scales are one 16-byte run."""
    columns = packed_columns(128, FORMAT)
    assert sorted(columns) == list(range(128))
    for lane in range(32):
        held = tile_layout().table()[lane][..., 1]  # the tile columns of the lane's registers
        for j in range(2):
            weight = {int(columns[64 * j + c]) for c in held.reshape(-1)}
            assert weight == set(range(64 * j + 8 * (lane // 4), 64 * j + 8 * (lane // 4) + 8))
    assert torch.equal(tile_columns(tile_columns(torch.arange(192))), torch.arange(192))
    assert torch.equal(tile_columns(torch.arange(128)), torch.from_numpy(columns))
    for bad in (torch.arange(100), torch.tensor(3)):
        with pytest.raises(tilevm.PackError, match="tile_columns: rows must have a first"):
            tile_columns(bad)


def test_a_state_dict_saved_in_the_v1_order_loads_packed_anew():
    qw = quantized(tilevm.int3, False, 64, torch.bfloat16)
    v1 = pack_v1(unpack_codes(qw.packed, 3, *qw.shape), 3)
    state = {**qw.state_dict(), "packed": v1, "format": "tile64x64.v1"}
    loaded = QuantizedWeight.from_state_dict(state)
    assert loaded.format == FORMAT and loaded.equal(qw)


@pytest.mark.parametrize("nbits", range(1, 9))
def test_pack_codes_equals_pack_for_layout_tile_by_tile(nbits):
    n, k = 131, 77  # padded to 192 x 128
    rng = np.random.default_rng(nbits)
    codes = rng.integers(0, 2**nbits, (n, k))
    packed = pack_codes(torch.from_numpy(codes), nbits)
    assert packed.shape == (2, 3, 512 * nbits) and packed.is_contiguous()
    b = np.zeros((128, 192), np.int64)
    b[:k, :n] = codes.T
    b = b[:, packed_columns(192, FORMAT)]
    for i in range(2):
        for j in range(3):
            tile = b[64 * i : 64 * i + 64, 64 * j : 64 * j + 64]
            np.testing.assert_array_equal(
                packed[i, j].numpy(), pack_for_layout(tile, code_layout(nbits), nbits)
            )
    np.testing.assert_array_equal(unpack_codes(packed, nbits, n, k).numpy(), codes)
    # the padding holds the code of 0
    assert not unpack_codes(packed, nbits, 192, 128)[n:].any()
    assert not unpack_codes(packed, nbits, 192, 128)[:, k:].any()


@settings(max_examples=25, deadline=None)
@given(
    nbits=st.integers(1, 8),
    n=st.integers(1, 140),
    k=st.integers(1, 140),
    seed=st.integers(0, 2**32 - 1),
)
def test_unpack_inverts_pack(nbits, n, k, seed):
    codes = torch.from_numpy(np.random.default_rng(seed).integers(0, 2**nbits, (n, k)))
    packed = pack_codes(codes, nbits)
    assert packed.shape == packed_shape(n, k, nbits)
    assert torch.equal(unpack_codes(packed, nbits, n, k), codes.to(torch.uint8))


def test_pack_codes_accepts_non_contiguous_codes():
    codes = torch.randint(0, 8, (128, 64), dtype=torch.uint8)
    assert torch.equal(pack_codes(codes.T, 3), pack_codes(codes.T.contiguous(), 3))


def test_packing_checks_its_arguments():
    with pytest.raises(tilevm.PackError, match=r"codes must lie in 0\.\.7 \(3 bits\)"):
        pack_codes(torch.full((4, 4), 8), 3)
    with pytest.raises(tilevm.PackError, match=r"nbits must be an int in 1\.\.8"):
        pack_codes(torch.zeros(4, 4, dtype=torch.uint8), 9)
    with pytest.raises(tilevm.PackError, match="codes_nk must be an integer tensor"):
        pack_codes(torch.zeros(4, 4), 3)
    with pytest.raises(tilevm.PackError, match="packed must be uint8 of shape \\(1, 1, 1536\\)"):
        unpack_codes(torch.zeros(1, 1, 512, dtype=torch.uint8), 3, 4, 4)


def test_packing_a_4096_square_int3_weight_is_vectorised():
    """A guard against per-tile Python loops (4096 tiles here), not a benchmark: the
    vectorised packer takes about 0.1 s each way; a loop over tiles takes tens of seconds."""
    codes = torch.randint(0, 8, (4096, 4096), dtype=torch.uint8)
    start = time.perf_counter()
    packed = pack_codes(codes, 3)
    back = unpack_codes(packed, 3, 4096, 4096)
    elapsed = time.perf_counter() - start
    assert torch.equal(back, codes)
    assert elapsed < 5.0, f"packing and unpacking took {elapsed:.2f} s"


@pytest.mark.gpu
def test_packing_on_the_gpu_gives_the_cpu_bytes():
    codes = torch.randint(0, 32, (200, 300), dtype=torch.uint8)
    packed = pack_codes(codes.cuda(), 5)
    assert packed.device.type == "cuda"
    assert torch.equal(packed.cpu(), pack_codes(codes, 5))
    assert torch.equal(unpack_codes(packed, 5, 200, 300).cpu(), codes)


def test_quantize_accepts_every_group_size_only_when_k_divides():
    for gs in (32, 64, 128, -1):
        assert quantize(torch.randn(8, 128), "int2", gs).num_groups == (
            1 if gs == -1 else 128 // gs
        )


@pytest.mark.gpu
def test_to_cuda_and_back_keeps_the_bits():
    qw = quantized(tilevm.float4_e2m1, False, 128, torch.float16)
    assert qw.cuda().device.type == "cuda"
    assert qw.cuda().cpu().equal(qw)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: code_layout(0), r"code_layout: nbits must be an int in 1\.\.8; got 0"),
        (lambda: code_layout(4, "tile64x64.v9"), "code_layout: format must be one of"),
        (
            lambda: convert_packed(torch.zeros(1, 1, 512, dtype=torch.uint8), 1, 64, 64, "v0"),
            "convert_packed: format must be one of .*got 'v0'",
        ),
        (
            lambda: convert_packed(
                torch.zeros(1, 1, 500, dtype=torch.uint8), 1, 64, 64, "tile64x64.v1"
            ),
            r"convert_packed: packed must be uint8 of shape \(1, 1, 512\) .* got torch\.uint8 of "
            r"shape \(1, 1, 500\)",
        ),
        (
            lambda: convert_packed(torch.zeros(1, 1, 512), 1, 64, 64, "tile64x64.v1"),
            r"convert_packed: packed must be uint8 .* got torch\.float32",
        ),
        (
            lambda: convert_packed(torch.zeros(1, 1, 512, dtype=torch.uint8), 1, 0, 64, FORMAT),
            "convert_packed: n must be a positive int; got 0",
        ),
        (
            lambda: convert_packed([0], 1, 64, 64, FORMAT),
            "convert_packed: packed must be a torch.Tensor; got list",
        ),
    ],
)
def test_code_layout_and_convert_packed_name_a_bad_argument(call, message):
    with pytest.raises(tilevm.PackError, match=message):
        call()
