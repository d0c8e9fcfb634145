"""The pass pipeline and layout inference."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

import tilevm
from tilevm.dtypes import float16, float32
from tilevm.interp import run
from tilevm.ir import Builder, RegisterTensor
from tilevm.ir import inst as I
from tilevm.ir.printer import format_program
from tilevm.layouts import (
    local,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    replicate,
    spatial,
)
from tilevm.passes.infer_layouts import (
    LayoutInferenceError,
    auto_layout,
    dot_layouts,
    infer_layouts,
)
from tilevm.passes.pipeline import PIPELINE, PassTiming, run_pipeline

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import lowbit_gemm
import matmul_fp16
import softmax
import vector_add

EXAMPLES = [
    ("vector_add", lambda: vector_add.vector_add.program()),
    ("softmax", lambda: softmax.softmax.program()),
    ("matmul_fp16", lambda: matmul_fp16.matmul.program()),
    ("lowbit_gemm_int3", lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.int3)),
    ("lowbit_gemm_e3m2", lambda: lowbit_gemm.lowbit_gemm.program(WTYPE=tilevm.float6_e3m2)),
]


def register_tiles(program):
    from tilevm.ir.stmt import instructions

    for inst in instructions(program.body):
        for value in (inst.output, *inst.inputs()):
            if isinstance(value, RegisterTensor):
                yield inst, value


# -- auto_layout ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "bits", "vector"),
    [((64, 64), 16, 8), ((16, 128), 32, 4), ((1024,), 8, 16), ((4, 6), 16, 2), ((3,), 32, 1)],
)
def test_auto_layout_gives_each_thread_16_byte_runs_and_covers_the_tile(shape, bits, vector):
    layout = auto_layout(shape, 128, bits)
    assert layout.shape == shape and layout.num_threads == 128
    table = layout.table()
    # the innermost registers of every thread are `vector` consecutive elements of a row
    runs = table[:, :vector, -1]
    assert (np.diff(runs, axis=1) == 1).all()
    covered = {tuple(i) for i in table.reshape(-1, len(shape))}
    assert len(covered) == int(np.prod(shape))


def test_auto_layout_replicates_a_tile_smaller_than_the_block():
    layout = auto_layout((1, 32), 128, 16)
    assert layout.num_threads == 128 and layout.replication * 32 == 128 * layout.local_size


# -- dot -----------------------------------------------------------------------------------------
def test_one_warp_dot_uses_the_mma_fragments_themselves():
    a, b, c = dot_layouts(16, 8, 16, 1, False, {})
    assert (a, b, c) == (mma_m16n8k16_a(), mma_m16n8k16_b(), mma_m16n8k16_c())


def test_dot_prefers_the_warp_arrangement_that_matches_a_given_operand():
    along_n = local(4, 1) * spatial(1, 4) * mma_m16n8k16_b()
    _, b, c = dot_layouts(16, 32, 64, 4, False, {"b": along_n})
    assert b == along_n and c.num_threads == 128


def test_a_dot_too_small_for_the_warps_gives_the_others_replicas():
    a, b, c = dot_layouts(16, 8, 16, 4, False, {})
    copies = replicate(4, rank=2)
    assert (a, b, c) == (
        copies * mma_m16n8k16_a(),
        copies * mma_m16n8k16_b(),
        copies * mma_m16n8k16_c(),
    )
    _, _, c = dot_layouts(32, 8, 16, 8, False, {})  # two warps along m, four copies of them
    assert c.num_threads == 256 and c == replicate(4, rank=2) * spatial(2, 1) * mma_m16n8k16_c()


@pytest.mark.parametrize(("m", "n", "k"), [(8, 8, 16), (16, 4, 16), (16, 8, 8)])
def test_dot_shapes_the_tensor_cores_cannot_take_are_errors(m, n, k):
    with pytest.raises(LayoutInferenceError, match="tensor cores need m a multiple of 16"):
        dot_layouts(m, n, k, 4, False, {})


# -- the pass on the examples ------------------------------------------------------------------
@pytest.mark.parametrize(("name", "program"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_register_tile_of_the_examples_gets_a_layout_of_its_shape(name, program):
    original = program()
    before = format_program(original)
    inferred = run_pipeline(original)
    assert format_program(original) == before  # the input program is left alone
    for inst, tile in register_tiles(inferred):
        assert tile.layout is not None, (type(inst).__name__, tile.name)
        assert tile.layout.shape == tile.shape
        assert tile.layout.num_threads <= inferred.num_threads
    assert "convert_layout" not in format_program(inferred)


def test_the_dot_operands_of_the_matmul_example_are_mma_fragments():
    inferred = infer_layouts(matmul_fp16.matmul.program())
    dots = [inst for inst, _ in register_tiles(inferred) if isinstance(inst, I.Dot)]
    a, b, c = dot_layouts(32, 32, 16, 4, False, {})
    assert dots and all((d.a.layout, d.b.layout, d.out.layout) == (a, b, c) for d in dots)


def test_inferred_programs_compute_what_the_original_computes():
    rng = np.random.default_rng(3)
    m, n, k = 40, 32, 48
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    outputs = []
    for program in (matmul_fp16.matmul.program(), run_pipeline(matmul_fp16.matmul.program())):
        c = np.zeros((m, n), np.float16)
        run(
            program,
            (2, 1),
            {"a": a.reshape(-1), "b": b.reshape(-1), "c": c.reshape(-1), "m": m, "n": n, "k": k},
        )
        outputs.append(c)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_clashing_layouts_get_a_conversion_before_the_instruction_that_needs_it():
    b = Builder("clash", num_warps=1)
    x = b.pointer("x", float32)
    g = b.global_view(x, None, [8, 4])
    rows = b.load_global(g, [0, 0], [8, 4], layout=spatial(8, 4))
    cols = b.load_global(g, [0, 0], [8, 4], layout=local(8, 1) * spatial(1, 4))
    total = b.binary("add", rows, cols)
    b.store_global(g, total, [0, 0])
    inferred = run_pipeline(b.finish())
    text = format_program(inferred)
    assert text.count("convert_layout") == 1
    data = np.arange(32, dtype=np.float32)
    run(inferred, (1,), {"x": data})
    np.testing.assert_array_equal(data, np.arange(32, dtype=np.float32) * 2)


def test_a_dot_operand_loaded_in_another_layout_is_converted_to_its_fragment():
    b = Builder("fixed_operand", num_warps=1)
    x, y = b.pointer("x", float16), b.pointer("y", float32)
    ga, gc = b.global_view(x, None, [16, 16]), b.global_view(y, None, [16, 8])
    a = b.load_global(ga, [0, 0], [16, 16], layout=spatial(8, 4) * local(2, 4))  # no fragment
    w = b.load_global(ga, [0, 0], [16, 8])
    b.store_global(gc, b.dot(a, w, b.full([16, 8], 0.0, float32)), [0, 0])
    inferred = infer_layouts(b.finish())
    assert format_program(inferred).count("convert_layout") == 1
    dot = next(inst for inst, _ in register_tiles(inferred) if isinstance(inst, I.Dot))
    assert (dot.a.layout, dot.b.layout, dot.out.layout) == (
        mma_m16n8k16_a(),
        mma_m16n8k16_b(),
        mma_m16n8k16_c(),
    )


def test_a_broadcast_operand_gets_the_result_layout_reduced_over_the_broadcast_dims():
    b = Builder("bias", num_warps=1)
    x = b.pointer("x", float16)
    g = b.global_view(x, None, [8, 4])
    tile = b.load_global(g, [0, 0], [8, 4], layout=spatial(8, 4))
    row = b.load_global(g, [0, 0], [1, 4])
    b.store_global(g, b.binary("mul", tile, row), [0, 0])
    inferred = infer_layouts(b.finish())
    loads = [inst for inst, _ in register_tiles(inferred) if isinstance(inst, I.LoadGlobal)]
    assert loads[1].out.layout == tilevm.layouts.reduce(spatial(8, 4), [0])


# -- the runner ----------------------------------------------------------------------------------
def test_the_runner_dumps_the_program_after_every_pass_and_times_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEVM_DUMP_IR", str(tmp_path))
    timings: list[PassTiming] = []
    run_pipeline(vector_add.vector_add.program(), timings=timings)
    names = [name for name, _ in PIPELINE]
    files = sorted(p.name for p in (tmp_path / "vector_add").iterdir())
    assert files == ["00-input.txt", *(f"{i:02d}-{n}.txt" for i, n in enumerate(names, 1))]
    assert "layout=RegisterLayout" in (tmp_path / "vector_add" / "01-infer_layouts.txt").read_text()
    assert (
        "# vector=" in (tmp_path / "vector_add" / f"{len(names):02d}-{names[-1]}.txt").read_text()
    )
    assert [t.name for t in timings] == names and all(t.seconds >= 0 for t in timings)


def test_a_pass_that_breaks_the_program_is_caught_by_the_verifier_after_it():
    def breaks(program):
        program = copy.deepcopy(program)  # passes never change their input
        program.body.body.append(program.body.body[0])  # define a tensor twice
        return program

    with pytest.raises(tilevm.TileVMError, match="is defined a second time"):
        run_pipeline(vector_add.vector_add.program(), [("breaks", breaks)])
