"""Launching a compiled kernel: argument checks, backend choice, the CPU interpreter path.

Tensor arguments may be torch tensors or numpy arrays; each must be
contiguous and hold the parameter's element type (bfloat16 and float8 numpy
data as their raw bits: uint16 / uint8, or the ml_dtypes types). On the CPU
backend torch CPU tensors and numpy arrays are shared with the interpreter, so
stores land in them directly; CUDA tensors are copied to the host and back.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from ..dtypes import DataType, library_name
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


def run_on_cpu(kernel: Kernel, program: Program, grid: tuple[int, ...], values: dict[str, Any]):
    from ..interp import run, storage_dtype

    args: dict[str, Any] = {}
    copy_back: list[tuple[Any, Any]] = []
    for p in kernel.params:
        value = values[p.name]
        if p.kind == "pointer":
            array, host = _as_array(kernel, p.name, p.dtype, value, storage_dtype(p.dtype))
            args[p.name] = array
            if host is not None:
                copy_back.append((value, host))
        elif p.kind == "scalar":
            args[p.name] = _scalar(kernel, p.name, p.dtype, value)
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
    where = f"{kernel.__name__}: argument {name!r}"
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if dtype.is_integer:
        if not isinstance(value, (int, np.integer)):
            raise LaunchError(f"{where} must be an int ({dtype}); got {value!r}")
        if not dtype.min_value <= int(value) <= dtype.max_value:
            raise LaunchError(
                f"{where} must lie in {dtype.min_value}..{dtype.max_value} ({dtype}); got {value}"
            )
        return int(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise LaunchError(f"{where} must be a number ({dtype}); got {value!r}")
    value = float(value)
    if math.isnan(value) and not dtype.has_nan:
        raise LaunchError(f"{where} is NaN, which {dtype} cannot hold")
    if math.isinf(value) and not dtype.has_inf:
        raise LaunchError(f"{where} is {value}, which {dtype} cannot hold")
    if math.isfinite(value) and abs(value) > dtype.max_value:
        raise LaunchError(
            f"{where} must lie in {dtype.min_value}..{dtype.max_value} ({dtype}); got {value}"
        )
    return value
