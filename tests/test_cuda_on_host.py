"""The generated CUDA, run on the host (:mod:`cuda_host`), computes what the interpreter does.

Each launch below runs twice: on the interpreter, and as the CUDA C++ the
backend generated for it, compiled with ``g++`` and run with every thread a
fiber and the warp-wide PTX (``mma.sync``, ``ldmatrix``, ``cp.async``)
emulated from the PTX ISA. Every tensor is compared (integers exactly, floats
to within the last bits the mma's summation order moves). Without a GPU this
is the check that the generated code's indexing, masking, vector accesses,
shared-memory plan, barriers and fragment use are right, for the examples and
for every kind of launch ``quant_matmul`` makes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import codegen_kernels
import numpy as np
import pytest
import torch
from cuda_host import HostRunError, mirrored_on_host, run_on_host
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.ops import qgemm
from tilevm.ops.quant_matmul import PREFILL_CONFIGS, SPLIT_PREFILL_CONFIGS, Config, _run
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import lowbit_gemm
import matmul_fp16
import softmax
import vector_add

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


def _seed() -> int:
    return int(fresh_rng().integers(2**31))


@pytest.mark.parametrize(
    "check",
    [
        lambda seed: vector_add.check(n=1000, seed=seed),
        lambda seed: softmax.check(m=37, n=100, seed=seed),
        lambda seed: matmul_fp16.check(m=50, n=40, k=70, seed=seed),
        lambda seed: lowbit_gemm.check("int3", seed=seed),
        lambda seed: lowbit_gemm.check("float6_e3m2", seed=seed),
    ],
    ids=["vector_add", "softmax", "matmul_fp16", "lowbit_gemm_int3", "lowbit_gemm_e3m2"],
)
def test_the_examples_generated_code_matches_the_interpreter(check):
    with mirrored_on_host() as mirrored:
        check(_seed())
    assert mirrored


def _quant_case(name, m, n, k, group, zero_point, act=torch.float16):
    gen = torch.Generator().manual_seed(_seed())
    q = tilevm.quantize(torch.randn(n, k, generator=gen), name, group, zero_point, scale_dtype=act)
    x = torch.randn(m, k, generator=gen).to(act)
    bias = torch.randn(n, generator=gen).to(act)
    args = (x, q.packed, q.scales, q.zeros, bias, q.dtype, q.group_size, n, q.zero_offset)
    return q, x, bias, args


DECODE_CASES = [
    # (weight type, m, group, zero point, Config): 8-row blocks (swap-AB) and 16-row ones,
    # split k with the tile counters, groups of 32 / 64 / 128 and per channel
    ("uint1", 1, 128, True, Config(8, 2, 1, 4)),
    ("uint1", 6, 64, True, Config(16, 2, 1, 4)),
    ("uint1", 9, -1, True, Config(8, 1, 2, 2)),
    ("int2", 3, 64, False, Config(8, 1, 2, 2)),
    ("int3", 8, 128, False, Config(8, 2, 1, 4)),
    ("int4", 2, 32, False, Config(8, 2, 2, 2)),
    ("uint4", 5, 64, True, Config(16, 2, 2, 2)),
    ("int5", 11, 128, False, Config(16, 1, 1, 4)),
    ("int6", 16, -1, False, Config(16, 2, 3, 2)),
    ("int7", 7, 128, False, Config(8, 2, 2, 2)),
    ("int8", 13, 64, False, Config(8, 2, 1, 4)),  # two 8-row blocks, the second partial
    ("uint8", 9, 128, False, Config(16, 2, 1, 4)),
    ("float4_e2m1", 4, 32, False, Config(8, 2, 2, 2)),
    ("float5_e2m2", 12, 128, False, Config(16, 1, 1, 4)),
    ("float6_e3m2", 1, 64, False, Config(8, 2, 1, 4)),
    ("float6_e2m3", 15, 128, False, Config(16, 2, 2, 2)),
    ("float8_e4m3", 6, 128, False, Config(8, 1, 1, 4)),
    ("float8_e5m2", 10, 32, False, Config(16, 2, 1, 4)),
]


@pytest.mark.parametrize(("name", "m", "group", "zero_point", "cfg"), DECODE_CASES)
def test_every_decode_launch_kind_runs_as_generated(name, m, group, zero_point, cfg):
    n, k = 192, 256  # three weight tiles wide: a block of two warps has one idle
    *_, args = _quant_case(name, m, n, k, group, zero_point)
    with mirrored_on_host() as mirrored:
        _run(*args, cfg=cfg)
    assert mirrored == ["qgemm_float16"]
    # x's staged tile: the cp.async writes and the ldmatrix reads take one wavefront a phase;
    # the weights' 16-byte loads and x's copies read whole 32-byte sectors
    assert mirrored.traffic[0].conflict_free and mirrored.traffic[0].coalesced, mirrored.traffic


PREFILL_CASES = [
    ("int4", 40, 128, False, 0, 1),
    ("int3", 70, 32, False, 1, 1),
    ("uint5", 33, 64, True, 2, 1),
    ("float6_e3m2", 17, -1, False, 0, 1),
    ("float4_e2m1", 64, 128, False, 1, 1),
    ("uint1", 24, 32, True, 2, 1),
]
PREFILL_CASES += [("uint4", 24, 64, True, i, 3) for i in range(len(SPLIT_PREFILL_CONFIGS))]


@pytest.mark.parametrize(("name", "m", "group", "zero_point", "shape", "splits"), PREFILL_CASES)
def test_every_prefill_tile_shape_runs_as_generated(name, m, group, zero_point, shape, splits):
    n, k = 256, 384
    shapes = SPLIT_PREFILL_CONFIGS if splits > 1 else PREFILL_CONFIGS
    c = shapes[shape]
    cfg = Config(c["BLOCK_M"], c["WARPS_N"], splits, -(-6 // splits), True, c["WARPS_M"])
    *_, args = _quant_case(name, m, n, k, group, zero_point)
    with mirrored_on_host() as mirrored:
        _run(*args, cfg=cfg)
    assert mirrored == ["qgemm_tc_float16"]
    assert mirrored.traffic[0].conflict_free and mirrored.traffic[0].coalesced, mirrored.traffic


@pytest.mark.parametrize("name", ["float8_e4m3", "float8_e5m2"])
@pytest.mark.parametrize("block_m", [8, 16])
def test_eight_bit_floats_through_the_hardware_conversion_run_as_generated(name, block_m):
    # TV_F8_CVT: cvt.rn.f16x2.{e4m3x2,e5m2x2}, what sm_89 and later take
    *_, args = _quant_case(name, 5, 128, 256, 128, False)
    with mirrored_on_host(defines={"TV_F8_CVT": "1"}) as mirrored:
        _run(*args, cfg=Config(block_m, 2, 1, 4))
    assert mirrored


@pytest.mark.parametrize(
    ("name", "m", "cfg"),
    [
        ("int4", 3, Config(8, 2, 2, 2)),
        ("uint8", 12, Config(16, 2, 1, 4)),
        ("int6", 20, None),
        ("uint1", 2, Config(8, 2, 1, 4)),
    ],
)
def test_bfloat16_launches_run_as_generated(name, m, cfg):
    zero_point = name == "uint1"  # quantised with zero points only
    *_, args = _quant_case(name, m, 128, 256, 64, zero_point, act=torch.bfloat16)
    if cfg is None:
        c = PREFILL_CONFIGS[0]
        cfg = Config(c["BLOCK_M"], c["WARPS_N"], 1, 4, True, c["WARPS_M"])
    with mirrored_on_host() as mirrored:
        _run(*args, cfg=cfg)
    assert len(mirrored) == 1


def test_quant_linear_on_the_cpu_runs_as_generated():
    layer = tilevm.nn.QuantLinear.from_linear(torch.nn.Linear(256, 192).half(), dtype="int4")
    x = torch.randn(2, 3, 256).half()
    with mirrored_on_host() as mirrored:
        layer(x)
    assert mirrored


# -- the harness catches what it is for ------------------------------------------------------
def _vector_add_args(n=1000):
    rng = fresh_rng()
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    return x, y, {"x": x, "y": y, "out": np.zeros(n, np.float32), "n": n}


def test_the_harness_reports_a_store_outside_a_tensor():
    program = vector_add.vector_add.program(BLOCK=256)
    _, _, args = _vector_add_args()
    tid = "const int tid = threadIdx.x;"
    with pytest.raises(HostRunError, match="a store outside tensor 'out'"):
        run_on_host(program, (4,), args, edit=lambda s: s.replace(tid, tid + " out -= 4;"))


def _decode_launch(m=3, cfg=None, k=256):
    """An int4 decode program with its arguments (m rows, 128 x k weights), and the result of
    the same launch (``cfg``, by default 8-row blocks of 2 warps) through quant_matmul's
    interpreter path."""
    cfg = cfg or Config(8, 2, 1, k // 64)
    q, x, bias, args = _quant_case("int4", m, 128, k, 128, False)
    good = _run(*args, cfg=cfg)
    program = tilevm.ops.qgemm.GEMM[tilevm.float16].program(
        WTYPE=q.dtype,
        GROUP=128,
        BLOCK_M=cfg.block_m,
        WARPS=cfg.warps,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=True,
    )
    arrays = {
        "x": x.numpy(),
        "packed": q.packed.numpy(),
        "scales": q.scales.numpy(),
        "zeros": x.numpy(),
        "bias": bias.numpy(),
        "out": np.zeros((3, 128), np.float16),
        "partial": np.zeros(1, np.float32),
        "counters": np.zeros(1, np.int32),
        "m": 3,
        "n": 128,
        "k": k,
        "n_tiles": 2,
    }
    return program, arrays, good.float().numpy()


def test_the_harness_reports_a_barrier_some_threads_skip():
    program, arrays, _ = _decode_launch()
    bar = "__syncthreads();"
    with pytest.raises(HostRunError, match=r"block \(0, 0, 0\): .*never reaches"):
        run_on_host(
            program, (1, 1, 1), arrays, edit=lambda s: s.replace(bar, f"if (tid < 32) {bar}", 1)
        )


def test_the_harness_gives_stale_bytes_to_a_kernel_that_does_not_wait_for_its_copies():
    program, arrays, good = _decode_launch()
    outputs = {}
    for waits in (True, False):
        arrays["out"] = np.zeros((3, 128), np.float16)
        edit = None if waits else (lambda s: s.replace("tv_cp_async_wait<1>();", ""))
        run_on_host(program, (1, 1, 1), arrays, edit=edit)
        outputs[waits] = arrays["out"].astype(np.float32)
    np.testing.assert_allclose(outputs[True], good, rtol=2e-3, atol=2e-2)
    assert not np.allclose(outputs[False], outputs[True], rtol=2e-3, atol=2e-2)


def test_the_harness_counts_the_sectors_of_scattered_weight_loads():
    # Each thread's 16-byte weight loads, 512 bytes a warp; moved 16 bytes a lane further
    # apart (lane t at 32 t), a warp's 512 bytes span 32 sectors where 16 would do.
    program, arrays, _ = _decode_launch()
    load = "const int at = i0 + r * 128;"
    arrays["packed"] = np.concatenate([arrays["packed"], np.zeros_like(arrays["packed"])])
    whole = run_on_host(program, (1, 1, 1), arrays)
    spread = run_on_host(
        program, (1, 1, 1), arrays, edit=lambda s: s.replace(load, load[:-1] + " + L1_d0;", 1)
    )
    assert whole.coalesced and not spread.coalesced
    assert spread.global_loads[0] > whole.global_loads[0]


def test_the_harness_counts_the_wavefronts_of_a_tile_without_padding():
    # x's rows padded to 72 elements put the 8 rows of each ldmatrix matrix in 8 groups of
    # banks; at 64 (as plain row-major would be) they share one group: 8 wavefronts a matrix.
    program, arrays, good = _decode_launch()
    padded = run_on_host(program, (1, 1, 1), arrays)
    # 2 warps x 4 k tiles x 4 steps x an ldmatrix.x2: 64 phases
    assert padded.conflict_free and padded.ldmatrix[1] == 2 * 4 * 4 * 2
    arrays["out"] = np.zeros((3, 128), np.float16)
    plain = run_on_host(program, (1, 1, 1), arrays, edit=lambda s: s.replace(" * 72", " * 64"))
    np.testing.assert_allclose(arrays["out"].astype(np.float32), good, rtol=2e-3, atol=2e-2)
    assert plain.ldmatrix == (8 * padded.ldmatrix[1], padded.ldmatrix[1])
    assert plain.cp_async == padded.cp_async  # a row's 8 chunks of 16 bytes: no conflict


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("(tid & 7) * 72 + ((tid >> 3) & 1) * 8 + 1]", r"ldmatrix row at byte \d+, not 16-byte"),
        ("(tid & 7) * 72 + ((tid >> 3) & 1) * 8 + 4096]", r"ldmatrix row outside the \d+ bytes"),
    ],
    ids=["misaligned", "outside"],
)
def test_the_harness_reports_an_ldmatrix_row_it_cannot_read(edit, message):
    program, arrays, _ = _decode_launch()
    row = "(tid & 7) * 72 + ((tid >> 3) & 1) * 8]"
    with pytest.raises(HostRunError, match=message):
        run_on_host(program, (1, 1, 1), arrays, edit=lambda s: s.replace(row, edit, 1))


# -- the kernels that exercise every instruction the emitter lowers -----------------------------
def _every_instruction_launches(rng):
    import ml_dtypes

    ck = codegen_kernels

    def bf16(values):
        return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)

    f = (rng.standard_normal(64) * 3).astype(np.float32)
    return {
        "cross_warp_sum": lambda: ck.cross_warp_sum[(3,)](
            rng.standard_normal((64, 96)).astype(np.float16), np.zeros((1, 96), np.float16), 96
        ),
        "transpose_via_layouts": lambda: ck.transpose_via_layouts[(1,)](
            rng.integers(-1000, 1000, (16, 16)).astype(np.int32), np.zeros(256, np.int32)
        ),
        "scalars_and_control": lambda: ck.scalars_and_control[(1,)](
            np.zeros(32, np.float32), 23, float(rng.standard_normal()), 10**12 + 7
        ),
        "conversions": lambda: ck.conversions[(1,)](
            f,
            bf16(rng.standard_normal(64) * 4),
            rng.integers(-40, 40, 64).astype(np.int32),
            np.zeros(64, np.uint8),
            np.zeros(64, np.int8),
            np.zeros(64, np.uint16),
        ),
        "int8_dot": lambda: ck.int8_dot[(1,)](
            rng.integers(-128, 128, (32, 64)).astype(np.int8),
            rng.integers(-128, 128, (64, 32)).astype(np.int8),
            np.zeros((32, 32), np.int32),
        ),
        "bf16_dot": lambda: ck.bf16_dot[(1,)](
            bf16(rng.standard_normal((16, 32))),
            bf16(rng.standard_normal((32, 16))),
            np.zeros((16, 16), np.uint16),
        ),
    }


@pytest.mark.parametrize("name", codegen_kernels.RUNNABLE)
def test_kernels_using_every_instruction_run_as_generated(name):
    launch = _every_instruction_launches(fresh_rng())[name]
    with mirrored_on_host() as mirrored:
        launch()
    assert mirrored == [name]


def test_split_k_gives_the_same_bits_whichever_block_of_a_tile_arrives_last():
    # Blocks of one output tile in any order: the last to arrive sums the partials in split
    # order, so every order gives the interpreter's result and the same bits.
    program, arrays, _ = _decode_launch(m=3, cfg=Config(8, 1, 4, 2), k=512)
    results = []
    for seed in (None, 1, 2, 3):
        arrays["out"] = np.zeros((3, 128), np.float16)
        arrays["partial"] = np.zeros(4 * 3 * 128, np.float32)
        arrays["counters"] = np.zeros(2, np.int32)
        run_on_host(program, (1, 2, 4), arrays, shuffle=seed)
        assert not arrays["counters"].any()  # left at 0 for the next launch
        results.append(arrays["out"].copy())
    assert all(np.array_equal(r, results[0]) for r in results)


@tilevm.kernel(num_warps=8)
def small_dot(
    a: tilevm.Ptr[tilevm.float16], b: tilevm.Ptr[tilevm.float16], c: tilevm.Ptr[tilevm.float32]
):
    """A 32 x 8 dot for 8 warps: two along m compute it, the other six hold copies."""
    ta = tl.load(tl.global_view(a, [32, 32]), [0, 0], [32, 32])
    tb = tl.load(tl.global_view(b, [32, 8]), [0, 0], [32, 8])
    acc = tl.dot(ta, tb, tl.full([32, 8], 0.5, tilevm.float32))
    tl.store(tl.global_view(c, [32, 8]), acc + tl.sum(acc, 0), [0, 0])


def test_a_dot_whose_tile_is_too_small_for_the_warps_runs_as_generated():
    rng = fresh_rng()
    a = rng.standard_normal((32, 32)).astype(np.float16)
    b = rng.standard_normal((32, 8)).astype(np.float16)
    with mirrored_on_host() as mirrored:
        small_dot[(1,)](a, b, np.zeros((32, 8), np.float32))
    assert mirrored == ["small_dot"]
    kernel = emit_cuda(run_pipeline(small_dot.program()))
    module = compile_cuda(kernel.source, kernel.name, "sm_90a")
    assert module.report.spill_bytes == 0
    # each warp: its 16 x 8 tile of the two, two k steps of 16
    assert module.ptx.count("mma.sync.aligned.m16n8k16") == 2


# -- 1-bit codes picking one of two values, two lanes an instruction ---------------------------
@tilevm.kernel(num_warps=2)
def _pick_by_bits(
    w: tilevm.Ptr[tilevm.uint32],
    a: tilevm.Ptr[tilevm.float16],
    b: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float16],
    WTYPE: tilevm.constexpr,
    SWAP: tilevm.constexpr,
    ROWS: tilevm.constexpr,
):
    words = tl.load(tl.global_view(w, [256]), [0], [256], layout=qgemm.weight_word_layout(2, 1))
    steps = tl.view(words, tilevm.uint32, qgemm.weight_step_layout(2, 1))
    layout = qgemm.swapped_step_layout(2) if SWAP else qgemm.step_layout(2)
    ga, gb = tl.global_view(a, [64, 128]), tl.global_view(b, [64, 128])
    for step in tl.static_range(4):
        q = tl.view(tl.slice(steps, [step, 0], [1, 64]), WTYPE, qgemm.code_step_layout(2, 1))
        row = 16 * step if ROWS == 16 else step
        picked = tl.where(q, tl.load(ga, [row, 0], [ROWS, 128]), tl.load(gb, [row, 0], [ROWS, 128]))
        tl.store(tl.global_view(y, [64, 128]), tl.annotate_layout(picked, layout), [16 * step, 0])


@pytest.mark.parametrize("wtype", ["uint1", "int1"])
@pytest.mark.parametrize("swap", [False, True], ids=["b_fragments", "a_fragments"])
@pytest.mark.parametrize("rows", [1, 16], ids=["row", "tile"])
def test_one_bit_codes_pick_their_values_bit_for_bit_as_generated(wtype, swap, rows):
    # the mask of each pair of codes (a prmt of shifted words) picks whole lanes with a lop3,
    # a broadcast row's value copied into both lanes: the interpreter's where, bit for bit
    rng = fresh_rng()
    t = tilevm.dtype(wtype)
    words = rng.integers(0, 1 << 32, 256, dtype=np.uint64).astype(np.uint32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 6e-8], np.float16)
    a, b = (rng.standard_normal((64, 128)).astype(np.float16) for _ in range(2))
    a.flat[:6], b.flat[6:12] = special, special
    program = _pick_by_bits.program(WTYPE=t, SWAP=swap, ROWS=rows)
    assert "tv_lop3<0xCA>(tv_prmt<" in emit_cuda(run_pipeline(program)).source
    want = np.zeros((64, 128), np.float16)
    _pick_by_bits[(1,)](words, a, b, want, WTYPE=t, SWAP=swap, ROWS=rows)
    arrays = {"w": words, "a": a, "b": b, "y": np.zeros((64, 128), np.float16)}
    run_on_host(program, (1, 1, 1), arrays)
    np.testing.assert_array_equal(arrays["y"].view(np.uint16), want.view(np.uint16))
    picked_a = arrays["y"] == (a if rows == 16 else a[[s for s in range(4) for _ in range(16)]])
    assert 0.3 < picked_a.mean() < 0.8  # both values taken, from random bits
