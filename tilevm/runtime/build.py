"""From a program to a loaded GPU kernel, and checked launches on torch tensors.

``build(program, device)`` runs the pass pipeline, emits CUDA C++, compiles
it through the disk cache for the device's own architecture, checks the
ptxas report (no spills) and loads the cubin; results are kept per program and
device. ``launch`` checks every argument the generated code relies on (device,
dtype, contiguity, the alignment and divisibility it assumed) before packing
the arguments and launching on torch's current stream.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any

from ..dtypes import library_name
from ..errors import TileVMError
from ..ir.program import Program
from .driver import LoadedKernel, PackedArgs, scalar_ctype

log = logging.getLogger(__name__)


class LaunchCheckError(TileVMError, ValueError):
    """An argument breaks an assumption the compiled kernel relies on."""


@dataclass(frozen=True)
class Built:
    program: Program
    cuda: Any  # tilevm.codegen.CudaKernel
    module: Any  # tilevm.runtime.compiler.CompiledModule
    kernel: LoadedKernel


_built: dict[tuple[int, int], Built] = {}


def build(program: Program, device: int) -> Built:
    """The loaded kernel for ``program`` on CUDA device ``device`` (cached)."""
    key = (id(program), device)
    hit = _built.get(key)
    if hit is not None and hit.program is program:
        return hit
    import torch

    from ..codegen import emit_cuda
    from ..passes.pipeline import run_pipeline
    from .cache import compile_kernel
    from .compiler import Target

    lowered = run_pipeline(program)
    cuda = emit_cuda(lowered)
    target = Target.for_device(*torch.cuda.get_device_capability(device))
    module = compile_kernel(cuda.source, cuda.name, target)
    spills = module.report.spill_bytes
    if spills:
        log.warning("%s spills %d bytes on %s", cuda.name, spills, target.arch)
    loaded = LoadedKernel(
        module.cubin, cuda.name, cuda.num_threads, cuda.dynamic_shared_bytes, device
    )
    built = Built(program, cuda, module, loaded)
    _built[key] = built
    return built


def launch(built: Built, grid: tuple[int, ...], values: dict[str, Any]) -> None:
    """Check the arguments against the compiled kernel's needs, then launch it."""
    import torch

    name = built.cuda.name
    device = built.kernel.device
    packed = []
    for param in built.program.params:
        value = values[param.name]
        where = f"{name}: argument {param.name!r}"
        if param.kind == "pointer":
            if not isinstance(value, torch.Tensor):
                raise LaunchCheckError(
                    f"{where} must be a torch tensor on cuda:{device}; got {type(value).__name__}"
                )
            if value.device != torch.device("cuda", device):
                raise LaunchCheckError(f"{where} must be on cuda:{device}; got {value.device}")
            if value.dtype != getattr(torch, library_name(param.dtype), None):
                raise LaunchCheckError(f"{where} must be a {param.dtype} tensor; got {value.dtype}")
            if not value.is_contiguous():
                raise LaunchCheckError(f"{where} must be contiguous; got strides {value.stride()}")
            packed.append(ctypes.c_void_p(value.data_ptr()))
        else:
            packed.append(scalar_ctype(param.dtype)(value))
    for assumption in built.cuda.assumptions:
        ok, message = assumption.check(values)
        if not ok:
            raise LaunchCheckError(f"{name}: {message}")
    stream = torch.cuda.current_stream(device).cuda_stream
    built.kernel.launch(grid, PackedArgs(packed), stream)
