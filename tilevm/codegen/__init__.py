"""CUDA C++ emission from a laid-out program.

:func:`emit_cuda` turns the output of the pass pipeline into readable CUDA C++
that needs no CUDA header, with inline PTX for conversions, ``cp.async`` and
``mma.sync`` (:mod:`.prelude`). :mod:`.emitter` holds the driver, :mod:`.kernel`
the result and options, :mod:`.indexing` the per-thread index arithmetic of layouts,
and one module per family of instructions registers how each is lowered:
:mod:`.memory`, :mod:`.compute`, :mod:`.reduce`, :mod:`.dot`.
"""

from . import compute, dot, memory, reduce  # noqa: F401  (register the emission rules)
from .emitter import emit_cuda
from .kernel import Assumption, CudaKernel, EmitOptions, KernelParam
from .values import CodegenError

__all__ = ["Assumption", "CodegenError", "CudaKernel", "EmitOptions", "KernelParam", "emit_cuda"]
