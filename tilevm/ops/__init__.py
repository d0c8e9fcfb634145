"""The low-bit GEMM library written as tilevm kernels, exposed as torch custom ops.

``tilevm.ops.quant_matmul(x, qweight, bias=None)`` multiplies fp16/bf16
activations by a :class:`tilevm.QuantizedWeight` of any 1-8 bit type; see
:mod:`.quant_matmul`. Importing this package imports torch.
"""

from .quant_matmul import choose_config, quant_matmul

__all__ = ["choose_config", "quant_matmul"]
