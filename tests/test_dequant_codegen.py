"""Fast low-bit -> float16/bfloat16 casts: which sequence each type gets, every code decoded
bit-exactly by the host twins of the sequences, and the emitted kernels' PTX."""

from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.codegen.dequant import KINDS, cast_pair, fast_cast_kind
from tilevm.codegen.prelude import Prelude
from tilevm.dtypes import LOW_BIT_DTYPES, bfloat16, float16
from tilevm.layouts import local, packed_byte_layout, spatial
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime import nvrtc
from tilevm.runtime.compiler import compile_cuda

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).parent))

import codegen_host
import lowbit_gemm

TARGETS = ("sm_80", "sm_90a")
DSTS = (float16, bfloat16)
FAST = [(t, d) for d in DSTS for t in LOW_BIT_DTYPES if fast_cast_kind(t, d) is not None]


def _nvrtc_missing() -> bool:
    try:
        nvrtc.version()
    except nvrtc.NVRTCError:
        return True
    return False


host = pytest.mark.skipif(not codegen_host.have_compiler(), reason="needs a host g++")
needs_nvrtc = pytest.mark.skipif(_nvrtc_missing(), reason="needs NVRTC")


# -- selection -------------------------------------------------------------------------------------
def test_every_low_bit_type_but_wide_exponents_has_a_fast_cast_to_both_16_bit_floats():
    for t in LOW_BIT_DTYPES:
        assert fast_cast_kind(t, bfloat16) is not None, t
        wide = t.is_float and t.exponent_bits > 5  # overflows or rounds in float16
        assert (fast_cast_kind(t, float16) is None) == wide, t
    assert len(FAST) == 2 * len(LOW_BIT_DTYPES) - 3


@pytest.mark.parametrize(
    ("src", "dst", "kind"),
    [
        (tilevm.int3, float16, "int_f16"),
        (tilevm.uint8, float16, "int_f16"),
        (tilevm.int7, bfloat16, "int_bf16"),
        (tilevm.int8, bfloat16, "int8_bf16"),
        (tilevm.uint8, bfloat16, "int8_bf16"),
        (tilevm.float6_e3m2, float16, "float_f16"),
        (tilevm.float8_e5m2, float16, "float_f16"),
        (tilevm.float8_e4m3, bfloat16, "float_bf16_via_f16"),
        (tilevm.float6_e5m0, float16, "float_f16"),
        (tilevm.float6_e5m0, bfloat16, "float_bf16"),
        (tilevm.float8_e7m0, bfloat16, "float_bf16"),
        (tilevm.float8_e6m1, float16, None),
        (tilevm.int16, float16, None),  # not low-bit
        (float16, bfloat16, None),
        (tilevm.int4, tilevm.float32, None),  # not a 16-bit float
        (tilevm.int4, tilevm.float8_e4m3, None),
    ],
)
def test_fast_cast_kind_names_the_sequence_for_a_pair_of_types(src, dst, kind):
    assert fast_cast_kind(src, dst) == kind
    assert kind is None or kind in KINDS


# -- every code, on the host -----------------------------------------------------------------------
F8 = (tilevm.float8_e4m3, tilevm.float8_e5m2)
F8_CASTS = [(t, d) for t, d in FAST if t in F8]


def _dequant_program(name: str, cvt: bool):
    """Reads (case, c0, c1) words, writes the sequence's 32-bit result for case FAST[case];
    ``cvt`` compiles the sm_89+ branch (TV_F8_CVT) instead of the one before sm_89."""
    prelude = Prelude()
    cases = []
    for k, (t, d) in enumerate(FAST):
        call = cast_pair(fast_cast_kind(t, d), t, "(tv_u8)in[1]", "(tv_u8)in[2]", prelude)
        cases.append(f"case {k}: out = {call}; break;")
    main = (
        "unsigned in[3], out = 0;\n"
        "while (fread(in, 4, 3, stdin) == 3) {\n"
        "  switch (in[0]) {\n" + "\n".join(cases) + "\n  }\n  fwrite(&out, 4, 1, stdout);\n}"
    )
    # "f16" is inline PTX; the shim defines tv_f16_to_f32 and the dq_ops primitives instead.
    snippets = [s for s in prelude.used if s != "f16"]
    return codegen_host.host_program(name, snippets, main, {"TV_F8_CVT": str(int(cvt))})


@pytest.fixture(scope="module")
def dequant_binary():
    return _dequant_program("dequant", cvt=False)


@pytest.fixture(scope="module")
def dequant_cvt_binary():
    return _dequant_program("dequant_cvt", cvt=True)


def _expected_bits(t, dst, codes: np.ndarray) -> np.ndarray:
    """What the generic cast (and the interpreter) gives: dst.encode(t.decode(code)) as bits."""
    values = t.decode(codes)
    bits = dst.encode(values).astype(np.uint32)
    # Cross-check with numpy / ml_dtypes where no saturation is involved.
    finite = np.isfinite(values) & (np.abs(values.astype(np.float64)) <= dst.max_value)
    like = np.float16 if dst == float16 else ml_dtypes.bfloat16
    plain = values[finite].astype(np.float32).astype(like).view(np.uint16).astype(np.uint32)
    assert np.array_equal(plain, bits[finite])
    return bits


def _is_nan16(bits: np.ndarray, dst) -> np.ndarray:
    top = 0x7C00 if dst == float16 else 0x7F80
    mantissa = 0x03FF if dst == float16 else 0x007F
    return ((bits & top) == top) & ((bits & mantissa) != 0)


def _check_every_pair(binary, t, dst, exact_nan: bool) -> None:
    """Every pair (c0, c1) of codes through case FAST.index((t, dst)) of ``binary`` gives the
    generic cast's bits in both lanes; a NaN any NaN unless ``exact_nan``."""
    n = 1 << t.nbits
    c0, c1 = (a.reshape(-1) for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    case = np.full(c0.size, FAST.index((t, dst)))
    words = np.stack([case, c0, c1], axis=1).astype(np.uint32).reshape(-1)
    out = codegen_host.run_words(binary, words)
    lanes = np.stack([out & 0xFFFF, out >> 16], axis=1)
    want = np.stack([_expected_bits(t, dst, c0), _expected_bits(t, dst, c1)], axis=1)
    nan = _is_nan16(want, dst)
    assert np.array_equal(_is_nan16(lanes, dst), nan), f"{t} -> {dst}: NaN codes"
    bad = (lanes != want) if exact_nan else (lanes != want) & ~nan
    if bad.any():
        i = np.argwhere(bad)[0]
        code = (c0, c1)[i[1]][i[0]]
        pytest.fail(
            f"{t} -> {dst}: code {code:#x} (lane {i[1]}) gives {lanes[tuple(i)]:#06x}, "
            f"want {want[tuple(i)]:#06x} ({t.decode(code)})"
        )


@host
@pytest.mark.parametrize(("t", "dst"), FAST, ids=[f"{t}-{d}" for t, d in FAST])
def test_every_pair_of_codes_converts_bit_exactly(dequant_binary, t, dst):
    """Before sm_89 (TV_F8_CVT 0). A float16 NaN has the generic cast's bits, sign | 0x7FFF,
    but from e5m2's byte placement, which keeps the code's payload."""
    exact_nan = dst == float16 and t != tilevm.float8_e5m2
    _check_every_pair(dequant_binary, t, dst, exact_nan=exact_nan)


@host
@pytest.mark.parametrize(("t", "dst"), F8_CASTS, ids=[f"{t}-{d}" for t, d in F8_CASTS])
def test_the_sm89_float8_branch_converts_every_pair_bit_exactly_nan_sign_included(
    dequant_cvt_binary, t, dst
):
    """With TV_F8_CVT e4m3 takes cvt.rn.f16x2.e4m3x2 and the sign fix-up: a float16 result is
    exact to the NaN bits, sign | 0x7FFF, as the generic cast encodes it. To bfloat16 the NaN
    goes through cvt.f32.f16, which pins only that it stays a NaN; e5m2 keeps its placement."""
    exact_nan = dst == float16 and t == tilevm.float8_e4m3
    _check_every_pair(dequant_cvt_binary, t, dst, exact_nan=exact_nan)


@host
def test_the_host_cvt_f8x2_converts_like_ml_dtypes_from_the_high_half():
    """The shim's cvt.rn.f16x2.{e4m3x2,e5m2x2}: the high half's low byte to lane 0, its high
    byte to lane 1, the low half ignored, NaN to the canonical 0x7FFF; every 16-bit input."""
    main = (
        "unsigned w;\n"
        "while (fread(&w, 4, 1, stdin) == 1) {\n"
        "  const unsigned out[2] = {tv_cvt_f16x2_f8x2_hi<4>(w), tv_cvt_f16x2_f8x2_hi<5>(w)};\n"
        "  fwrite(out, 4, 2, stdout);\n}"
    )
    binary = codegen_host.host_program("cvt_f8x2", ["types"], main)
    pairs = np.arange(1 << 16, dtype=np.uint32)
    junk = np.random.default_rng(1).integers(0, 1 << 16, pairs.size, dtype=np.uint32)
    out = codegen_host.run_words(binary, (pairs << 16) | junk).reshape(-1, 2)
    for column, like in enumerate((ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)):
        for lane, code in enumerate((pairs & 0xFF, pairs >> 8)):
            value = code.astype(np.uint8).view(like).astype(np.float32)
            want = np.where(np.isnan(value), 0x7FFF, value.astype(np.float16).view(np.uint16))
            got = (out[:, column] >> (16 * lane)) & 0xFFFF
            assert np.array_equal(got, want), (like.__name__, lane)


@host
def test_the_host_twins_round_like_numpy():
    """The shim's float16 rounding (behind tv_hsub2 and tv_hmul2) is numpy's, subnormals too."""
    main = (
        "float x;\n"
        "while (fread(&x, 4, 1, stdin) == 1) {\n"
        "  unsigned h = tv_host_round16(x, 5, 10), b = tv_host_round16(x, 8, 7);\n"
        "  unsigned out = h | (b << 16);\n"
        "  fwrite(&out, 4, 1, stdout);\n}"
    )
    binary = codegen_host.host_program("round16", ["types"], main)
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(20000) * 10.0 ** rng.integers(-9, 6, 20000),
            np.arange(-70000, 70000, 7.25),
            [0.0, -0.0, 65504, 65519.99, 65520, 2**-24, 2**-25, 3 * 2**-26, np.inf, -np.inf],
        ]
    ).astype(np.float32)
    out = codegen_host.run_words(binary, x.view(np.uint32))
    with np.errstate(over="ignore"):
        assert np.array_equal(out & 0xFFFF, x.astype(np.float16).view(np.uint16))
    assert np.array_equal(out >> 16, x.astype(ml_dtypes.bfloat16).view(np.uint16))


# -- emission --------------------------------------------------------------------------------------
TARGET = spatial(32) * local(8)  # a warp, 8 codes a thread: nbits whole bytes each


@tilevm.kernel(num_warps=1)
def dequant(
    packed: tilevm.Ptr[tilevm.uint8],
    out16: tilevm.Ptr[tilevm.float16],
    outb: tilevm.Ptr[tilevm.bfloat16],
    WTYPE: tilevm.constexpr,
):
    """Bytes viewed as WTYPE codes, cast to float16 and bfloat16."""
    layout = packed_byte_layout(TARGET, WTYPE.nbits)
    nbytes = layout.shape[0]
    raw = tl.load(tl.global_view(packed, [nbytes]), [0], [nbytes], layout=layout)
    codes = tl.view(raw, WTYPE, TARGET)
    tl.store(tl.global_view(out16, [256]), tl.cast(codes, tilevm.float16), [0])
    tl.store(tl.global_view(outb, [256]), tl.cast(codes, tilevm.bfloat16), [0])


@tilevm.kernel(num_warps=1)
def odd_cast(x: tilevm.Ptr[tilevm.uint8], out: tilevm.Ptr[tilevm.float16]):
    """Three registers a thread: one pair and one element on its own."""
    t = tl.load(tl.global_view(x, [96]), [0], [96], layout=spatial(32) * local(3))
    tl.store(tl.global_view(out, [96]), tl.cast(t, tilevm.float16), [0])


def _compiled(program):
    kernel = emit_cuda(run_pipeline(program))
    return kernel, {t: compile_cuda(kernel.source, kernel.name, t) for t in TARGETS}


@needs_nvrtc
@pytest.mark.parametrize(
    ("wtype", "f16_ops"),
    [
        (tilevm.int3, ["lop3.b32", "sub.rn.f16x2"]),
        (tilevm.uint4, ["lop3.b32", "sub.rn.f16x2"]),
        (tilevm.float6_e3m2, ["prmt.b32", "mul.rn.f16x2"]),
        (tilevm.float4_e2m1, ["prmt.b32", "mul.rn.f16x2"]),
    ],
)
def test_a_cast_of_viewed_codes_compiles_to_the_bit_trick_sequence(wtype, f16_ops):
    kernel, modules = _compiled(dequant.program(WTYPE=wtype))
    f16, bf16 = fast_cast_kind(wtype, float16), fast_cast_kind(wtype, bfloat16)
    assert f"tv_dq_{f16}<" in kernel.source and f"tv_dq_{bf16}<" in kernel.source
    body = kernel.source.split("extern")[1]
    assert "tv_decode_float<" not in body and "tv_sext<" not in body
    for target, module in modules.items():
        assert module.report.spill_bytes == 0, module.log
        for op in f16_ops:
            assert op in module.ptx, (target, op)
        bf16_op = "fma.rn.bf16x2" if wtype.is_integer else "cvt.f32.f16"
        assert bf16_op in module.ptx, target


@needs_nvrtc
@pytest.mark.parametrize("wtype", F8, ids=str)
def test_float8_casts_take_the_hardware_conversion_from_sm_89_on(wtype):
    """One source: its PTX for sm_89 and sm_90a converts e4m3 with cvt.rn.f16x2.e4m3x2, its
    PTX for sm_80 with the bit tricks; e5m2 keeps its one-prmt placement everywhere."""
    kernel = emit_cuda(run_pipeline(dequant.program(WTYPE=wtype)))
    cvt = f"cvt.rn.f16x2.{wtype.name.removeprefix('float8_')}x2"
    hardware = wtype == tilevm.float8_e4m3
    # e4m3's sequence before sm_89 (for float16 and, through it, bfloat16); e5m2's is one prmt.
    before = ["mul.rn.f16x2", "set.gt.u32.f16x2"] if wtype == tilevm.float8_e4m3 else []
    for target in ("sm_80", "sm_89", "sm_90a"):
        module = compile_cuda(kernel.source, kernel.name, target)
        assert module.report.spill_bytes == 0, module.log
        assert (cvt in module.ptx) == (hardware and target != "sm_80"), target
        for op in before:
            assert (op in module.ptx) == (target == "sm_80"), (target, op)
        assert "cvt.f32.f16" in module.ptx, target  # to bfloat16 through float16


@pytest.mark.gpu
@pytest.mark.parametrize("wtype", F8, ids=str)
def test_float8_casts_on_the_gpu_give_every_code_the_generic_cast_bits(wtype):
    """Every code through the device's own sequence. A float16 NaN must be sign | 0x7FFF where
    the host twins make it so (e4m3: cvt from sm_89 on, the bit tricks before): this pins
    cvt's NaN result."""
    torch = pytest.importorskip("torch")
    codes = np.arange(256, dtype=np.uint8)
    out16 = torch.zeros(256, dtype=torch.float16, device="cuda")
    outb = torch.zeros(256, dtype=torch.bfloat16, device="cuda")
    dequant[1](torch.from_numpy(codes).cuda(), out16, outb, wtype)
    torch.cuda.synchronize()
    for dst, out in ((float16, out16), (bfloat16, outb)):
        got = out.view(torch.int16).cpu().numpy().view(np.uint16).astype(np.uint32)
        want = _expected_bits(wtype, dst, codes.astype(np.int64))
        nan = _is_nan16(want, dst)
        assert np.array_equal(_is_nan16(got, dst), nan), dst
        exact_nan = dst == float16 and wtype == tilevm.float8_e4m3
        bad = (got != want) if exact_nan else (got != want) & ~nan
        assert not bad.any(), [(hex(c), hex(got[c]), hex(want[c])) for c in np.flatnonzero(bad)]


@needs_nvrtc
def test_an_odd_register_count_converts_the_last_element_alone():
    kernel, modules = _compiled(odd_cast.program())
    body = kernel.source.split("extern")[1]
    assert body.count("tv_unpack2(") == 1 and "tv_dq_int_f16<8, false>" in body
    assert "[2] = tv_f32_to_f16((float)(" in body  # the generic path, for register 2
    assert all(m.report.spill_bytes == 0 and "sub.rn.f16x2" in m.ptx for m in modules.values())


@needs_nvrtc
@pytest.mark.parametrize("wtype", [tilevm.int3, tilevm.int4, tilevm.float6_e3m2])
def test_the_lowbit_gemm_dequantises_with_the_fast_sequences(wtype):
    _, modules = _compiled(lowbit_gemm.lowbit_gemm.program(WTYPE=wtype))
    op = "sub.rn.f16x2" if wtype.is_integer else "mul.rn.f16x2"
    for module in modules.values():
        assert module.report.spill_bytes == 0 and op in module.ptx
        assert "lop3.b32" in module.ptx or not wtype.is_integer
