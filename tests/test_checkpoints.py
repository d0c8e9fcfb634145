"""GPTQ and AWQ checkpoints imported exactly, and act-order weights (``perm``) end to end.

The checkpoints' tensors are built here with a packer of our own: Python integers as bit
streams, one field after another, so the importer's vectorised unpacking is checked
against the format's definition, not against itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tilevm
from tilevm.nn import QuantLinear
from tilevm.ops import quant_matmul
from tilevm.quant import AWQ_ORDER, QuantError, QuantTypeError, from_awq, from_gptq, unpack_int32


def _stream_words(fields, bits: int, words: int) -> list[int]:
    """``fields`` laid end to end from bit 0 of one integer, cut into 32-bit words (int32)."""
    value = 0
    for i, f in enumerate(fields):
        value |= int(f) << (bits * i)
    out = [(value >> (32 * w)) & 0xFFFFFFFF for w in range(words)]
    return [w - (1 << 32) if w >= 1 << 31 else w for w in out]


def _pack_rows(fields: np.ndarray, bits: int) -> torch.Tensor:
    """int32 ``[R, F * bits / 32]``: each row of ``fields [R, F]`` as one bit stream."""
    words = fields.shape[1] * bits // 32
    return torch.tensor([_stream_words(row, bits, words) for row in fields], dtype=torch.int32)


def _gptq(rng, n, k, bits, group, act_order, v2=False, symmetric=False):
    """A GPTQ layer's tensors and the weight they mean, ``(q - z) * s`` per feature's group."""
    q = rng.integers(0, 1 << bits, size=(k, n))
    groups = k // group
    z = (
        np.full((groups, n), 1 << (bits - 1))
        if symmetric
        else rng.integers(1, 1 << bits, (groups, n))
    )
    s = torch.from_numpy(rng.uniform(0.002, 0.02, (groups, n))).half()
    if act_order:
        g_idx = torch.from_numpy(rng.permutation(k) // group).int()
    else:
        g_idx = torch.arange(k, dtype=torch.int32) // group
    qweight = _pack_rows(q.T, bits).T.contiguous()  # packed along K: [K * b / 32, N]
    qzeros = _pack_rows(z if v2 else z - 1, bits)  # packed along N
    gi = g_idx.long()
    w = (torch.from_numpy(q).float() - torch.from_numpy(z).float()[gi]) * s.float()[gi]
    return (qweight, qzeros, s, g_idx), w.half().T.contiguous()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("act_order", [False, True])
def test_a_gptq_layer_dequantises_to_the_weight_its_tensors_mean(bits, act_order):
    rng = np.random.default_rng(bits * 10 + act_order)
    (qweight, qzeros, s, g_idx), want = _gptq(rng, 64, 256, bits, 64, act_order)
    qw = from_gptq(qweight, qzeros, s, g_idx, bits=bits, group_size=64)
    assert qw.dtype == tilevm.dtype(f"uint{bits}") and qw.shape == (64, 256)
    assert (qw.perm is not None) == act_order
    assert torch.equal(qw.dequantize(), want)


def test_gptq_v2_stores_the_zero_itself_and_symmetric_zeros_become_the_fixed_offset():
    rng = np.random.default_rng(7)
    (qweight, qzeros, s, g_idx), want = _gptq(rng, 64, 128, 4, 32, False, v2=True)
    qw = from_gptq(qweight, qzeros, s, g_idx, bits=4, checkpoint_format="gptq_v2")
    assert qw.zeros is not None and torch.equal(qw.dequantize(), want)
    (qweight, qzeros, s, g_idx), want = _gptq(rng, 64, 128, 4, 32, False, symmetric=True)
    qw = from_gptq(qweight, qzeros, s, bits=4)
    assert qw.zeros is None and qw.zero_offset == 8 and qw.group_size == 32
    assert torch.equal(qw.dequantize(), want)


def test_an_awq_layer_dequantises_to_the_weight_its_tensors_mean():
    rng = np.random.default_rng(3)
    n, k, group = 128, 256, 128
    q = rng.integers(0, 16, size=(k, n))
    z = rng.integers(0, 16, size=(k // group, n))
    s = torch.from_numpy(rng.uniform(0.002, 0.02, (k // group, n))).half()

    def awq_pack(fields):  # word j, nibble i: column 8 j + AWQ_ORDER[i]
        order = [8 * j + AWQ_ORDER[i] for j in range(fields.shape[1] // 8) for i in range(8)]
        return _pack_rows(fields[:, order], 4)

    qw = from_awq(awq_pack(q), awq_pack(z), s, group_size=group)
    gi = torch.arange(k) // group
    want = (torch.from_numpy(q).float() - torch.from_numpy(z).float()[gi]) * s.float()[gi]
    assert torch.equal(qw.dequantize(), want.half().T)


def test_unpacking_reads_fields_across_word_boundaries():
    fields = np.random.default_rng(0).integers(0, 8, size=(5, 64))
    assert torch.equal(unpack_int32(_pack_rows(fields, 3), 3, 64), torch.from_numpy(fields).byte())
    with pytest.raises(QuantError, match="need 7 words a row"):
        unpack_int32(_pack_rows(fields, 3), 3, 70)


def test_an_act_order_weight_multiplies_exactly_as_its_features_in_stored_order():
    """quant_matmul(x, w with perm) is x[:, perm] times the stored weight, bit for bit."""
    rng = np.random.default_rng(11)
    (qweight, qzeros, s, g_idx), want = _gptq(rng, 128, 256, 3, 64, True)
    qw = from_gptq(qweight, qzeros, s, g_idx, bits=3)
    stored = tilevm.QuantizedWeight.from_codes(
        qw.codes()[:, qw.perm], qw.scales, qw.zeros, dtype="uint3", group_size=64
    )
    x = torch.randn(5, 256).half()
    y = quant_matmul(x, qw)
    assert torch.equal(y, quant_matmul(x[:, qw.perm], stored))
    ref = x.float() @ want.float().T
    assert ((y.float() - ref).abs().max() / ref.abs().max()) < 2e-3


def test_an_act_order_layer_saves_and_loads_and_names_a_mismatch():
    rng = np.random.default_rng(5)
    (qweight, qzeros, s, g_idx), _ = _gptq(rng, 64, 128, 4, 32, True)
    layer = QuantLinear.from_quantized(from_gptq(qweight, qzeros, s, g_idx, bits=4))
    assert layer.act_order and "act_order=True" in repr(layer)
    state = layer.state_dict()
    fresh = QuantLinear(128, 64, "uint4", 32, bias=False, zero_point=True, act_order=True)
    fresh.load_state_dict(state)
    x = torch.randn(2, 128).half()
    assert torch.equal(fresh(x), layer(x))
    plain = QuantLinear(128, 64, "uint4", 32, bias=False, zero_point=True)
    with pytest.raises(QuantError, match="act_order=True, but this layer has act_order=False"):
        plain.load_state_dict(state)
    state["perm"] = torch.zeros(128, dtype=torch.int64)
    with pytest.raises(QuantError, match=r"permutation of 0\.\.127; 1 is missing"):
        fresh.load_state_dict(state)
    w = tilevm.QuantizedWeight.from_state_dict(layer.qweight.state_dict())
    assert w.equal(layer.qweight)


def test_bad_checkpoints_get_errors_that_name_the_argument():
    rng = np.random.default_rng(1)
    (qweight, qzeros, s, g_idx), _ = _gptq(rng, 64, 128, 4, 32, True)
    with pytest.raises(QuantError, match="qweight must be int32"):
        from_gptq(qweight.long(), qzeros, s, bits=4)
    with pytest.raises(QuantError, match="group_size = 64 but the scales have 4 groups"):
        from_gptq(qweight, qzeros, s, bits=4, group_size=64)
    with pytest.raises(QuantError, match="qzeros must have shape"):
        from_gptq(qweight, qzeros[:, :4], s, bits=4)
    with pytest.raises(QuantError, match="checkpoint_format must be one of"):
        from_gptq(qweight, qzeros, s, bits=4, checkpoint_format="marlin")
    with pytest.raises(QuantError, match="each group must have group_size = 32"):
        from_gptq(qweight, qzeros, s, torch.zeros(128, dtype=torch.int32), bits=4)
    with pytest.raises(QuantError, match=r"g_idx must hold groups 0\.\.3"):
        from_gptq(qweight, qzeros, s, g_idx + 1, bits=4)
    all_ones = torch.full_like(qzeros, -1)  # the original format's stored zero point 0
    with pytest.raises(QuantError, match="re-export the checkpoint as gptq_v2"):
        from_gptq(qweight, all_ones, s, bits=4)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 16, 100])
def test_an_act_order_weight_on_the_gpu_agrees_with_the_interpreter(m):
    rng = np.random.default_rng(m)
    (qweight, qzeros, s, g_idx), want = _gptq(rng, 256, 512, 3, 128, True)
    qw = from_gptq(qweight, qzeros, s, g_idx, bits=3)
    x = torch.randn(m, 512).half()
    on_cpu = quant_matmul(x, qw)
    on_gpu = quant_matmul(x.cuda(), qw.cuda()).cpu()
    ref = x.float() @ want.float().T
    for y in (on_cpu, on_gpu):
        assert ((y.float() - ref).abs().max() / ref.abs().max()) < 2e-3
    assert ((on_gpu.float() - on_cpu.float()).abs().max() / ref.abs().max()) < 2e-3


def test_torch_compile_traces_an_act_order_layer_without_graph_breaks():
    rng = np.random.default_rng(2)
    (qweight, qzeros, s, g_idx), _ = _gptq(rng, 64, 128, 4, 32, True)
    layer = QuantLinear.from_quantized(from_gptq(qweight, qzeros, s, g_idx, bits=4))
    x = torch.randn(3, 128).half()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), layer(x))


def test_more_bad_gptq_and_awq_tensors_are_named():
    rng = np.random.default_rng(4)
    (qweight, qzeros, s, _), _ = _gptq(rng, 64, 128, 4, 32, False)
    cases = [
        (lambda: from_gptq(qweight, qzeros, s, bits=9), r"bits must be an int in 1\.\.8"),
        (lambda: from_gptq(qweight[:1], qzeros, s, bits=3), "no whole number of 3-bit fields"),
        (lambda: from_gptq(qweight[0], qzeros, s, bits=4), "qweight must have a 2-D shape"),
        (
            lambda: from_gptq(qweight, qzeros, s[:, :32], bits=4),
            r"scales must have shape \[G, 64\]",
        ),
        (
            lambda: from_gptq(qweight, qzeros, s.float(), bits=4),
            "scales must be float16 or bfloat16",
        ),
        (lambda: from_gptq(qweight, qzeros.long(), s, bits=4), "qzeros must be int32"),
        (
            lambda: from_gptq(qweight, qzeros, s[:3], bits=4),
            "3 groups, which do not divide K = 128",
        ),
    ]
    awq_w, awq_z = qweight[:, :8].repeat(8, 1), qzeros[:, :8]  # [128, 8], [4, 8]: K 128, N 64
    cases += [
        (lambda: from_awq(awq_w.long(), awq_z, s), "qweight must be int32"),
        (lambda: from_awq(awq_w, awq_z[:, :4], s), r"qzeros must have shape \[4, 8\]"),
        (lambda: from_awq(awq_w, awq_z, s[:, :8]), r"scales must have shape \[G, 64\]"),
        (lambda: from_awq(awq_w, awq_z, s, group_size=64), "group_size = 64 but the scales have 4"),
    ]
    for call, message in cases:
        with pytest.raises(QuantError, match=message):
            call()
    assert from_awq(awq_w, awq_z, s).shape == (64, 128)


@pytest.mark.parametrize(
    ("g_idx", "message"),
    [
        (torch.zeros(2, 64, dtype=torch.int32), "g_idx must be a 1-D integer tensor"),
        (torch.zeros(128), "g_idx must be a 1-D integer tensor"),
        (torch.arange(64) // 32, r"g_idx must have shape \[128\]"),
        (torch.arange(128, device="meta") // 32, "g_idx must be on cpu like the codes"),
    ],
)
def test_from_codes_names_a_bad_g_idx(g_idx, message):
    codes = torch.randint(0, 16, (64, 128))
    with pytest.raises(QuantError, match=message):
        tilevm.QuantizedWeight.from_codes(
            codes, torch.ones(4, 64).half(), dtype="uint4", group_size=32, g_idx=g_idx
        )


@pytest.mark.parametrize(
    ("perm", "error", "message"),
    [
        ([0, 1], QuantTypeError, "perm must be a torch.Tensor or None"),
        (torch.arange(128, dtype=torch.int32), QuantError, r"perm must be int64 of shape \[128\]"),
        (torch.arange(64), QuantError, r"perm must be int64 of shape \[128\]"),
        (torch.arange(256)[::2], QuantError, "perm must be contiguous"),
        (torch.arange(128, device="meta"), QuantError, r"perm must be on the device of packed"),
    ],
)
def test_a_weight_names_a_bad_perm(perm, error, message):
    w = tilevm.quantize(torch.randn(64, 128), "int4", group_size=32)
    with pytest.raises(error, match=message):
        tilevm.QuantizedWeight(
            dtype=w.dtype, shape=w.shape, group_size=32, packed=w.packed, scales=w.scales, perm=perm
        )


def test_act_order_must_be_a_bool():
    with pytest.raises(QuantTypeError, match="act_order must be a bool"):
        QuantLinear(128, 64, "int4", 32, act_order="yes")
