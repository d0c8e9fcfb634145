"""tilevm.nn: QuantLinear and quantize_model."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from packing_testing import pack_v1
from torch import nn

import tilevm
from tilevm.nn import QuantLinear, quantize_model
from tilevm.quant import QuantError, QuantizedWeight, QuantTypeError, quantize, unpack_codes


def _linear(k: int = 256, n: int = 96, bias: bool = True, dtype=torch.float32) -> nn.Linear:
    torch.manual_seed(k * 1000 + n)
    return nn.Linear(k, n, bias=bias, dtype=dtype)


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only: tensors and plain metadata only


# -- construction ---------------------------------------------------------------------------------
def test_a_new_layer_has_the_buffers_of_its_weight_and_computes_zero():
    layer = QuantLinear(
        256, 96, "uint4", group_size=64, zero_point=True, scale_dtype=torch.bfloat16
    )
    assert layer.packed.shape == (4, 2, 2048) and layer.packed.dtype == torch.uint8
    assert layer.scales.shape == (4, 96) and layer.scales.dtype == torch.bfloat16
    assert layer.zeros.shape == (4, 96) and layer.bias.dtype == torch.bfloat16
    assert not layer.bias.requires_grad
    assert set(layer.state_dict()) == {"packed", "scales", "zeros", "bias", "_extra_state"}
    qw = layer.qweight
    assert isinstance(qw, QuantizedWeight) and qw.packed is layer.packed
    assert qw.dequantize().abs().max() == 0


@pytest.mark.parametrize("dtype", ["int3", "uint5", "float6_e3m2", "uint1"])
def test_a_new_layer_without_zero_points_holds_the_code_of_zero(dtype):
    layer = QuantLinear(128, 64, dtype, bias=False)
    assert layer.bias is None and layer.zeros is None
    assert layer.qweight.dequantize().abs().max() == 0


def test_extra_repr_lists_the_configuration():
    layer = QuantLinear(128, 64, "int3", group_size=-1, bias=False)
    assert repr(layer) == (
        "QuantLinear(in_features=128, out_features=64, dtype=int3, group_size=-1, bias=False, "
        "zero_point=False, scale_dtype=float16)"
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((100, 64, "int4"), {}, "K = 100 must be a multiple of group_size = 128"),
        ((128, 64, "int4"), {"zero_point": True}, "zero points apply to uint types"),
        ((128, 64, "float16"), {}, "dtype must be a low-bit type"),
        ((128, 0, "int4"), {}, "out_features must be a positive int"),
        ((128, 64, "int4"), {"scale_dtype": torch.float32}, "scale_dtype must be"),
        ((128, 64, "int4"), {"group_size": 48}, "group_size must be one of"),
    ],
)
def test_bad_construction_arguments_are_named(args, kwargs, message):
    with pytest.raises(QuantError, match=message):
        QuantLinear(*args, **kwargs)


# -- from_linear ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "zero_point"), [("int3", False), ("uint4", True), ("float4_e2m1", False)]
)
def test_from_linear_quantises_the_weight_and_keeps_the_bias(dtype, zero_point):
    linear = _linear()
    layer = QuantLinear.from_linear(linear, dtype, group_size=64, zero_point=zero_point)
    expected = quantize(linear.weight, dtype, group_size=64, zero_point=zero_point)
    assert layer.qweight.equal(expected)
    assert layer.bias.dtype == torch.float16
    assert torch.equal(layer.bias, linear.bias.detach().half())
    assert (layer.in_features, layer.out_features) == (256, 96)


def test_from_linear_takes_the_half_type_of_a_half_linear():
    layer = QuantLinear.from_linear(_linear(dtype=torch.bfloat16, bias=False), "int4")
    assert layer.scale_dtype == torch.bfloat16 and layer.bias is None


def test_from_linear_rejects_other_modules():
    with pytest.raises(QuantTypeError, match=r"linear must be an nn\.Linear; got Conv1d"):
        QuantLinear.from_linear(nn.Conv1d(4, 4, 1), "int4")


def test_from_quantized_wraps_imported_codes():
    codes = torch.randint(0, 16, (64, 128))
    scales = torch.rand(1, 64).half()
    qw = QuantizedWeight.from_codes(codes, scales, dtype="uint4", group_size=-1, zero_offset=0)
    layer = QuantLinear.from_quantized(qw, bias=torch.ones(64))
    assert layer.zero_offset == 0 and layer.qweight.equal(qw)
    assert layer.bias.dtype == torch.float16
    with pytest.raises(QuantError, match=r"bias must have shape \[64\]; got \[65\]"):
        QuantLinear.from_quantized(qw, bias=torch.ones(65))


# -- state ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "zero_point", "group_size"),
    [("int3", False, 128), ("uint5", True, 64), ("uint2", False, -1), ("float8_e5m2", False, 32)],
)
def test_state_dict_round_trips_into_a_fresh_layer(dtype, zero_point, group_size):
    layer = QuantLinear.from_linear(_linear(), dtype, group_size, zero_point)
    state = _round_trip(layer.state_dict())
    assert state["_extra_state"]["format"] == "tile64x64.v3"
    fresh = QuantLinear(256, 96, dtype, group_size, zero_point=zero_point)
    fresh.load_state_dict(state)
    assert fresh.qweight.equal(layer.qweight)
    assert torch.equal(fresh.bias, layer.bias)


def test_a_checkpoint_in_the_v1_packed_order_loads_packed_anew():
    layer = QuantLinear.from_linear(_linear(), "int4", 128)
    state = layer.state_dict()
    n, k = layer.out_features, layer.in_features
    v1 = pack_v1(unpack_codes(state["packed"], 4, n, k), 4)
    extra = {**state["_extra_state"], "format": "tile64x64.v1"}
    state = {**state, "packed": v1, "_extra_state": extra}
    fresh = QuantLinear(k, n, "int4", 128)
    fresh.load_state_dict(state)
    assert fresh.qweight.equal(layer.qweight)


def test_a_whole_module_round_trips_through_torch_save():
    layer = QuantLinear.from_linear(_linear(), "int6")
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.qweight.equal(layer.qweight)


def test_loading_keeps_the_checkpoints_zero_offset():
    qw = QuantizedWeight.from_codes(
        torch.randint(0, 8, (96, 256)), torch.rand(2, 96).half(), dtype="uint3", zero_offset=3
    )
    state = QuantLinear.from_quantized(qw).state_dict()
    fresh = QuantLinear(256, 96, "uint3", bias=False)
    assert fresh.zero_offset == 4
    fresh.load_state_dict(state)
    assert fresh.zero_offset == 3 and fresh.qweight.equal(qw)


def test_loading_a_checkpoint_of_another_type_says_what_differs():
    state = QuantLinear.from_linear(_linear(), "int4").state_dict()
    with pytest.raises(QuantError, match=r"holds a int4 weight \[96, 256\].*this layer is uint4"):
        QuantLinear(256, 96, "uint4").load_state_dict(state)
    state["_extra_state"] = {**state["_extra_state"], "format": "tile32x32.v0"}
    with pytest.raises(QuantError, match="unsupported packing format"):
        QuantLinear(256, 96, "int4").load_state_dict(state)


def test_to_moves_buffers_and_bias():
    layer = QuantLinear(128, 64, "uint3", zero_point=True).to("meta")
    assert {t.device.type for t in (layer.packed, layer.scales, layer.zeros, layer.bias)} == {
        "meta"
    }
    assert layer.qweight.device.type == "meta"


@pytest.mark.gpu
def test_cuda_moves_everything():
    layer = QuantLinear.from_linear(_linear(), "uint4", zero_point=True).cuda()
    assert layer.qweight.device.type == "cuda" and layer.bias.device.type == "cuda"


# -- quantize_model -------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.ModuleDict({"q": nn.Linear(128, 128), "o": nn.Linear(128, 128)})
        self.mlp = nn.Sequential(nn.Linear(128, 256), nn.GELU(), nn.Linear(256, 128))


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.odd = nn.Linear(100, 128)
        self.lm_head = nn.Linear(128, 50)


def _kinds(model: nn.Module) -> dict[str, str]:
    return {
        name: type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, QuantLinear))
    }


def test_quantize_model_replaces_eligible_linears_and_warns_about_the_rest():
    model = Model()
    weight = model.blocks[0].attn["q"].weight.detach().clone()
    with pytest.warns(UserWarning, match=r"left 1 nn.Linear.*odd \(in_features=100\)"):
        assert quantize_model(model, "int4", skip=["lm_head"]) is model
    kinds = _kinds(model)
    assert kinds.pop("odd") == "Linear" and kinds.pop("lm_head") == "Linear"
    assert set(kinds.values()) == {"QuantLinear"} and len(kinds) == 8
    assert model.blocks[0].attn["q"].qweight.equal(quantize(weight, "int4"))


def test_quantize_model_skips_by_pattern_or_callable():
    model = Model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_model(model, "uint3", group_size=32, zero_point=True, skip="blocks.*.attn.*")
    kinds = _kinds(model)
    assert kinds["blocks.1.attn.q"] == "Linear" and kinds["blocks.1.mlp.0"] == "QuantLinear"
    assert kinds["odd"] == "Linear"  # 100 is not a multiple of 32
    model = Model()
    quantize_model(model, "int8", group_size=-1, skip=lambda name, m: m.out_features == 50)
    kinds = _kinds(model)
    assert kinds["lm_head"] == "Linear" and kinds["odd"] == "QuantLinear"


def test_quantize_model_replaces_a_shared_linear_by_one_layer():
    shared = nn.Linear(128, 128)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    quantize_model(model, "int4")
    assert isinstance(model[0], QuantLinear) and model[0] is model[2]


def test_quantize_model_of_a_linear_returns_the_new_layer():
    assert isinstance(quantize_model(nn.Linear(128, 8), "int4"), QuantLinear)


def test_quantize_model_checks_its_arguments():
    with pytest.raises(QuantTypeError, match="skip must be fnmatch patterns"):
        quantize_model(Model(), "int4", skip=[3])
    with pytest.raises(QuantError, match="dtype must be a low-bit type"):
        quantize_model(Model(), "float32")
    with pytest.raises(QuantError, match="group_size must be one of"):
        quantize_model(Model(), "int4", group_size=16)
    with pytest.raises(QuantTypeError, match=r"model must be an nn\.Module"):
        quantize_model({}, "int4")


def test_tilevm_nn_is_reachable_from_tilevm():
    assert tilevm.nn.QuantLinear is QuantLinear


# -- forward --------------------------------------------------------------------------------------
def _quant_matmul():
    ops = pytest.importorskip("tilevm.ops")
    if not hasattr(ops, "quant_matmul"):
        pytest.skip("tilevm.ops.quant_matmul is not written yet (issue 6 §2)")
    return ops.quant_matmul


@pytest.mark.parametrize(
    ("dtype", "zero_point", "half", "tolerance"),
    [
        ("int4", False, torch.float16, 2e-3),
        ("uint3", True, torch.float16, 2e-3),
        ("float6_e3m2", False, torch.bfloat16, 1e-2),
    ],
)
def test_forward_matches_a_float32_matmul_of_the_dequantised_weight(
    dtype, zero_point, half, tolerance
):
    _quant_matmul()
    linear = _linear(256, 64, dtype=half)
    layer = QuantLinear.from_linear(linear, dtype, group_size=128, zero_point=zero_point)
    x = torch.randn(3, 256).to(half)
    y = layer(x)
    weight = layer.qweight.dequantize().float()
    expected = x.float() @ weight.T + layer.bias.float()
    assert y.shape == (3, 64) and y.dtype == half
    error = (y.float() - expected).norm() / expected.norm()
    assert error <= tolerance


def test_torch_compile_traces_a_layer_without_graph_breaks():
    """The layer builds its QuantizedWeight inside the traced forward: its checks must not
    ask a traced tensor for an address."""
    layer = QuantLinear.from_linear(nn.Linear(128, 64).half(), dtype="int4", group_size=32)
    x = torch.randn(3, 128).half()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), layer(x))
