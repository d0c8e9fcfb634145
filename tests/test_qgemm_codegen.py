"""The low-bit GEMM library's kernels compile for Ampere and Hopper without spilling.

The decode configuration :func:`tilevm.ops.choose_config` picks (16-row
blocks, four warps) and every prefill tile shape the autotuner chooses from
are compiled with NVRTC for a spread of widths; the PTX
must show what the design promises: ``b`` 16-byte weight loads per thread
per k step, ``mma.sync`` on the tensor cores, and the fast dequantisation
(``lop3`` for ints, an ``f16x2`` multiply for small floats).
"""

from __future__ import annotations

import pytest

import tilevm
from tilevm.codegen import emit_cuda
from tilevm.ops.qgemm import GEMM, GEMM_TC
from tilevm.ops.quant_matmul import DECODE_CONFIGS, PREFILL_CONFIGS, SPLIT_PREFILL_CONFIGS
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.cache import compile_kernel

TARGETS = ("sm_80", "sm_90a")
CASES = [(f"int{b}", 16) for b in range(2, 9)] + [
    ("uint1", 16),
    ("float4_e2m1", 16),
    ("float8_e4m3", 16),
]
# 8-row blocks (up to 8 rows of x): the weights are the mma's A operand
CASES += [(w, 8) for w in ("uint1", "int3", "int4", "int6", "int8", "float4_e2m1", "float8_e4m3")]


def _program(wtype: str, block_m: int, act=tilevm.float16, **kw):
    constants = dict(
        WTYPE=tilevm.dtype(wtype),
        GROUP=128,
        BLOCK_M=block_m,
        WARPS=4,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=True,
    )
    constants.update(kw)
    return GEMM[act].program(**constants)


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for wtype, block_m in CASES:
        kernel = emit_cuda(run_pipeline(_program(wtype, block_m)))
        for target in TARGETS:
            out[wtype, block_m, target] = compile_kernel(kernel.source, kernel.name, target)
    return out


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("wtype", "block_m"), CASES)
def test_every_chosen_configuration_compiles_without_spills(compiled, wtype, block_m, target):
    module = compiled[wtype, block_m, target]
    assert module.report.spill_bytes == 0, module.log
    assert module.kernel.registers <= 255


@pytest.mark.parametrize("wtype", [w for w, block_m in CASES if block_m == 8])
def test_8_row_blocks_take_no_more_registers_than_the_k_split_counts_on(compiled, wtype):
    # The k split fills an SM with as many blocks as its registers hold, by this estimate:
    # more registers than it says would leave blocks waiting for a later wave.
    from tilevm.ops.quant_matmul import _decode_registers

    t = tilevm.dtype(wtype)
    for target in TARGETS:
        assert compiled[wtype, 8, target].kernel.registers <= _decode_registers(8, t.nbits)


@pytest.mark.parametrize(("wtype", "block_m"), CASES)
def test_weights_arrive_in_16_byte_loads_and_feed_the_tensor_cores(compiled, wtype, block_m):
    ptx = compiled[wtype, block_m, "sm_90a"].ptx
    nbits = tilevm.dtype(wtype).nbits
    assert ptx.count("ld.global.v4.u32") + ptx.count("ld.global.nc.v4.u32") >= nbits
    # 64 deep x 64 wide per warp and tile: 4 x 8 mma per 16 rows of the block, and the loop's
    # body holds two tiles (one per shared buffer of x)
    assert ptx.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == 64 * block_m // 16
    # x is staged with 16-byte cp.async and read with ldmatrix: 16 x 16 A fragments, or at 8
    # rows 8 x 16 B fragments (x^T, the mma's n8 operand)
    ldmatrix = "ldmatrix.sync.aligned.m8n8.x4" if block_m == 16 else "ldmatrix.sync.aligned.m8n8.x2"
    assert "cp.async.cg.shared.global" in ptx and ldmatrix in ptx
    if tilevm.dtype(wtype).is_integer:
        assert "lop3.b32" in ptx
    else:
        # A multiply places the exponent; sm_89+ converts 8-bit floats in hardware.
        assert any(op in ptx for op in ("mul.rn.f16x2", "mul.f16x2", "cvt.rn.f16x2.e4m3x2"))


@pytest.mark.parametrize("act", [tilevm.float16, tilevm.bfloat16])
@pytest.mark.parametrize("group", [64, 32])
def test_split_k_zero_point_and_bf16_variants_compile(act, group):
    kernel = emit_cuda(run_pipeline(_program("uint4", 16, act, HAS_ZEROS=True, GROUP=group)))
    for target in TARGETS:
        module = compile_kernel(kernel.source, kernel.name, target)
        assert module.report.spill_bytes == 0, module.log
        # The last block of a tile sums the partials: one atomic a block, fences around it.
        assert module.ptx.count("atom.global.add") == 1
        assert "membar.gl" in module.ptx or "fence.sc.gpu" in module.ptx


# -- the prefill kernel ----------------------------------------------------------------------------
PREFILL_CASES = (
    [(c, "int4", t) for c in range(len(PREFILL_CONFIGS)) for t in TARGETS]
    + [(1, w, "sm_90a") for w in ("int3", "uint8", "float6_e3m2", "float8_e4m3")]
    + [(0, w, "sm_80") for w in ("uint8", "float8_e4m3")]
)


@pytest.mark.parametrize(
    "shape", SPLIT_PREFILL_CONFIGS, ids=lambda c: f"{c['BLOCK_M']}x{c['WARPS_N']}"
)
def test_split_prefill_shapes_compile_without_spills(shape):
    program = GEMM_TC[tilevm.float16].program(
        WTYPE=tilevm.int4,
        GROUP=128,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=True,
        PARTIAL=True,
        **shape,
    )
    kernel = emit_cuda(run_pipeline(program))
    for target in TARGETS:
        module = compile_kernel(kernel.source, kernel.name, target)
        assert module.report.spill_bytes == 0, (target, module.log)


@pytest.mark.parametrize(("config", "wtype", "target"), PREFILL_CASES)
def test_every_prefill_tile_shape_compiles_without_spills_and_pipelines_x(config, wtype, target):
    shape = PREFILL_CONFIGS[config]
    program = GEMM_TC[tilevm.float16].program(
        WTYPE=tilevm.dtype(wtype),
        GROUP=128,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=True,
        PARTIAL=False,
        **shape,
    )
    kernel = emit_cuda(run_pipeline(program))
    assert "scratch" not in kernel.source  # no layout conversion anywhere
    module = compile_kernel(kernel.source, kernel.name, target)
    assert module.report.spill_bytes == 0, module.log
    ptx = module.ptx
    assert "cp.async.cg.shared.global" in ptx and "cp.async.wait_group 1" in ptx
    assert "ldmatrix.sync.aligned.m8n8.x4" in ptx
    # Per warp and 64-deep tile: (rows / 16) x 8 x 4 mma, in each of the two unrolled halves.
    rows = shape["BLOCK_M"] // shape["WARPS_M"]
    assert ptx.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == 2 * rows // 16 * 32
    nbits = tilevm.dtype(wtype).nbits
    assert ptx.count("ld.global.v4.u32") + ptx.count("ld.global.nc.v4.u32") >= 2 * nbits


@pytest.mark.parametrize("block_m", [8, 16])
@pytest.mark.parametrize("warps", [c["WARPS"] for c in DECODE_CONFIGS])
@pytest.mark.parametrize("wtype", ["int4", "uint8", "float6_e3m2"])
def test_every_decode_width_the_tuner_tries_compiles_without_spills(wtype, warps, block_m):
    kernel = emit_cuda(run_pipeline(_program(wtype, block_m, WARPS=warps)))
    assert "scratch" not in kernel.source  # the transposes of 8-row blocks move no data
    for target in TARGETS:
        module = compile_kernel(kernel.source, kernel.name, target)
        assert module.report.spill_bytes == 0, (target, module.log)
        # 4 k steps x 8 per warp and tile (x 16 rows / 16 per mma, or 8 rows / 8), two tiles
        # (x's two shared buffers) in the loop
        assert module.ptx.count("mma.sync.aligned.m16n8k16") == 64 * block_m // 16
