"""tilevm: a kernel compiler and virtual machine for GPU compute on data types of any bit width.

Importing tilevm is light: numpy, the data types, layouts, the IR and the
frontend. torch, sympy, cuda-python and NVRTC are imported where a command or
kernel launch needs them.
"""

from . import dtypes
from ._version import __version__
from .dtypes import *  # noqa: F403  (every type by name: tilevm.int3, tilevm.float6_e3m2, ...)
from .dtypes import DataType, dtype, pack, unpack
from .errors import DTypeError, LayoutError, PackError, TileVMError
from .lang import KernelCompileError, LaunchError, Ptr, constexpr, func, kernel

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
