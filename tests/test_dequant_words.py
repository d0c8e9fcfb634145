"""Int codes to float16 straight from packed 32-bit words: one prmt, one lop3, one fma a pair.

``tv_dq_int_f16_at<B, SIGNED, S0, S1>`` takes a word whose lanes hold the two
codes ``S0`` and ``S1`` bits up (other bits anything) and
:func:`tilevm.codegen.dequant.int_pair_from_words` picks the ``prmt`` that
builds that word from the thread's packed words. The host runs both with
exact C twins of the PTX: every pair of codes at every offset, and every pair
of the weight tiles the GEMM kernels view.
"""

from __future__ import annotations

import codegen_host
import numpy as np
import pytest
from lang_testing import fresh_rng

import tilevm
from tilevm.codegen.dequant import int_pair_from_words
from tilevm.codegen.prelude import Prelude
from tilevm.ops.qgemm import step_layout, weight_step_layout

host = pytest.mark.skipif(not codegen_host.have_compiler(), reason="needs a host g++")
SNIPPETS = ["types", "dequant"]  # the shim stands in for "f16" and "dq_ops"
NO_CVT = {"TV_F8_CVT": "0"}  # dq_ops's macro, which "dequant" reads
INTS = [tilevm.dtype(f"{s}int{b}") for b in range(1, 8) for s in ("", "u") if (s, b) != ("", 1)]


def _f16_bits(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).view(np.uint16).astype(np.uint32)


@host
@pytest.mark.parametrize("t", INTS, ids=str)
def test_every_pair_of_codes_at_every_offset_converts_exactly(t):
    b, signed = t.nbits, t.kind == "int"
    offsets = [(s0, s1) for s0 in range(11 - b) for s1 in range(11 - b)]
    fn = f"tv_dq_int_f16_at<{b}, {str(signed).lower()}"
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
    binary = codegen_host.host_program(f"dq_at_{t}", SNIPPETS, main, NO_CVT)
    rng = fresh_rng()
    codes = np.arange(1 << b, dtype=np.uint32)
    c0, c1 = (a.ravel() for a in np.meshgrid(codes, codes, indexing="ij"))
    inputs, want = [], []
    for i, (s0, s1) in enumerate(offsets):
        junk = rng.integers(0, 1 << 32, c0.size, dtype=np.uint64).astype(np.uint32)
        mask = ((1 << b) - 1) << s0 | ((1 << b) - 1) << (s1 + 16)
        word = (junk & ~np.uint32(mask)) | (c0 << s0) | (c1 << (s1 + 16))
        inputs.append(np.stack([np.full(c0.size, i, np.uint32), word], axis=1))
        pair = np.stack([_f16_bits(t.decode(c0)), _f16_bits(t.decode(c1))], axis=1)
        want.append(pair[:, 0] | pair[:, 1] << 16)
    out = codegen_host.run_words(binary, np.concatenate(inputs).ravel())
    np.testing.assert_array_equal(out, np.concatenate(want))


def _view_starts(nbits: int, warps: int = 2) -> list[int]:
    """Bit positions of a k step's codes in a thread's words, as the GEMM's view cuts them."""
    words = weight_step_layout(warps, nbits).local_size // 4  # one step's words per thread
    codes = step_layout(warps).local_size
    assert words * 32 == codes * nbits
    return [r * nbits for r in range(codes)]


@host
@pytest.mark.parametrize("t", INTS, ids=str)
def test_the_gemm_tiles_pairs_read_from_the_words_give_the_codes_values(t):
    b = t.nbits
    starts = _view_starts(b)
    num_words = len(starts) * b // 32
    exprs = []
    for p in range(len(starts) // 2):
        e = int_pair_from_words(t, "w", (starts[2 * p], starts[2 * p + 1]), num_words, Prelude())
        exprs.append(e)
    fast = [e for e in exprs if e is not None]
    if b <= 4:
        assert len(fast) == len(exprs)  # every pair: the codes sit low enough in their bytes
    if not fast:
        return
    lines = "\n".join(f"  out[{i}] = {e};" for i, e in enumerate(exprs) if e is not None)
    main = (
        f"unsigned w[{num_words}], out[{len(exprs)}] = {{0}};\n"
        f"while (fread(w, 4, {num_words}, stdin) == {num_words}) {{\n"
        f"{lines}\n  fwrite(out, 4, {len(exprs)}, stdout);\n}}"
    )
    binary = codegen_host.host_program(f"dq_words_{t}", SNIPPETS, main, NO_CVT)
    rng = fresh_rng()
    trials = 64
    words = rng.integers(0, 1 << 32, (trials, num_words), dtype=np.uint64).astype(np.uint32)
    out = codegen_host.run_words(binary, words.ravel()).reshape(trials, len(exprs))
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    for p, e in enumerate(exprs):
        if e is None:
            continue
        pair = []
        for start in (starts[2 * p], starts[2 * p + 1]):
            code = (bits[:, start : start + b] << np.arange(b)).sum(axis=1).astype(np.uint32)
            pair.append(_f16_bits(t.decode(code)))
        np.testing.assert_array_equal(out[:, p], pair[0] | pair[1] << 16, err_msg=f"pair {p}")
