"""Launching kernels: torch tensors and numpy arrays in place, argument and grid checks."""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest
import torch
from lang_testing import fresh_rng

import tilevm
import tilevm.lang as tl
from tilevm.lang import LaunchError

f32, i32 = tilevm.float32, tilevm.int32


@functools.cache
def twice_kernel(name: str) -> tilevm.lang.Kernel:
    """out = x + x on tiles of ``name``; one kernel per element type."""
    dtype = tilevm.dtype(name)

    @tilevm.kernel
    def twice(x: tilevm.Ptr[dtype], out: tilevm.Ptr[dtype], n: tilevm.int32):
        start = tl.block_idx() * 16
        t = tl.load(tl.global_view(x, [n]), [start], [16])
        tl.store(tl.global_view(out, [n]), t + t, [start])

    return twice


TORCH_TYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "int8": torch.int8,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "float8_e4m3": torch.float8_e4m3fn,
}


def random_torch(dtype: torch.dtype, n: int) -> torch.Tensor:
    rng = fresh_rng()
    if dtype.is_floating_point:
        return torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 8).to(dtype)
    info = torch.iinfo(dtype)
    return torch.from_numpy(rng.integers(info.min, info.max + 1, n)).to(dtype)


@pytest.mark.parametrize("name", list(TORCH_TYPES))
def test_torch_cpu_tensors_are_read_and_written_in_place(name):
    dtype = TORCH_TYPES[name]
    x = random_torch(dtype, 37)
    out = torch.zeros(37, dtype=dtype)
    twice_kernel(name)[(3,)](x, out, 37)
    # torch has no float8 arithmetic (doubling small values is exact); integers wrap.
    want = (x.float() * 2).to(dtype) if dtype == torch.float8_e4m3fn else x + x
    assert torch.equal(out.view(torch.uint8), want.view(torch.uint8))


def test_a_tensor_that_needs_grad_is_written_without_autograd():
    x = torch.ones(16, requires_grad=True)
    out = torch.zeros(16)
    twice_kernel("float32")[1](x, out, 16)
    assert torch.equal(out, torch.full((16,), 2.0))


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("float16", lambda v: v.astype(np.float16)),
        ("float32", lambda v: v.astype(np.float32)),
        ("int8", lambda v: v.astype(np.int8)),
        ("int32", lambda v: (v * 1000).astype(np.int32)),
        ("bfloat16", lambda v: v.astype(ml_dtypes.bfloat16)),
        ("bfloat16", lambda v: v.astype(ml_dtypes.bfloat16).view(np.uint16)),
        ("float8_e4m3", lambda v: v.astype(ml_dtypes.float8_e4m3fn)),
        ("float8_e4m3", lambda v: v.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)),
    ],
    ids=["f16", "f32", "i8", "i32", "bf16", "bf16-as-uint16", "fp8", "fp8-as-uint8"],
)
def test_numpy_arrays_are_written_in_place_including_raw_bits_of_16_and_8_bit_floats(name, make):
    values = fresh_rng().standard_normal((3, 11)) * 8
    x = make(values)
    out = np.zeros_like(x)
    twice_kernel(name)[(3,)](x, out, 33)
    dtype = tilevm.dtype(name)
    if name not in ("bfloat16", "float8_e4m3"):
        np.testing.assert_array_equal(out, x + x)
    else:  # compare through tilevm's own codes: decode, double in float32, round back
        codes = x.view(np.uint16 if dtype.nbits == 16 else np.uint8)
        want = dtype.encode(dtype.decode(codes) * 2)
        np.testing.assert_array_equal(out.view(codes.dtype), want)


def test_a_tensor_of_the_wrong_element_type_is_rejected():
    k = twice_kernel("float32")
    with pytest.raises(LaunchError, match=r"^twice: argument 'x' must be a float32 tensor; got "):
        k[1](torch.zeros(4, dtype=torch.float64), torch.zeros(4), 4)
    message = r"^twice: argument 'out' must hold float32 as numpy float32; got an array of float16$"
    with pytest.raises(LaunchError, match=message):
        k[1](np.zeros(4, np.float32), np.zeros(4, np.float16), 4)
    message = r"^twice: argument 'x' must hold bfloat16 as numpy uint16; got an array of int16$"
    with pytest.raises(LaunchError, match=message):
        twice_kernel("bfloat16")[1](np.zeros(4, np.int16), np.zeros(4, np.uint16), 4)


def test_non_contiguous_tensors_and_arrays_are_rejected():
    k = twice_kernel("float32")
    message = r"^twice: argument 'x' must be contiguous; got strides \(2,\)$"
    with pytest.raises(LaunchError, match=message):
        k[1](torch.zeros(8)[::2], torch.zeros(4), 4)
    with pytest.raises(LaunchError, match=r"^twice: argument 'out' must be C-contiguous$"):
        k[1](np.zeros(4, np.float32), np.zeros((4, 2), np.float32).T, 4)


def test_an_argument_that_is_no_tensor_is_rejected():
    message = r"^twice: argument 'x' must be a torch tensor or numpy array of float32; got list$"
    with pytest.raises(LaunchError, match=message):
        twice_kernel("float32")[1]([1.0, 2.0], np.zeros(2, np.float32), 2)


@tilevm.kernel
def scalars(out: tilevm.Ptr[f32], a: tilevm.int8, b: tilevm.float16, c: tilevm.float8_e4m3):
    tl.store(tl.global_view(out, [3]), tl.full([3], float(a) + float(b) + float(c), f32), [0])


def test_scalar_arguments_are_checked_against_their_type():
    out = np.zeros(3, np.float32)
    scalars[1](out, np.int8(-5), np.float32(0.5), 2)
    np.testing.assert_array_equal(out, -2.5)
    bad = [
        ((200, 0.0, 0.0), r"argument 'a' must lie in -128..127 \(int8\); got 200"),
        ((2.0, 0.0, 0.0), r"argument 'a' must be an int \(int8\); got 2.0"),
        ((0, 1e6, 0.0), r"argument 'b' must lie in -65504.0..65504.0 \(float16\); got 1000000.0"),
        ((0, "1", 0.0), r"argument 'b' must be a number \(float16\); got '1'"),
        ((0, 0.0, float("inf")), r"argument 'c' is inf, which float8_e4m3 cannot hold"),
        ((0, 0.0, 500), r"argument 'c' must lie in -448.0..448.0 \(float8_e4m3\); got 500.0"),
    ]
    for args, message in bad:
        with pytest.raises(LaunchError, match=f"^scalars: {message}$"):
            scalars[1](out, *args)
    scalars[1](out, True, float("inf"), float("nan"))  # bool is an int; float16 holds inf
    assert np.isnan(out).all()


def test_missing_or_extra_arguments_are_reported():
    k = twice_kernel("float32")
    x = np.zeros(4, np.float32)
    with pytest.raises(LaunchError, match=r"^twice: missing a required argument: 'n'$"):
        k[1](x, x)
    with pytest.raises(LaunchError, match=r"^twice: too many positional arguments$"):
        k[1](x, x, 4, 5)


@pytest.mark.parametrize(
    "grid", [0, (0,), (2, -1), (1, 1, 1, 1), (), (1.0,), 2.5, (True,), "2", None, [[1]]]
)
def test_a_grid_must_be_one_to_three_positive_ints(grid):
    x = np.zeros(4, np.float32)
    with pytest.raises(LaunchError, match=r"^twice: the grid must be 1 to 3 positive ints; got "):
        twice_kernel("float32")[grid](x, x, 4)


def test_a_grid_may_be_a_list_numpy_ints_or_a_callable_of_the_arguments_by_name():
    rng = fresh_rng()
    x = rng.standard_normal(50).astype(np.float32)
    k = twice_kernel("float32")
    seen = []

    def grid(args):
        seen.append(sorted(args))
        return ((args["n"] + 15) // 16,)

    for g in (grid, [np.int64(4)], 4):
        out = np.zeros_like(x)
        k[g](x, out, 50)
        np.testing.assert_array_equal(out, x + x)
    assert seen == [["n", "out", "x"]]


def test_the_backend_is_cpu_or_cuda_and_cuda_needs_gpu_tensors():
    x = np.zeros(4, np.float32)
    k = twice_kernel("float32")
    with pytest.raises(LaunchError, match=r"^twice: backend must be one of \('cpu', 'cuda'\); got"):
        k[1](x, x, 4, backend="tpu")
    message = r"^twice: backend='cuda' needs the tensor arguments on a CUDA device; none is"
    with pytest.raises(LaunchError, match=message):
        k[1](x, x, 4, backend="cuda")
    k[1](x, x, 4, backend="cpu")


@pytest.mark.gpu
def test_cuda_tensors_run_on_the_gpu_or_on_the_interpreter_with_backend_cpu():
    x = torch.arange(16, dtype=torch.float32, device="cuda")
    k = twice_kernel("float32")
    for backend in (None, "cpu"):
        out = torch.zeros(16, device="cuda")
        k[1](x, out, 16, backend=backend)
        assert out.device.type == "cuda"
        assert torch.equal(out.cpu(), torch.arange(16, dtype=torch.float32) * 2)


@pytest.mark.gpu
def test_tensors_on_different_devices_are_refused():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    k = twice_kernel("float32")
    with pytest.raises(LaunchError, match="must be on one CUDA device"):
        k[1](torch.zeros(4, device="cuda:0"), torch.zeros(4, device="cuda:1"), 4)


def test_a_kernel_is_launched_with_a_grid_not_called():
    with pytest.raises(LaunchError, match=r"^launch a kernel with a grid: twice\[grid\]\(...\)$"):
        twice_kernel("float32")(np.zeros(4, np.float32))


@tilevm.kernel
def needs_block(out: tilevm.Ptr[i32], BLOCK: tilevm.constexpr):
    tl.store(tl.global_view(out, [BLOCK]), tl.arange([BLOCK]), [0])


def test_a_constant_without_a_value_or_an_unknown_constant_is_reported():
    out = np.zeros(4, np.int32)
    with pytest.raises(LaunchError, match=r"^needs_block: missing a required argument: 'BLOCK'$"):
        needs_block[1](out)
    with pytest.raises(LaunchError, match=r"^needs_block: constant 'BLOCK' has no value$"):
        needs_block.program()
    with pytest.raises(LaunchError, match=r"^needs_block: unknown constants \['out'\]$"):
        needs_block.program(BLOCK=4, out=1)
    needs_block[1](out, BLOCK=4)
    np.testing.assert_array_equal(out, np.arange(4))


def test_a_prepared_launch_runs_like_a_launch_with_a_grid():
    rng = fresh_rng()
    x = torch.from_numpy(rng.standard_normal(40).astype(np.float32))
    k = twice_kernel("float32")
    prepared = k.prepare((3,), "cpu")
    assert repr(prepared) == "<prepared twice grid=(3,) on cpu>"
    for n in (40, 17):  # the same prepared launch, other runtime scalars
        out, want = torch.zeros(40), torch.zeros(40)
        prepared(x, out, n)
        k[3](x, want, n)
        assert torch.equal(out, want) and torch.equal(out[:n], x[:n] * 2)


def test_a_prepared_launch_checks_its_arguments_and_its_device():
    k = twice_kernel("float32")
    x = np.zeros(4, np.float32)
    prepared = k.prepare(1, torch.device("cpu"))
    with pytest.raises(LaunchError, match=r"^twice: a prepared launch takes 3 arguments "):
        prepared(x, x)
    with pytest.raises(LaunchError, match=r"^twice: argument 'n' must be an int \(int32\)"):
        prepared(x, x, 4.0)
    with pytest.raises(LaunchError, match=r"^twice: argument 'x' must be a float32 tensor"):
        prepared(torch.zeros(4, dtype=torch.float16), x, 4)
    for device in ("tpu", "meta", 3.5):
        with pytest.raises(LaunchError, match=r"^twice: device must be 'cpu' or a CUDA device"):
            k.prepare(1, device)
    with pytest.raises(LaunchError, match=r"^twice: the grid must be 1 to 3 positive ints"):
        k.prepare(0, "cpu")
    with pytest.raises(LaunchError, match=r"^twice: unknown constants \['BLOCK'\]$"):
        k.prepare(1, "cpu", BLOCK=4)
    if not torch.cuda.is_available():
        with pytest.raises(LaunchError, match=r"^twice: device cuda: no CUDA GPU is available"):
            k.prepare(1, "cuda")


@pytest.mark.gpu
def test_a_prepared_launch_on_the_gpu_matches_the_interpreter():
    x = torch.randn(50, device="cuda")
    prepared = twice_kernel("float32").prepare((4,), "cuda")
    out = torch.zeros_like(x)
    prepared(x, out, 50)
    torch.cuda.synchronize()
    assert torch.equal(out, x * 2)
    with pytest.raises(tilevm.TileVMError, match=r"argument 'x' must be on cuda:0; got cpu"):
        prepared(x.cpu(), out, 50)


@pytest.mark.gpu
def test_scalars_of_narrow_types_reach_the_gpu_as_the_interpreter_holds_them():
    # int8 in a byte; float16 and float8_e4m3 as float32 values rounded to their type
    on_cpu, on_gpu = np.zeros(3, np.float32), torch.zeros(3, device="cuda")
    for target in (on_cpu, on_gpu):
        scalars[1](target, -7, 0.1, 3.3)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), on_cpu)
    assert on_cpu[0] == -7 + np.float32(np.float16(0.1)) + 3.25
