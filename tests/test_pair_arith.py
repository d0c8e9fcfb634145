"""Elementwise +, -, * of float16/bfloat16 tiles, two lanes an instruction.

The generated code computes each pair with ``add/sub/mul.rn.f16x2`` (bfloat16:
``fma.rn.bf16x2``), which rounds once; the interpreter computes in float32 and
rounds to 16 bits, which is the same correctly rounded result. The host tests
run the helpers with exact C twins of the PTX instructions against numpy and
ml_dtypes on random values of every class; the compile test checks the PTX.
"""

from __future__ import annotations

import codegen_host
import ml_dtypes
import numpy as np
import pytest
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda

host = pytest.mark.skipif(not codegen_host.have_compiler(), reason="needs a host g++")
OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


@pytest.fixture(scope="module")
def pair_binary():
    main = (
        "unsigned in[3];\n"
        "while (fread(in, 4, 3, stdin) == 3) {\n"
        "  unsigned out = 0;\n"
        "  switch (in[0]) {\n"
        "    case 0: out = tv_h2_arith<0>(in[1], in[2]); break;\n"
        "    case 1: out = tv_h2_arith<1>(in[1], in[2]); break;\n"
        "    case 2: out = tv_h2_arith<2>(in[1], in[2]); break;\n"
        "    case 3: out = tv_bf2_arith<0>(in[1], in[2]); break;\n"
        "    case 4: out = tv_bf2_arith<1>(in[1], in[2]); break;\n"
        "    case 5: out = tv_bf2_arith<2>(in[1], in[2]); break;\n"
        "  }\n"
        "  fwrite(&out, 4, 1, stdout);\n}"
    )
    return codegen_host.host_program("pair_arith", ["types", "pair_arith"], main)


def _halves(rng: np.random.Generator, count: int) -> np.ndarray:
    """float16 bits of every class: random bits (subnormals, infs, NaNs included) and zeros."""
    bits = rng.integers(0, 1 << 16, count, dtype=np.uint32)
    bits[:8] = [0x0000, 0x8000, 0x0001, 0x8001, 0x7C00, 0xFC00, 0x3C00, 0x03FF]
    return bits


def _bfloats(rng: np.random.Generator, count: int) -> np.ndarray:
    """bfloat16 bits with exponents within 2^-30..2^30 (the host twin's double fma is exact
    there), plus zeros, infinities and subnormal-free edge values."""
    exponent = rng.integers(127 - 30, 127 + 30, count, dtype=np.uint32)
    bits = (rng.integers(0, 2, count, dtype=np.uint32) << 15) | (exponent << 7)
    bits |= rng.integers(0, 1 << 7, count, dtype=np.uint32)
    bits[:6] = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x3F80, 0xBF80]
    return bits


def _run(binary, op_index: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lanes (low, high) = (a[i], b[i]) op (a[i + 1], b[i + 1]) in pairs; the results, flat."""
    wa = a[0::2] | (a[1::2] << 16)
    wb = b[0::2] | (b[1::2] << 16)
    words = np.stack([np.full(wa.shape, op_index, np.uint32), wa, wb], axis=1).ravel()
    out = codegen_host.run_words(binary, words)
    return np.stack([out & 0xFFFF, out >> 16], axis=1).ravel()


def _same(got: np.ndarray, want: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """Where they differ: a NaN must stay a NaN (its payload is not pinned), others bit-exact."""
    return np.flatnonzero((got != want) & ~nan)


@host
@pytest.mark.parametrize("op", list(OPS))
def test_float16_pairs_round_like_numpy(pair_binary, op):
    rng = fresh_rng()
    a, b = _halves(rng, 20000), _halves(rng, 20000)
    got = _run(pair_binary, list(OPS).index(op), a, b)
    with np.errstate(all="ignore"):
        value = OPS[op](a.astype(np.uint16).view(np.float16), b.astype(np.uint16).view(np.float16))
    want = value.view(np.uint16).astype(np.uint32)
    nan = np.isnan(value)
    assert np.array_equal(np.isnan(got.astype(np.uint16).view(np.float16)), nan)
    bad = _same(got, want, nan)
    assert not bad.size, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@host
@pytest.mark.parametrize("op", list(OPS))
def test_bfloat16_pairs_round_like_ml_dtypes(pair_binary, op):
    rng = fresh_rng()
    a, b = _bfloats(rng, 20000), _bfloats(rng, 20000)
    got = _run(pair_binary, 3 + list(OPS).index(op), a, b)
    va = a.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
    vb = b.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
    with np.errstate(all="ignore"):
        value = OPS[op](va, vb).astype(ml_dtypes.bfloat16)
    want = value.view(np.uint16).astype(np.uint32)
    nan = np.isnan(value.astype(np.float32))
    bad = _same(got, want, nan)
    assert not bad.size, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@tilevm.kernel(num_warps=1)
def arith(
    x: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float16],
    xb: tilevm.Ptr[tilevm.bfloat16],
    yb: tilevm.Ptr[tilevm.bfloat16],
):
    g, gb = tl.global_view(x, [32, 8]), tl.global_view(xb, [32, 8])
    a = tl.load(g, [0, 0], [32, 8])
    s = tl.load(g, [0, 0], [1, 8])  # broadcast along rows, as a scale row is
    tl.store(tl.global_view(y, [32, 8]), (a - s) * s + a, [0, 0])
    ab = tl.load(gb, [0, 0], [32, 8])
    sb = tl.load(gb, [0, 0], [1, 8])
    tl.store(tl.global_view(yb, [32, 8]), (ab - sb) * sb + ab, [0, 0])


def test_tile_arithmetic_of_halves_takes_the_packed_instructions():
    kernel = emit_cuda(run_pipeline(arith.program()))
    for target in ("sm_80", "sm_90a"):
        ptx = compile_cuda(kernel.source, kernel.name, target).ptx
        for op in ("add.rn.f16x2", "sub.rn.f16x2", "mul.rn.f16x2", "fma.rn.bf16x2"):
            assert op in ptx, (target, op)
        assert "mul.f32" not in ptx and "mul.rn.f32" not in ptx, target  # no float32 detour


def test_the_interpreter_gives_the_correctly_rounded_results():
    rng = fresh_rng()
    x = rng.standard_normal((32, 8)).astype(np.float16)
    xb = x.astype(ml_dtypes.bfloat16)
    y, yb = np.zeros_like(x), np.zeros_like(xb)
    arith[(1,)](x, y, xb, yb)
    s = x[:1]
    np.testing.assert_array_equal(y, (x - s) * s + x)  # numpy float16: each op rounded
    sb = xb[:1].astype(np.float32)
    want = (xb.astype(np.float32) - sb).astype(ml_dtypes.bfloat16).astype(np.float32)
    want = (want * sb).astype(ml_dtypes.bfloat16).astype(np.float32)
    want = (want + xb.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(yb.view(np.uint16), want.view(np.uint16))
