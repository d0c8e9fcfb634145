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
    return Built(program, cuda, module=None, kernel=SimpleNamespace(device=0))


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


def test_scalar_types_without_a_kernel_argument_form_are_refused():
    assert scalar_ctype(tilevm.int32) is ctypes.c_int32
    with pytest.raises(tilevm.TileVMError, match="scalar kernel parameters of type float16"):
        scalar_ctype(tilevm.float16)
