"""The IR printer: golden text of whole programs, stable names, expressions, rule coverage."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
from golden import assert_golden

from tilevm.dtypes import float16, float32, int4, int32, uint1, uint8
from tilevm.ir import BlockIdx, Builder, Const, NumBlocks, Var
from tilevm.ir import inst as I
from tilevm.ir.expr import Unary, cast_expr, logical_and, logical_not, logical_or, minimum, select
from tilevm.ir.printer import PRINT_RULES, Names, format_expr, format_instruction, format_program
from tilevm.ir.verify import verify
from tilevm.layouts import local, shared_row_major, spatial

QW_LAYOUT = spatial(32, 4) * local(1, 8)
W4_LAYOUT = spatial(32, 4) * local(1, 16)
ROW_LAYOUT = spatial(4, 32) * local(1, 4)


def vector_add():
    b = Builder("vector_add")
    x = b.pointer("x", float32)
    y = b.pointer("y", float32)
    out = b.pointer("out", float32)
    n = b.scalar("n", int32)
    gx = b.global_view(x, None, [n], name="gx")
    gy = b.global_view(y, None, [n], name="gy")
    go = b.global_view(out, None, [n], name="go")
    base = BlockIdx(0) * 1024
    with b.for_range(0, 1024, 256, unroll=4) as i:
        a = b.load_global(gx, [base + i], [256], name="a")
        c = b.load_global(gy, [base + i], [256], other=-1.5, name="c")
        b.store_global(go, b.binary("add", a, c, name="s"), [base + i])
    return b.finish(grid=[(n + 1023) // 1024], constants={"BLOCK": 1024})


VECTOR_ADD = """\
kernel vector_add(x: ptr<float32>, y: ptr<float32>, out: ptr<float32>, n: int32) warps=4
  constants: BLOCK=1024
  grid: [(n + 1023) // 1024]
  gx = global_view x : float32[n] strides=[1]
  gy = global_view y : float32[n] strides=[1]
  go = global_view out : float32[n] strides=[1]
  for i in range(0, 1024, 256) unroll=4:
    a = load_global gx[block_idx.x * 1024 + i] masked : float32[256]
    c = load_global gy[block_idx.x * 1024 + i] masked other=-1.5 : float32[256]
    s = add a, c : float32[256]
    store_global go[block_idx.x * 1024 + i] <- s masked
"""


def tiled_matmul():
    """A 64x64 tile of float16 @ int4 (packed two to a byte) with most of the instruction set."""
    b = Builder("matmul_w4", num_warps=4)
    a_ptr = b.pointer("a", float16)
    w_ptr = b.pointer("w", uint8)
    c_ptr = b.pointer("c", float32)
    m, n, k = (b.scalar(name, int32) for name in "mnk")
    ga = b.global_view(a_ptr, None, [m, k], [k, 1], name="ga")
    gw = b.global_view(w_ptr, None, [k, n // 2], [n // 2, 1], name="gw")
    gc = b.global_view(c_ptr, None, [m, n], [n, 1], name="gc")
    sa = b.alloc_shared(float16, [64, 32], name="sa")
    acc = b.full([64, 64], 0.0, float32, name="acc")
    row0, col0 = BlockIdx(0) * 64, BlockIdx(1) * 64
    with b.for_range(0, k, 32, unroll=2, name="kk") as kk:
        b.copy_async(sa, ga, [row0, kk])
        b.copy_async_commit()
        b.copy_async_wait(0)
        b.sync()
        ta = b.load_shared(sa, name="ta")
        qw = b.load_global(gw, [kk, BlockIdx(1) * 32], [32, 32], layout=QW_LAYOUT, name="qw")
        w4 = b.view(qw, int4, W4_LAYOUT, name="w4")
        wf = b.cast(w4, float16, name="wf")
        b.assign(acc, b.dot(ta, wf, acc, name="acc"))
        b.sync()
    b.free_shared(sa)
    top = b.reduce(acc, "max", [1], name="top")
    with b.if_(m > 0) as branch:
        b.store_global(gc, acc, [row0, col0], masked=False)
    with b.else_(branch):
        b.print("empty tile", m)
    tries = b.declare("tries", 0)
    with b.while_(tries < 4):
        b.assign_scalar(tries, tries + 1)
        with b.if_(tries == n):
            b.break_()
    b.print("top", top)
    return b.finish(grid=[(m + 63) // 64, (n + 63) // 64], constants={"BM": 64, "BN": 64})


TILED_MATMUL = f"""\
kernel matmul_w4(a: ptr<float16>, w: ptr<uint8>, c: ptr<float32>, m: int32, n: int32, k: int32) \
warps=4
  constants: BM=64, BN=64
  grid: [(m + 63) // 64, (n + 63) // 64]
  ga = global_view a : float16[m, k] strides=[k, 1]
  gw = global_view w : uint8[k, n // 2] strides=[n // 2, 1]
  gc = global_view c : float32[m, n] strides=[n, 1]
  sa = alloc_shared : float16[64, 32]
  acc = full 0.0 : float32[64, 64]
  for kk in range(0, k, 32) unroll=2:
    copy_async sa <- ga[block_idx.x * 64, kk] masked
    copy_async_commit
    copy_async_wait pending=0
    sync_threads
    ta = load_shared sa[0, 0] : float16[64, 32]
    qw = load_global gw[kk, block_idx.y * 32] masked : uint8[32, 32] layout={QW_LAYOUT}
    w4 = view qw : int4[32, 64] layout={W4_LAYOUT}
    wf = cast w4 : float16[32, 64] layout={W4_LAYOUT}
    acc_1 = dot ta, wf, acc : float32[64, 64]
    assign acc <- acc_1
    sync_threads
  free_shared sa
  top = reduce max acc dims=[1] : float32[64, 1]
  if m > 0:
    store_global gc[block_idx.x * 64, block_idx.y * 64] <- acc unmasked
  else:
    print "empty tile", m
  let tries: int32 = 0
  while tries < 4:
    tries = tries + 1
    if tries == n:
      break
  print "top", top
"""


def row_softmax_pieces():
    """The instructions the other two programs leave out: arange, where, unary ops, annotations."""
    b = Builder("pieces", num_warps=4)
    x = b.pointer("x", float32)
    n = b.scalar("n", int32)
    gx = b.global_view(x, None, [4, n], [n, 1], name="gx")
    t = b.load_global(gx, [0, 0], [4, 128], other=-math.inf, name="t")
    b.annotate_layout(t, ROW_LAYOUT)
    cols = b.arange([4, 128], dim=1)
    inside = b.binary("lt", cols, n, name="inside")
    clipped = b.where(inside, t, 0.0, name="clipped")
    e = b.unary("exp", clipped)
    s = b.reduce(e, "sum", [1], keepdims=False)
    half = b.full([4], n // 2, int32, name="half")
    b.print('sum "s"\n', s, half, NumBlocks(0))
    sh = b.alloc_shared(float32, [4, 128], name="sh")
    sh.layout = shared_row_major(4, 128)  # as the shared-memory planner would set it
    b.store_shared(sh, e)
    with b.if_(n > 128):
        pass
    return b.finish()


PIECES = f"""\
kernel pieces(x: ptr<float32>, n: int32) warps=4
  gx = global_view x : float32[4, n] strides=[n, 1]
  t = load_global gx[0, 0] masked other=-inf : float32[4, 128] layout={ROW_LAYOUT}
  annotate_layout t layout={ROW_LAYOUT}
  %0 = arange dim=1 : int32[4, 128]
  inside = lt %0, n : uint1[4, 128]
  clipped = where inside, t, 0.0 : float32[4, 128]
  %1 = exp clipped : float32[4, 128]
  %2 = reduce sum %1 dims=[1] : float32[4, 1]
  %3 = reshape %2 : float32[4]
  half = full n // 2 : int32[4]
  print "sum \\"s\\"\\n", %3, half, num_blocks.x
  sh = alloc_shared : float32[4, 128] layout={shared_row_major(4, 128)}
  store_shared sh[0, 0] <- %1
  if n > 128:
    pass
"""


@pytest.mark.parametrize(
    ("build", "expected"),
    [(vector_add, VECTOR_ADD), (tiled_matmul, TILED_MATMUL), (row_softmax_pieces, PIECES)],
    ids=["vector_add", "tiled_matmul", "pieces"],
)
def test_program_prints_its_golden_text(build, expected):
    assert format_program(build()) == expected


@pytest.mark.parametrize("build", [vector_add, tiled_matmul, row_softmax_pieces])
def test_printed_sample_programs_verify(build):
    verify(build())


@pytest.mark.parametrize("build", [vector_add, tiled_matmul, row_softmax_pieces])
def test_same_program_prints_the_same_text_on_every_build(build):
    first, second = build(), build()
    assert format_program(first) == format_program(second)
    assert format_program(first) == format_program(first)


def test_every_instruction_class_has_a_printing_rule():
    classes = {
        cls
        for _, cls in inspect.getmembers(I, inspect.isclass)
        if issubclass(cls, I.Instruction) and cls is not I.Instruction
    }
    assert {I.LoadGlobal, I.Dot, I.Print} <= classes
    missing = sorted(cls.__name__ for cls in classes - PRINT_RULES.classes())
    assert not missing, f"no printing rule for {missing}"


def test_name_hints_are_made_unique_with_a_numeric_suffix():
    b = Builder("names")
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64], name="x")  # the parameter already holds 'x'
    first = b.load_global(gx, [0], [64], name="acc")
    second = b.load_global(gx, [0], [64], name="acc")
    b.load_global(gx, [0], [64], name="acc_1")  # its own hint is taken by now
    b.binary("add", first, second)
    b.binary("mul", first, second)
    with b.for_range(0, 2), b.for_range(0, 2):
        pass
    assert format_program(b.finish()) == (
        "kernel names(x: ptr<float32>) warps=4\n"
        "  x_1 = global_view x : float32[64] strides=[1]\n"
        "  acc = load_global x_1[0] masked : float32[64]\n"
        "  acc_1 = load_global x_1[0] masked : float32[64]\n"
        "  acc_1_1 = load_global x_1[0] masked : float32[64]\n"
        "  %0 = add acc, acc_1 : float32[64]\n"
        "  %1 = mul acc, acc_1 : float32[64]\n"
        "  for i in range(0, 2, 1):\n"
        "    for i_1 in range(0, 2, 1):\n"
        "      pass\n"
    )


def test_header_shows_parameter_names_and_constants_of_every_kind():
    b = Builder("consts", num_warps=8)
    x = b.pointer("x", uint8)
    b.scalar("n", int32)
    b.global_view(x, None, [16])
    program = b.finish(
        constants={"EVEN": True, "T": float16, "S": "a b", "SIZES": (1, 2), "ONE": (3,), "L": [4]}
    )
    program.params[0].name = "packed"  # the parameter's own name wins over its variable's
    assert format_program(program) == (
        "kernel consts(packed: ptr<uint8>, n: int32) warps=8\n"
        '  constants: EVEN=True, T=float16, S="a b", SIZES=(1, 2), ONE=(3,), L=[4]\n'
        "  %0 = global_view packed : uint8[16] strides=[1]\n"
    )


def test_names_are_given_on_first_sight_and_never_move():
    names = Names()
    a, b, c = Var("a"), Var(""), Var("a")
    assert [names[a], names[b], names[c], names[a], names[b]] == ["a", "%0", "a_1", "a", "%0"]
    assert a in names and Var("a") not in names


n, m = Var("n"), Var("m")
p, q, r = Var("p", uint1), Var("q", uint1), Var("r", uint1)


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ((n + 63) // 64, "(n + 63) // 64"),
        (n - (m - 1), "n - (m - 1)"),
        ((n - m) - 1, "n - m - 1"),
        (n + m * 2, "n + m * 2"),
        ((n + m) * 2, "(n + m) * 2"),
        (n // (m * 2), "n // (m * 2)"),
        (-(n + 1), "-(n + 1)"),
        (Unary("neg", -n, int32), "-(-n)"),
        (~(n + 1), "~(n + 1)"),
        (n * Const(-3), "n * -3"),
        (Const(-3) * n, "-3 * n"),
        (abs(n), "abs(n)"),
        ((n < m) == (m < n), "(n < m) == (m < n)"),
        (n + 1 < m * 2, "n + 1 < m * 2"),
        (logical_and(n > 0, logical_not(m > 0)), "n > 0 and not m > 0"),
        (logical_or(logical_and(p, q), r), "p and q or r"),
        (logical_and(logical_or(p, q), r), "(p or q) and r"),
        (logical_not(logical_and(p, q)), "not (p and q)"),
        ((n & 3) | (m << 1), "n & 3 | m << 1"),
        ((n | 3) & m, "(n | 3) & m"),
        (n ^ (m & 1), "n ^ m & 1"),
        (minimum(n, m + 1), "min(n, m + 1)"),
        (cast_expr(n, float32) / 2.0, "float32(n) / 2.0"),
        (select(n > 0, n, 0), "select(n > 0, n, 0)"),
        (BlockIdx(1) * NumBlocks(0) + BlockIdx(2), "block_idx.y * num_blocks.x + block_idx.z"),
        (Unary("exp", Var("x", float32), float32), "exp(x)"),
        (Const(1, uint1), "True"),
        (Const(0, uint1), "False"),
        (Const(2.5, float32), "2.5"),
        (Const(math.inf, float32), "inf"),
        (Const(-math.inf, float32), "-inf"),
    ],
)
def test_expressions_print_like_python_with_minimal_parentheses(expr, text):
    assert format_expr(expr) == text


def test_format_expr_takes_names_from_a_mapping():
    assert format_expr(n * m + 1, {n: "N", m: "M"}) == "N * M + 1"


def test_format_instruction_prints_one_line_without_indent():
    b = Builder("one")
    x = b.pointer("x", float16)
    gx = b.global_view(x, None, [32], name="gx")
    t = b.load_global(gx, [0], [32], masked=False, name="t")
    (load,) = [s.inst for s in b.finish().body.body if s.inst.output is t]
    assert format_instruction(load) == "t = load_global gx[0] unmasked : float16[32]"


def test_invalid_programs_still_print():
    b = Builder("broken")
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64], name="gx")
    t = b.load_global(gx, [0], [64], name="t")
    program = b.finish()
    program.body.body.reverse()  # the load now comes before the view it reads
    assert format_program(program).splitlines()[1:] == [
        "  t = load_global gx[0] masked : float32[64]",
        "  gx = global_view x : float32[64] strides=[1]",
    ]
    assert t.name == "t"


# -- the golden-file helper ----------------------------------------------------------------------


def test_assert_golden_passes_on_equal_text(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TILEVM_UPDATE_GOLDEN", raising=False)
    (tmp_path / "ok.txt").write_text("a\nb\n")
    assert_golden("ok", "a\nb\n", tmp_path)


def test_assert_golden_fails_with_a_diff_on_different_text(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TILEVM_UPDATE_GOLDEN", raising=False)
    (tmp_path / "bad.txt").write_text("a\nb\n")
    with pytest.raises(pytest.fail.Exception) as info:
        assert_golden("bad", "a\nc\n", tmp_path)
    message = str(info.value)
    assert "-b\n+c" in message and "TILEVM_UPDATE_GOLDEN=1" in message


def test_assert_golden_says_how_to_create_a_missing_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TILEVM_UPDATE_GOLDEN", raising=False)
    with pytest.raises(pytest.fail.Exception, match="TILEVM_UPDATE_GOLDEN=1") as info:
        assert_golden("missing", "text", tmp_path)
    assert "missing.txt does not exist" in str(info.value)


def test_assert_golden_rewrites_the_file_when_asked(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TILEVM_UPDATE_GOLDEN", "1")
    (tmp_path / "old.txt").write_text("old\n")
    assert_golden("old", "new\r\n", tmp_path / ".")
    assert_golden("fresh", "made\n", tmp_path / "sub")
    assert (tmp_path / "old.txt").read_bytes() == b"new\r\n"
    assert (tmp_path / "sub" / "fresh.txt").read_text() == "made\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt", "sub"]  # no temporary files
