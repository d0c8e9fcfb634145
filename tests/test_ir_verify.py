"""The IR verifier: valid programs pass; each rule, once broken, fails at the kernel line.

Programs are built with the checked Builder (with ``builder.loc`` set, as the
frontend does) and then broken by editing the dataclasses, since the Builder
refuses bad input in the first place.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest

from tilevm.dtypes import float16, float32, int4, int32, uint8
from tilevm.errors import TileVMError
from tilevm.ir import Builder, Const, IRError, Param, Program, Var
from tilevm.ir import inst as I
from tilevm.ir.stmt import AssignScalar, For, If, InstStmt, Seq, While
from tilevm.ir.verify import VERIFY_RULES, VerifyError, verify
from tilevm.layouts import local, spatial

LOC = I.SourceLoc("k.py", 12, 4, 20, "kernel")


def builder(name: str = "k", num_warps: int = 4) -> Builder:
    b = Builder(name, num_warps)
    b.loc = LOC
    return b


def instructions(seq: Seq) -> Iterator[I.Instruction]:
    for stmt in seq.body:
        match stmt:
            case InstStmt(inst=inst):
                yield inst
            case For(body=body) | While(body=body):
                yield from instructions(body)
            case If(then=then, orelse=orelse):
                yield from instructions(then)
                if orelse is not None:
                    yield from instructions(orelse)


def find(program: Program, cls: type, index: int = 0):
    return [i for i in instructions(program.body) if isinstance(i, cls)][index]


def fails(program: Program, message: str, prefix: str = "k.py:12: ") -> VerifyError:
    """``verify`` raises a VerifyError starting with ``prefix`` and containing ``message``."""
    with pytest.raises(VerifyError) as info:
        verify(program)
    text = str(info.value)
    assert text.startswith(prefix), text
    assert message in text, text
    return info.value


def copy_kernel():
    """``out[i] = x[i] * 2`` over one 64-element tile; returns (program, builder, values)."""
    b = builder()
    x = b.pointer("x", float32)
    out = b.pointer("out", float32)
    n = b.scalar("n", int32)
    gx = b.global_view(x, None, [n], name="gx")
    go = b.global_view(out, None, [n], name="go")
    t = b.load_global(gx, [0], [64], name="t")
    doubled = b.binary("mul", t, 2.0, name="doubled")
    b.store_global(go, doubled, [0])
    return b.finish(), b, locals()


# -- valid programs ------------------------------------------------------------------------------


def test_a_valid_program_passes():
    program, *_ = copy_kernel()
    verify(program)


def test_a_tile_defined_before_a_loop_may_be_assigned_inside_and_used_after():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [256])
    acc = b.full([64], 0.0, float32, name="acc")
    with b.for_range(0, 256, 64) as i:
        t = b.load_global(gx, [i], [64])
        total = b.declare("total", i * 2)
        b.assign(acc, b.binary("add", acc, t))
        b.assign_scalar(total, total + 1)
    with b.while_(Const(1, int32)):
        b.break_()
    b.store_global(gx, acc, [0])
    verify(b.finish())


# -- every instruction has a rule ----------------------------------------------------------------


def test_every_instruction_class_has_a_verify_rule():
    classes = {
        cls
        for _, cls in inspect.getmembers(I, inspect.isclass)
        if issubclass(cls, I.Instruction) and cls is not I.Instruction
    }
    assert {I.LoadGlobal, I.Dot, I.Print} <= classes
    missing = sorted(cls.__name__ for cls in classes - VERIFY_RULES.classes())
    assert not missing, f"no verify rule for {missing}"


# -- the error itself ----------------------------------------------------------------------------


def test_errors_are_value_errors_carrying_the_location_and_the_bare_message():
    program, *_ = copy_kernel()
    program.body.body.reverse()
    err = fails(program, "store_global: a global tensor 'go' float32[n] is defined nowhere")
    assert isinstance(err, TileVMError) and isinstance(err, ValueError)
    assert err.loc == LOC
    assert str(err) == f"k.py:12: {err.detail}"


def test_errors_without_a_location_have_no_prefix():
    program, *_ = copy_kernel()
    find(program, I.LoadGlobal).loc = None
    find(program, I.LoadGlobal).offsets = (0, 0)
    err = fails(program, "load_global: expected 1 offsets, one per dimension; got 2", prefix="")
    assert err.loc is None and not str(err).startswith("k.py")


# -- values are defined before use, on every path --------------------------------------------------


def test_a_tensor_used_before_its_definition_fails():
    program, *_ = copy_kernel()
    body = program.body.body
    body[0], body[2] = body[2], body[0]  # the load now comes before the view of x
    fails(
        program, "load_global: a global tensor 'gx' float32[n] is defined nowhere before this use"
    )


def test_a_tensor_defined_inside_an_if_is_not_visible_after_it():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64])
    with b.if_(Const(1, int32)):
        t = b.load_global(gx, [0], [64], name="t")
    b.store_global(gx, t, [0])
    fails(
        b.finish(),
        "store_global: a register tile 't' float32[64] is defined inside a block (an if or "
        "loop body) that has ended before this use",
    )


def test_a_tensor_defined_in_one_branch_is_not_visible_in_the_other():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64])
    with b.if_(Const(1, int32)) as branch:
        t = b.load_global(gx, [0], [64], name="t")
    with b.else_(branch):
        b.store_global(gx, t, [0])
    fails(b.finish(), "register tile 't' float32[64] is defined inside a block")


def test_scalars_declared_in_a_loop_and_loop_variables_are_gone_after_the_loop():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64])
    with b.for_range(0, 4, name="j") as j:
        step = b.declare("step", j * 16)
    b.load_global(gx, [step], [16])
    fails(b.finish(), "load_global: offset: the scalar 'step' (int32) is defined inside a block")

    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64])
    with b.for_range(0, 4, name="j") as j:
        pass
    b.load_global(gx, [j], [16])
    fails(b.finish(), "the scalar 'j' (int32) is defined inside a block")


def test_assigning_a_tile_that_is_not_defined_yet_fails():
    b = builder()
    a = b.full([8], 0, int32, name="a")
    c = b.full([8], 1, int32, name="c")
    program = b.finish()
    define_a, define_c = program.body.body
    program.body.body = [define_c, InstStmt(I.Assign(a, c, LOC)), define_a]
    fails(program, "assign: a register tile 'a' int32[8] is defined nowhere before this use")


def test_a_tensor_created_twice_fails():
    program, *_ = copy_kernel()
    program.body.body.append(program.body.body[-2])  # the multiply again, same result tensor
    fails(program, "a register tile 'doubled' float32[64] is created a second time")


def test_using_a_shared_tensor_after_free_shared_fails():
    b = builder()
    sa = b.alloc_shared(float16, [16, 16], name="sa")
    b.free_shared(sa)
    b.load_shared(sa)  # the builder does not track frees
    fails(b.finish(), "load_shared: a shared tensor 'sa' float16[16, 16] is used after free_shared")

    b = builder()
    sa = b.alloc_shared(float16, [16, 16], name="sa")
    with b.if_(Const(1, int32)):
        b.free_shared(sa)
    b.free_shared(sa)
    fails(b.finish(), "free_shared: a shared tensor 'sa' float16[16, 16] is used after free_shared")


def test_the_grid_may_only_use_parameters():
    program, *_ = copy_kernel()
    program.grid = (Var("q"),)
    fails(program, "grid: a grid size: the scalar 'q' (int32) is defined nowhere", prefix="grid")


# -- memory spaces -------------------------------------------------------------------------------


def memory_kernel():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64, 64], name="gx")
    sx = b.alloc_shared(float32, [16, 16], name="sx")
    b.copy_async(sx, gx, [0, 0])
    t = b.load_shared(sx, name="t")
    b.store_shared(sx, t)
    u = b.load_global(gx, [0, 0], [16, 16], name="u")
    b.binary("add", t, u)
    return b.finish(), gx, sx


def test_load_global_reads_a_global_tensor():
    program, _, sx = memory_kernel()
    find(program, I.LoadGlobal).src = sx
    fails(
        program,
        "load_global: src must be a global tensor; got a shared tensor 'sx' float32[16, 16]",
    )


def test_store_shared_writes_a_shared_tensor():
    program, gx, _ = memory_kernel()
    find(program, I.StoreShared).dst = gx
    fails(
        program,
        "store_shared: dst must be a shared tensor; got a global tensor 'gx' float32[64, 64]",
    )


def test_copy_async_goes_from_global_to_shared():
    program, gx, sx = memory_kernel()
    copy = find(program, I.CopyAsync)
    copy.src = sx
    fails(program, "copy_async: src must be a global tensor; got a shared tensor 'sx'")
    copy.src, copy.dst = gx, gx
    fails(program, "copy_async: dst must be a shared tensor; got a global tensor 'gx'")


def test_elementwise_operands_must_be_in_registers():
    program, _, sx = memory_kernel()
    find(program, I.ElementwiseBinary).b = sx
    fails(
        program,
        "add: operands must be in registers; load a shared tensor 'sx' float32[16, 16] first",
    )


def test_global_view_views_a_pointer_parameter():
    program, *_ = copy_kernel()
    n = program.params[2].var
    find(program, I.GlobalView).out.ptr = n
    fails(program, "global_view: must view a pointer parameter; got the scalar 'n' (int32)")


# -- dtypes and shapes ---------------------------------------------------------------------------


def test_a_store_keeps_the_tensor_dtype():
    b = builder()
    x = b.pointer("x", float32)
    gx = b.global_view(x, None, [64])
    t = b.load_global(gx, [0], [64])
    h = b.cast(t, float16)
    b.store_global(gx, t, [0])
    program = b.finish()
    find(program, I.StoreGlobal).src = h
    fails(program, "store_global: storing float16 into a float32 tensor; cast first")


def test_offsets_are_one_integer_per_dimension():
    program, *_ = copy_kernel()
    find(program, I.LoadGlobal).offsets = (0, 0)
    fails(program, "load_global: expected 1 offsets, one per dimension; got 2")
    find(program, I.LoadGlobal).offsets = (Const(0.5, float32),)
    fails(program, "load_global: offset must be an integer scalar; got the scalar 0.5 (float32)")


def test_a_shared_tile_at_constant_offsets_stays_inside():
    program, *_ = memory_kernel()
    find(program, I.LoadShared).offsets = (8, 0)
    fails(
        program,
        "load_shared: a [16, 16] tile at offsets [8, 0] leaves the shared tensor of shape [16, 16]",
    )


def dot_kernel():
    b = builder()
    a = b.full([16, 32], 1.0, float16, name="a")
    w = b.full([32, 8], 1.0, float16, name="w")
    wrong = b.full([16, 8], 1.0, float16, name="wrong")
    ints = b.full([16, 8], 0, int32, name="ints")
    acc = b.full([16, 8], 0.0, float32, name="acc")
    b.dot(a, w, acc, name="d")
    return b.finish(), locals()


def test_dot_needs_matching_inner_sizes():
    program, v = dot_kernel()
    find(program, I.Dot).b = v["wrong"]
    fails(program, "dot: a is [16, 32] and b is [16, 8]: inner sizes differ")


def test_dot_needs_a_matching_accumulator():
    program, v = dot_kernel()
    find(program, I.Dot).c = v["ints"]
    fails(program, "dot: the accumulator c must be float32-like; got int32")
    find(program, I.Dot).c = v["a"]
    fails(program, "dot: c must be [16, 8]; got [16, 32]")


def test_dot_result_has_the_accumulator_type():
    program, _ = dot_kernel()
    find(program, I.Dot).out.dtype = float16
    fails(program, "dot: the result should be float32[16, 8]; it is float16[16, 8]")


def test_binary_operands_must_broadcast_and_the_result_has_their_type():
    b = builder()
    a = b.full([64], 0.0, float32, name="a")
    c = b.full([32], 0.0, float32, name="c")
    b.binary("add", a, a, name="s")
    program = b.finish()
    add = find(program, I.ElementwiseBinary)
    add.b = c
    fails(program, "add: shapes [64] and [32] do not broadcast")
    add.b = a
    add.out.dtype = float16
    fails(program, "add: the result should be float32[64]; it is float16[64]")


def test_reduce_dims_lie_within_the_rank():
    b = builder()
    x = b.full([4, 8], 0.0, float32)
    b.reduce(x, "sum", [1])
    program = b.finish()
    find(program, I.Reduce).dims = (2,)
    fails(program, "reduce: dims must be distinct, increasing and lie in 0..1; got [2]")
    find(program, I.Reduce).dims = ()
    fails(program, "reduce: dims must be distinct, increasing and lie in 0..1; got []")
    find(program, I.Reduce).dims = (0,)
    fails(program, "reduce sum: the result should be float32[1, 8]; it is float32[4, 1]")


def view_kernel():
    b = builder()
    w = b.pointer("w", uint8)
    gw = b.global_view(w, None, [32, 32])
    q = b.load_global(gw, [0, 0], [32, 32], layout=spatial(32, 4) * local(1, 8), name="q")
    b.view(q, int4, spatial(32, 4) * local(1, 16), name="w4")
    return b.finish()


def test_a_view_keeps_each_threads_bit_count():
    program = view_kernel()
    out = find(program, I.View).out
    out.shape, out.layout = (32, 32), spatial(32, 4) * local(1, 8)
    fails(program, "view: a view keeps each thread's bits: 8 x 8 bits = 64 in")


def test_a_view_that_changes_bit_width_needs_layouts():
    program = view_kernel()
    view = find(program, I.View)
    view.x.layout = view.out.layout = None
    fails(program, "view of uint8 as int4 changes the bit width: both the source and the result")


def test_layouts_fit_their_tile_and_the_kernels_threads():
    program = view_kernel()
    find(program, I.LoadGlobal).out.layout = spatial(32, 4) * local(2, 8)
    fails(program, "load_global: layout shape [64, 32] != tile shape [32, 32]")

    program = view_kernel()
    program.num_warps = 2
    fails(program, "load_global: layout uses 128 threads; the kernel has 64")


def test_assign_keeps_the_tile_type():
    b = builder()
    acc = b.full([8], 0.0, float32, name="acc")
    h = b.full([8], 0.0, float16, name="h")
    b.assign(acc, b.full([8], 1.0, float32))
    program = b.finish()
    find(program, I.Assign).x = h
    fails(program, "a tile variable keeps its type: it is float32[8], the new value is float16[8]")


def test_annotated_layouts_fit_the_tile():
    b = builder()
    t = b.full([4, 128], 0.0, float32)
    b.annotate_layout(t, spatial(4, 32) * local(1, 4))
    program = b.finish()
    find(program, I.AnnotateLayout).layout = spatial(4, 32)
    fails(program, "annotate_layout: layout shape [4, 32] != tile shape [4, 128]")


# -- control flow and scalars --------------------------------------------------------------------


def test_break_only_inside_a_loop():
    b = builder()
    with b.while_(Const(1, int32)) as loop:
        b.break_()
    program = b.finish()
    program.body.body.append(loop.body.body.pop())
    fails(program, "break outside a loop")


def test_a_break_in_an_if_inside_a_loop_is_fine():
    b = builder()
    with b.for_range(0, 4) as i, b.if_(i == 2):
        b.break_()
    verify(b.finish())


@pytest.mark.parametrize("statement", ["if", "while", "for"])
def test_conditions_and_range_bounds_are_integer_scalars(statement):
    b = builder()
    x = b.scalar("x", float32)
    context = {"if": b.if_, "while": b.while_, "for": lambda c: b.for_range(0, 4)}[statement]
    with context(x > 0):
        pass
    program = b.finish()
    node = program.body.body[0]
    if statement == "for":
        node.stop = x * 2.0
        fails(program, "for: the range's stop must be an integer scalar; got the scalar x * 2.0")
    else:
        node.cond = x * 0.5
        fails(
            program,
            f"{statement}: the condition must be an integer scalar; "
            "got the scalar x * 0.5 (float32)",
        )


def test_a_scalar_variable_keeps_its_type():
    b = builder()
    x = b.scalar("x", float32)
    k = b.declare("k", 0)
    with pytest.raises(IRError, match="scalar variable k is int32; it cannot take a float32"):
        b.assign_scalar(k, x * 2.0)
    b._blocks[-1].body.append(AssignScalar(k, x * 2.0, b.loc))  # what a faulty pass could make
    fails(
        b.finish(), "the scalar variable 'k' keeps its type: it is int32, the new value is float32"
    )


def test_a_loop_variable_cannot_be_assigned():
    b = builder()
    with b.for_range(0, 4, name="i") as i:
        b.assign_scalar(i, i + 1)
    fails(b.finish(), "the loop variable 'i' cannot be assigned in its loop")


def test_parameter_names_are_unique():
    program, *_ = copy_kernel()
    program.params.append(Param("x", "scalar", int32, Var("x")))
    err = fails(program, "parameter names must be unique; 'x' is used twice", prefix="parameter")
    assert err.loc is None


def test_messages_name_what_was_expected_and_what_was_found():
    program, *_ = copy_kernel()
    find(program, I.ElementwiseBinary).a = find(program, I.GlobalView).out
    err = fails(program, "mul: operands must be in registers")
    assert re.search(r"load a global tensor 'gx' float32\[n\] first", str(err))
