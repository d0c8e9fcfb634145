"""ldmatrix: the plan for a register layout, checked against a simulation of the instruction.

A GPU is not needed: :func:`ldmatrix_hw` is the PTX ISA's description of
``ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16`` (which lanes' row
addresses are read, which elements land in which lane's registers), itself
checked against the fragment figures that :func:`tilevm.layouts.ldmatrix`
was written from. Every plan, and the addresses in the generated CUDA, must
make it deliver to each thread, register by register, the elements the layout
assigns that thread.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tilevm
import tilevm.lang as tl
from tilevm.codegen import emit_cuda
from tilevm.codegen.memory import shared_geometry
from tilevm.ir import inst as I
from tilevm.ir.stmt import For, If, InstStmt, Seq, While
from tilevm.layouts import (
    Swizzle,
    column_local,
    column_spatial,
    concat,
    ldmatrix,
    local,
    mma_m16n8k16_a,
    mma_m16n8k16_b,
    mma_m16n8k16_c,
    permute,
    replicate,
    spatial,
)
from tilevm.passes.infer_layouts import LayoutInferenceError, dot_layouts
from tilevm.passes.ldmatrix_match import ldmatrix_plan, rows_fit_shared
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.compiler import compile_cuda

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import matmul_fp16

TARGETS = ("sm_80", "sm_90a")
WARP = 32


# -- the instruction, simulated --------------------------------------------------------------------
def ldmatrix_hw(memory: np.ndarray, num: int, trans: bool, addresses: np.ndarray) -> np.ndarray:
    """What ``ldmatrix.x{num}[.trans].b16`` leaves in every thread: ``[thread, word, half]``.

    ``memory`` holds one 16-bit element per entry; ``addresses[t]`` is thread t's
    row address in elements. In each warp, row i of matrix j is the 8 elements
    at the address of lane 8j + i (the other lanes' addresses are not read);
    word j of lane t gets row t // 4, columns 2 (t % 4) and 2 (t % 4) + 1 of
    matrix j (``.trans``: rows 2 (t % 4) and 2 (t % 4) + 1 of column t // 4),
    the lower one in half 0. Rows must be 16-byte aligned.
    """
    out = np.empty((len(addresses), num, 2), memory.dtype)
    lane = np.arange(WARP)
    for w in range(len(addresses) // WARP):
        rows = addresses[w * WARP : (w + 1) * WARP][: 8 * num]
        assert (rows % 8 == 0).all(), f"warp {w}: rows not 16-byte aligned: {rows}"
        for j in range(num):
            matrix = memory[rows[8 * j : 8 * j + 8, None] + np.arange(8)]
            for h in range(2):
                if trans:
                    got = matrix[2 * (lane % 4) + h, lane // 4]
                else:
                    got = matrix[lane // 4, 2 * (lane % 4) + h]
                out[w * WARP + lane, j, h] = got
    return out


@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("num", [1, 2, 4])
def test_the_simulation_delivers_what_the_fragment_figures_say(num, trans):
    # Matrix j is rows 8j..8j+7 of an (8 num) x 8 row-major tile; lane l addresses row l % 8 of
    # matrix (l // 8) % num.
    memory = np.arange(8 * num * 8)
    lane = np.arange(WARP)
    addresses = (8 * ((lane // 8) % num) + lane % 8) * 8
    words = ldmatrix_hw(memory, num, trans, addresses)
    table = ldmatrix(num, trans).table()  # [lane, register, (row, col)]
    want = table[..., 0] * 8 + table[..., 1]
    assert np.array_equal(words.reshape(WARP, 2 * num), want)


# -- plans, simulated ------------------------------------------------------------------------------
def _c_eval(text: str, tid: np.ndarray) -> np.ndarray:
    """A rendered C index expression of ``tid`` evaluated in Python (C and Python agree here)."""
    return np.asarray(eval(text.replace("/", "//"), {"tid": tid}), np.int64) + tid * 0


def _memory(shape, strides, swizzle) -> tuple[np.ndarray, np.ndarray]:
    """(offset of every element of a shared tensor, memory holding each element's flat index)."""
    index = np.indices(shape).reshape(len(shape), -1)
    strided = sum(i * s for i, s in zip(index, strides))
    offsets = strided if swizzle is None else swizzle(strided)
    memory = np.full(int(offsets.max()) + 9, -1, np.int64)
    memory[offsets] = np.arange(offsets.size)
    return offsets.reshape(shape), memory


def check_plan(layout, dtype, block_threads, offsets=None, pad=0, swizzle=None):
    """Simulate the plan on the tile at ``offsets`` of a row-major (padded, swizzled) tensor.

    Returns the plan (``None``: no ldmatrix) and whether the shared geometry fits it.
    """
    plan = ldmatrix_plan(layout, dtype, block_threads)
    if plan is None:
        return None, False
    offsets = offsets or (0,) * layout.rank
    shape = [o + n for o, n in zip(offsets, layout.shape)]
    strides = [1] * len(shape)
    for d in reversed(range(len(shape) - 1)):
        strides[d] = strides[d + 1] * (shape[d + 1] + (pad if d == len(shape) - 2 else 0))
    fits = rows_fit_shared(plan, strides, swizzle, [abs(o) for o in offsets])
    if not fits:
        return plan, False
    _, memory = _memory(shape, strides, swizzle)
    tid = np.arange(block_threads)
    got = np.full((block_threads, layout.local_size), -1, np.int64)
    covered = []
    for op in plan.ops:
        rows = []
        for part, offset in zip(op.rows, offsets):
            text = part.render("tid", block_threads)
            assert np.array_equal(_c_eval(text, tid), part(tid) + tid * 0), text
            rows.append(offset + part(tid) + tid * 0)
        strided = sum(r * s for r, s in zip(rows, strides))
        addresses = strided if swizzle is None else swizzle(strided)
        words = ldmatrix_hw(memory, op.num, op.trans, addresses)
        for j, p in enumerate(op.pairs):
            got[:, 2 * p : 2 * p + 2] = words[:, j]
            covered.append(p)
    assert covered == list(range(layout.local_size // 2)), "every register pair once, in order"
    index = layout.table()[tid % layout.num_threads] + np.asarray(offsets)
    want = np.ravel_multi_index(np.moveaxis(index, -1, 0), shape)
    assert np.array_equal(got, want), f"{layout}: {plan}"
    return plan, True


def _product(factors):
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out


ATOMS = {
    "mma_a": mma_m16n8k16_a(),
    "mma_b": mma_m16n8k16_b(),
    "mma_c": mma_m16n8k16_c(),
    "mma_a_t": permute(mma_m16n8k16_a(), (1, 0)),
    "mma_b_t": permute(mma_m16n8k16_b(), (1, 0)),
    **{f"x{n}{'_trans' if t else ''}": ldmatrix(n, t) for n in (1, 2, 4) for t in (False, True)},
}
KINDS = {"local": local, "column_local": column_local}
SPREADS = {"spatial": spatial, "column_spatial": column_spatial}


@st.composite
def tiled_layouts(draw, extents=(1, 2, 3, 4)):
    """(layout, whether it must plan): fragments times register repeats and warp arrangements.

    Outer factors keep every register pair a matrix; a register factor on the
    right of the fragment splits the pairs (which may then not match).
    """
    atom = ATOMS[draw(st.sampled_from(sorted(ATOMS)))]
    sizes = st.tuples(st.sampled_from(extents), st.sampled_from(extents))
    factors = []
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["local", "column_local", "spatial", "column_spatial", "r"]))
        if what == "r":
            factors.append(replicate(draw(st.sampled_from([2, 3])), rank=2))
        else:
            factors.append({**KINDS, **SPREADS}[what](*draw(sizes)))
    layout = _product([*factors, atom])
    if draw(st.integers(0, 5)) == 0:
        return layout * KINDS[draw(st.sampled_from(sorted(KINDS)))](*draw(sizes)), False
    return layout, True


@settings(max_examples=300, deadline=None)
@given(
    tiled_layouts(),
    st.sampled_from([tilevm.float16, tilevm.bfloat16, tilevm.int16, tilevm.uint16]),
    st.sampled_from([1, 2]),
    st.integers(0, 5),
    st.sampled_from([0, 8, 16]),
    st.sampled_from([0, 8, 16]),
    st.sampled_from([None, Swizzle(1, 3, 3), Swizzle(2, 3, 3), Swizzle(3, 3, 3), Swizzle(2, 4, 4)]),
)
@example((mma_m16n8k16_a(), True), tilevm.float16, 1, 0, 0, 0, None)
@example((ldmatrix(4, True), True), tilevm.bfloat16, 2, 3, 8, 8, Swizzle(3, 3, 3))
def test_every_plan_gives_each_thread_its_elements_register_by_register(
    drawn, dtype, copies, row_offset, col_offset, pad, swizzle
):
    layout, must = drawn
    if layout.num_threads * layout.local_size > 1 << 14:
        return  # keep the simulation quick
    block_threads = layout.num_threads * copies
    plan, fits = check_plan(layout, dtype, block_threads, (row_offset, col_offset), pad, swizzle)
    if must:
        assert plan is not None, str(layout)
        assert fits  # row stride, column offset multiples of 8; swizzles keep 8-element chunks
    if plan is not None:
        assert all(op.num in (1, 2, 4) for op in plan.ops)


@settings(max_examples=60, deadline=None)
@given(tiled_layouts(), st.sampled_from([(1, 0), (4, 1), (2, 8)]))
def test_tiles_with_a_leading_dimension_load_as_matrices_of_the_last_two(drawn, lead):
    layout, must = drawn
    extent, offset = lead
    batched = concat(local(extent), layout)
    plan, fits = check_plan(batched, tilevm.float16, batched.num_threads, (offset, 0, 8))
    assert (plan is not None and fits) or not must


@pytest.mark.parametrize("warps", [1, 2, 4, 8])
@pytest.mark.parametrize(("m", "n", "k"), [(16, 8, 16), (32, 32, 16), (64, 64, 32), (128, 64, 64)])
def test_dot_operands_load_as_plain_a_and_transposed_b_for_every_warp_arrangement(m, n, k, warps):
    try:
        a, b, _ = dot_layouts(m, n, k, warps, False, {})
    except LayoutInferenceError:
        pytest.skip("the warps do not divide this tile into mma tiles")
    for dtype in (tilevm.float16, tilevm.bfloat16):
        plan_a, fits_a = check_plan(a, dtype, 32 * warps)
        plan_b, fits_b = check_plan(b, dtype, 32 * warps)
        assert fits_a and fits_b
        assert {op.trans for op in plan_a.ops} == {False}
        assert {op.trans for op in plan_b.ops} == {True}
        # as few instructions as the pairs allow: x4 wherever four pairs are left
        for plan, layout in ((plan_a, a), (plan_b, b)):
            pairs = layout.local_size // 2
            assert [op.num for op in plan.ops][: pairs // 4] == [4] * (pairs // 4)


def test_the_matmul_a_operand_is_one_x4_addressed_as_the_module_docs_say():
    a, b, _ = dot_layouts(32, 32, 16, 4, False, {})
    plan = ldmatrix_plan(a, tilevm.float16, 128)
    (op,) = plan.ops
    assert (op.num, op.trans, op.pairs) == (4, False, (0, 1, 2, 3))
    rows, cols = (part.render("tid", 128) for part in op.rows)
    assert (rows, cols) == ("(tid >> 6) * 16 + (tid & 15)", "((tid >> 4) & 1) * 8")
    (op,) = ldmatrix_plan(b, tilevm.float16, 128).ops
    assert (op.num, op.trans) == (4, True)
    assert op.instruction == "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"


def test_leftover_pairs_go_in_x2_then_x1():
    # three column blocks of 8: pairs 0..5 -> one x4, one x2
    plan = ldmatrix_plan(local(1, 3) * ldmatrix(2), tilevm.float16, 32)
    assert [op.num for op in plan.ops] == [4, 2]
    plan, fits = check_plan(local(1, 7) * ldmatrix(1, trans=True), tilevm.float16, 32)
    assert [op.num for op in plan.ops] == [4, 2, 1] and fits


def test_four_matrices_whose_addresses_are_no_digit_sum_of_the_thread_id_go_two_by_two():
    # a 3 x 3 grid of matrices: pairs 0..3 wrap from the first row of the grid to the second
    plan, fits = check_plan(local(3, 3) * ldmatrix(1), tilevm.float16, 32)
    assert [op.pairs for op in plan.ops] == [(0, 1), (2, 3), (4, 5, 6, 7), (8,)] and fits
    # six warps as 2 x 3: the address spells the warp in the layout's own digits
    plan, fits = check_plan(spatial(2, 3) * ldmatrix(1, trans=True), tilevm.bfloat16, 192)
    rows, cols = (part.render("tid", 192) for part in plan.ops[0].rows)
    assert (rows, cols) == ("tid / 96 * 8 + (tid & 7)", "(tid >> 5) % 3 * 8") and fits


# -- what does not match ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype", [tilevm.int8, tilevm.uint8, tilevm.float32, tilevm.int32, tilevm.float8_e4m3]
)
def test_only_16_bit_elements_load_with_ldmatrix(dtype):
    assert ldmatrix_plan(mma_m16n8k16_a(), dtype, 32) is None


@pytest.mark.parametrize(
    "layout",
    [
        column_local(2, 2) * spatial(8, 4),  # a register pair is rows g and g + 8
        local(1, 2) * spatial(8, 4),  # a register pair is columns c and c + 4
        spatial(8, 4) * local(2, 2),  # a pair is adjacent columns, but 2 rows a lane group
        spatial(4, 4) * local(1, 2),  # 16 threads repeated over the warp's 32 lanes
        spatial(8, 4) * local(1, 3),  # an odd number of registers
        column_spatial(8, 4) * local(1, 2),  # lanes along rows in the wrong order
        spatial(8, 4) * local(1, 2) * local(1, 2),  # each 32-bit register spans 2 column pairs
        local(8),  # one dimension
    ],
)
def test_layouts_whose_register_pairs_are_not_matrix_rows_do_not_match(layout):
    assert ldmatrix_plan(layout, tilevm.float16, max(32, layout.num_threads)) is None


@pytest.mark.parametrize(
    ("strides", "swizzle", "divisors", "fits"),
    [
        ((16, 1), None, (0, 0), True),
        ((24, 1), Swizzle(2, 3, 3), (5, 0), True),  # any row offset
        ((16, 1), None, (0, 8), True),
        ((16, 1), None, (0, 4), False),  # the column offset may be 4 mod 8
        ((16, 1), None, (0, 1), False),  # ... or anything
        ((20, 1), None, (0, 0), False),  # rows 40 bytes apart: not all 16-byte aligned
        ((16, 2), None, (0, 0), False),  # the row is not contiguous
        ((16, 1), Swizzle(2, 2, 3), (0, 0), False),  # the swizzle splits 8-element chunks
    ],
)
def test_rows_must_be_16_contiguous_bytes_at_16_byte_aligned_addresses(
    strides, swizzle, divisors, fits
):
    plan = ldmatrix_plan(mma_m16n8k16_a(), tilevm.float16, 32)
    assert rows_fit_shared(plan, strides, swizzle, divisors) is fits


# -- generated code --------------------------------------------------------------------------------
@tilevm.kernel(num_warps=4)
def matmul_bf16(
    a: tilevm.Ptr[tilevm.bfloat16],
    b: tilevm.Ptr[tilevm.bfloat16],
    c: tilevm.Ptr[tilevm.float32],
    m: tilevm.int32,
    n: tilevm.int32,
    k: tilevm.int32,
    BLOCK_M: tilevm.constexpr = 64,
    BLOCK_N: tilevm.constexpr = 32,
    BLOCK_K: tilevm.constexpr = 32,
):
    """matmul_fp16's loop in bfloat16, with larger tiles: several x4 loads per operand."""
    ga = tl.global_view(a, [m, k])
    gb = tl.global_view(b, [k, n])
    sa = tl.alloc_shared(tilevm.bfloat16, [BLOCK_M, BLOCK_K])
    sb = tl.alloc_shared(tilevm.bfloat16, [BLOCK_K, BLOCK_N])
    acc = tl.zeros([BLOCK_M, BLOCK_N], tilevm.float32)
    for k0 in range(0, k, BLOCK_K):
        tl.copy_async(sa, ga, [tl.block_idx(0) * BLOCK_M, k0])
        tl.copy_async(sb, gb, [k0, tl.block_idx(1) * BLOCK_N])
        tl.copy_async_commit()
        tl.copy_async_wait(0)
        tl.sync()
        acc = tl.dot(tl.load(sa), tl.load(sb), acc)
        tl.sync()
    tl.free_shared(sa)
    tl.free_shared(sb)
    tl.store(tl.global_view(c, [m, n]), acc, [tl.block_idx(0) * BLOCK_M, tl.block_idx(1) * BLOCK_N])


@tilevm.kernel(num_warps=2)
def shared_tiles(
    x: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float16],
    out32: tilevm.Ptr[tilevm.float32],
    col: tilevm.int32,
):
    """Loads from shared memory in layouts that match ldmatrix and ones that do not."""
    s = tl.alloc_shared(tilevm.float16, [32, 32])
    s32 = tl.alloc_shared(tilevm.float32, [16, 16])
    tl.copy_async(s, tl.global_view(x, [32, 32]), [0, 0])
    tl.copy_async(s32, tl.global_view(y, [16, 16]), [0, 0])
    tl.copy_async_commit()
    tl.copy_async_wait(0)
    tl.sync()
    go = tl.global_view(out, [32, 160])
    # x1 at a constant column offset of 8; x2.trans; a matrix per warp
    tl.store(go, tl.load(s, [3, 8], [8, 8], layout=replicate(2, rank=2) * ldmatrix(1)), [0, 0])
    tl.store(go, tl.load(s, [0, 16], [16, 8], layout=ldmatrix(2, trans=True)), [0, 8])
    two = tl.load(s, [0, 0], [32, 8], layout=spatial(2, 1) * ldmatrix(2))
    tl.store(go, two, [0, 16])
    # not provably 16-byte aligned: a column offset only known at run time; 4 mod 8
    tl.store(go, tl.load(s, [0, col], [16, 8], layout=ldmatrix(2)), [0, 24])
    tl.store(go, tl.load(s, [0, 4], [16, 8], layout=ldmatrix(2)), [0, 32])
    # 32-bit elements
    t32 = tl.load(s32, [0, 0], [16, 8], layout=mma_m16n8k16_c())
    tl.store(tl.global_view(out32, [16, 8]), t32, [0, 0])


def _instructions(seq):
    for s in seq.body:
        match s:
            case InstStmt(inst=inst):
                yield inst
            case For(body=body) | While(body=body):
                yield from _instructions(body)
            case If(then=then, orelse=orelse):
                yield from _instructions(then)
                if orelse is not None:
                    yield from _instructions(orelse)
            case Seq():
                yield from _instructions(s)


_CALL = re.compile(r"tv_ldmatrix_x(\d)(_trans)?\((vec(?: \+ (\d+))?), &(\w+)\[(.*)\]\);")


def _swizzle(bits, base, shift, o):
    return Swizzle(bits, base, shift)(o)


def check_generated_loads(program) -> list[tuple[int, bool]]:
    """Run each load_shared's ldmatrix calls, as emitted, through the simulation.

    Returns (num, trans) of every call; loads without ldmatrix are skipped.
    """
    program = run_pipeline(program)
    source = emit_cuda(program).source
    chunks = re.split(r"\n *// \S+ = load_shared ", source)[1:]
    loads = [i for i in _instructions(program.body) if isinstance(i, I.LoadShared)]
    assert len(chunks) == len(loads)
    block = program.num_threads
    tid = np.arange(block)
    seen = []
    for inst, chunk in zip(loads, chunks):
        chunk = re.split(r"\n\s*// ", chunk)[0]
        calls = _CALL.findall(chunk)
        if not calls:
            assert "ldmatrix" not in chunk
            continue
        layout, shape = inst.out.layout, inst.src.shape
        strides, swizzle, _ = shared_geometry(inst.src)
        _, memory = _memory(shape, strides, swizzle)
        got = np.full((block, layout.local_size), -1, np.int64)
        for num, trans, _, first, _, address in calls:
            text = re.sub(r"tv_swizzle<(\d+), (\d+), (\d+)>\(", r"_swizzle(\1, \2, \3, ", address)
            at = eval(text.replace("/", "//"), {"tid": tid, "_swizzle": _swizzle}) + tid * 0
            words = ldmatrix_hw(memory, int(num), bool(trans), at)
            first = int(first or 0)
            got[:, 2 * first : 2 * (first + int(num))] = words.reshape(block, -1)
            seen.append((int(num), bool(trans)))
        # the words unpack to registers 2p (low half) and 2p + 1 (high half)
        assert ("[2 * i] = " in chunk and "(vec[i] >> 16);" in chunk) or layout.local_size == 2
        offsets = [int(o.value) if hasattr(o, "value") else int(o) for o in inst.offsets]
        index = layout.table()[tid % layout.num_threads] + np.asarray(offsets)
        want = np.ravel_multi_index(np.moveaxis(index, -1, 0), shape)
        assert np.array_equal(got, want), chunk
    return seen


def test_matmul_loads_its_operands_with_ldmatrix_as_the_simulation_checks():
    seen = check_generated_loads(matmul_fp16.matmul.program())
    assert seen == [(4, False), (4, True)]


def test_the_bfloat16_matmul_loads_its_operands_with_ldmatrix_as_the_simulation_checks():
    seen = check_generated_loads(matmul_bf16.program())
    assert seen == [(4, False)] * 4 + [(4, True)] * 2  # 2 x 2 warps: 16 A pairs, 8 B pairs


def test_loads_fall_back_to_vector_loads_where_ldmatrix_does_not_fit():
    seen = check_generated_loads(shared_tiles.program())
    assert seen == [(1, False), (2, True), (2, False)]
    source = emit_cuda(run_pipeline(shared_tiles.program())).source
    assert len(re.findall(r"tv_ldmatrix_x\d(_trans)?\(vec", source)) == 3


@pytest.fixture(scope="module")
def modules():
    kernels = {
        "matmul_fp16": matmul_fp16.matmul.program(),
        "matmul_bf16": matmul_bf16.program(),
        "shared_tiles": shared_tiles.program(),
    }
    out = {}
    for name, program in kernels.items():
        kernel = emit_cuda(run_pipeline(program))
        for target in TARGETS:
            out[name, target] = compile_cuda(kernel.source, kernel.name, target)
    return out


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["matmul_fp16", "matmul_bf16", "shared_tiles"])
def test_kernels_with_ldmatrix_compile_without_spilling(modules, name, target):
    module = modules[name, target]
    assert module.report.spill_bytes == 0, module.log


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("name", "a", "b"), [("matmul_fp16", 1, 1), ("matmul_bf16", 4, 2)])
def test_matmul_operands_come_from_ldmatrix_and_b_transposed(modules, name, a, b, target):
    ptx = modules[name, target].ptx
    assert ptx.count("ldmatrix.sync.aligned.m8n8.x4.shared.b16") == a
    assert ptx.count("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16") == b
    assert "ld.shared" not in ptx  # no element loads left


@pytest.mark.parametrize("target", TARGETS)
def test_x1_x2_and_transposed_loads_reach_the_ptx(modules, target):
    ptx = modules["shared_tiles", target].ptx
    assert ptx.count("ldmatrix.sync.aligned.m8n8.x1.shared.b16") == 1
    assert ptx.count("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16") == 1
    assert ptx.count("ldmatrix.sync.aligned.m8n8.x2.shared.b16") == 1
    assert "ld.shared" in ptx  # the fallbacks


def test_plans_are_values_that_depend_on_the_element_width_only():
    a = mma_m16n8k16_a()
    assert ldmatrix_plan(a, tilevm.float16, 64) == ldmatrix_plan(a, tilevm.bfloat16, 64)
    assert hash(ldmatrix_plan(a, tilevm.float16, 64)) == hash(ldmatrix_plan(a, tilevm.int16, 64))
    assert ldmatrix_plan(a, tilevm.float16, 64) != ldmatrix_plan(a, tilevm.float16, 32)
