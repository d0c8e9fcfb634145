"""NVRTC, found through cuda-python, with errors that say what is missing.

NVRTC comes from the ``nvidia-cuda-nvrtc`` wheel; cuda-python's bindings load
it without a CUDA toolkit or a GPU. Importing this module is cheap: the
bindings load on first use.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from ..errors import TileVMError


class NVRTCError(TileVMError, RuntimeError):
    """NVRTC could not be loaded, or one of its calls failed."""


@functools.cache
def bindings() -> ModuleType:
    """The cuda-python NVRTC module (``cuda.bindings.nvrtc``; ``cuda.nvrtc`` before 12.6)."""
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python < 12.6
        except ImportError as err:
            raise NVRTCError(
                "cuda-python is not installed; install tilevm's dependencies "
                "(pip install cuda-python nvidia-cuda-nvrtc)"
            ) from err
    return nvrtc


def check(result: Any, call: str) -> Any:
    """Unwrap a cuda-python ``(status, *values)`` tuple, raising :class:`NVRTCError` on failure."""
    status, *values = result
    nvrtc = bindings()
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(status)
        raise NVRTCError(f"{call} failed: {text.decode(errors='replace')}")
    return values[0] if len(values) == 1 else tuple(values)


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version; raises :class:`NVRTCError` if it cannot be loaded."""
    nvrtc = bindings()
    try:
        result = nvrtc.nvrtcVersion()
    except Exception as err:  # cuda-python raises when libnvrtc itself cannot be found
        raise NVRTCError(f"NVRTC could not be loaded ({err}); install nvidia-cuda-nvrtc") from err
    return check(result, "nvrtcVersion")


def supported_archs() -> tuple[int, ...]:
    """The compute capabilities NVRTC can compile for, e.g. ``(75, 80, 86, ..., 90, ...)``."""
    return tuple(check(bindings().nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs"))
