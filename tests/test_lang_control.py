"""Runtime control flow and scalars: loops, branches, variables updated in them, grids."""

from __future__ import annotations

import numpy as np
import pytest
from lang_testing import expect_compile_error, fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.ir.printer import format_program

f32, i32 = tilevm.float32, tilevm.int32


@tilevm.func
def emit(g, values, dtype, start=0):
    """Store each scalar of the compile-time tuple ``values`` at ``start`` + its index of ``g``."""
    for k, v in enumerate(values):
        tl.store(g, tl.full([1], v, dtype), [start + k])


# -- loops -------------------------------------------------------------------------------------
@tilevm.kernel
def strided_sums(
    x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], n: tilevm.int32, lo: tilevm.int32, step: tilevm.int32
):
    gx = tl.global_view(x, [n, 8])
    go = tl.global_view(out, [3, 8])
    acc = tl.zeros([1, 8], f32)
    for i in range(lo, n, step, unroll=2):
        acc = acc + tl.load(gx, [i, 0], [1, 8])
    tl.store(go, acc, [0, 0])
    acc2 = tl.zeros([1, 8], f32)
    for i in tl.range(n - 1, lo - 1, -1):
        acc2 = acc2 * 0.5 + tl.load(gx, [i, 0], [1, 8])
    tl.store(go, acc2, [1, 0])
    acc3 = tl.zeros([1, 8], f32)
    for i in range(n):
        for j in range(i, n):
            acc3 = acc3 + tl.load(gx, [j, 0], [1, 8])
    tl.store(go, acc3, [2, 0])


def test_for_loops_take_runtime_bounds_steps_and_an_unroll_hint():
    rng = fresh_rng()
    n, lo, step = 11, int(rng.integers(0, 4)), int(rng.integers(1, 4))
    x = rng.standard_normal((n, 8)).astype(np.float32)
    out = np.zeros((3, 8), np.float32)
    strided_sums[1](x, out, n, lo, step)
    want = np.zeros(8, np.float32)
    for i in range(lo, n, step):
        want = want + x[i]
    np.testing.assert_array_equal(out[0], want)
    want = np.zeros(8, np.float32)
    for i in range(n - 1, lo - 1, -1):
        want = want * np.float32(0.5) + x[i]
    np.testing.assert_array_equal(out[1], want)
    want = np.zeros(8, np.float32)
    for i in range(n):
        for j in range(i, n):
            want = want + x[j]
    np.testing.assert_array_equal(out[2], want)
    text = format_program(strided_sums.program())
    assert "for i in range(lo, n, step) unroll=2:" in text
    assert "assign acc <- " in text


@tilevm.kernel
def tile_sums(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], n: tilevm.int32, most: tilevm.int32):
    """out[1 + i] = sum of the i-th tile of 4, for at most ``most`` tiles; out[0] = tiles done."""
    gx = tl.global_view(x, [n])
    go = tl.global_view(out, [n // 4 + 1])
    i = 0
    while i * 4 < n:
        if i >= most:
            break
        tl.store(go, tl.sum(tl.load(gx, [i * 4], [4]), keepdims=False), [i + 1])
        i += 1
    emit(go, (float(i),), f32)


@pytest.mark.parametrize("most", [0, 2, 5, 9])
def test_a_while_loop_with_a_scalar_counter_runs_until_its_condition_fails_or_break(most):
    x = fresh_rng().standard_normal(20).astype(np.float32)
    out = np.full(6, -9, np.float32)
    tile_sums[1](x, out, 20, most)
    done = min(5, most)
    assert out[0] == done
    np.testing.assert_allclose(out[1 : 1 + done], x.reshape(5, 4).sum(1)[:done], rtol=1e-6)
    np.testing.assert_array_equal(out[1 + done :], -9)


@tilevm.kernel
def capped_count(out: tilevm.Ptr[i32], n: tilevm.int32, cap: tilevm.int32):
    count = 0
    total = 0
    for i in range(n):
        if count >= cap:
            break
        count = count + 1
        total += i
    k = 0
    while True:
        k = k + 3
        if k > cap:
            break
    emit(tl.global_view(out, [3]), (count, total, k), i32)


@pytest.mark.parametrize(("n", "cap"), [(10, 4), (3, 7), (0, 2)])
def test_break_leaves_the_innermost_runtime_loop(n, cap):
    out = np.zeros(3, np.int32)
    capped_count[1](out, n, cap)
    count = min(n, cap)
    k = 3 * (cap // 3 + 1)
    np.testing.assert_array_equal(out, [count, count * (count - 1) // 2, k])


@tilevm.kernel
def unrolled_inside_runtime(out: tilevm.Ptr[i32], n: tilevm.int32):
    s = 0
    for _ in range(n):
        for j in tl.static_range(4):
            if j == 2:
                break  # leaves the unrolled loop only: Python's innermost loop
            s = s + 1
    emit(tl.global_view(out, [1]), (s,), i32)


def test_break_in_an_unrolled_loop_inside_a_runtime_loop_leaves_only_the_unrolled_one():
    out = np.zeros(1, np.int32)
    unrolled_inside_runtime[1](out, 5)
    assert out[0] == 10
    assert "break" not in format_program(unrolled_inside_runtime.program())


@tilevm.kernel
def runtime_break_in_static_loop(out: tilevm.Ptr[i32], n: tilevm.int32):
    for j in tl.static_range(4):
        if n > j:
            break  # marks the error
    emit(tl.global_view(out, [1]), (n,), i32)


def test_a_break_from_an_unrolled_loop_under_a_runtime_condition_is_an_error():
    expect_compile_error(
        runtime_break_in_static_loop,
        "break out of a loop unrolled while compiling (static_range or a compile-time sequence) "
        "cannot depend on a runtime condition",
        "break",
        on="break  # marks the error",
    )


# -- branches and scalar variables -------------------------------------------------------------
@tilevm.kernel
def branches(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], a: tilevm.int32, b: tilevm.int32):
    t = tl.load(tl.global_view(x, [8]), [0], [8])
    scale = 1.0
    if a > b:
        t = t + 1.0
        scale = 2.0
    elif a == b:
        t = t - 1.0
    else:
        t = -t
        scale = scale * 3.0
    tl.store(tl.global_view(out, [8]), t * scale, [0])


@pytest.mark.parametrize(("a", "b"), [(3, 1), (2, 2), (-1, 4)])
def test_if_elif_else_on_runtime_values_updates_tiles_and_scalars_on_the_path_taken(a, b):
    x = fresh_rng().standard_normal(8).astype(np.float32)
    out = np.zeros(8, np.float32)
    branches[1](x, out, a, b)
    if a > b:
        want = (x + 1) * np.float32(2)
    elif a == b:
        want = x - 1
    else:
        want = -x * np.float32(3)
    np.testing.assert_array_equal(out, want)


@tilevm.kernel
def compact(
    x: tilevm.Ptr[f32],
    out: tilevm.Ptr[f32],
    count: tilevm.Ptr[i32],
    n: tilevm.int32,
    period: tilevm.int32,
):
    """Copy every ``period``-th tile of 4 to the front of ``out``: a running index."""
    gx = tl.global_view(x, [n])
    go = tl.global_view(out, [n])
    pos = 0
    for i in range(0, n, 4):
        if (i // 4) % period == 0:
            tl.store(go, tl.load(gx, [i], [4]), [pos])
            pos += 4
    emit(tl.global_view(count, [1]), (pos,), i32)


@pytest.mark.parametrize("period", [1, 2, 3])
def test_a_scalar_running_index_carries_across_loop_iterations(period):
    x = fresh_rng().standard_normal(24).astype(np.float32)
    out = np.zeros(24, np.float32)
    count = np.zeros(1, np.int32)
    compact[1](x, out, count, 24, period)
    kept = np.concatenate([x[i : i + 4] for i in range(0, 24, 4 * period)])
    assert count[0] == kept.size
    np.testing.assert_array_equal(out[: kept.size], kept)


@tilevm.kernel
def scalar_ops(out: tilevm.Ptr[i32], a: tilevm.int32, b: tilevm.int32, c: tilevm.int32):
    emit(
        tl.global_view(out, [16]),
        (
            a < b,
            a < b <= c,
            a == b != c,
            (a < b) and (b < c),
            (a > b) or (c > b),
            not (a < b),
            a if a > b else b,
            min(a, b),
            max(a, b, c),
            abs(a),
            a // 3,
            a % 3,
            -a + (b << 2) - (c >> 1),
            (a & 6) | (b ^ 3),
            a * b - c,
            1 if 2 < 1 else 2,
        ),
        i32,
    )


def test_scalar_comparisons_logic_ternaries_and_arithmetic_follow_python():
    rng = fresh_rng()
    for _ in range(4):
        a, b, c = (int(v) for v in rng.integers(-20, 20, 3))
        out = np.zeros(16, np.int32)
        scalar_ops[1](out, a, b, c)
        want = [
            a < b,
            a < b <= c,
            a == b != c,
            (a < b) and (b < c),
            (a > b) or (c > b),
            not (a < b),
            a if a > b else b,
            min(a, b),
            max(a, b, c),
            abs(a),
            a // 3,
            a % 3,
            -a + (b << 2) - (c >> 1),
            (a & 6) | (b ^ 3),
            a * b - c,
            2,
        ]
        np.testing.assert_array_equal(out, np.array(want, np.int64), err_msg=f"{a, b, c}")


@tilevm.kernel
def conversions(out: tilevm.Ptr[f32], x: tilevm.float32, n: tilevm.int32):
    y = x
    y += 1.0
    y *= float(n)
    y -= 0.5
    y /= 2.0
    m = n
    m //= 3
    m %= 5
    m <<= 1
    emit(
        tl.global_view(out, [9]),
        (int(x), float(int(x)), float(n) / 4.0, bool(x), bool(n), int(bool(n)), x // 1.5, y, m),
        f32,
    )


@pytest.mark.parametrize(
    ("x", "n"), [(-2.5, 7), (2.7, -3), (0.25, 0), (-0.75, 1), (3.5, 2), (-1.7, -1)]
)
def test_int_float_bool_and_augmented_assignment_on_runtime_scalars_follow_python(x, n):
    out = np.zeros(9, np.float32)
    conversions[1](out, x, n)
    x32 = np.float32(x)
    y = ((x32 + np.float32(1)) * np.float32(n) - np.float32(0.5)) / np.float32(2)
    want = [int(x), float(int(x)), n / 4, bool(x), bool(n), int(bool(n)), x32 // np.float32(1.5)]
    np.testing.assert_array_equal(out, np.array([*want, y, (n // 3 % 5) << 1], np.float32))


# -- assignment keeps Python's meaning ---------------------------------------------------------
@tilevm.kernel
def rebinding(out: tilevm.Ptr[i32], n: tilevm.int32):
    go = tl.global_view(out, [6, 4])
    a = tl.zeros([1, 4], i32)
    b = a  # a second name for the same tile
    c = tl.full([1, 4], 5, i32)
    i = n * 2
    j = i
    for _ in range(3):
        b = b + 1
        c, a = a, c  # swapped in place: Python reads the whole right side first
        i = i + 1
    x, y = 0, 1
    for _ in range(n):
        x, y = y, x + y
    first, (second, third) = (1, (2, 3))  # compile-time tuples unpack while compiling
    tl.store(go, a, [0, 0])
    tl.store(go, b, [1, 0])
    tl.store(go, c, [2, 0])
    emit(tl.global_view(out, [24]), (i, j, x, first * 100 + second * 10 + third), i32, 12)


@pytest.mark.parametrize("n", [0, 1, 10])
def test_assignments_in_loops_rebind_names_as_python_does_aliases_swaps_and_tuples(n):
    out = np.full((6, 4), -1, np.int32)
    rebinding[1](out, n)
    np.testing.assert_array_equal(out[0], 5)  # swapped three times
    np.testing.assert_array_equal(out[1], 3)
    np.testing.assert_array_equal(out[2], 0)
    fib = [0, 1]
    for _ in range(n):
        fib = [fib[1], fib[0] + fib[1]]
    np.testing.assert_array_equal(out[3], [2 * n + 3, 2 * n, fib[0], 123])


def test_variables_are_declared_in_the_order_they_are_first_assigned():
    text = format_program(rebinding.program())
    declared = [line.split()[1].rstrip(":") for line in text.splitlines() if " let " in line]
    assert declared[:4] == ["i", "j", "x", "y"]


@tilevm.kernel
def selects(x: tilevm.Ptr[f32], out: tilevm.Ptr[f32], a: tilevm.float32, n: tilevm.int32):
    go = tl.global_view(out, [5, 8])
    t = tl.load(tl.global_view(x, [8]), [0], [8])
    u = t * 2.0
    tl.store(go, tl.reshape(t if n > 0 else u, [1, 8]), [0, 0])  # runtime scalar condition
    tl.store(go, tl.reshape(t if n > 0 else a, [1, 8]), [1, 0])
    tl.store(go, tl.reshape(tl.where(t > a, t, u), [1, 8]), [2, 0])
    tl.store(go, tl.reshape(u if t < 0.0 else t, [1, 8]), [3, 0])  # a tile condition: where
    b = a if n > 1 else -a
    tl.store(go, tl.full([1, 8], max(b, 0.5) + min(a, -1.0) + abs(a), f32), [4, 0])


@pytest.mark.parametrize(("a", "n"), [(0.25, 1), (-1.5, 0), (2.0, 5)])
def test_conditional_expressions_choose_between_scalars_or_tiles(a, n):
    x = fresh_rng().standard_normal(8).astype(np.float32)
    out = np.zeros((5, 8), np.float32)
    selects[1](x, out, a, n)
    a32 = np.float32(a)
    np.testing.assert_array_equal(out[0], x if n > 0 else x * 2)
    np.testing.assert_array_equal(out[1], x if n > 0 else np.full(8, a32))
    np.testing.assert_array_equal(out[2], np.where(x > a32, x, x * 2))
    np.testing.assert_array_equal(out[3], np.where(x < 0, x * 2, x))
    b = a if n > 1 else -a
    np.testing.assert_array_equal(out[4], np.float32(max(b, 0.5) + min(a, -1.0) + abs(a)))


# -- grids -------------------------------------------------------------------------------------
@tilevm.kernel
def block_grid(out: tilevm.Ptr[i32], W: tilevm.constexpr):
    rows, cols = tl.num_blocks(1), tl.num_blocks(0)
    g = tl.global_view(out, [rows, cols * W])
    r, c = tl.block_idx(1), tl.block_idx(0)
    tile = tl.arange([1, W], 1) + (r * 1000 + c * 10)
    tl.store(g, tile + tl.full([1, W], rows * 100000 + cols * 10000, i32), [r, c * W])


def test_block_idx_and_num_blocks_follow_a_2d_grid_given_as_a_callable():
    rows, cols, w = 3, 5, 4
    out = np.zeros((rows, cols * w), np.int32)
    seen = {}

    def grid(args):
        seen.update(args)
        return (cols, rows)

    block_grid[grid](out, w)
    r, c, k = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(w), indexing="ij")
    want = r * 1000 + c * 10 + k + rows * 100000 + cols * 10000
    np.testing.assert_array_equal(out, want.reshape(rows, cols * w))
    assert set(seen) == {"out", "W"} and seen["W"] == w
