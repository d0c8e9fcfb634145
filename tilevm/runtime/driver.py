"""Loading cubins and launching kernels with the CUDA driver API, next to PyTorch.

PyTorch owns the CUDA context: once it has touched the device, ``cuInit`` and
``cuCtxGetCurrent`` give its primary context, and kernels launch on torch's
current stream, so they order with torch's own work and can be captured in a
CUDA graph (notes/runtime.md records that this was checked on an H100).

Launch arguments are packed once per call into a ``void**`` array of
addresses of ctypes values (the cheap path: about 5 µs per launch from
Python, against about 13 µs when cuda-python converts a tuple each time). The
ctypes values must outlive the launch call, so the array keeps them.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field
from typing import Any

from ..dtypes import DataType
from ..errors import TileVMError


class CudaError(TileVMError, RuntimeError):
    """A CUDA driver call failed."""


@functools.cache
def driver():
    try:
        from cuda.bindings import driver as cu
    except ImportError:  # cuda-python < 12.6
        from cuda import cuda as cu  # type: ignore[no-redef]
    return cu


def check(result: Any, call: str) -> Any:
    """Unwrap a cuda-python ``(status, *values)`` result, raising :class:`CudaError`."""
    cu = driver()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != cu.CUresult.CUDA_SUCCESS:
        _, name = cu.cuGetErrorName(status)
        _, text = cu.cuGetErrorString(status)
        raise CudaError(f"{call} failed: {name.decode()}: {text.decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def ensure_context(device: int) -> None:
    """Make torch's primary context of ``device`` current for the driver API."""
    import torch

    torch.cuda.init()
    with torch.cuda.device(device):
        torch.cuda.current_stream()  # makes torch create and bind its context
    cu = driver()
    check(cu.cuInit(0), "cuInit")
    ctx = check(cu.cuCtxGetCurrent(), "cuCtxGetCurrent")
    if not int(ctx):
        dev = check(cu.cuDeviceGet(device), "cuDeviceGet")
        primary = check(cu.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        check(cu.cuCtxSetCurrent(primary), "cuCtxSetCurrent")


_CTYPES = {
    ("int", 8): ctypes.c_int8,
    ("int", 16): ctypes.c_int16,
    ("int", 32): ctypes.c_int32,
    ("int", 64): ctypes.c_int64,
    ("uint", 1): ctypes.c_bool,
    ("uint", 8): ctypes.c_uint8,
    ("uint", 16): ctypes.c_uint16,
    ("uint", 32): ctypes.c_uint32,
    ("float", 32): ctypes.c_float,
}


def scalar_ctype(dtype: DataType) -> type:
    """The ctypes type a scalar kernel parameter of ``dtype`` is passed as."""
    try:
        return _CTYPES[(dtype.kind, dtype.nbits)]
    except KeyError:
        raise TileVMError(f"scalar kernel parameters of type {dtype} are not supported") from None


@dataclass
class PackedArgs:
    """A ``void**`` array of argument addresses and the ctypes values it points to."""

    values: list[Any]
    array: Any = field(init=False)

    def __post_init__(self) -> None:
        self.array = (ctypes.c_void_p * len(self.values))(
            *(ctypes.addressof(v) for v in self.values)
        )

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


class LoadedKernel:
    """A kernel function loaded from a cubin into torch's context on one device."""

    def __init__(self, cubin: bytes, name: str, num_threads: int, shared_bytes: int, device: int):
        ensure_context(device)
        cu = driver()
        self.name = name
        self.num_threads = num_threads
        self.shared_bytes = shared_bytes
        self.device = device
        self.module = check(cu.cuModuleLoadData(cubin), "cuModuleLoadData")
        self.function = check(
            cu.cuModuleGetFunction(self.module, name.encode()), "cuModuleGetFunction"
        )
        if shared_bytes > 48 * 1024:  # above the default limit the kernel must opt in
            attr = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(cu.cuFuncSetAttribute(self.function, attr, shared_bytes), "cuFuncSetAttribute")

    def launch(self, grid: tuple[int, ...], args: PackedArgs, stream: int) -> None:
        cu = driver()
        gx, gy, gz = (*grid, 1, 1)[:3]
        check(
            cu.cuLaunchKernel(
                self.function,
                gx,
                gy,
                gz,
                self.num_threads,
                1,
                1,
                self.shared_bytes,
                stream,
                args.address,
                0,
            ),
            f"cuLaunchKernel({self.name})",
        )
