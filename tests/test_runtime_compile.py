"""NVRTC compilation to cubins: targets, options, the PTX, the ptxas report, compile errors.

No GPU needed: NVRTC compiles for any architecture it knows. Each compilation
of these small kernels takes a few hundredths of a second; fixtures compile
each kernel once per module.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tilevm.errors import TileVMError
from tilevm.runtime import nvrtc
from tilevm.runtime.compiler import (
    ELF_MAGIC,
    CompiledModule,
    CudaCompileError,
    Target,
    TargetError,
    compile_cuda,
    compile_options,
    hash_compiler_sources,
    numbered_excerpt,
)
from tilevm.runtime.ptxas import FunctionResources, parse_ptxas_report

# Header-free, as tilevm's generated code is: raw halves in unsigned short, tensor cores via PTX.
MMA_PROBE = r"""
extern "C" __global__ void __launch_bounds__(32)
mma_probe(const unsigned short* __restrict__ a, float* __restrict__ c) {
  __shared__ __align__(16) unsigned short tile[32 * 8];
  unsigned addr = (unsigned)__cvta_generic_to_shared(tile + threadIdx.x * 8);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n"
               :: "r"(addr), "l"(a + threadIdx.x * 8));
  asm volatile("cp.async.commit_group;\n" ::);
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();
  unsigned r0, r1, r2, r3;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
  float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
               : "r"(r0), "r"(r1), "r"(r2), "r"(r3), "r"(r0), "r"(r1));
  reinterpret_cast<float4*>(c)[threadIdx.x] = make_float4(d0, d1, d2, d3);
}
"""
PROBE_INSTRUCTIONS = (
    "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
    "cp.async.cg.shared.global",
    "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
)

# 1024 threads and 2 blocks per SM leave 32 registers a thread for 48 live floats: ptxas spills.
SPILLER = r"""
extern "C" __global__ void __launch_bounds__(1024, 2)
spiller(float* __restrict__ out, const float* __restrict__ in) {
  float r[48];
  #pragma unroll
  for (int i = 0; i < 48; i++) r[i] = in[threadIdx.x + i * 1024];
  float acc = 0.f;
  #pragma unroll
  for (int i = 0; i < 48; i++) acc += r[i] * r[47 - i] + r[(i * 7) % 48];
  #pragma unroll
  for (int i = 0; i < 48; i++) out[threadIdx.x + i * 1024] = r[i] * acc;
}
"""

TWO_KERNELS = r"""
__device__ __noinline__ float twice(float x) { return 2.f * x; }
extern "C" __global__ void first(float* o) { o[threadIdx.x] = twice(o[threadIdx.x]); }
extern "C" __global__ void second(float* o) { o[threadIdx.x] += 1.f; }
"""

SYNTAX_ERROR = """extern "C" __global__ void broken(float* o) {
  int x = 1
  o[0] = x;
}
"""

BAD_INLINE_PTX = r"""
extern "C" __global__ void bad_ptx(float* o) {
  float x;
  asm volatile("mov.b32x %0, 1.0;" : "=f"(x));
  o[0] = x;
}
"""


@pytest.fixture(scope="module", params=["sm_80", "sm_90a"])
def probe(request) -> CompiledModule:
    return compile_cuda(MMA_PROBE, "mma_probe", Target.parse(request.param))


@pytest.fixture(scope="module")
def spiller() -> CompiledModule:
    return compile_cuda(SPILLER, "spiller", "sm_80")


# -- compiling -----------------------------------------------------------------------------------
def test_a_header_free_kernel_compiles_to_a_cubin_for_the_exact_arch(probe):
    assert probe.cubin.startswith(ELF_MAGIC)
    assert f".target {probe.target.arch}" in probe.ptx
    assert probe.name == "mma_probe"
    assert probe.nvrtc_version == nvrtc.version()
    assert probe.compile_time_s > 0
    assert probe.options == (
        "--std=c++17",
        "-default-device",
        f"--gpu-architecture={probe.target.arch}",
        "-Xptxas=-v",
    )
    assert not any("fast" in o for o in probe.options)


def test_the_ptx_holds_the_tensor_core_and_async_copy_instructions(probe):
    for instruction in PROBE_INSTRUCTIONS:
        assert instruction in probe.ptx, instruction


def test_the_ptxas_report_gives_registers_shared_memory_and_no_spills(probe):
    k = probe.report["mma_probe"]
    assert probe.kernel == k
    assert k.entry
    assert 0 < k.registers <= 255
    assert k.shared_bytes == 32 * 8 * 2
    assert k.barriers == 1
    assert (k.spill_store_bytes, k.spill_load_bytes, k.stack_frame_bytes) == (0, 0, 0)
    assert probe.report.spill_bytes == 0
    assert "Used" in probe.report.raw
    assert "mma_probe" in repr(probe)
    assert str(len(probe.cubin)) in repr(probe)  # the repr summarises instead of dumping bytes


def test_a_kernel_squeezed_by_launch_bounds_reports_its_spills(spiller):
    k = spiller.report["spiller"]
    assert k.registers <= 32
    assert k.spill_store_bytes > 0
    assert k.spill_load_bytes > 0
    assert k.stack_frame_bytes > 0
    assert spiller.report.spill_bytes == k.spill_bytes > 0


def test_the_report_lists_every_kernel_and_out_of_line_device_function():
    module = compile_cuda(TWO_KERNELS, "first", "sm_80")
    assert sorted(f.name for f in module.report.entries) == ["first", "second"]  # ptxas' order
    helper = module.report["_Z5twicef"]
    assert not helper.entry
    assert helper.registers is None  # ptxas gives registers for entries only
    assert module.report.max_registers == max(f.registers for f in module.report.entries)
    with pytest.raises(KeyError, match=r"it reported: .*_Z5twicef"):
        module.report["third"]


def test_lineinfo_adds_source_locations_to_the_ptx():
    module = compile_cuda(TWO_KERNELS, "first", "sm_80", lineinfo=True)
    assert "-lineinfo" in module.options
    assert ".loc" in module.ptx


def test_the_compile_time_is_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="tilevm.runtime.compiler"):
        compile_cuda(TWO_KERNELS, "second", "sm_80")
    assert any("compiled second for sm_80 in" in r.getMessage() for r in caplog.records)


# -- errors --------------------------------------------------------------------------------------
def test_a_syntax_error_raises_with_the_log_and_the_numbered_source_lines():
    with pytest.raises(CudaCompileError) as info:
        compile_cuda(SYNTAX_ERROR, "broken", "sm_80")
    err = info.value
    assert isinstance(err, TileVMError)
    assert err.line == 3
    assert 'broken.cu(3): error: expected a ";"' in err.log
    message = str(err)
    assert message.startswith("NVRTC could not compile kernel 'broken' for sm_80:")
    assert err.log.strip() in message
    assert "broken.cu around line 3:\n" in message
    assert "  2 |   int x = 1\n> 3 |   o[0] = x;\n  4 | }" in message


def test_bad_inline_ptx_raises_with_the_generated_ptx_lines():
    with pytest.raises(CudaCompileError) as info:
        compile_cuda(BAD_INLINE_PTX, "bad_ptx", "sm_80")
    err = info.value
    assert "Unknown modifier '.b32x'" in err.log
    assert err.ptx and err.line is not None
    assert f"generated PTX around line {err.line}:" in str(err)
    assert f"> {err.line} | \tmov.b32x %f1, 1.0;" in str(err)


def test_an_unknown_option_raises_with_the_log_and_no_excerpt():
    with pytest.raises(CudaCompileError, match="--no-such-option") as info:
        compile_cuda(TWO_KERNELS, "first", "sm_80", options=["--no-such-option"])
    assert info.value.line is None


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("sm_70", r"NVRTC \d+\.\d+ cannot compile for sm_70; it supports sm_75, sm_80, "),
        ("sm_80a", r"the 'a' suffix exists from sm_90 on; got 'sm_80a' \(did you mean 'sm_80'\?\)"),
        ("sm_90f", r"the 'f' suffix exists from sm_100 on; got 'sm_90f'"),
        ("compute_90", r"got 'compute_90' \(a virtual architecture: tilevm builds cubins"),
        ("90", r"a real GPU architecture such as 'sm_80' or 'sm_90a'; got '90'"),
        ("sm_8", r"got 'sm_8'"),
    ],
)
def test_an_unsupported_or_malformed_arch_is_a_clear_error(arch, message):
    with pytest.raises(TargetError, match=message):
        Target.parse(arch)
    with pytest.raises(TargetError, match=message):
        compile_cuda(TWO_KERNELS, "first", arch)


def test_a_target_is_a_checked_value():
    assert Target.parse(" SM_90A ") == Target("sm_90a")
    assert hash(Target.parse("sm_80")) == hash(Target("sm_80"))
    assert str(Target("sm_86")) == "sm_86"
    assert Target("sm_90a").compute_capability == (9, 0)
    assert Target("sm_121").compute_capability == (12, 1)
    with pytest.raises(TargetError, match="got 80"):
        Target(80)


@pytest.mark.parametrize(
    ("capability", "arch"),
    [((8, 0), "sm_80"), ((8, 6), "sm_86"), ((8, 9), "sm_89"), ((9, 0), "sm_90a")],
)
def test_the_device_target_is_sm_xy_and_sm_90a_on_hopper(capability, arch):
    assert Target.for_device(*capability) == Target(arch)


def test_options_may_not_set_the_architecture():
    target = Target("sm_80")
    with pytest.raises(TargetError, match="pass the architecture as the target"):
        compile_options(target, ["--gpu-architecture=sm_90"])
    with pytest.raises(TargetError, match="got '-arch=sm_90'"):
        compile_options(target, ["-arch=sm_90"])
    assert compile_options(target, ["-G"], include_dirs=["/x"], lineinfo=True)[-3:] == (
        "-lineinfo",
        "-I/x",
        "-G",
    )


@pytest.mark.parametrize("name", ["", "1st", "my-kernel", "a/b", None])
def test_a_kernel_name_must_be_a_c_identifier(name):
    with pytest.raises(TileVMError, match="a kernel name is a C identifier"):
        compile_cuda(TWO_KERNELS, name, "sm_80")


def test_numbered_excerpt_clips_at_the_ends_of_the_text():
    text = "\n".join(f"line {i}" for i in range(1, 13))
    assert numbered_excerpt(text, 1, context=1) == "> 1 | line 1\n  2 | line 2"
    assert numbered_excerpt(text, 12, context=2).splitlines() == [
        "  10 | line 10",
        "  11 | line 11",
        "> 12 | line 12",
    ]


# -- the report parser on logs other versions write ----------------------------------------------
def test_the_parser_reads_nvcc_style_and_older_ptxas_logs():
    log = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z3addPf' for 'sm_75'
ptxas info    : Function properties for _Z3addPf
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 20 registers, 1024+16 bytes smem, 352 bytes cmem[0]
some unrelated line
    indented but not part of the report
"""
    report = parse_ptxas_report(log)
    assert report.functions == (
        FunctionResources(
            "_Z3addPf",
            entry=True,
            registers=20,
            stack_frame_bytes=8,
            spill_store_bytes=4,
            spill_load_bytes=12,
            shared_bytes=1040,
        ),
    )
    assert "unrelated" not in report.raw
    assert (
        report.raw.splitlines()[3]
        == "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads"
    )


def test_a_warn_spills_warning_applies_to_the_function_it_names():
    log = """\
ptxas info    : Compiling entry function 'a' for 'sm_80'
ptxas warning : Registers are spilled to local memory in function 'b', {spills}
ptxas info    : Used 10 registers, used 0 barriers
""".format(spills="8 bytes spill stores, 4 bytes spill loads")
    report = parse_ptxas_report(log)
    assert report["a"].registers == 10
    assert report["a"].spill_bytes == 0
    assert (report["b"].spill_store_bytes, report["b"].spill_load_bytes) == (8, 4)
    assert report.warnings == (
        "Registers are spilled to local memory in function 'b', 8 bytes spill stores, "
        "4 bytes spill loads",
    )


def test_a_log_without_a_report_parses_to_an_empty_one():
    report = parse_ptxas_report("k.cu(3): warning: unused\n")
    assert report.functions == () and report.raw == "" and report.spill_bytes == 0
    assert report.max_registers is None
    assert str(report) == "(no ptxas report)"


# -- the package stays light ---------------------------------------------------------------------
def test_the_compiler_hash_covers_the_package_and_is_computed_once():
    first = hash_compiler_sources()
    assert len(first) == 64 and int(first, 16) >= 0
    assert hash_compiler_sources() is first


def test_importing_the_runtime_modules_loads_no_cuda_bindings():
    code = (
        "import sys, tilevm.runtime.cache, tilevm.runtime.compiler; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cuda', 'torch')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
