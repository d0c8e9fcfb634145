"""Int codes to float16 straight from packed 32-bit words: one prmt, one lop3, one fma a pair.

``tv_dq_int_f16_at<B, SIGNED, S0, S1>`` takes a word whose lanes hold the two
codes ``S0`` and ``S1`` bits up (other bits anything) and
:func:`tilevm.codegen.dequant.pairs_from_words` picks the ``prmt`` that
builds that word from the thread's packed words. The host runs both with
exact C twins of the PTX: every pair of codes at every offset, and every pair
of the weight tiles the GEMM kernels view.
"""

from __future__ import annotations

import re

import codegen_host
import numpy as np
import pytest
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.codegen.dequant import bit_masks_from_words, pairs_from_words
from tilevm.codegen.prelude import Prelude
from tilevm.dtypes import bfloat16, float16
from tilevm.layouts import local
from tilevm.layouts.indexing import local_map
from tilevm.ops.qgemm import code_step_layout, step_layout, weight_step_layout
from tilevm.passes.pipeline import run_pipeline
from tilevm.passes.select_instructions import fast_cast_kind

host = pytest.mark.skipif(not codegen_host.have_compiler(), reason="needs a host g++")
SNIPPETS = ["types", "dequant"]  # the shim stands in for "f16" and "dq_ops"
NO_CVT = {"TV_F8_CVT": "0"}  # dq_ops's macro, which "dequant" reads
INTS = [tilevm.dtype(f"{s}int{b}") for b in range(1, 8) for s in ("", "u") if (s, b) != ("", 1)]


def _bits(t, dst, codes: np.ndarray) -> np.ndarray:
    """The generic cast's bits (``dst.encode``: saturating where the type says so)."""
    return dst.encode(t.decode(codes)).astype(np.uint32)


@host
@pytest.mark.parametrize("dst", ["float16", "bfloat16"])
@pytest.mark.parametrize("t", INTS, ids=str)
def test_every_pair_of_codes_at_every_offset_converts_exactly(t, dst):
    b, signed = t.nbits, t.kind == "int"
    dst = tilevm.dtype(dst)
    room = 10 if dst == float16 else 7  # mantissa bits a lane's code may reach
    if b > room:
        pytest.skip(f"{b}-bit codes take another sequence to {dst}")
    offsets = [(s0, s1) for s0 in range(room + 1 - b) for s1 in range(room + 1 - b)]
    off = 1 << (b - 1) if signed else 0  # a signed code comes in offset binary: top bit flipped
    fn = f"tv_dq_int_{'f16' if dst == float16 else 'bf16'}_at<{b}, {off}"
    cases = "\n".join(
        f"    case {i}: out = {fn}, {s0}, {s1}>(in[1]); break;"
        for i, (s0, s1) in enumerate(offsets)
    )
    main = (
        "unsigned in[2];\n"
        "while (fread(in, 4, 2, stdin) == 2) {\n"
        "  unsigned out = 0;\n"
        "  switch (in[0]) {\n" + cases + "\n  }\n  fwrite(&out, 4, 1, stdout);\n}"
    )
    binary = codegen_host.host_program(f"dq_at_{t}_{dst}", SNIPPETS, main, NO_CVT)
    rng = fresh_rng()
    codes = np.arange(1 << b, dtype=np.uint32)
    c0, c1 = (a.ravel() for a in np.meshgrid(codes, codes, indexing="ij"))
    inputs, want = [], []
    for i, (s0, s1) in enumerate(offsets):
        junk = rng.integers(0, 1 << 32, c0.size, dtype=np.uint64).astype(np.uint32)
        mask = ((1 << b) - 1) << s0 | ((1 << b) - 1) << (s1 + 16)
        u0, u1 = c0 ^ np.uint32(off), c1 ^ np.uint32(off)
        word = (junk & ~np.uint32(mask)) | (u0 << s0) | (u1 << (s1 + 16))
        inputs.append(np.stack([np.full(c0.size, i, np.uint32), word], axis=1))
        want.append(_bits(t, dst, c0) | _bits(t, dst, c1) << 16)
    out = codegen_host.run_words(binary, np.concatenate(inputs).ravel())
    np.testing.assert_array_equal(out, np.concatenate(want))


def _view_starts(nbits: int, warps: int = 2) -> list[int]:
    """Bit positions of a k step's codes in a thread's words, in the mma fragments' register
    order, as the GEMM's view of the packed words cuts them (the codes' packed order)."""
    words = weight_step_layout(warps, nbits).local_size // 4  # one step's words per thread
    frags, codes = step_layout(warps), code_step_layout(warps, nbits)
    assert words * 32 == codes.local_size * nbits
    return [r * nbits for r in local_map(frags, codes, frags.num_threads)]


FLOATS = [
    tilevm.dtype(n)
    for n in (
        "float4_e2m1",
        "float6_e3m2",
        "float6_e2m3",
        "float5_e2m2",
        "float3_e1m1",
        "float7_e5m1",
        "float4_e3m0",
    )
]
CASES = (
    [(t, float16) for t in INTS + [tilevm.int8, tilevm.uint8]]
    + [(t, bfloat16) for t in INTS + [tilevm.int8, tilevm.uint8]]
    + [(t, float16) for t in FLOATS]
    + [(t, bfloat16) for t in FLOATS if fast_cast_kind(t, bfloat16) == "float_bf16_via_f16"]
)


def _gemm_pairs(t, dst, at_bit_zero=None, offset=0):
    b = t.nbits
    starts = _view_starts(b)
    num_words = len(starts) * b // 32
    pairs = [(starts[2 * p], starts[2 * p + 1]) for p in range(len(starts) // 2)]
    kind = fast_cast_kind(t, dst)
    return (
        starts,
        num_words,
        pairs_from_words(kind, t, "w", pairs, num_words, Prelude(), at_bit_zero, offset),
    )


PLANS = [(t, d, z) for t, d in CASES for z in ((None,) if t.is_float else (False, True))]


OFFSETS = [
    (tilevm.uint1, float16, 1),
    (tilevm.uint3, float16, 4),
    (tilevm.uint4, float16, 8),
    (tilevm.uint4, bfloat16, 15),
    (tilevm.uint6, bfloat16, 32),
    (tilevm.uint8, float16, 128),
]


@host
@pytest.mark.parametrize(
    ("t", "dst", "at_bit_zero", "offset"),
    [(t, d, z, 0) for t, d, z in PLANS] + [(t, d, None, c) for t, d, c in OFFSETS],
    ids=[f"{t}-{d}-{z}" for t, d, z in PLANS] + [f"{t}-{d}-minus{c}" for t, d, c in OFFSETS],
)
def test_the_gemm_tiles_pairs_read_from_the_words_give_the_codes_values(
    t, dst, at_bit_zero, offset
):
    """Every pair of a k step, on random words; with an ``offset``, the codes' values minus it
    (a cast of offset-binary codes that subtracts their offset for free)."""
    b = t.nbits
    starts, num_words, exprs = _gemm_pairs(t, dst, at_bit_zero, offset)
    assert exprs is not None  # every pair of every width and sequence here
    lines = "\n".join(f"  out[{i}] = {e};" for i, e in enumerate(exprs))
    main = (
        f"unsigned w[{num_words}], out[{len(exprs)}];\n"
        f"while (fread(w, 4, {num_words}, stdin) == {num_words}) {{\n"
        f"{lines}\n  fwrite(out, 4, {len(exprs)}, stdout);\n}}"
    )
    name = f"dq_words_{t}_{dst}_{at_bit_zero}_{offset}"
    binary = codegen_host.host_program(name, SNIPPETS, main, NO_CVT)
    rng = fresh_rng()
    trials = 256
    words = rng.integers(0, 1 << 32, (trials, num_words), dtype=np.uint64).astype(np.uint32)
    out = codegen_host.run_words(binary, words.ravel()).reshape(trials, len(exprs))
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    for p in range(len(exprs)):
        codes = [_code(bits, starts[2 * p + q], b) for q in (0, 1)]
        values = [t.decode(c) - offset for c in codes]
        want = (
            dst.encode(values[0]).astype(np.uint32) | dst.encode(values[1]).astype(np.uint32) << 16
        )
        keep = np.full(trials, 0xFFFFFFFF, np.uint32)  # a NaN lane need only stay a NaN
        for q, v in enumerate(values):
            if t.is_float:
                keep &= np.where(np.isnan(v), ~np.uint32(0xFFFF << (16 * q)), np.uint32(0xFFFFFFFF))
        np.testing.assert_array_equal(out[:, p] & keep, want & keep, err_msg=exprs[p])


def _code(bits: np.ndarray, start: int, b: int) -> np.ndarray:
    return (bits[:, start : start + b] << np.arange(b)).sum(axis=1).astype(np.uint32)


def test_eight_bit_floats_and_floats_to_bfloat16_through_float32_keep_the_generic_pairing():
    prelude = Prelude()
    assert pairs_from_words("float_f16", tilevm.float8_e4m3, "w", [(0, 8)], 2, prelude) is None
    assert pairs_from_words("float_bf16", tilevm.float7_e5m1, "w", [(0, 7)], 1, prelude) is None


@pytest.mark.parametrize("dst", [float16, bfloat16])
@pytest.mark.parametrize("t", ["uint1", "int2", "int4", "uint4", "int8", "float4_e2m1"])
def test_where_the_packing_puts_a_pair_in_one_words_halves_no_prmt_is_needed(t, dst):
    """1, 2, 4 and 8-bit codes are packed with each pair's two codes 16 bits apart in one word
    (:func:`tilevm.quant.code_layout`): the word's lanes hold them, and at most one shift a
    word moves the codes that lie too high for the magic number."""
    t = tilevm.dtype(t)
    if fast_cast_kind(t, dst) == "int8_bf16":
        pytest.skip("8-bit ints to bfloat16 place each byte under a float32 magic")
    exprs = _gemm_pairs(t, dst)[2]
    assert exprs is not None and not any("tv_prmt" in e for e in exprs)
    shifts = {m.group(0) for e in exprs for m in re.finditer(r"tv_shf_r<\d+>\(\(?w\[\d+\]", e)}
    words = t.nbits  # a k step's words per thread
    assert len(shifts) <= (1 if dst == float16 else 3) * words


def test_a_signed_code_is_read_from_words_with_every_top_bit_flipped():
    exprs = _gemm_pairs(tilevm.int4, float16)[2]
    assert all("^ 0x88888888u" in e and "tv_dq_int_f16_at<4, 8," in e for e in exprs)
    assert all("^ 0x" not in e for e in _gemm_pairs(tilevm.uint4, float16)[2])
    # 3-bit codes straddle words: each word's flips follow the stream, not the word
    three = " ".join(_gemm_pairs(tilevm.int3, float16)[2])
    assert "(w[0] ^ 0x24924924u)" in three and "(w[1] ^ 0x49249249u)" in three


@tilevm.kernel(num_warps=1)
def _cast_words(
    w: tilevm.Ptr[tilevm.uint32],
    y: tilevm.Ptr[tilevm.float16],
    n: tilevm.int32,
    REASSIGN: tilevm.constexpr,
):
    gw = tl.global_view(w, [n * 64])
    words = tl.load(gw, [0], [64], layout=local(2).spatial(32))
    codes = tl.view(words, tilevm.uint4, local(16).spatial(32))
    for i in range(0, n):
        tl.store(tl.global_view(y, [n, 512]), tl.reshape(tl.cast(codes, float16), [1, 512]), [i, 0])
        if REASSIGN:
            words = tl.load(gw, [i * 64], [64], layout=local(2).spatial(32))


@pytest.mark.parametrize("reassign", [False, True])
def test_a_cast_reads_the_words_only_when_nothing_overwrites_them(reassign):
    program = run_pipeline(_cast_words.program(REASSIGN=reassign))
    names = {c.name for c in program.plan.selected.values()}
    assert ("dequant.int_f16.words" in names) == (not reassign)
    assert ("dequant.int_f16" in names) == reassign
    source = emit_cuda(program).source
    assert ("tv_dq_int_f16_at<" in source) == (not reassign)
    assert "tv_dq_int_f16_at<" in emit_cuda(run_pipeline(_qgemm_int4())).source


def _qgemm_int4():
    from tilevm.ops.qgemm import GEMM

    return GEMM[float16].program(
        WTYPE=tilevm.int4,
        GROUP=128,
        BLOCK_M=16,
        WARPS=4,
        HAS_ZEROS=False,
        ZERO_OFFSET=0,
        HAS_BIAS=False,
    )


@tilevm.kernel(num_warps=1)
def _offset_codes(
    w: tilevm.Ptr[tilevm.uint32],
    y: tilevm.Ptr[tilevm.float16],
    WTYPE: tilevm.constexpr,
    OFFSET: tilevm.constexpr,
    TWICE: tilevm.constexpr,
):
    words = tl.load(tl.global_view(w, [64]), [0], [64], layout=local(2).spatial(32))
    codes = tl.view(words, WTYPE, local(64 // WTYPE.nbits).spatial(32))
    x = tl.cast(codes, float16)
    gy = tl.global_view(y, [2, 64 * 32 // WTYPE.nbits])
    tl.store(gy, tl.reshape(x - tl.full([1], OFFSET, float16), [1, x.shape[0]]), [0, 0])
    if TWICE:  # a second user of the cast: nothing folds
        tl.store(gy, tl.reshape(x, [1, x.shape[0]]), [1, 0])


@pytest.mark.parametrize(
    ("wtype", "offset", "twice", "folded"),
    [
        ("uint4", 8, False, True),
        ("uint2", 3, False, True),
        ("uint4", 16, False, False),  # not below 2^4
        ("uint4", 2.5, False, False),  # not a whole number
        ("uint4", 8, True, False),
        ("int4", 3, False, False),  # signed codes take their own offset
    ],
)
def test_a_cast_of_words_subtracts_a_constant_its_only_user_subtracts(wtype, offset, twice, folded):
    t = tilevm.dtype(wtype)
    program = run_pipeline(_offset_codes.program(WTYPE=t, OFFSET=offset, TWICE=twice))
    names = {c.name for c in program.plan.selected.values()}
    assert (f"dequant.int_f16.words.offset<{offset}>" in names) == folded
    assert ("folded_into_cast" in names) == folded
    source = emit_cuda(program).source
    off = offset if folded else (1 << (t.nbits - 1) if t.kind == "int" else 0)
    assert f"tv_dq_int_f16_at<{t.nbits}, {off}," in source
    rng = fresh_rng()
    words = rng.integers(0, 1 << 32, 64, dtype=np.uint64).astype(np.uint32)
    y = np.zeros((2, 64 * 32 // t.nbits), np.float16)
    _offset_codes[(1,)](words, y, WTYPE=t, OFFSET=offset, TWICE=twice)
    # thread i holds words i and 32 + i (its bit string) and element l * 32 + i of the codes
    stream = np.stack([words[:32], words[32:]], axis=1).view(np.uint8)
    bits = np.unpackbits(stream, axis=1, bitorder="little").reshape(32, -1, t.nbits)
    codes = (bits << np.arange(t.nbits)).sum(axis=-1).astype(np.uint32)  # [thread, l]
    values = t.decode(codes.T.ravel())
    np.testing.assert_array_equal(y[0], (values - np.float16(offset)).astype(np.float16))


@host
def test_the_masks_of_one_bit_codes_copy_each_codes_bit_through_its_lane():
    """Pairs of 1-bit codes anywhere in three words, in one word or two, at one shift or two:
    lane q of a pair's mask is all ones where its code q is set."""
    rng = fresh_rng()
    num_words = 3
    pairs = [(0, 16), (7, 23), (31, 15), (5, 40), (95, 0), (64, 65)]
    pairs += [tuple(int(p) for p in rng.integers(0, 32 * num_words, 2)) for _ in range(26)]
    exprs = bit_masks_from_words("w", pairs, num_words)
    lines = "\n".join(f"  out[{i}] = {e};" for i, e in enumerate(exprs))
    main = (
        f"unsigned w[{num_words}], out[{len(exprs)}];\n"
        f"while (fread(w, 4, {num_words}, stdin) == {num_words}) {{\n"
        f"{lines}\n  fwrite(out, 4, {len(exprs)}, stdout);\n}}"
    )
    binary = codegen_host.host_program("bit_masks", SNIPPETS, main, NO_CVT)
    trials = 64
    words = rng.integers(0, 1 << 32, (trials, num_words), dtype=np.uint64).astype(np.uint32)
    out = codegen_host.run_words(binary, words.ravel()).reshape(trials, len(exprs))
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little").astype(np.uint32)
    for p, (p0, p1) in enumerate(pairs):
        want = bits[:, p0] * 0xFFFF | bits[:, p1] * 0xFFFF0000
        np.testing.assert_array_equal(out[:, p], want, err_msg=exprs[p])
