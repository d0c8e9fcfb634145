"""quant_matmul on the CPU interpreter: every weight type against the dequantised reference."""

from __future__ import annotations

import importlib

import pytest
import torch

import tilevm
from tilevm.ops import choose_config, quant_matmul
from tilevm.ops.qgemm import k_tiles_per_split
from tilevm.ops.quant_matmul import Config, _run

INTS = [f"{s}int{b}" for s in ("", "u") for b in range(1, 9) if (s, b) != ("", 1)]
FLOATS = ["float4_e2m1", "float6_e3m2", "float6_e2m3", "float8_e4m3", "float8_e5m2", "float5_e2m2"]


def _check(y, x, q, bias=None, tol=2e-3):
    ref = x.float() @ q.dequantize().float().T
    if bias is not None:
        ref = ref + bias.float()
    assert y.shape == ref.shape and y.dtype == x.dtype
    err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
    assert err <= tol, err


@pytest.mark.parametrize("name", INTS + FLOATS)
def test_every_weight_type_matches_the_dequantised_reference(name):
    gen = torch.Generator().manual_seed(hash(name) % 2**31)
    n, k, m = 64, 128, 3
    w = torch.randn(n, k, generator=gen)
    zero_point = name == "uint1"
    q = tilevm.quantize(w, name, group_size=64, zero_point=zero_point)
    x = torch.randn(m, k, generator=gen).half()
    _check(quant_matmul(x, q), x, q)


@pytest.mark.parametrize(
    ("name", "group", "zero_point", "shape"),
    [
        ("uint4", 32, True, (17, 130, 96)),
        ("int3", 128, False, (5, 192, 256)),
        ("uint3", -1, False, (1, 70, 64)),
        ("float6_e3m2", 32, False, (2, 64, 160)),
        ("int2", -1, False, (33, 64, 64)),
    ],
)
def test_groups_zero_points_and_shapes_that_do_not_divide_the_tiles(name, group, zero_point, shape):
    m, n, k = shape
    gen = torch.Generator().manual_seed(m * n + k)
    q = tilevm.quantize(torch.randn(n, k, generator=gen), name, group, zero_point)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    _check(quant_matmul(x, q, bias), x, q, bias)


def test_bfloat16_activations():
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(96, 128, generator=gen).bfloat16()
    q = tilevm.quantize(w, "int4", group_size=64)
    assert q.scale_dtype == torch.bfloat16
    x = torch.randn(4, 128, generator=gen).bfloat16()
    _check(quant_matmul(x, q), x, q, tol=1e-2)


def test_split_k_partials_are_reduced_in_a_fixed_order_with_the_bias():
    gen = torch.Generator().manual_seed(3)
    n, k, m = 128, 320, 5
    q = tilevm.quantize(torch.randn(n, k, generator=gen), "int3", group_size=64)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    args = (x, q.packed, q.scales, None, bias, q.dtype, q.group_size, n, q.zero_offset)
    split = _run(*args, cfg=Config(block_m=16, warps=1, splits=3, k_tiles_per_split=2))
    whole = _run(*args, cfg=Config(block_m=16, warps=2, splits=1, k_tiles_per_split=5))
    _check(split, x, q, bias)
    assert torch.equal(split, _run(*args, cfg=Config(16, 1, 3, 2)))  # deterministic
    assert (split.float() - whole.float()).abs().max() <= 2e-3 * whole.float().abs().max()


def test_leading_dimensions_of_x_are_kept():
    q = tilevm.quantize(torch.randn(64, 64), "int4", group_size=32)
    x = torch.randn(2, 3, 64).half()
    y = quant_matmul(x, q)
    assert y.shape == (2, 3, 64)
    _check(y.reshape(6, 64), x.reshape(6, 64), q)


def test_torch_compile_traces_the_op_without_graph_breaks():
    q = tilevm.quantize(torch.randn(64, 64), "int3", group_size=64)
    x = torch.randn(4, 64).half()

    def f(x):
        return quant_matmul(x, q) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), f(x))


def test_bad_inputs_name_the_argument():
    q = tilevm.quantize(torch.randn(64, 128), "int4", group_size=64)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 128\]"):
        quant_matmul(torch.randn(2, 64).half(), q)
    with pytest.raises(ValueError, match="x must be float16 or bfloat16"):
        quant_matmul(torch.randn(2, 128), q)
    with pytest.raises(ValueError, match="scale_dtype"):
        quant_matmul(torch.randn(2, 128).bfloat16(), q)
    with pytest.raises(ValueError, match=r"bias must have shape \[64\]"):
        quant_matmul(torch.randn(2, 128).half(), q, torch.zeros(65).half())
    with pytest.raises(ValueError, match=r"bias must be torch\.float16 on cpu like x"):
        quant_matmul(torch.randn(2, 128).half(), q, torch.zeros(64))
    with pytest.raises(ValueError, match=r"x is on meta but qweight is on cpu"):
        quant_matmul(torch.empty(2, 128, dtype=torch.float16, device="meta"), q)
    with pytest.raises(TypeError, match=r"qweight must be a tilevm\.QuantizedWeight"):
        quant_matmul(torch.randn(2, 128).half(), torch.zeros(64, 128))


def test_the_interpreter_runs_unsplit_decode_blocks_and_the_first_prefill_shape():
    cpu = torch.device("cpu")
    assert choose_config(1, 4096, 4096, 4, cpu) == Config(8, 4, 1, 64)
    assert choose_config(8, 4096, 4096, 4, cpu) == Config(8, 4, 1, 64)
    assert choose_config(9, 4096, 4096, 4, cpu) == Config(16, 4, 1, 64)
    assert choose_config(16, 100, 96, 3, cpu) == Config(16, 2, 1, 2)
    assert choose_config(17, 100, 96, 3, cpu) == Config(64, 2, 1, 2, prefill=True, warps_m=2)
    assert choose_config(300, 4096, 4096, 3, cpu).num_warps == 4


@pytest.mark.parametrize(
    ("m", "n", "k", "nbits", "splits", "per_split"),
    [
        (1, 12288, 4096, 4, 6, 12),  # 48 blocks: about 2 per SM of 132; even shares
        (16, 4096, 4096, 8, 16, 4),  # 16 blocks want 17 splits; 4 tiles a split at least
        (1, 4096, 4096, 1, 16, 4),  # 1-bit weights want 6 blocks per SM, capped the same way
        (1, 12288, 4096, 1, 16, 4),  # 48 blocks, 6 per SM (of 80 registers): 17 wanted, 16
        (16, 12288, 4096, 1, 11, 6),  # 16 rows take 128 registers: 4 blocks per SM
        (1, 4096, 14336, 3, 23, 10),  # 3 bits: 3 blocks per SM, 224 k tiles, 25 wanted
        (1, 4096, 256, 4, 1, 4),  # 4 k tiles: no split
        (4096, 4096, 4096, 4, 1, 64),  # prefill: 2048 blocks fill the device unsplit
    ],
)
def test_on_a_gpu_the_k_split_keeps_enough_weight_bytes_in_flight(
    monkeypatch, m, n, k, nbits, splits, per_split
):
    qm = importlib.import_module("tilevm.ops.quant_matmul")  # the module, not the function
    monkeypatch.setattr(qm, "_sm_count", lambda device: 132)
    cfg = choose_config(m, n, k, nbits, torch.device("cuda"))
    assert (cfg.splits, cfg.k_tiles_per_split) == (splits, per_split)
    assert (cfg.splits - 1) * cfg.k_tiles_per_split < -(-k // 64) <= cfg.splits * per_split


@pytest.mark.parametrize(
    ("warps", "nbits", "block_m", "per_sm"),
    [
        (4, 4, 8, 2),  # 32 KiB in flight: 2 blocks of 4 warps with two 2 KiB tiles each
        (4, 3, 8, 3),
        (4, 2, 8, 4),
        (4, 1, 8, 6),  # 8 wanted; 65536 registers hold 6 blocks of 128 threads at 80
        (2, 1, 8, 12),  # narrower blocks: more of them fit
        (1, 1, 8, 25),
        (4, 1, 16, 4),  # 16-row blocks take 128 registers a thread
        (1, 8, 16, 4),
    ],
)
def test_decode_blocks_per_sm_keep_bytes_in_flight_within_the_register_file(
    warps, nbits, block_m, per_sm
):
    qm = importlib.import_module("tilevm.ops.quant_matmul")
    assert qm._blocks_per_sm(False, warps, nbits, block_m) == per_sm
    assert per_sm * warps * 32 * qm._decode_registers(block_m, nbits) <= qm.REGISTERS_PER_SM


@pytest.mark.parametrize(
    ("name", "group", "zero_point", "shape", "cfg"),
    [
        ("int4", 64, False, (40, 128, 192), Config(32, 2, 1, 3, prefill=True, warps_m=2)),
        ("uint3", 32, True, (70, 192, 320), Config(64, 1, 2, 4, prefill=True, warps_m=2)),
        ("float6_e3m2", -1, False, (17, 130, 128), Config(16, 2, 1, 2, prefill=True)),
        ("int8", 128, False, (129, 256, 384), Config(128, 4, 1, 6, prefill=True, warps_m=2)),
        ("uint5", 64, False, (33, 64, 192), Config(128, 1, 1, 3, prefill=True, warps_m=4)),
    ],
)
def test_the_prefill_kernel_in_every_tile_shape(name, group, zero_point, shape, cfg):
    m, n, k = shape
    gen = torch.Generator().manual_seed(m * n + k)
    q = tilevm.quantize(torch.randn(n, k, generator=gen), name, group, zero_point)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    args = (x, q.packed, q.scales, q.zeros, bias, q.dtype, q.group_size, n, q.zero_offset)
    y = _run(*args, cfg=cfg)
    _check(y, x, q, bias)
    if cfg.splits == 1:  # one k order per element: the decode kernel gives the same bits
        decode = _run(*args, cfg=Config(16, 1, 1, cfg.k_tiles_per_split))
        assert torch.equal(y, decode)


def test_the_prefill_tile_shapes_are_those_the_tuner_chooses_from():
    from tilevm.ops.quant_matmul import PREFILL_CONFIGS, _tuned_prefill

    tuner = _tuned_prefill(tilevm.float16)
    assert tuner.configs == tuple(PREFILL_CONFIGS)
    split = _tuned_prefill(tilevm.float16, True).configs
    assert split and set(map(str, split)) < set(map(str, PREFILL_CONFIGS))
    for c in PREFILL_CONFIGS:
        assert c["BLOCK_M"] % (16 * c["WARPS_M"]) == 0
        assert c["NUM_WARPS"] == c["WARPS_M"] * c["WARPS_N"]
    # Off the GPU the first shape runs, so the CPU result equals an explicit launch of it.
    assert (
        tuner.best_config(m=300, n=4096, k=4096, WTYPE=tilevm.int4, GROUP=128, HAS_ZEROS=False)
        == PREFILL_CONFIGS[0]
    )


def test_x_and_bias_views_at_any_offset_are_copied_to_an_aligned_start():
    q = tilevm.quantize(torch.randn(64, 128), "int4", group_size=64)
    buffer = torch.randn(3 * 128 + 1).half()
    x = buffer[1:].reshape(3, 128)  # 2 bytes past an aligned address
    bias = torch.randn(65).half()[1:]
    assert x.data_ptr() % 16 and bias.data_ptr() % 16
    _check(quant_matmul(x, q, bias), x, q, bias)


def test_a_weight_tensor_that_is_not_16_byte_aligned_is_refused_by_name():
    q = tilevm.quantize(torch.randn(64, 128), "int4", group_size=64)
    shifted = torch.empty(q.packed.numel() + 1, dtype=torch.uint8)[1:].view(q.packed.shape)
    shifted.copy_(q.packed)
    with pytest.raises(ValueError, match=r"packed must start at a 16-byte aligned address"):
        tilevm.QuantizedWeight(
            dtype=q.dtype, shape=q.shape, group_size=q.group_size, packed=shifted, scales=q.scales
        )


@pytest.mark.parametrize("m", [1, 2, 3])
def test_split_k_for_a_row_or_two_reduces_in_narrow_blocks(m):
    gen = torch.Generator().manual_seed(m)
    n, k = 200, 384
    q = tilevm.quantize(torch.randn(n, k, generator=gen), "uint4", group_size=128, zero_point=True)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    args = (x, q.packed, q.scales, q.zeros, bias, q.dtype, q.group_size, n, q.zero_offset)
    _check(_run(*args, cfg=Config(block_m=16, warps=2, splits=3, k_tiles_per_split=2)), x, q, bias)


def test_split_k_leaves_every_tile_counter_at_zero_for_the_next_call():
    qm = importlib.import_module("tilevm.ops.quant_matmul")
    gen = torch.Generator().manual_seed(11)
    q = tilevm.quantize(torch.randn(192, 512, generator=gen), "int4", group_size=128)
    x = torch.randn(3, 512, generator=gen).half()
    args = (x, q.packed, q.scales, None, None, q.dtype, q.group_size, 192, q.zero_offset)
    cfg = Config(block_m=16, warps=1, splits=4, k_tiles_per_split=2)
    first = _run(*args, cfg=cfg)
    counters = qm._COUNTERS[(x.device, None)]
    assert int(counters.abs().sum()) == 0
    assert torch.equal(_run(*args, cfg=cfg), first)


def test_the_decode_widths_are_tuned_and_an_inconsistent_split_is_refused():
    from tilevm.ops.quant_matmul import DECODE_CONFIGS, _tuned_decode

    assert _tuned_decode(tilevm.float16).configs == tuple(DECODE_CONFIGS)
    q = tilevm.quantize(torch.randn(64, 320), "int4", group_size=64)
    x = torch.randn(2, 320).half()
    args = (x, q.packed, q.scales, None, None, q.dtype, q.group_size, 64, q.zero_offset)
    with pytest.raises(ValueError, match="splits 5 k tiles 2 ways, 4 a split"):
        _run(*args, cfg=Config(block_m=16, warps=1, splits=2, k_tiles_per_split=3))


def test_after_the_first_launch_of_a_bucket_the_autotuner_is_not_consulted(monkeypatch):
    from tilevm.autotune import Autotuner

    calls = []
    launch = Autotuner.launch
    monkeypatch.setattr(
        Autotuner, "launch", lambda self, *a, **kw: calls.append(self) or launch(self, *a, **kw)
    )
    q = tilevm.quantize(torch.randn(64, 128), "uint3", group_size=64)
    for m in (5, 6, 7, 40, 60):  # two buckets: m of 5..8 (decode), 33..64 (prefill)
        x = torch.randn(m, 128).half()
        _check(quant_matmul(x, q), x, q)
    assert len(calls) == 2


def test_a_shape_seen_before_launches_its_remembered_plan(monkeypatch):
    module = importlib.import_module("tilevm.ops.quant_matmul")
    made = []
    plan = module._plan
    monkeypatch.setattr(module, "_plan", lambda *a, **kw: made.append(a[0].shape) or plan(*a, **kw))
    monkeypatch.setattr(module, "_PLANS", {})
    monkeypatch.setattr(module, "_CHOSEN", {})
    q = tilevm.quantize(torch.randn(64, 128), "int5", group_size=64)
    for m in (3, 3, 3, 20, 20, 3):
        x = torch.randn(m, 128).half()  # fresh data each call: the plan holds no tensors
        _check(quant_matmul(x, q), x, q)
    # A bucket's first call goes through the autotuner, the next makes the plan, later ones
    # launch it.
    assert made == [(3, 128), (3, 128), (20, 128), (20, 128)]


def test_the_op_goes_through_the_dispatcher_where_a_mode_or_autograd_must_see_it():
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    from tilevm.ops.quant_matmul import _eager

    class Calls(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    q = tilevm.quantize(torch.randn(64, 128), "int4", group_size=64)
    x = torch.randn(2, 128).half()
    assert _eager(x, q.packed, q.scales, None, None)
    assert not _eager(x.requires_grad_(), q.packed)
    x = x.detach()
    with Calls():
        assert not _eager(x, q.packed)
    with Ops() as ops:
        y = quant_matmul(x, q)
    assert "tilevm.quant_matmul.default" in ops.seen
    _check(y, x, q)


@pytest.mark.parametrize(
    ("name", "group", "zero_point", "m", "splits"),
    [
        ("int4", 128, False, 1, 1),
        ("uint3", 64, True, 5, 2),
        ("float6_e3m2", -1, False, 8, 1),
        ("uint1", 32, True, 3, 3),
        ("int8", 64, False, 13, 1),  # two blocks of 8 rows, the second partial
        ("float8_e4m3", 128, False, 2, 2),
    ],
)
def test_eight_row_blocks_swap_the_mma_operands_and_give_the_bits_of_sixteen_row_ones(
    name, group, zero_point, m, splits
):
    n, k = 192, 384
    gen = torch.Generator().manual_seed(m * 7 + splits)
    q = tilevm.quantize(torch.randn(n, k, generator=gen), name, group, zero_point)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    args = (x, q.packed, q.scales, q.zeros, bias, q.dtype, q.group_size, n, q.zero_offset)
    per_split = k_tiles_per_split(6, splits)
    eight = _run(*args, cfg=Config(8, 2, splits, per_split))
    _check(eight, x, q, bias)
    assert torch.equal(eight, _run(*args, cfg=Config(16, 1, splits, per_split)))
