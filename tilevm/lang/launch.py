"""Launching a compiled kernel: argument checks, backend choice, the CPU interpreter path.

Tensor arguments may be torch tensors or numpy arrays; each must be
contiguous and hold the parameter's element type (bfloat16 and float8 numpy
data as their raw bits: uint16 / uint8, or the ml_dtypes types). On the CPU
backend torch CPU tensors and numpy arrays are shared with the interpreter, so
stores land in them directly; CUDA tensors are copied to the host and back.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..dtypes import DataType, library_name, scalar_value
from ..ir.program import Program
from .kernel import Kernel, LaunchError

BACKENDS = ("cpu", "cuda")


def _is_torch(value: Any) -> bool:
    """A torch tensor (torch is not imported here: a program that has none passes none)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def select_backend(kernel: Kernel, values: dict[str, Any], backend: str | None) -> str:
    if backend is not None and backend not in BACKENDS:
        raise LaunchError(f"{kernel.__name__}: backend must be one of {BACKENDS}; got {backend!r}")
    on_gpu = [name for name, v in values.items() if _is_torch(v) and v.device.type == "cuda"]
    chosen = backend or ("cuda" if on_gpu else "cpu")
    if chosen == "cuda" and not on_gpu:
        raise LaunchError(
            f"{kernel.__name__}: backend='cuda' needs the tensor arguments on a CUDA device; "
            "none is (use backend='cpu' for the interpreter)"
        )
    return chosen


def run_on_gpu(kernel: Kernel, program: Program, grid: tuple[int, ...], values: dict[str, Any]):
    """Compile (cached) for the tensors' device and launch on torch's current stream."""
    from ..runtime.build import build, launch

    devices = {v.device.index for v in values.values() if _is_torch(v) and v.device.type == "cuda"}
    if len(devices) != 1:
        raise LaunchError(
            f"{kernel.__name__}: all tensor arguments must be on one CUDA device; got "
            f"{sorted(f'cuda:{d}' for d in devices)}"
        )
    launch(build(program, devices.pop()), grid, values)


class PreparedLaunch:
    """A kernel bound to its constants, grid and device (:meth:`Kernel.prepare`).

    Calling it with the kernel's tensor and scalar arguments, positionally in
    the kernel's order, launches the program: on the CPU through
    :func:`run_on_cpu`, with its checks; on a GPU through the built kernel's
    :class:`~tilevm.runtime.build.Launcher`, which checks each argument
    (device, dtype, contiguity, scalar range, alignment) and launches on
    torch's current stream.
    """

    def __init__(self, kernel: Kernel, program: Program, grid: tuple[int, ...], device: Any):
        self.kernel = kernel
        self.program = program
        self.grid = grid
        self.names = tuple(p.name for p in program.params)
        self.device = _device(kernel, device)
        self._launcher = None
        if self.device is not None:
            from ..runtime.build import build

            self._launcher = build(program, self.device).launcher

    def __repr__(self) -> str:
        where = "cpu" if self.device is None else f"cuda:{self.device}"
        return f"<prepared {self.kernel.__name__} grid={self.grid} on {where}>"

    def __call__(self, *args: Any) -> None:
        if len(args) != len(self.names):
            raise LaunchError(
                f"{self.kernel.__name__}: a prepared launch takes {len(self.names)} arguments "
                f"{self.names}; got {len(args)}"
            )
        if self._launcher is not None:
            self._launcher(self.grid, args)
        else:
            run_on_cpu(self.kernel, self.program, self.grid, dict(zip(self.names, args)))


def _device(kernel: Kernel, device: Any) -> int | None:
    """The CUDA device index ``device`` names, or None for the CPU."""
    if device == "cpu":
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (TypeError, RuntimeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise LaunchError(
            f"{kernel.__name__}: device must be 'cpu' or a CUDA device; got {device!r}"
        )
    if parsed.type == "cpu":
        return None
    if not torch.cuda.is_available():
        raise LaunchError(
            f"{kernel.__name__}: device {device}: no CUDA GPU is available (use 'cpu' for the "
            "interpreter)"
        )
    return torch.cuda.current_device() if parsed.index is None else parsed.index


def run_on_cpu(kernel: Kernel, program: Program, grid: tuple[int, ...], values: dict[str, Any]):
    from ..interp import run, storage_dtype

    args: dict[str, Any] = {}
    copy_back: list[tuple[Any, Any]] = []
    for p in kernel.params:
        if p.kind == "pointer":
            value = values[p.name]
            array, host = _as_array(kernel, p.name, p.dtype, value, storage_dtype(p.dtype))
            args[p.name] = array
            if host is not None:
                copy_back.append((value, host))
        elif p.kind == "scalar":
            args[p.name] = _scalar(kernel, p.name, p.dtype, values[p.name])
    run(program, grid, args)
    for original, host in copy_back:
        original.copy_(host)


def _as_array(kernel: Kernel, name: str, dtype: DataType, value: Any, storage: np.dtype):
    """The numpy storage for a tensor argument, and the host copy of a GPU tensor (or None)."""
    where = f"{kernel.__name__}: argument {name!r}"
    if _is_torch(value):
        import torch

        want = getattr(torch, library_name(dtype), None)
        if value.dtype != want:
            raise LaunchError(f"{where} must be a {dtype} tensor; got {value.dtype}")
        if not value.is_contiguous():
            raise LaunchError(f"{where} must be contiguous; got strides {tuple(value.stride())}")
        host = value.detach().cpu() if value.device.type != "cpu" else None
        t = (host if host is not None else value.detach()).reshape(-1)
        if storage.itemsize != t.element_size() or storage.kind != _numpy_kind(t):
            t = t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()])
        return t.numpy().view(storage), host
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise LaunchError(f"{where} must be C-contiguous")
        if value.dtype != storage:
            if value.dtype.itemsize == storage.itemsize and value.dtype.name == library_name(dtype):
                return value.reshape(-1).view(storage), None
            raise LaunchError(
                f"{where} must hold {dtype} as numpy {storage}; got an array of {value.dtype}"
            )
        return value.reshape(-1), None
    raise LaunchError(
        f"{where} must be a torch tensor or numpy array of {dtype}; got {type(value).__name__}"
    )


def _numpy_kind(t: Any) -> str:
    return "f" if t.is_floating_point() else ("u" if str(t.dtype) == "torch.uint8" else "i")


def _scalar(kernel: Kernel, name: str, dtype: DataType, value: Any) -> int | float:
    try:
        return scalar_value(dtype, value)
    except ValueError as err:
        raise LaunchError(f"{kernel.__name__}: argument {name!r} {err}") from None
