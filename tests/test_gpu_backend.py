"""On a GPU: every example through the CUDA backend equals the CPU interpreter.

Bit-exact where no floating-point reduction is involved; within fp32
accumulation tolerance for dot. Shapes include ones that do not divide the
tile sizes. Skipped without a CUDA GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tilevm

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import lowbit_gemm  # noqa: E402
import matmul_fp16  # noqa: E402
import softmax  # noqa: E402
import vector_add  # noqa: E402


def both(kernel, grid, args):
    """Run on the interpreter (numpy copies) and on the GPU (CUDA copies); return both results."""
    cpu = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    gpu = [torch.from_numpy(a).cuda() if isinstance(a, np.ndarray) else a for a in args]
    kernel[grid](*cpu, backend="cpu")
    kernel[grid](*gpu)
    torch.cuda.synchronize()
    return cpu, [g.cpu().numpy() if isinstance(g, torch.Tensor) else g for g in gpu]


@pytest.mark.parametrize("n", [1, 255, 1000, 4097])
def test_vector_add_on_the_gpu_equals_the_interpreter_bit_for_bit(n):
    rng = np.random.default_rng(n)
    x, y = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    cpu, gpu = both(vector_add.vector_add, ((n + 255) // 256,), [x, y, np.zeros(n, np.float32), n])
    np.testing.assert_array_equal(cpu[2], gpu[2])


@pytest.mark.parametrize(("m", "n"), [(37, 100), (4, 128), (5, 3)])
def test_softmax_on_the_gpu_matches_the_interpreter(m, n):
    x = (np.random.default_rng(m).standard_normal((m, n)) * 3).astype(np.float32)
    cpu, gpu = both(softmax.softmax, ((m + 3) // 4,), [x, np.zeros_like(x), m, n])
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(("m", "n", "k"), [(64, 64, 64), (50, 40, 70), (1, 7, 5)])
def test_fp16_matmul_on_the_gpu_matches_the_interpreter(m, n, k):
    rng = np.random.default_rng(m * n)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    grid = ((m + 31) // 32, (n + 31) // 32)
    cpu, gpu = both(matmul_fp16.matmul, grid, [a, b, np.zeros((m, n), np.float16), m, n, k])
    np.testing.assert_allclose(
        gpu[2].astype(np.float32), cpu[2].astype(np.float32), rtol=2e-3, atol=2e-3
    )


@pytest.mark.parametrize("wtype", ["int3", "float6_e3m2", "int4"])
@pytest.mark.parametrize(("m", "n", "k"), [(21, 128, 128), (1, 256, 64)])
def test_lowbit_gemm_on_the_gpu_matches_the_interpreter(wtype, m, n, k):
    t = tilevm.dtype(wtype)
    rng = np.random.default_rng(m + n + k)
    x = rng.standard_normal((m, k)).astype(np.float16)
    codes, scales = lowbit_gemm.quantize(rng.standard_normal((k, n)).astype(np.float32), t)
    packed = lowbit_gemm.prepack(codes, t)
    grid = ((m + lowbit_gemm.BLOCK_M - 1) // lowbit_gemm.BLOCK_M, n // lowbit_gemm.BLOCK_N)
    y = np.zeros((m, n), np.float16)
    cpu, gpu = both(lowbit_gemm.lowbit_gemm, grid, [x, packed, scales, y, m, n, k, t])
    np.testing.assert_allclose(
        gpu[3].astype(np.float32), cpu[3].astype(np.float32), rtol=2e-3, atol=2e-3
    )


def test_a_launch_captured_in_a_cuda_graph_gives_the_same_result():
    n = 4096
    x = torch.randn(n, device="cuda")
    y = torch.randn(n, device="cuda")
    out = torch.zeros(n, device="cuda")
    grid = (n // 256,)
    vector_add.vector_add[grid](x, y, out, n)  # compile and load outside the capture
    graph = torch.cuda.CUDAGraph()
    out.zero_()
    with torch.cuda.graph(graph):
        vector_add.vector_add[grid](x, y, out, n)
    x.copy_(torch.randn(n, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, x + y)
