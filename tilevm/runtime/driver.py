"""Loading cubins and launching kernels with the CUDA driver API, next to PyTorch.

PyTorch owns the CUDA context: once it has touched the device, ``cuInit`` and
``cuCtxGetCurrent`` give its primary context, and kernels launch on torch's
current stream, so they order with torch's own work and can be captured in a
CUDA graph (notes/runtime.md records that this was checked on an H100).

Launch arguments are packed once per call into a ``void**`` array of
addresses of ctypes values (the cheap path: about 5 µs per launch from
Python, against about 13 µs when cuda-python converts a tuple each time);
:class:`ArgumentPacker` does it with one ctypes structure per kernel
signature. The packed values must outlive the launch call, so the caller
keeps them until it returns.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
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
}


def scalar_ctype(dtype: DataType) -> type:
    """The ctypes type a scalar kernel parameter of ``dtype`` is passed as (what
    :func:`tilevm.codegen.kernel.param_ctype` declares): every float as a float32 (holding a
    value of its type), ints of under 8 bits in a byte, others in their own width."""
    if dtype.is_float:
        return ctypes.c_float
    nbits = dtype.nbits
    key = (dtype.kind, nbits if nbits >= 8 or (dtype.kind, nbits) == ("uint", 1) else 8)
    try:
        return _CTYPES[key]
    except KeyError:
        raise TileVMError(f"scalar kernel parameters of type {dtype} are not supported") from None


class ArgumentPacker:
    """Packs a kernel's arguments for ``cuLaunchKernel``: one ctypes structure per signature.

    ``pack(values)`` fills a structure with the values (pointer addresses as
    ints, scalars) in one call and returns it with the ``void**`` array of
    its fields' addresses; both must stay alive until the launch returns.
    """

    def __init__(self, types: Sequence[type]):
        fields = [(f"a{i}", t) for i, t in enumerate(types)]
        self.struct = type("KernelArguments", (ctypes.Structure,), {"_fields_": fields})
        self.offsets = tuple(getattr(self.struct, name).offset for name, _ in fields)
        self.array = ctypes.c_void_p * max(len(fields), 1)

    def pack(self, values: Sequence[Any]) -> tuple[Any, Any]:
        """The structure holding ``values`` and the array of its fields' addresses."""
        held = self.struct(*values)
        base = ctypes.addressof(held)
        return held, self.array(*[base + offset for offset in self.offsets])


class LoadedKernel:
    """A kernel function loaded from a cubin into torch's context on one device."""

    def __init__(self, cubin: bytes, name: str, num_threads: int, shared_bytes: int, device: int):
        ensure_context(device)
        cu = driver()
        self.name = name
        self.torch_device = _torch_device(device)
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

    def launch(self, grid: tuple[int, ...], params: Any, stream: int) -> None:
        """Launch on ``stream`` with ``params``, the ``void**`` array of argument addresses
        (:meth:`ArgumentPacker.pack`)."""
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
                ctypes.addressof(params),
                0,
            ),
            f"cuLaunchKernel({self.name})",
        )


def _torch_device(index: int) -> Any:
    import torch

    return torch.device("cuda", index)


def current_stream_getter():
    """A function of a device index giving torch's current stream there as a raw handle.

    torch's private ``_cuda_getCurrentRawStream`` (what Triton's launcher
    uses) skips building a ``torch.cuda.Stream`` per launch; without it, the
    public ``torch.cuda.current_stream(index).cuda_stream``.
    """
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw
    return lambda index: torch.cuda.current_stream(index).cuda_stream
