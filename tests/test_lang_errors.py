"""Errors in kernels: compile errors at the author's line with an excerpt and a caret, and
runtime errors from the interpreter naming the kernel line that failed."""

from __future__ import annotations

import numpy as np
import pytest
from lang_testing import expect_compile_error, source_line

import tilevm
import tilevm.lang as tl
from tilevm.interp import InterpError

f32, i32 = tilevm.float32, tilevm.int32


# -- names and syntax --------------------------------------------------------------------------
@tilevm.kernel
def undefined_name(out: tilevm.Ptr[f32]):
    x = 1 + not_defined_anywhere  # noqa: F821
    tl.store(tl.global_view(out, [1]), tl.full([1], x, f32), [0])


def test_an_undefined_name_is_reported_where_it_is_read():
    expect_compile_error(
        undefined_name, "name 'not_defined_anywhere' is not defined", "not_defined_anywhere"
    )


@tilevm.kernel
def uses_lambda(out: tilevm.Ptr[f32]):
    f = lambda v: v  # noqa: E731
    f(out)


@tilevm.kernel
def uses_comprehension(out: tilevm.Ptr[f32]):
    sizes = [2 * k for k in range(3)]
    tl.store(tl.global_view(out, [6]), tl.zeros(sizes[-1:], f32), [0])


@tilevm.kernel
def uses_continue(out: tilevm.Ptr[f32], n: tilevm.int32):
    for _ in range(n):
        continue  # here


@tilevm.kernel
def uses_star_star(out: tilevm.Ptr[f32]):
    options = dict(dtype=f32)
    tl.store(tl.global_view(out, [4]), tl.zeros([4], **options), [0])


@tilevm.kernel
def indexes_a_tile(out: tilevm.Ptr[f32]):
    t = tl.zeros([4], f32)
    tl.store(tl.global_view(out, [1]), tl.full([1], t[0], f32), [0])


@tilevm.kernel
def uses_with(out: tilevm.Ptr[f32]):
    with open("x"):
        pass


@pytest.mark.parametrize(
    ("kernel", "reason", "snippet"),
    [
        (uses_lambda, "unsupported syntax 'Lambda' in a kernel", "lambda v: v"),
        (
            uses_comprehension,
            "unsupported syntax 'ListComp' in a kernel",
            "[2 * k for k in range(3)]",
        ),
        (uses_continue, "continue is not supported in kernels; use if", "continue  #"),
        (uses_star_star, "**kwargs is not supported in kernels", "**options"),
        (indexes_a_tile, "tiles are not indexed with []: use load/store offsets", "t[0]"),
    ],
    ids=["lambda", "comprehension", "continue", "star-star", "subscript"],
)
def test_unsupported_syntax_is_reported_at_the_expression(kernel, reason, snippet):
    expect_compile_error(kernel, reason, snippet.removesuffix("  #"), on=snippet)


def test_an_unsupported_statement_underlines_the_whole_statement_to_the_line_end():
    err = expect_compile_error(
        uses_with, "unsupported statement 'With' in a kernel", 'with open("x"):'
    )
    assert err.loc.end_col is None  # the statement spans two lines


# -- types and shapes --------------------------------------------------------------------------
@tilevm.kernel
def shape_mismatch(out: tilevm.Ptr[f32]):
    a = tl.zeros([4, 8], f32)
    b = tl.zeros([4, 3], f32)
    tl.store(tl.global_view(out, [4, 8]), a + b, [0, 0])


def test_operands_that_do_not_broadcast_are_reported_with_both_shapes():
    expect_compile_error(shape_mismatch, "add: shapes [4, 8] and [4, 3] do not broadcast", "a + b")


@tilevm.kernel
def wrong_builtin_call(out: tilevm.Ptr[f32]):
    tl.store(tl.global_view(out, [4]), tl.zeros([4]), [0])


def test_a_kernel_language_call_with_wrong_arguments_is_reported_at_the_call():
    expect_compile_error(
        wrong_builtin_call,
        "tilevm.lang.zeros(): missing a required argument: 'dtype'",
        "tl.zeros([4])",
    )


@tilevm.kernel
def scalar_changes_type(out: tilevm.Ptr[f32], n: tilevm.int32):
    total = 0
    for i in range(n):
        total = total + i * 0.5
    tl.store(tl.global_view(out, [1]), tl.full([1], total, f32), [0])


def test_a_scalar_variable_keeps_its_type_through_a_loop():
    expect_compile_error(
        scalar_changes_type,
        "'total' is int32 before this loop or branch; here it gets a float32 value",
        "total",
        on="total = total + i * 0.5",
    )


@tilevm.kernel
def tile_changes_shape(out: tilevm.Ptr[f32], n: tilevm.int32):
    acc = tl.zeros([4], f32)
    for _ in range(n):
        acc = tl.reshape(acc, [2, 2])
    tl.store(tl.global_view(out, [4]), acc, [0])


def test_a_tile_variable_keeps_its_type_through_a_loop():
    expect_compile_error(
        tile_changes_shape,
        "a tile variable keeps its type: it is float32[4], the new value is float32[2, 2]",
        "acc = tl.reshape(acc, [2, 2])",
    )


# -- runtime control flow ----------------------------------------------------------------------
@tilevm.kernel
def first_assigned_in_branch(out: tilevm.Ptr[f32], n: tilevm.int32):
    if n > 0:
        value = 1.0
    tl.store(tl.global_view(out, [1]), tl.full([1], value, f32), [0])


def test_a_name_first_assigned_in_a_runtime_branch_is_not_visible_after_it():
    _, branch_line, _ = source_line(first_assigned_in_branch, "if n > 0:")
    expect_compile_error(
        first_assigned_in_branch,
        f"'value' is first assigned inside a loop or branch that runs on the GPU (line "
        f"{branch_line}); assign it before that so it exists on every path",
        "value",
        on="tl.full([1], value, f32)",
    )


@tilevm.kernel
def returns_a_value(out: tilevm.Ptr[f32]):
    t = tl.zeros([4], f32)
    return t


def test_a_kernel_returning_a_value_is_told_to_store_it():
    expect_compile_error(returns_a_value, "a kernel returns nothing; store results", "return t")


@tilevm.kernel
def returns_in_a_branch(out: tilevm.Ptr[f32], n: tilevm.int32):
    if n > 0:
        return  # here


def test_return_inside_runtime_control_flow_is_an_error():
    expect_compile_error(
        returns_in_a_branch,
        "return inside a loop or branch that runs on the GPU",
        "return",
        on="return  # here",
    )


@tilevm.kernel
def if_on_a_tile(out: tilevm.Ptr[f32]):
    t = tl.zeros([4], f32)
    if t > 0.0:
        tl.store(tl.global_view(out, [4]), t, [0])


def test_an_if_on_a_tile_suggests_where():
    expect_compile_error(
        if_on_a_tile, "an if needs a scalar condition; got a tile (use where)", "t > 0.0"
    )


@tilevm.kernel
def membership_at_runtime(out: tilevm.Ptr[f32], n: tilevm.int32):
    if n in (1, 2):
        pass


def test_in_needs_compile_time_values():
    expect_compile_error(
        membership_at_runtime, "'in' tests compile-time values; compare with ==", "n in (1, 2)"
    )


@tilevm.kernel
def max_of_one_tile(out: tilevm.Ptr[f32]):
    t = tl.arange([4], dtype=f32)
    tl.store(tl.global_view(out, [1]), max(t), [0])


def test_python_max_of_a_single_tile_points_to_the_reduction():
    expect_compile_error(
        max_of_one_tile,
        "max() takes two or more values in a kernel; reduce a tile with tilevm.lang.max",
        "max(t)",
    )


# -- calls -------------------------------------------------------------------------------------
def plain_python(v):
    return v + 1


@tilevm.kernel
def python_call_on_runtime(out: tilevm.Ptr[f32], n: tilevm.int32):
    m = plain_python(n)
    tl.store(tl.global_view(out, [1]), tl.full([1], m, f32), [0])


def test_a_plain_python_function_cannot_take_runtime_values():
    expect_compile_error(
        python_call_on_runtime,
        "plain_python() runs while compiling and cannot take runtime values",
        "plain_python(n)",
    )


@tilevm.kernel
def fails_while_compiling(out: tilevm.Ptr[f32], K: tilevm.constexpr):
    size = plain_python(K) // 0
    tl.store(tl.global_view(out, [size]), tl.zeros([size], f32), [0])


def test_an_exception_in_compile_time_python_is_reported_at_the_line():
    expect_compile_error(
        fails_while_compiling,
        "ZeroDivisionError: integer division or modulo by zero",
        "plain_python(K) // 0",
        K=3,
    )


@tilevm.kernel
def callee(out: tilevm.Ptr[f32]):
    pass


@tilevm.kernel
def calls_a_kernel(out: tilevm.Ptr[f32]):
    callee(out)


def test_a_kernel_cannot_call_another_kernel():
    expect_compile_error(
        calls_a_kernel,
        "a kernel cannot call another kernel; make it a @tilevm.func",
        "callee(out)",
    )


@tilevm.func
def broken_helper(t):
    return t + tl.zeros([3], f32)


@tilevm.func
def middle_helper(t):
    doubled = t * 2.0
    return broken_helper(doubled)


@tilevm.kernel
def calls_broken_helpers(out: tilevm.Ptr[f32], n: tilevm.int32):
    acc = tl.zeros([4], f32)
    for _ in range(n):
        acc = middle_helper(acc)
    tl.store(tl.global_view(out, [4]), acc, [0])


def test_an_error_in_a_helper_points_inside_it_and_lists_the_calls_that_led_there():
    err = expect_compile_error(
        calls_broken_helpers,
        "add: shapes [4] and [3] do not broadcast",
        "t + tl.zeros([3], f32)",
        at=broken_helper,
    )
    middle = source_line(middle_helper, "return broken_helper(doubled)")
    outer = source_line(calls_broken_helpers, "acc = middle_helper(acc)")
    assert [(c.file, c.line) for c in err.calls] == [middle[:2], outer[:2]]
    assert str(err).split("\n")[3:] == [
        f"  called from {middle[0]}:{middle[1]}:12 (in middle_helper): "
        "return broken_helper(doubled)",
        f"  called from {outer[0]}:{outer[1]}:15 (in kernel calls_broken_helpers): "
        "acc = middle_helper(acc)",
    ]


@tilevm.kernel
def helper_arguments_wrong(out: tilevm.Ptr[f32]):
    middle_helper(1.0, 2.0)


def test_calling_a_helper_with_wrong_arguments_is_reported_at_the_call():
    expect_compile_error(
        helper_arguments_wrong,
        "middle_helper(): too many positional arguments",
        "middle_helper(1.0, 2.0)",
    )


@tilevm.kernel
def compile_time_assert(out: tilevm.Ptr[f32], BLOCK: tilevm.constexpr):
    assert BLOCK % 16 == 0, f"BLOCK must be a multiple of 16; got {BLOCK}"
    tl.store(tl.global_view(out, [BLOCK]), tl.zeros([BLOCK], f32), [0])


def test_a_failing_compile_time_assert_shows_its_message():
    compile_time_assert.program(BLOCK=32)
    expect_compile_error(
        compile_time_assert,
        "BLOCK must be a multiple of 16; got 24",
        'assert BLOCK % 16 == 0, f"BLOCK must be a multiple of 16; got {BLOCK}"',
        BLOCK=24,
    )


def test_compile_errors_surface_at_launch_too():
    with pytest.raises(tl.KernelCompileError, match="add: shapes"):
        shape_mismatch[1](np.zeros((4, 8), np.float32))


# -- errors while running ----------------------------------------------------------------------
@tilevm.func
def load_unmasked(g, start):
    return tl.load(g, [start], [8], masked=False)


@tilevm.kernel
def out_of_bounds(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], n: tilevm.int32):
    g = tl.global_view(x, [n])
    t = load_unmasked(g, tl.block_idx() * 8)
    tl.store(tl.global_view(out, [n]), t, [tl.block_idx() * 8])


def test_an_unmasked_load_outside_the_tensor_fails_at_the_line_that_loads():
    file, line, _ = source_line(load_unmasked, "masked=False")
    x = np.zeros(12, np.float32)
    message = (
        rf"^{file}:{line}: LoadGlobal: index \(12,\) is outside 'g' of shape \[12\] and the "
        r"access is not masked$"
    )
    with pytest.raises(InterpError, match=message):
        out_of_bounds[(2,)](x, x.copy(), 12)


@tilevm.kernel
def missing_sync(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], SYNC: tilevm.constexpr):
    s = tl.alloc_shared(f32, [8])
    tl.store(s, tl.load(tl.global_view(x, [8]), [0], [8]))  # write
    if SYNC:
        tl.sync()
    t = tl.load(s)  # read
    tl.store(tl.global_view(out, [8]), t * 2.0, [0])


def test_reading_shared_memory_without_sync_after_a_write_fails_at_the_read():
    file, write, _ = source_line(missing_sync, "# write")
    _, read, _ = source_line(missing_sync, "# read")
    x = np.arange(8, dtype=np.float32)
    out = np.zeros(8, np.float32)
    message = (
        rf"^{file}:{read}: missing sync_threads between the write at line {write} and this "
        rf"read at line {read} of shared tensor 's'$"
    )
    with pytest.raises(InterpError, match=message):
        missing_sync[1](x, out, False)
    missing_sync[1](x, out, True)
    np.testing.assert_array_equal(out, x * 2)
