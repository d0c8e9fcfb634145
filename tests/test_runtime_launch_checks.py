"""The GPU launcher refuses bad arguments before touching the driver (checks that need no GPU)."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest

import tilevm
import tilevm.lang as tl
from tilevm.runtime.build import Built, LaunchCheckError, launch
from tilevm.runtime.driver import scalar_ctype

torch = pytest.importorskip("torch")


@tilevm.kernel
def fill(x: tilevm.Ptr[tilevm.float32], n: tilevm.int32):
    tl.store(tl.global_view(x, [n]), tl.zeros([128], tilevm.float32), [0])


def built_on_device_0() -> Built:
    program = fill.program()
    cuda = SimpleNamespace(name="fill", assumptions=())
    kernel = SimpleNamespace(device=0, torch_device=torch.device("cuda", 0))
    return Built(program, cuda, module=None, kernel=kernel)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            np.zeros(4, np.float32),
            r"fill: argument 'x' must be a torch tensor on cuda:0; got ndarray",
        ),
        (torch.zeros(4), r"fill: argument 'x' must be on cuda:0; got cpu"),
    ],
)
def test_tensor_arguments_must_be_torch_tensors_on_the_kernels_device(value, message):
    with pytest.raises(LaunchCheckError, match=message):
        launch(built_on_device_0(), (1,), {"x": value, "n": 4})


C_TYPES = {
    "bool": ctypes.c_bool,
    "float": ctypes.c_float,
    "int": ctypes.c_int32,
    "long long": ctypes.c_int64,
    "tv_i8": ctypes.c_int8,
    "tv_u8": ctypes.c_uint8,
    "tv_i16": ctypes.c_int16,
    "tv_u16": ctypes.c_uint16,
    "tv_u32": ctypes.c_uint32,
}


@pytest.mark.parametrize("dtype", tilevm.dtypes.ALL_DTYPES, ids=str)
def test_every_scalar_type_is_packed_as_the_kernel_declares_it(dtype):
    from tilevm.codegen.kernel import param_ctype

    assert scalar_ctype(dtype) is C_TYPES[param_ctype(dtype)]


@tilevm.kernel
def scale(x: tilevm.Ptr[tilevm.float32], n: tilevm.int32, a: tilevm.float32, b: tilevm.uint8):
    tl.store(tl.global_view(x, [n]), tl.full([128], a, tilevm.float32), [0])


class Recorder:
    """Stands in for a loaded kernel on the CPU: keeps what each launch was given."""

    device = 0
    torch_device = torch.device("cpu")

    def __init__(self, types):
        self.types, self.launches = types, []

    def launch(self, grid, params, stream):
        # read the packed arguments back through the void** array, as the driver would
        values = [t.from_address(params[i]).value for i, t in enumerate(self.types)]
        self.launches.append((grid, values, stream))


def recorded_launcher(assumptions=()):
    types = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_float, ctypes.c_uint8]
    recorder = Recorder(types)
    cuda = SimpleNamespace(name="scale", assumptions=assumptions)
    return Built(scale.program(), cuda, module=None, kernel=recorder).launcher, recorder


def test_the_launcher_packs_every_argument_in_parameter_order():
    launcher, recorder = recorded_launcher()
    x = torch.zeros(8)
    launcher((3, 2), [x, np.int64(5), 0.25, True], stream=7)
    launcher((1,), [x, 2**31 - 1, -3, 255], stream=0)
    assert recorder.launches == [
        ((3, 2), [x.data_ptr(), 5, 0.25, 1], 7),
        ((1,), [x.data_ptr(), 2**31 - 1, -3.0, 255], 0),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 2.0), r"^scale: takes 4 arguments \('x', 'n', 'a', 'b'\); got 3$"),
        ((2**31, 2.0, 3), r"^scale: argument 'n' must lie in -2147483648..2147483647 \(int32\)"),
        ((4.0, 2.0, 3), r"^scale: argument 'n' must be an int \(int32\); got 4.0$"),
        ((4, "2", 3), r"^scale: argument 'a' must be a number \(float32\); got '2'$"),
        ((4, 2.0, 256), r"^scale: argument 'b' must lie in 0..255 \(uint8\); got 256$"),
        ((4, 2.0, -1), r"^scale: argument 'b' must lie in 0..255 \(uint8\); got -1$"),
    ],
)
def test_the_launcher_refuses_scalars_of_the_wrong_kind_or_range(args, message):
    launcher, recorder = recorded_launcher()
    with pytest.raises(LaunchCheckError, match=message):
        launcher((1,), [torch.zeros(8), *args], stream=0)
    assert recorder.launches == []


def test_the_launcher_checks_tensors_and_the_kernels_assumptions():
    from tilevm.codegen.kernel import Assumption

    rules = (Assumption("n", "value", 8), Assumption("x", "address", 16))
    launcher, recorder = recorded_launcher(rules)
    x = torch.zeros(16)
    bad = [
        ((x.half(), 8), r"argument 'x' must be a float32 tensor; got torch.float16"),
        ((torch.zeros(4, 4).T, 8), r"argument 'x' must be contiguous; got strides \(1, 4\)"),
        ((x, 12), r"argument 'n' = 12 must be a multiple of 8"),
        ((x[1:], 8), r"argument 'x' must be 16-byte aligned"),
    ]
    for (t, n), message in bad:
        with pytest.raises(LaunchCheckError, match=message):
            launcher((1,), [t, n, 1.0, 0], stream=0)
    launcher((1,), [x, 16, 1.0, 0], stream=0)
    assert len(recorder.launches) == 1
