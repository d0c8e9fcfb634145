"""torch.nn modules over the low-bit ops: :class:`QuantLinear` and :func:`quantize_model`.

Imports torch (``import tilevm`` alone does not).
"""

from .linear import QuantLinear, quantize_model

__all__ = ["QuantLinear", "quantize_model"]
