"""The examples: their printed IR is golden, and they match numpy on fresh random inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from golden import assert_golden

import tilevm
from tilevm.ir.printer import format_program

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import lowbit_gemm
import matmul_fp16
import softmax
import vector_add


@pytest.mark.parametrize(
    ("name", "program"),
    [
        ("vector_add", lambda: vector_add.vector_add.program()),
        ("softmax", lambda: softmax.softmax.program()),
        ("matmul_fp16", lambda: matmul_fp16.matmul.program()),
        ("lowbit_gemm_int3", lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.int3)),
        ("lowbit_gemm_e3m2", lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.float6_e3m2)),
    ],
)
def test_example_ir_is_golden(name, program):
    assert_golden(f"example_{name}", format_program(program()))


@pytest.mark.parametrize("n", [1, 255, 256, 1000, 4097])
def test_vector_add_matches_numpy_for_any_length(n):
    assert vector_add.check(n, seed=n) == 0


@pytest.mark.parametrize(("m", "n"), [(1, 1), (4, 128), (37, 100), (5, 3)])
def test_softmax_matches_numpy_including_partial_tiles(m, n):
    assert softmax.check(m, n, seed=m * n) < 1e-6


@pytest.mark.parametrize(("m", "n", "k"), [(32, 32, 16), (50, 40, 70), (1, 7, 5), (65, 33, 17)])
def test_fp16_matmul_matches_numpy_including_partial_tiles(m, n, k):
    assert matmul_fp16.check(m, n, k, seed=m + n + k) < 2e-3


@pytest.mark.parametrize("wtype", ["int3", "float6_e3m2", "int4", "int2", "float4_e2m1", "int8"])
@pytest.mark.parametrize(("m", "n", "k"), [(21, 128, 128), (1, 128, 64), (16, 256, 192)])
def test_lowbit_gemm_matches_the_numpy_reference_for_any_weight_type(wtype, m, n, k):
    err, qerr = lowbit_gemm.check(wtype, m, n, k, seed=m * k + n)
    assert err < 1e-3, err  # only the fp32 summation order differs
    assert qerr < 0.75  # symmetric quantisation of N(0, 1) weights beats predicting zero


def test_lowbit_gemm_packs_exactly_the_bytes_its_bit_width_needs():
    for name in ("int3", "float6_e3m2"):
        t = tilevm.dtype(name)
        codes, _ = lowbit_gemm.quantize(np.ones((128, 256), np.float32), t)
        assert lowbit_gemm.prepack(codes, t).size == 128 * 256 * t.nbits // 8


def test_lowbit_gemm_rejects_shapes_that_do_not_fit_the_packed_tiles():
    x = np.zeros((4, 100), np.float16)
    with pytest.raises(ValueError, match="k and n must be multiples of 64 and 128; got 100, 64"):
        lowbit_gemm.gemm(x, np.zeros(1, np.uint8), np.zeros((1, 64), np.float16), 64, tilevm.int3)
