"""From a program to a loaded GPU kernel, and checked launches on torch tensors.

``build(program, device)`` runs the pass pipeline and emits CUDA C++ (or finds
the result in the emission cache, :mod:`.emitted`), compiles it through the
disk cache for the device's own architecture, checks the
ptxas report (no spills) and loads the cubin; results are kept per program and
device. A :class:`Launcher` (one per built kernel) checks every argument the
generated code relies on (device, dtype, contiguity, the range of scalars, the
alignment and divisibility it assumed) before packing the arguments and
launching on torch's current stream; ``launch`` calls it with arguments by
name.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..dtypes import library_name, scalar_value
from ..errors import TileVMError
from ..ir.program import Program
from .driver import (
    ArgumentPacker,
    LoadedKernel,
    current_stream_getter,
    scalar_ctype,
)

log = logging.getLogger(__name__)


class LaunchCheckError(TileVMError, ValueError):
    """An argument breaks an assumption the compiled kernel relies on."""


@dataclass(frozen=True)
class Built:
    program: Program
    cuda: Any  # tilevm.codegen.CudaKernel
    module: Any  # tilevm.runtime.compiler.CompiledModule
    kernel: LoadedKernel

    @functools.cached_property
    def launcher(self) -> Launcher:
        """The kernel's :class:`Launcher` (made on first use)."""
        return Launcher(self)


_built: dict[tuple[int, int], Built] = {}


def build(program: Program, device: int) -> Built:
    """The loaded kernel for ``program`` on CUDA device ``device`` (cached)."""
    key = (id(program), device)
    hit = _built.get(key)
    if hit is not None and hit.program is program:
        return hit
    import torch

    from .cache import compile_kernel
    from .compiler import Target
    from .emitted import emit_program

    cuda = emit_program(program)
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
    """Check the arguments (by parameter name) against the compiled kernel's needs, then launch
    it on torch's current stream."""
    built.launcher(grid, [values[p.name] for p in built.program.params])


class Launcher:
    """Checks, packs and launches one built kernel's arguments, given in parameter order.

    What does not depend on the values (the torch dtype of each pointer, the
    C type and range of each scalar, which assumptions concern which argument,
    the packing structure) is worked out once, here, so that a launch costs a
    few microseconds of Python on top of the driver call.
    """

    def __init__(self, built: Built):
        import torch

        self.built = built
        self.name = built.cuda.name
        self.device = built.kernel.torch_device
        params = built.program.params
        self.names = tuple(p.name for p in params)
        self.pointers = tuple(
            (i, getattr(torch, library_name(p.dtype), None))
            for i, p in enumerate(params)
            if p.kind == "pointer"
        )
        types = [ctypes.c_void_p if p.kind == "pointer" else scalar_ctype(p.dtype) for p in params]
        # (index, dtype, range an int may take without the full check: empty for floats)
        self.scalars = tuple(
            (
                i,
                p.dtype,
                range(p.dtype.min_value, p.dtype.max_value + 1) if p.dtype.is_integer else (),
            )
            for i, p in enumerate(params)
            if p.kind != "pointer"
        )
        index = {name: i for i, name in enumerate(self.names)}
        self.assumptions = tuple((index[a.param], a) for a in built.cuda.assumptions)
        self.packer = ArgumentPacker(types)
        self.stream = current_stream_getter()

    def __call__(self, grid: tuple[int, ...], args: Sequence[Any], stream: int | None = None):
        """Launch on ``grid`` with ``args`` (one per parameter, in order) on ``stream`` (torch's
        current stream of the kernel's device when None)."""
        import torch

        if len(args) != len(self.names):
            raise LaunchCheckError(
                f"{self.name}: takes {len(self.names)} arguments {self.names}; got {len(args)}"
            )
        values = list(args)
        for i, dtype in self.pointers:
            value = args[i]
            if not isinstance(value, torch.Tensor):
                raise LaunchCheckError(
                    f"{self._where(i)} must be a torch tensor on {self.device}; got "
                    f"{type(value).__name__}"
                )
            if value.device != self.device:
                raise LaunchCheckError(
                    f"{self._where(i)} must be on {self.device}; got {value.device}"
                )
            if value.dtype != dtype:
                raise LaunchCheckError(
                    f"{self._where(i)} must be a {self.built.program.params[i].dtype} tensor; "
                    f"got {value.dtype}"
                )
            if not value.is_contiguous():
                raise LaunchCheckError(
                    f"{self._where(i)} must be contiguous; got strides {value.stride()}"
                )
            values[i] = value.data_ptr()
        for i, dtype, fast in self.scalars:
            value = args[i]
            if type(value) is not int or value not in fast:
                try:  # not the common case of an int in range: the full check
                    values[i] = scalar_value(dtype, value)
                except ValueError as err:
                    raise LaunchCheckError(f"{self._where(i)} {err}") from None
        for i, assumption in self.assumptions:
            ok, message = assumption.check({assumption.param: values[i]})
            if not ok:
                raise LaunchCheckError(f"{self.name}: {message}")
        held, params = self.packer.pack(values)
        if stream is None:
            stream = self.stream(self.built.kernel.device)
        self.built.kernel.launch(grid, params, stream)
        del held  # alive until the driver has copied the arguments

    def _where(self, i: int) -> str:
        return f"{self.name}: argument {self.names[i]!r}"
