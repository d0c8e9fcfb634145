"""``tl.trans`` and ``tl.permute``: a register tile's dimensions reordered, free because only
the layout's names move.

Layout inference gives the result ``x``'s layout with its two dimensions
swapped (:func:`tilevm.layouts.permute`), so each thread keeps its registers;
where another instruction fixes both sides differently it converts ``x``. The
interpreter transposes the numpy tile. The decode GEMM's 8-row blocks rely on
it: ``dot(trans(w), trans(x))`` makes dequantised weights the mma's A operand.
"""

from __future__ import annotations

import numpy as np
import pytest
from lang_testing import expect_compile_error, fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.ir.inst import Transpose
from tilevm.ir.printer import format_program
from tilevm.ir.stmt import instructions
from tilevm.layouts import local, mma_m16n8k16_a, mma_m16n8k16_b, permute, spatial
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda

f16, f32, i32 = tilevm.float16, tilevm.float32, tilevm.int32


@tilevm.kernel(num_warps=1)
def transpose(x: tilevm.Ptr[i32], y: tilevm.Ptr[i32], R: tilevm.constexpr, C: tilevm.constexpr):
    t = tl.load(tl.global_view(x, [R, C]), [0, 0], [R, C])
    tl.store(tl.global_view(y, [C, R]), tl.trans(t) + 1, [0, 0])


@pytest.mark.parametrize(("rows", "cols"), [(16, 64), (8, 8), (3, 40), (1, 5)])
def test_the_interpreter_swaps_rows_and_columns(rows, cols):
    x = fresh_rng().integers(-(2**31), 2**31 - 1, (rows, cols)).astype(np.int32)
    y = np.zeros((cols, rows), np.int32)
    transpose[(1,)](x, y, rows, cols)
    np.testing.assert_array_equal(y, x.T + 1)


@tilevm.kernel(num_warps=1)
def swapped_dot(
    a: tilevm.Ptr[f16], b: tilevm.Ptr[f16], c: tilevm.Ptr[f32], ANNOTATE: tilevm.constexpr = False
):
    """``c = (a @ b)^T`` as ``b^T @ a^T``: a is 8 x 16 (the n8 operand), b 16 x 16 (the A one)."""
    ta = tl.load(tl.global_view(a, [8, 16]), [0, 0], [8, 16])
    fixed = spatial(8, 4) * local(2, 4)  # with ANNOTATE: not the transposed A fragment
    tb = tl.load(tl.global_view(b, [16, 16]), [0, 0], [16, 16], layout=fixed if ANNOTATE else None)
    acc = tl.dot(tl.trans(tb), tl.trans(ta), tl.zeros([16, 8], f32))
    tl.store(tl.global_view(c, [16, 8]), acc, [0, 0])


def _inputs():
    rng = fresh_rng()
    return rng.standard_normal((8, 16)).astype(np.float16), rng.standard_normal((16, 16)).astype(
        np.float16
    )


@pytest.mark.parametrize("annotate", [False, True])
def test_a_transposed_operand_multiplies_on_the_interpreter(annotate):
    a, b = _inputs()
    c = np.zeros((16, 8), np.float32)
    swapped_dot[(1,)](a, b, c, ANNOTATE=annotate)
    want = (a.astype(np.float32) @ b.astype(np.float32)).T
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def test_the_transposed_tiles_take_the_mma_fragments_without_moving_data():
    program = run_pipeline(swapped_dot.program())
    text = format_program(program)
    assert "convert_layout" not in text
    trans = [i for i in instructions(program.body) if isinstance(i, Transpose)]
    assert len(trans) == 2
    for inst in trans:
        assert inst.x.layout == permute(inst.out.layout, (1, 0))
    assert {inst.out.layout for inst in trans} == {mma_m16n8k16_a(), mma_m16n8k16_b()}


def test_a_transpose_whose_operand_is_fixed_elsewhere_converts_the_operand():
    text = format_program(run_pipeline(swapped_dot.program(ANNOTATE=True)))
    assert text.count("convert_layout") == 1


@pytest.mark.parametrize("annotate", [False, True])
def test_the_swapped_dot_compiles_to_one_mma_without_spills(annotate):
    kernel = emit_cuda(run_pipeline(swapped_dot.program(ANNOTATE=annotate)))
    module = compile_cuda(kernel.source, kernel.name, "sm_90a")
    assert module.report.spill_bytes == 0
    assert module.ptx.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == 1
    # Without the annotation no register moves between threads: no shared memory at all.
    assert ("st.shared" in module.ptx) == annotate


@tilevm.kernel
def flat(x: tilevm.Ptr[f32]):
    t = tl.load(tl.global_view(x, [8]), [0], [8])
    tl.store(tl.global_view(x, [8]), tl.trans(t), [0])


def test_only_a_2d_tile_has_a_transpose():
    expect_compile_error(flat, "trans: needs a 2-D tile; got shape [8]", "tl.trans(t)")


@pytest.mark.gpu
@pytest.mark.parametrize("annotate", [False, True])
def test_the_swapped_dot_on_the_gpu_gives_the_interpreters_bits(annotate):
    import torch

    a, b = (torch.from_numpy(v) for v in _inputs())
    on_cpu = torch.zeros(16, 8)
    swapped_dot[(1,)](a, b, on_cpu, ANNOTATE=annotate)
    on_gpu = torch.zeros(16, 8, device="cuda")
    swapped_dot[(1,)](a.cuda(), b.cuda(), on_gpu, ANNOTATE=annotate)
    torch.cuda.synchronize()
    assert torch.equal(on_gpu.cpu(), on_cpu)


# -- permute: any order of dimensions ------------------------------------------------------------
@tilevm.kernel(num_warps=2)
def relabel(x: tilevm.Ptr[i32], y: tilevm.Ptr[i32], R: tilevm.constexpr, C: tilevm.constexpr):
    """Column ``64 j + 8 a + b`` of x's rows to ``64 j + 8 b + a`` of y's, plus one."""
    t = tl.load(tl.global_view(x, [R, C]), [0, 0], [R, C])
    octets = tl.permute(tl.reshape(t, [R, C // 64, 8, 8]), (0, 1, 3, 2))
    tl.store(tl.global_view(y, [R, C]), tl.reshape(octets, [R, C]) + 1, [0, 0])


@tilevm.kernel(num_warps=1)
def rotate(x: tilevm.Ptr[i32], y: tilevm.Ptr[i32]):
    t = tl.load(tl.global_view(x, [2, 4, 8]), [0, 0, 0], [2, 4, 8])
    tl.store(tl.global_view(y, [8, 2, 4]), tl.permute(t, (2, 0, 1)), [0, 0, 0])


def _relabelled(x: np.ndarray) -> np.ndarray:
    r, c = x.shape
    return x.reshape(r, c // 64, 8, 8).transpose(0, 1, 3, 2).reshape(r, c)


@pytest.mark.parametrize(("rows", "cols"), [(1, 64), (2, 256), (16, 128)])
def test_permute_relabels_columns_on_the_interpreter_and_in_the_generated_code(rows, cols):
    from cuda_host import mirrored_on_host

    x = fresh_rng().integers(-(2**31), 2**31 - 1, (rows, cols)).astype(np.int32)
    y = np.zeros_like(x)
    with mirrored_on_host() as mirrored:
        relabel[(1,)](x, y, rows, cols)
    assert mirrored == [relabel.program(R=rows, C=cols).name]
    np.testing.assert_array_equal(y, _relabelled(x) + 1)
    assert np.array_equal(_relabelled(_relabelled(x)), x)


def test_permute_takes_any_order_of_dimensions():
    from cuda_host import mirrored_on_host

    x = fresh_rng().integers(-(2**31), 2**31 - 1, (2, 4, 8)).astype(np.int32)
    y = np.zeros((8, 2, 4), np.int32)
    with mirrored_on_host():
        rotate[(1,)](x, y)
    np.testing.assert_array_equal(y, x.transpose(2, 0, 1))


def test_a_relabelling_moves_no_data_and_its_loads_and_stores_stay_vectors():
    """Layout inference carries the store's layout back through reshape, permute and reshape:
    no convert_layout, and each thread reads and writes 16-byte runs."""
    program = run_pipeline(relabel.program(R=16, C=128))
    assert "convert_layout" not in format_program(program)
    perms = [i for i in instructions(program.body) if isinstance(i, Transpose)]
    assert [p.dims for p in perms] == [(0, 1, 3, 2)]
    assert perms[0].x.layout == permute(perms[0].out.layout, (0, 1, 3, 2))
    source = emit_cuda(program).source
    assert source.count("reinterpret_cast<const tv_b128*>") >= 1
    assert "printf" not in source


@tilevm.kernel
def bad_permute(x: tilevm.Ptr[f32]):
    t = tl.load(tl.global_view(x, [2, 4]), [0, 0], [2, 4])
    tl.store(tl.global_view(x, [2, 4]), tl.permute(t, (0, 0)), [0, 0])


def test_permute_names_dims_that_are_no_order():
    expect_compile_error(
        bad_permute,
        "permute: dims must order the dimensions 0..1 of a 2-D tile; got [0, 0]",
        "tl.permute(t, (0, 0))",
    )
