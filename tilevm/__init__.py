"""tilevm: a kernel compiler and virtual machine for GPU compute on data types of any bit width.

Importing tilevm is light: numpy, the data types, layouts, the IR and the
frontend. torch, sympy, cuda-python and NVRTC are imported where a command or
kernel launch needs them: ``tilevm.quantize``, ``tilevm.QuantizedWeight`` and the
``tilevm.nn`` and ``tilevm.ops`` packages load torch on first use.
"""

from . import dtypes
from ._version import __version__
from .autotune import autotune as autotune  # re-exported: the decorator, not its module
from .dtypes import *  # noqa: F403  (every type by name: tilevm.int3, tilevm.float6_e3m2, ...)
from .dtypes import DataType, dtype, pack, unpack
from .errors import DTypeError, LayoutError, PackError, TileVMError
from .lang import KernelCompileError, LaunchError, Ptr, constexpr, func, kernel

# Not in __all__ either, so that ``from tilevm import *`` stays free of torch too.
_LAZY_QUANT = ("QuantizedWeight", "quantize")
_LAZY_PACKAGES = ("nn", "ops")


def __getattr__(name: str):
    # Loaded on first use so that ``import tilevm`` stays free of torch.
    if name in _LAZY_QUANT:
        from . import quant

        return getattr(quant, name)
    if name in _LAZY_PACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DTypeError",
    "DataType",
    "KernelCompileError",
    "LaunchError",
    "Ptr",
    "constexpr",
    "func",
    "kernel",
    "LayoutError",
    "PackError",
    "TileVMError",
    "__version__",
    "dtype",
    "dtypes",
    "pack",
    "unpack",
    *dtypes.__all__,
]
