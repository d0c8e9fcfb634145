"""Kernel parameters and specialisation: annotations, defaults, constants, caching, helpers."""

from __future__ import annotations

import numpy as np
import pytest
from lang_kernels_future import fill, scale_rows
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.errors import TileVMError
from tilevm.ir.printer import format_program

f32, i32 = tilevm.float32, tilevm.int32


@tilevm.kernel
def scale(
    x: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    n: tilevm.int32,
    factor: tilevm.float32,
    BLOCK: tilevm.constexpr = 16,
    NEGATE: bool = False,
):
    start = tl.block_idx() * BLOCK
    t = tl.load(tl.global_view(x, [n]), [start], [BLOCK])
    if NEGATE:  # noqa: SIM108  (a statement, to test that the branch not taken emits nothing)
        t = -t
    else:
        t = t * factor
    tl.store(tl.global_view(out, [n]), t, [start])


def run_scale(n: int, factor: float, **constants) -> tuple[np.ndarray, np.ndarray]:
    x = fresh_rng().standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.float32)
    block = constants.get("BLOCK", 16)
    scale[((n + block - 1) // block,)](x, out, n, factor, **constants)
    return x, out


# -- annotations -------------------------------------------------------------------------------
def test_parameters_are_pointers_scalars_or_constants_by_their_annotation():
    kinds = [(p.name, p.kind, p.dtype) for p in scale.params]
    assert kinds == [
        ("x", "pointer", f32),
        ("out", "pointer", f32),
        ("n", "scalar", i32),
        ("factor", "scalar", f32),
        ("BLOCK", "constexpr", None),
        ("NEGATE", "constexpr", None),
    ]


def test_int_float_bool_and_str_annotations_are_compile_time_constants():
    kinds = {p.name: p.kind for p in scale_rows.params}
    assert [kinds[name] for name in ("N", "SQUARE", "OFFSET", "MODE")] == ["constexpr"] * 4
    program = scale_rows.program(N=8, SQUARE=True, OFFSET=1.5, MODE="negate")
    assert program.constants == {"N": 8, "SQUARE": True, "OFFSET": 1.5, "MODE": "negate"}


def test_string_annotations_from_a_future_import_module_are_evaluated_there():
    rng = fresh_rng()
    x = rng.standard_normal((5, 8)).astype(np.float32)
    out = np.zeros_like(x)
    scale_rows[(5,)](x, out, 5, 0.5, 8, True, 1.5, "negate")
    np.testing.assert_array_equal(out, -((x * np.float32(0.5)) ** 2 + np.float32(1.5)))
    scale_rows[(5,)](x, out, 5, 2.0, N=8)  # defaults: no square, no offset, plain
    np.testing.assert_array_equal(out, x * 2)
    assert [p.dtype for p in fill.params[:2]] == [i32, i32]
    filled = np.zeros(8, np.int32)
    fill[1](filled, -3)
    np.testing.assert_array_equal(filled, -3)


def test_constant_defaults_fill_in_what_the_launch_leaves_out():
    x, out = run_scale(40, 3.0)
    np.testing.assert_array_equal(out, x * np.float32(3.0))
    assert scale.program().constants == {"BLOCK": 16, "NEGATE": False}
    x, out = run_scale(40, 3.0, NEGATE=True, BLOCK=8)
    np.testing.assert_array_equal(out, -x)


def test_a_parameter_without_an_annotation_is_rejected_by_name():
    message = (
        r"^kernel k: annotate parameter 'n' as tilevm.Ptr\[dtype\] \(a tensor\), a scalar type "
        r"such as tilevm.int32, or tilevm.constexpr; got nothing$"
    )
    with pytest.raises(TileVMError, match=message):

        @tilevm.kernel
        def k(x: tilevm.Ptr[f32], n):
            pass


def test_an_annotation_that_names_no_kind_of_parameter_is_rejected():
    with pytest.raises(TileVMError, match=r"annotate parameter 'x' .*; got <class 'list'>$"):

        @tilevm.kernel
        def k(x: list):
            pass


def test_a_string_annotation_that_does_not_evaluate_is_rejected():
    message = r"^kernel k: cannot evaluate the annotation of 'x': name 'nowhere' is not defined$"
    with pytest.raises(TileVMError, match=message):

        @tilevm.kernel
        def k(x: nowhere.Ptr):  # noqa: F821  (a string here: annotations are postponed)
            pass


@pytest.mark.parametrize("signature", ["*args", "**kwargs"])
def test_star_args_and_star_kwargs_parameters_are_rejected(signature):
    namespace = {"tilevm": tilevm}
    with pytest.raises(TileVMError, match=r"^kernel k: \*args and \*\*kwargs are not supported$"):
        exec(f"@tilevm.kernel\ndef k({signature}):\n    pass\n", namespace)


def test_num_warps_must_be_an_int_from_1_to_32():
    with pytest.raises(TileVMError, match=r"num_warps must be an int in 1..32; got 0"):

        @tilevm.kernel(num_warps=0)
        def k(x: tilevm.Ptr[f32]):
            pass

    @tilevm.kernel(num_warps=8)
    def eight(x: tilevm.Ptr[f32]):
        pass

    assert eight.program().num_warps == 8


def test_num_warps_may_name_a_constexpr_that_each_specialisation_sets():
    @tilevm.kernel(num_warps="WARPS")
    def k(x: tilevm.Ptr[f32], WARPS: tilevm.constexpr):
        pass

    assert k.program(WARPS=2).num_warps == 2 and k.program(WARPS=8).num_warps == 8
    with pytest.raises(TileVMError, match=r"constant WARPS \(the warp count\) must be an int"):
        k.program(WARPS=64)
    with pytest.raises(TileVMError, match=r"num_warps='N' must name a constexpr parameter"):

        @tilevm.kernel(num_warps="N")
        def bad(x: tilevm.Ptr[f32], n: tilevm.int32):
            pass


# -- specialisation ----------------------------------------------------------------------------
def test_each_set_of_constants_compiles_once():
    assert scale.program(BLOCK=8) is scale.program(BLOCK=8)
    assert scale.program(BLOCK=8) is scale.program(BLOCK=8, NEGATE=False)
    assert scale.program(BLOCK=8) is not scale.program(BLOCK=32)
    assert scale.program(BLOCK=8) is not scale.program(BLOCK=8, NEGATE=True)
    run_scale(20, 1.0, BLOCK=8)  # a launch reuses the cached program
    assert scale.program(BLOCK=8).constants == {"BLOCK": 8, "NEGATE": False}


def test_constants_that_compare_equal_but_differ_in_type_compile_separately():
    @tilevm.kernel
    def times(out: tilevm.Ptr[i32], S: tilevm.constexpr):
        tl.store(tl.global_view(out, [4]), tl.full([4], 3, i32) * S, [0])

    assert times.program(S=1) is not times.program(S=True)
    assert times.program(S=1).constants == {"S": 1}
    assert times.program(S=True).constants == {"S": True}
    with pytest.raises(tl.KernelCompileError, match=r"mixing a int32 tile with the float 1\.0"):
        times.program(S=1.0)  # not the int program from the cache


def test_constant_conditions_fold_so_the_branch_not_taken_emits_nothing():
    plain = format_program(scale.program(BLOCK=16, NEGATE=False))
    negated = format_program(scale.program(BLOCK=16, NEGATE=True))
    assert " mul " in plain and " neg " not in plain
    assert " neg " in negated and " mul " not in negated
    assert "if " not in plain + negated
    assert "let start: int32 = block_idx.x * 16" in plain


def test_is_and_in_compare_compile_time_values():
    @tilevm.kernel
    def pick(out: tilevm.Ptr[i32], n: tilevm.int32, BIAS: tilevm.constexpr = None):
        g = tl.global_view(out, [4])
        t = tl.full([4], 1, i32)
        if BIAS is not None and BIAS in (2, 3) and g is not None:
            t = t + BIAS
        tl.store(g, t, [0])

    out = np.zeros(4, np.int32)
    pick[1](out, 1)
    np.testing.assert_array_equal(out, 1)
    pick[1](out, 1, 3)
    np.testing.assert_array_equal(out, 4)
    assert " add " not in format_program(pick.program(BIAS=5))


def test_static_range_unrolls_while_compiling():
    @tilevm.kernel
    def powers(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], K: tilevm.constexpr):
        t = tl.load(tl.global_view(x, [8]), [0], [8])
        acc = tl.zeros([8], f32)
        for k in tl.static_range(K):
            acc = acc + t * float(k)
        tl.store(tl.global_view(out, [8]), acc, [0])

    text = format_program(powers.program(K=3))
    assert "for " not in text
    assert [line.split()[2] for line in text.splitlines() if " mul " in line] == ["mul"] * 3
    x = fresh_rng().standard_normal(8).astype(np.float32)
    out = np.zeros(8, np.float32)
    powers[1](x, out, 4)
    want = np.zeros(8, np.float32)
    for k in range(4):
        want = want + x * np.float32(k)
    np.testing.assert_array_equal(out, want)


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def test_plain_python_functions_run_while_compiling_on_constants():
    @tilevm.kernel
    def padded(out: tilevm.Ptr[i32], N: tilevm.constexpr):
        width = next_power_of_two(N)
        tl.store(tl.global_view(out, [width]), tl.arange([width]) + len(str(width)), [0])

    assert "arange dim=0 : int32[8]" in format_program(padded.program(N=5))
    out = np.zeros(16, np.int32)
    padded[1](out, 9)
    np.testing.assert_array_equal(out, np.arange(16) + 2)


# -- @tilevm.func helpers ----------------------------------------------------------------------
@tilevm.func
def axpy(a, x, y):
    return a * x + y


@tilevm.func
def clamp_sum(x, lo, hi):
    return tl.maximum(tl.minimum(axpy(2.0, x, x), hi), lo)  # a helper calling a helper


@tilevm.func
def add_n_times(acc, t, n):
    for _ in range(n):
        acc = acc + t
    return acc


@tilevm.kernel
def use_helpers(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], n: tilevm.int32):
    gx = tl.global_view(x, [8])
    go = tl.global_view(out, [4, 8])
    t = tl.load(gx, [0], [8])
    zero = tl.zeros([8], f32)
    tl.store(go, tl.reshape(axpy(3.0, t, t), [1, 8]), [0, 0])
    tl.store(go, tl.reshape(clamp_sum(t, -1.0, 1.0), [1, 8]), [1, 0])
    total = add_n_times(zero, t, n)
    tl.store(go, tl.reshape(zero, [1, 8]), [2, 0])  # the helper rebinds a copy, as in Python
    acc = tl.zeros([8], f32)
    for i in range(n):
        acc = axpy(float(i), t, acc)
    tl.store(go, tl.reshape(total + acc, [1, 8]), [3, 0])


def test_func_helpers_are_inlined_with_their_return_values():
    x = fresh_rng().standard_normal(8).astype(np.float32)
    out = np.full((4, 8), np.nan, np.float32)
    use_helpers[1](x, out, 3)
    np.testing.assert_array_equal(out[0], x * np.float32(3) + x)
    np.testing.assert_array_equal(out[1], np.clip(x * np.float32(2) + x, -1, 1))
    np.testing.assert_array_equal(out[2], 0)
    total = (x + x) + x
    acc = np.zeros(8, np.float32)
    for i in range(3):
        acc = np.float32(i) * x + acc
    np.testing.assert_array_equal(out[3], total + acc)
    assert "call" not in format_program(use_helpers.program())


def test_func_helpers_and_builtins_cannot_run_outside_a_kernel():
    with pytest.raises(TileVMError, match=r"^axpy is a @tilevm.func: call it from inside"):
        axpy(1.0, 2.0, 3.0)
    with pytest.raises(TileVMError, match=r"tilevm.lang.load\(\) can only be called inside"):
        tl.load(None, [0], [4])
