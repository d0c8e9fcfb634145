"""CUDA emission: examples compile without spills, the PTX holds the instructions meant to be
there, and the pieces (index arithmetic, view plans, shared memory, numerics) are right."""

from __future__ import annotations

import itertools
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import tilevm
import tilevm.lang as tl
from tilevm.codegen import CodegenError, EmitOptions, emit_cuda
from tilevm.codegen.compute import view_plan
from tilevm.codegen.emitter import EMIT
from tilevm.ir import inst as I
from tilevm.ir.stmt import instructions
from tilevm.layouts import (
    local,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    packed_byte_layout,
    permute,
    spatial,
    view_moves,
)
from tilevm.layouts.indexing import (
    DigitSum,
    fit_digit_sum,
    index_of,
    local_map,
    local_parts,
    local_radices,
    replica_terms,
    thread_parts,
)
from tilevm.passes.infer_layouts import auto_layout, dot_layouts
from tilevm.passes.pipeline import run_pipeline
from tilevm.passes.plan_shared_memory import SharedAllocator
from tilevm.passes.vectorise import contiguous_run, memory_order
from tilevm.runtime.compiler import compile_cuda

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).parent))

import codegen_host
import codegen_kernels
import lowbit_gemm
import matmul_fp16
import softmax
import vector_add
from golden import assert_golden
from layout_testing import layouts

TARGETS = ("sm_80", "sm_90a")
EXAMPLES = {
    "vector_add": lambda: vector_add.vector_add.program(),
    "softmax": lambda: softmax.softmax.program(),
    "matmul_fp16": lambda: matmul_fp16.matmul.program(),
    "lowbit_gemm_int3": lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.int3),
    "lowbit_gemm_e3m2": lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.float6_e3m2),
    "lowbit_gemm_int4": lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.int4),
}
EXTRA = codegen_kernels.RUNNABLE


@pytest.fixture(scope="module")
def kernels():
    return {name: emit_cuda(run_pipeline(make())) for name, make in EXAMPLES.items()}


@pytest.fixture(scope="module")
def modules(kernels):
    return {
        (name, target): compile_cuda(k.source, k.name, target)
        for name, k in kernels.items()
        for target in TARGETS
    }


@pytest.fixture(scope="module")
def extra_modules():
    out = {}
    for name in EXTRA:
        kernel = emit_cuda(run_pipeline(getattr(codegen_kernels, name).program()))
        for target in TARGETS:
            out[name, target] = (kernel, compile_cuda(kernel.source, kernel.name, target))
    return out


# -- the examples ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_compiles_for_ampere_and_hopper_without_spilling(modules, name, target):
    module = modules[name, target]
    assert module.report.spill_bytes == 0, module.log
    assert module.kernel is not None and module.kernel.registers is not None


@pytest.mark.parametrize("name", ["matmul_fp16", "lowbit_gemm_int3", "lowbit_gemm_e3m2"])
def test_gemms_run_on_tensor_cores(modules, name):
    for target in TARGETS:
        assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in modules[name, target].ptx


def test_matmul_stages_tiles_with_cp_async_and_waits_for_them(modules):
    ptx = modules["matmul_fp16", "sm_80"].ptx
    assert ptx.count("cp.async.cg.shared.global") == 2  # one 16-byte copy per thread per tile
    assert "cp.async.commit_group" in ptx and "cp.async.wait_group 0" in ptx


def test_vector_add_moves_16_bytes_per_access(modules):
    for target in TARGETS:
        ptx = modules["vector_add", target].ptx
        assert ptx.count("ld.global.v4") == 2 and ptx.count("st.global.v4") == 1


@pytest.mark.parametrize(
    ("name", "loads"), [("lowbit_gemm_int3", 3), ("lowbit_gemm_e3m2", 6), ("lowbit_gemm_int4", 4)]
)
def test_the_w3a16_gemm_uses_cp_async_ldmatrix_mma_and_16_byte_weight_loads(modules, name, loads):
    """b 16-byte loads of weights per thread and step; x staged by cp.async, read by ldmatrix."""
    for target in TARGETS:
        ptx = modules[name, target].ptx
        assert ptx.count("ld.global.v4.u32") + ptx.count("ld.global.nc.v4.u32") == loads
        assert "cp.async.cg.shared.global" in ptx and "cp.async.wait_group 0" in ptx
        assert ptx.count("ldmatrix.sync.aligned.m8n8.x4.shared.b16") == 4
        assert ptx.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == 32


def test_softmax_reduces_rows_with_warp_shuffles(modules):
    ptx = modules["softmax", "sm_80"].ptx
    assert ptx.count("shfl.sync.bfly.b32") == 10  # 5 lane bits, for max and for sum
    assert "bar.sync" not in ptx  # a row lives in one warp: no shared memory


@pytest.mark.parametrize("name", ["vector_add", "softmax"])
def test_generated_source_matches_the_golden_file(kernels, name):
    assert_golden(f"cuda_{name}", kernels[name].source)


def test_the_kernel_describes_its_launch(kernels):
    k = kernels["matmul_fp16"]
    assert [(p.name, p.kind, p.ctype) for p in k.params] == [
        ("a", "pointer", "tv_f16*"),
        ("b", "pointer", "tv_f16*"),
        ("c", "pointer", "tv_f16*"),
        ("m", "scalar", "int"),
        ("n", "scalar", "int"),
        ("k", "scalar", "int"),
    ]
    assert k.num_threads == 128 and k.shared_bytes == 2048 and not k.dynamic_shared


# -- assumptions ---------------------------------------------------------------------------------
def test_a_runtime_row_stride_is_tested_in_the_kernel_so_every_shape_works(kernels):
    source = kernels["matmul_fp16"].source
    assert "const bool k_is_multiple_of_8 = (k & 7) == 0;" in source
    assert "if (k_is_multiple_of_8) {" in source  # cp.async when it holds, elements when not
    assert [str(a) for a in kernels["matmul_fp16"].assumptions] == [
        "address of a % 16 == 0",
        "address of b % 16 == 0",
        "address of c % 4 == 0",
    ]


def test_assumed_divisibility_is_recorded_for_the_launcher_instead():
    kernel = emit_cuda(run_pipeline(matmul_fp16.matmul.program()), EmitOptions("assume"))
    assert [str(a) for a in kernel.assumptions][:2] == ["k % 8 == 0", "n % 8 == 0"]
    assert "is_multiple_of" not in kernel.source
    k_fact = kernel.assumptions[0]
    assert k_fact.check({"k": 64}) == (True, "")
    ok, why = k_fact.check({"k": 70})
    assert not ok and "'k' = 70 must be a multiple of 8" in why


def test_pointer_alignment_is_checked_on_the_launch_arguments(kernels):
    (x_fact,) = [a for a in kernels["vector_add"].assumptions if a.param == "x"]
    buffer = np.zeros(64, np.float32)
    assert x_fact.check({"x": buffer[::1]})[0] == (buffer.ctypes.data % 16 == 0)
    ok, why = x_fact.check({"x": 0x1004})
    assert not ok and "16-byte aligned" in why and "0x1004" in why


def test_without_speculation_a_runtime_stride_gets_element_accesses():
    program = run_pipeline(softmax.softmax.program())
    kernel = emit_cuda(program, EmitOptions(speculate="off"))
    assert not [a for a in kernel.assumptions if a.kind == "value"]
    assert "tv_b128" not in kernel.source
    module = compile_cuda(kernel.source, kernel.name, "sm_80")
    assert "ld.global.v4" not in module.ptx and module.report.spill_bytes == 0


def test_a_known_divisibility_fact_vectorises_without_a_test():
    program = run_pipeline(softmax.softmax.program())
    kernel = emit_cuda(program, EmitOptions.make(divisibility={"n": 4}))
    assert "tv_b128" in kernel.source and "is_multiple_of" not in kernel.source


def test_matmul_without_speculation_copies_synchronously_and_still_compiles():
    kernel = emit_cuda(run_pipeline(matmul_fp16.matmul.program()), EmitOptions(speculate="off"))
    body = kernel.source.split("extern")[1]
    assert not any(f"tv_cp_async{n}(" in body for n in (4, 8, 16))  # 2-byte elements
    assert compile_cuda(kernel.source, kernel.name, "sm_80").report.spill_bytes == 0


def test_options_are_checked():
    with pytest.raises(ValueError, match="got True"):
        EmitOptions(speculate=True)
    with pytest.raises(ValueError, match="power of two"):
        EmitOptions(pointer_alignment=12)


# -- every instruction -----------------------------------------------------------------------------
def test_every_instruction_class_has_an_emission_rule():
    classes = {c for c in vars(I).values() if isinstance(c, type) and issubclass(c, I.Instruction)}
    assert classes - {I.Instruction} <= EMIT.classes()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", EXTRA)
def test_kernels_using_every_instruction_compile_without_spilling(extra_modules, name, target):
    _, module = extra_modules[name, target]
    assert module.report.spill_bytes == 0, module.log


def test_a_reduction_across_warps_goes_through_shared_memory(extra_modules):
    kernel, module = extra_modules["cross_warp_sum", "sm_80"]
    assert module.ptx.count("shfl.sync.bfly") == 3 * 8  # lane bits 4, 8, 16; 8 registers
    assert "bar.sync" in module.ptx and "partials[" in kernel.source


def test_a_layout_conversion_goes_through_shared_memory(extra_modules):
    kernel, module = extra_modules["transpose_via_layouts", "sm_80"]
    assert "convert_layout" in kernel.source and "scratch" in kernel.source
    assert "st.shared" in module.ptx and "ld.shared" in module.ptx


def test_integer_and_bfloat16_dots_use_their_mma_shapes(extra_modules):
    assert "m16n8k32.row.col.s32.s8.s8.s32" in extra_modules["int8_dot", "sm_80"][1].ptx
    assert "m16n8k16.row.col.f32.bf16.bf16.f32" in extra_modules["bf16_dot", "sm_90a"][1].ptx


def test_print_and_scalar_control_flow_become_c(extra_modules):
    kernel, module = extra_modules["scalars_and_control", "sm_80"]
    source = kernel.source
    assert "for (int j = n; j > 0; j += -2)" in source
    assert "#pragma unroll 2" in source and "while (" in source and "break;" in source
    assert "tv_floordiv(n, 3)" in source and "tv_mod(n, 5)" in source
    assert "vprintf" in module.ptx


def test_a_program_without_layouts_is_refused_with_the_fix():
    with pytest.raises(CodegenError, match="run_pipeline"):
        emit_cuda(vector_add.vector_add.program())


def test_a_dot_of_float32_tiles_is_refused():
    with pytest.raises(CodegenError, match="float16 x float16"):
        emit_cuda(run_pipeline(codegen_kernels.float32_dot.program()))


# -- index arithmetic ------------------------------------------------------------------------------
def _c_eval(text: str, var: str, values: np.ndarray) -> np.ndarray:
    """Evaluate a rendered C index expression (non-negative ints: C and Python agree)."""
    return np.vectorize(lambda x: eval(text.replace("/", "//"), {var: int(x)}))(values)


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_thread_and_local_parts_add_up_to_the_layout_table(layout):
    table = layout.table()
    t = np.arange(layout.num_threads)[:, None]
    v = np.arange(layout.local_size)[None, :]
    for d, index in enumerate(index_of(layout, t, v)):
        assert np.array_equal(np.broadcast_to(index, table.shape[:2]), table[:, :, d])
    # the C text of each part computes the same numbers, with and without modulo elision
    threads = np.arange(2 * layout.num_threads)
    for d, part in enumerate(thread_parts(layout)):
        text = part.render("tid", 2 * layout.num_threads)
        want = table[threads % layout.num_threads, 0, d] - local_parts(layout)[d](0)
        assert np.array_equal(_c_eval(text, "tid", threads), want), text
    regs = np.arange(layout.local_size)
    for part in local_parts(layout):
        assert np.array_equal(_c_eval(part.render("i", layout.local_size), "i", regs), part(regs))


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_local_parts_are_recovered_from_their_values_as_digit_sums(layout):
    regs = np.arange(layout.local_size)
    for part in local_parts(layout):
        values = np.broadcast_to(part(regs), regs.shape)
        fitted = fit_digit_sum(values, local_radices(layout))
        assert fitted is not None and np.array_equal(fitted(regs), values)


def test_a_map_that_is_not_digit_additive_has_no_digit_sum():
    assert fit_digit_sum([0, 1, 3, 2], [(1, 4)]) is None
    assert fit_digit_sum([5, 7, 9, 11], [(1, 4)]) == DigitSum(
        fit_digit_sum([0, 2, 4, 6], [(1, 4)]).terms, 5
    )


def test_thread_parts_of_a_fragment_layout_read_like_the_ptx_tables():
    a = mma_m16n8k16_a()  # row = lane / 4 (+8), column = 2 * (lane % 4) (+1, +8)
    rows, cols = (p.render("lane", 32, standalone=True) for p in thread_parts(a))
    assert (rows, cols) == ("lane >> 2", "(lane & 3) * 2")


def test_the_owner_of_a_replicated_element_is_the_replica_with_zero_digits():
    layout = auto_layout((256,), 128, 32)  # 64 threads' worth of data, two copies
    (term,) = replica_terms(layout)
    assert (term.stride, term.extent) == (64, 2)


def test_registers_of_a_broadcast_operand_are_found_in_the_same_thread():
    out = spatial(4, 32) * local(1, 4)
    row = spatial(4, 1).replicate(32)  # reduce(out, [1])
    from tilevm.layouts.indexing import broadcast_transform

    assert local_map(out, row, 128, broadcast_transform((4, 128), (4, 1))) == [0, 0, 0, 0]
    assert local_map(out, local(1, 4) * spatial(4, 32), 128) is None


# -- views -----------------------------------------------------------------------------------------
def _check_view_plan(src, src_bits, dst, dst_bits):
    plan = view_plan(src.local_size, src_bits, dst.local_size, dst_bits)
    moves = view_moves(src, src_bits, dst, dst_bits)
    src_table, dst_table = src.table(), dst.table()
    for t in range(dst.num_threads):
        for v, pieces in enumerate(plan):
            want = moves[tuple(int(i) for i in dst_table[t, v])]
            got = [(tuple(int(i) for i in src_table[t, s]), a, b, n) for s, a, b, n in pieces]
            assert got == [(p.src_index, p.src_bit, p.dst_bit, p.nbits) for p in want]


@pytest.mark.parametrize("wtype", [tilevm.int3, tilevm.float6_e3m2, tilevm.int4, tilevm.uint1])
def test_the_view_plan_of_packed_weights_moves_the_bits_view_moves_says(wtype):
    target = lowbit_gemm.weight_layout()
    _check_view_plan(packed_byte_layout(target, wtype.nbits), 8, target, wtype.nbits)


@pytest.mark.parametrize(("src_bits", "dst_bits"), [(8, 3), (16, 8), (32, 16), (6, 4)])
def test_the_view_plan_reslices_each_threads_bit_string(src_bits, dst_bits):
    threads = spatial(4)
    src = threads * local(12 * 8 // src_bits)
    dst = threads * local(12 * 8 // dst_bits)
    _check_view_plan(src, src_bits, dst, dst_bits)


# -- shared memory ---------------------------------------------------------------------------------
def test_shared_tensors_stack_up_16_byte_aligned_and_reuse_freed_space():
    s = SharedAllocator()
    a, b, c = object(), object(), object()
    assert s.alloc(a, 1024) == 0 and s.alloc(b, 100) == 1024
    s.free(a)
    assert s.top == 1124 and s.scratch(64) == 1136  # a is below b: its space waits
    s.free(b)
    assert s.top == 0 and s.alloc(c, 512) == 0
    assert s.peak == 1200


def test_shared_allocation_follows_the_programs_alloc_order(kernels):
    source = kernels["matmul_fp16"].source
    assert "sa = reinterpret_cast<tv_f16*>(smem + 0);" in source
    assert "sb = reinterpret_cast<tv_f16*>(smem + 1024);" in source


def _shared_layouts(program):
    from tilevm.ir.stmt import instructions

    planned = run_pipeline(program)
    return [i.out.layout for i in instructions(planned.body) if isinstance(i, I.AllocShared)]


def test_a_staged_tile_read_in_k_steps_gets_padded_rows_and_tiles_read_whole_a_swizzle():
    from tilevm.bench.sass import _program
    from tilevm.layouts.shared import shared_row_major

    # the GEMM's x tile, read 16 columns a step with ldmatrix: padded rows keep each step an
    # immediate offset (a swizzle would cost an XOR a step); the example's tiles are read whole
    decode = _program(tilevm.int4, tilevm.float16, "decode8")
    assert _shared_layouts(decode) == [shared_row_major(8, 64, pad=8)] * 2
    sa, sb = _shared_layouts(matmul_fp16.matmul.program())
    assert sa.swizzle is not None and sb.swizzle is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a * 4 + b + 8 + 16", ("a * 4 + b", 24)),
        ("x - 16", ("x", -16)),
        ("(x + 16) * 64", ("(x + 16) * 64", 0)),
        ("tid & 15", ("tid & 15", 0)),
        ("37", ("0", 37)),
        ("f(a + 1) + 2", ("f(a + 1)", 2)),
    ],
)
def test_split_const_takes_apart_the_trailing_constants_add_writes(text, expected):
    from tilevm.codegen.text import split_const

    assert split_const(text) == expected


def test_linear_multiplies_each_indexs_constant_out_of_its_terms():
    from tilevm.codegen.text import linear

    assert linear(["(tid & 15) + 16", "((tid >> 4) & 1) * 8 + 32"], [72, 1]) == (
        "(tid & 15) * 72 + ((tid >> 4) & 1) * 8",
        16 * 72 + 32,
    )


# -- numerics of the helpers, on the host ----------------------------------------------------------
host = pytest.mark.skipif(not codegen_host.have_compiler(), reason="needs a host g++")
SMALL_FLOATS = [t for t in tilevm.dtypes.LOW_BIT_DTYPES if t.is_float]


@pytest.fixture(scope="module")
def small_float_binary():
    cases = []
    specials = {"finite": 0, "fn": 1, "ieee": 2}
    for k, t in enumerate(SMALL_FLOATS):
        args = f"{t.exponent_bits}, {t.mantissa_bits}, {specials[t._specials]}"
        cases += [
            f"case {3 * k}: out = __float_as_uint(tv_decode_float<{args}>(in)); break;",
            f"case {3 * k + 1}: out = tv_encode_float<{args}, false>(__uint_as_float(in)); break;",
            f"case {3 * k + 2}: out = tv_encode_float<{args}, true>(__uint_as_float(in)); break;",
        ]
    main = (
        "unsigned op, in, out = 0;\n"
        "while (fread(&op, 4, 1, stdin) == 1 && fread(&in, 4, 1, stdin) == 1) {\n"
        "  switch (op) {\n" + "\n".join(cases) + "\n  }\n  fwrite(&out, 4, 1, stdout);\n}"
    )
    return codegen_host.host_program("small_float", ["types", "small_float"], main)


def _probe_values(t, rng) -> np.ndarray:
    values = t.decode(np.arange(1 << t.nbits)).astype(np.float32)
    finite = np.sort(values[np.isfinite(values)])
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    with np.errstate(over="ignore"):
        big = (t.max_value * np.array([1.01, 1.5, 2, 1e30])).astype(np.float32)
    special = np.array([0, -0.0, np.inf, -np.inf, 1e-45, 3e38], np.float32)
    noise = (rng.standard_normal(500) * t.max_value).astype(np.float32)
    return np.concatenate([values, mids, -mids, big, -big, special, noise]).astype(np.float32)


@host
@pytest.mark.parametrize("t", SMALL_FLOATS, ids=str)
def test_small_float_helpers_decode_and_round_like_the_interpreter(small_float_binary, t):
    from tilevm.interp.values import round_arith

    k = SMALL_FLOATS.index(t)
    codes = np.arange(1 << t.nbits, dtype=np.uint32)
    x = _probe_values(t, np.random.default_rng(k))
    x = x[~np.isnan(x)]
    ops = np.concatenate([np.full(codes.size, 3 * k), np.full(x.size, 3 * k + 1)])
    ops = np.concatenate([ops, np.full(x.size, 3 * k + 2)]).astype(np.uint32)
    ins = np.concatenate([codes, x.view(np.uint32), x.view(np.uint32)])
    out = codegen_host.run_words(small_float_binary, np.stack([ops, ins], axis=1).reshape(-1))
    decoded = out[: codes.size].view(np.float32)
    want = t.decode(codes)
    assert np.array_equal(decoded, want, equal_nan=True) and np.array_equal(
        np.signbit(decoded), np.signbit(want)
    )
    cast, arith = out[codes.size : codes.size + x.size], out[codes.size + x.size :]
    assert np.array_equal(cast, t.encode(x).astype(np.uint32))
    assert np.array_equal(t.decode(arith), round_arith(x, t), equal_nan=True)


@host
def test_integer_and_float_division_helpers_follow_python_and_numpy():
    main = (
        "int a, b;\n"
        "while (fread(&a, 4, 1, stdin) == 1 && fread(&b, 4, 1, stdin) == 1) {\n"
        "  float fa = (float)a / 4, fb = (float)b / 4;\n"
        "  int out[4] = {tv_floordiv(a, b), tv_mod(a, b), 0, 0};\n"
        "  float f[2] = {tv_ffloordiv(fa, fb), tv_fmod_py(fa, fb)};\n"
        "  std::memcpy(&out[2], f, 8);\n"
        "  fwrite(out, 4, 4, stdout);\n}"
    )
    binary = codegen_host.host_program("division", ["int_division", "float_division"], main)
    pairs = np.array(
        [(a, b) for a, b in itertools.product(range(-9, 10), repeat=2) if b != 0], np.int32
    )
    out = codegen_host.run_words(binary, pairs.view(np.uint32).reshape(-1)).reshape(-1, 4)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    assert np.array_equal(out[:, 0].view(np.int32), a // b)
    assert np.array_equal(out[:, 1].view(np.int32), a % b)
    fa, fb = (pairs[:, 0] / 4).astype(np.float32), (pairs[:, 1] / 4).astype(np.float32)
    assert np.array_equal(out[:, 2].view(np.float32), np.floor_divide(fa, fb))
    assert np.array_equal(out[:, 3].view(np.float32), np.mod(fa, fb))


@host
def test_float_to_int_casts_round_to_even_and_saturate():
    main = (
        "float x;\n"
        "while (fread(&x, 4, 1, stdin) == 1) {\n"
        "  int v = (int)tv_f32_to_int(x, -128, 127);\n"
        "  fwrite(&v, 4, 1, stdout);\n}"
    )
    binary = codegen_host.host_program("f2i", ["float_to_int"], main)
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 126.5, 127.5, 1e9, -1e9, np.inf, -np.inf], np.float32)
    out = codegen_host.run_words(binary, x.view(np.uint32)).view(np.int32)
    assert np.array_equal(out, tilevm.int8.decode(tilevm.int8.encode(x)))


# -- the layouts the examples use ------------------------------------------------------------------
def test_dot_fragments_index_their_atoms_by_the_outer_registers():
    a, b, c = dot_layouts(32, 32, 32, 4, False, {})  # 2 x 2 warps, rm = 1, rn = 2, rk = 2
    atom_a, atom_b, atom_c = mma_m16n8k16_a(), mma_m16n8k16_b(), mma_m16n8k16_c()
    ta, tb, tc = a.table()[:32], b.table()[:32], c.table()[:32]  # warp 0
    # Register (mi * rk + ki) * 8 + e of A holds element e of the warp's atom (mi, ki); the
    # atoms of one ni are 8 * wn = 16 columns apart (the other warp's atom sits between).
    for ki in range(2):
        assert np.array_equal(ta[:, ki * 8 : ki * 8 + 8], atom_a.table() + [0, 16 * ki])
        for ni in range(2):  # B: (ki * rn + ni) * 4 + e
            at = (ki * 2 + ni) * 4
            assert np.array_equal(tb[:, at : at + 4], atom_b.table() + [16 * ki, 16 * ni])
    for ni in range(2):  # C: (mi * rn + ni) * 4 + e, the same columns as B's ni
        assert np.array_equal(tc[:, ni * 4 : ni * 4 + 4], atom_c.table() + [0, 16 * ni])


# -- scalar expressions, on the host ---------------------------------------------------------------
def _scalar_cases():
    from tilevm import dtypes as D
    from tilevm.ir.expr import Var, cast_expr, maximum, minimum, select

    n, u = Var("n", D.int32), Var("u", D.uint32)
    f = cast_expr(n, D.float32) / 4.0
    small = cast_expr(n, D.int8)
    return (n, u), [
        n // 3,
        n % 3,
        n // -4,
        n % -4,
        (n << 3) + (n >> 2),
        n << 40,
        n >> 40,
        small * 50 + 7,  # int8 arithmetic wraps
        u * 3 + 7,
        u // 5 + u % 7,
        u > n,  # an exact comparison of mixed signedness
        u >> 3,
        select(n > 0, n, -n),
        minimum(n, 2) + maximum(n, -3),
        cast_expr(n, D.int64) * 1000000007,
        f // 2.5,
        f % 2.5,
        cast_expr(f * 100.0, D.int8),  # saturating cast
        cast_expr(n, D.uint4),
        (n > 2) & (n < 9),
    ]


@host
def test_scalar_expressions_in_c_compute_what_the_interpreter_computes():
    from tilevm.codegen.prelude import Prelude
    from tilevm.codegen.scalars import ScalarContext, c_expr
    from tilevm.interp.scalars import evaluate

    (n, u), exprs = _scalar_cases()
    prelude = Prelude()
    ctx = ScalarContext(lambda v: v.name, prelude)
    texts = [c_expr(e, ctx) for e in exprs]
    prints = "\n".join(
        f'printf("%a\\n", (double)({t}));'
        if e.dtype.is_float
        else f'printf("%lld\\n", (long long)({t}));'
        for e, t in zip(exprs, texts)
    )
    main = (
        "int n; unsigned u;\n"
        "while (fread(&n, 4, 1, stdin) == 1 && fread(&u, 4, 1, stdin) == 1) {\n" + prints + "\n}"
    )
    binary = codegen_host.host_program("scalars", ["types", *prelude.used], main)
    inputs = [(-7, 5), (0, 0), (9, 4000000000), (123456, 17), (-(2**31) + 5, 2**31)]
    words = np.array([(a & 0xFFFFFFFF, b) for a, b in inputs], np.uint32).reshape(-1)
    done = subprocess.run([str(binary)], input=words.tobytes(), capture_output=True, check=True)
    got = iter(done.stdout.decode().split())
    for a, b in inputs:
        m = types.SimpleNamespace(env={n: a, u: b}, buffers={}, block=(0, 0, 0), grid=(1, 1, 1))
        for e, text in zip(exprs, texts):
            want = evaluate(m, e)
            line = next(got)
            value = float.fromhex(line) if e.dtype.is_float else int(line)
            assert value == want, f"{text} (n={a}, u={b}): C gives {value}, the interpreter {want}"
    assert next(got, None) is None


@host
@pytest.mark.parametrize("name", ["lowbit_gemm_int3", "lowbit_gemm_e3m2", "lowbit_gemm_int4"])
def test_the_emitted_view_unpacks_each_threads_bytes_lsb_first(kernels, name):
    """The C lines of ``codes = view raw`` turn a thread's bytes into codes as tilevm.unpack."""
    source = kernels[name].source
    lines = [x.strip() for x in source.splitlines() if x.strip().startswith("codes[")]
    nbytes = int(source.split("tv_u8 raw[")[1].split("]")[0])
    count = len(lines)
    nbits = nbytes * 8 // count
    main = (
        f"tv_u8 raw[{nbytes}], codes[{count}];\n"
        f"while (fread(raw, 1, {nbytes}, stdin) == {nbytes}) {{\n"
        + "\n".join(lines)
        + f"\nfwrite(codes, 1, {count}, stdout);\n}}"
    )
    binary = codegen_host.host_program(f"view_{name}", ["types"], main)
    raw = np.random.default_rng(nbits).integers(0, 256, (200, nbytes), dtype=np.uint8)
    done = subprocess.run([str(binary)], input=raw.tobytes(), capture_output=True, check=True)
    got = np.frombuffer(done.stdout, np.uint8).reshape(200, count)
    want = np.stack([tilevm.unpack(row, nbits, count) for row in raw])
    assert np.array_equal(got, want)


def test_register_loop_indices_keep_their_parentheses_when_added_to_a_base():
    """A masked element-by-element load adds the loop's register digit (``r & 3``) to a base
    index; C's ``+`` binds tighter than ``&``, so ``i2 + r & 3`` would read the wrong element.
    The split-K epilogue of the decode GEMM has such a load."""
    import re

    from tilevm.ops.qgemm import GEMM

    program = GEMM[tilevm.float16].program(
        WTYPE=tilevm.int4,
        GROUP=128,
        BLOCK_M=16,
        WARPS=4,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=True,
    )
    source = emit_cuda(run_pipeline(program)).source
    assert "gp[" in source  # the epilogue's element-by-element load of the partials
    loose = re.compile(r"[+\-] [A-Za-z_]\w* (?:&|>>|<<|\||\^) ")
    assert not [line for line in source.splitlines() if loose.search(line)]


@tilevm.kernel(num_warps=1)
def rows_of_n(
    x: tilevm.Ptr[tilevm.float16], y: tilevm.Ptr[tilevm.float16], m: tilevm.int32, n: tilevm.int32
):
    """Row 1 of an ``[m, n]`` tensor, copied: row 1 starts 16-byte aligned only if 8 | n."""
    g = tl.global_view(x, [m, n])
    t = tl.zeros([1, 256], tilevm.float16)
    aligned = n % 8 == 0 and n >= 256
    if aligned:  # noqa: SIM108 (a branch of the kernel, not a Python expression)
        t = tl.load(g, [1, 0], [1, 256], masked=False)
    else:
        t = tl.load(g, [1, 0], [1, 256])
    tl.store(tl.global_view(y, [1, n]), t, [0, 0])


def test_a_branch_on_divisibility_vectorises_without_testing_again():
    """``if n % 8 == 0 and ...`` proves 8 | n inside the branch (through the let variable), so
    its load is one 16-byte vector with no test and no element-wise fallback; the other branch
    keeps the test, and the fact is gone after the if."""
    source = emit_cuda(run_pipeline(rows_of_n.program())).source
    body = source.split("if (aligned) {")[1]
    then, rest = body.split("} else {", 1)
    assert "reinterpret_cast<const tv_b128*>" in then and "is_multiple_of" not in then
    assert "n_is_multiple_of_8" in rest  # the masked load, and the store after the if
    module = compile_cuda(source, rows_of_n.program().name, "sm_90a")
    assert module.report.spill_bytes == 0


def test_a_branch_on_divisibility_copies_what_the_interpreter_copies():
    from cuda_host import mirrored_on_host

    for n in (256, 264, 300):
        x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float16)
        y = np.zeros((1, n), np.float16)
        with mirrored_on_host():
            rows_of_n[(1,)](x, y, 2, n)
        np.testing.assert_array_equal(y[0, :256], x[1, :256])


# -- registers reordered for wider global accesses -------------------------------------------
ROWS_FIRST = permute(spatial(16, 8) * local(4, 2), (1, 0))  # 2 rows x 4 columns, rows inner


@tilevm.kernel(num_warps=4)
def rows_first(x: tilevm.Ptr[tilevm.float32], y: tilevm.Ptr[tilevm.float32]):
    t = tl.load(tl.global_view(x, [16, 64]), [0, 0], [16, 64], layout=ROWS_FIRST)
    tl.store(tl.global_view(y, [16, 64]), t * 2.0, [0, 0])


def test_a_tile_whose_registers_run_over_rows_is_stored_in_vectors():
    """Each thread holds 4 adjacent columns of 2 rows, registers row-inner: the pass stores
    them in the other register order, 16 bytes at a time, moved there in registers (no shared
    memory, no barrier). Loads keep their order (see vectorise._reordered)."""
    assert contiguous_run(ROWS_FIRST) == 1 and contiguous_run(memory_order(ROWS_FIRST)) == 4
    assert memory_order(memory_order(ROWS_FIRST)) == memory_order(ROWS_FIRST)
    program = run_pipeline(rows_first.program())
    insts = list(instructions(program.body))
    moves = [i for i in insts if isinstance(i, I.ConvertLayout)]
    assert len(moves) == 1
    assert all(local_map(m.out.layout, m.x.layout, 128) is not None for m in moves)
    accesses = [i for i in insts if isinstance(i, (I.LoadGlobal, I.StoreGlobal))]
    assert [program.plan.vector[i] for i in accesses] == [1, 4]
    source = emit_cuda(program).source
    assert "__syncthreads" not in source and "tv_b128" in source
    module = compile_cuda(source, program.name, "sm_90a")
    assert "ld.global.v4" not in module.ptx and module.ptx.count("st.global.v4") == 2


def test_a_tile_reordered_for_its_accesses_computes_what_the_interpreter_does():
    from cuda_host import mirrored_on_host

    x = np.random.default_rng(7).standard_normal((16, 64)).astype(np.float32)
    y = np.zeros_like(x)
    with mirrored_on_host():
        rows_first[(1,)](x, y)
    np.testing.assert_array_equal(y, x * 2)


@tilevm.kernel(num_warps=1)
def slab(
    x: tilevm.Ptr[tilevm.float32],
    y: tilevm.Ptr[tilevm.float32],
    s: tilevm.int32,
    m: tilevm.int32,
    n: tilevm.int32,
):
    """Slab 1 of an ``[s, m, n]`` tensor, doubled: its start, ``m * n``, is 16-byte aligned
    once 4 | n."""
    t = tl.load(tl.global_view(x, [s, m, n]), [1, 0, 0], [1, 4, 64])
    tl.store(tl.global_view(y, [s, m, n]), t * 2.0, [1, 0, 0])


def test_a_stride_that_is_a_product_of_parameters_vectorises_on_a_test_of_one_factor():
    """The first dimension's stride is m * n; the test is on n, which the rows need anyway, not
    on m (1 at decode, where the workspace of split-K partial sums has this shape)."""
    source = emit_cuda(run_pipeline(slab.program())).source
    assert "n_is_multiple_of_4" in source and "m_is_multiple_of" not in source
    assert source.count("reinterpret_cast<const tv_b128*>") == 1
    assert source.count("reinterpret_cast<tv_b128*>") == 1


def test_a_slab_behind_a_product_stride_copies_what_the_interpreter_copies():
    from cuda_host import mirrored_on_host

    for m, n in ((4, 64), (1, 64), (5, 66)):
        x = np.random.default_rng(m * n).standard_normal((3, m, n)).astype(np.float32)
        y = np.zeros_like(x)
        with mirrored_on_host():
            slab[(1,)](x, y, 3, m, n)
        rows = min(m, 4)
        np.testing.assert_array_equal(y[1, :rows, :64], 2 * x[1, :rows, :64])
