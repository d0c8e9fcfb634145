"""``quant_matmul``: x @ dequantised(W)^T for weights of any 1-8 bit type, as a torch custom op.

:func:`quant_matmul` checks its arguments, flattens ``x`` to ``[M, K]`` and
calls the custom op ``torch.ops.tilevm.quant_matmul``, registered with
``torch.library`` so that ``torch.compile`` traces through it without a graph
break (a fake implementation gives the output's shape) and CUDA graphs can
capture it. CUDA tensors run the kernels of :mod:`.qgemm` on the GPU; CPU
tensors run the same kernels on the interpreter.

The launch configuration depends on M (:func:`choose_config`):

- M <= 16 (decode): 16-row blocks; the k tiles are split over
  ``splits`` blocks so that there are about two blocks per SM, and
  :data:`~.qgemm.REDUCE` sums the fp32 partials in a fixed order;
- larger M (prefill): the same 16-row blocks, split only when the tiles are
  too few to fill the device (a shared-memory staged prefill kernel with
  larger tiles is still to come).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import dtypes
from ..quant import TILE_K, TILE_N, QuantizedWeight
from .qgemm import GEMM, REDUCE

ACTIVATION_DTYPES = {torch.float16: dtypes.float16, torch.bfloat16: dtypes.bfloat16}


@dataclass(frozen=True)
class Config:
    """One launch of the GEMM: rows per block, warps (64 columns each), k-splits."""

    block_m: int
    warps: int
    splits: int
    k_tiles_per_split: int


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def choose_config(m: int, n: int, k: int, nbits: int, device: torch.device) -> Config:
    """The launch for an ``[m, k] x [k, n]`` product with ``nbits`` weights on ``device``.

    Blocks are 16 rows for every M: a 16-row block already needs about 170
    registers a thread (fp32 accumulators, the A fragments, 128 dequantised
    weights), and 32-row blocks reach 255 and spill for some widths. ``nbits``
    is kept for the per-width choices a tuned table will make.
    """
    n_tiles = -(-n // TILE_N)
    k_tiles = -(-k // TILE_K)
    warps = min(4, n_tiles)
    block_m = 16
    blocks = -(-m // block_m) * -(-n_tiles // warps)
    splits = 1
    if device.type == "cuda":
        splits = max(1, min(k_tiles, math.ceil(2 * _sm_count(device) / blocks)))
    per_split = -(-k_tiles // splits)
    return Config(block_m, warps, -(-k_tiles // per_split), per_split)


def _run(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    wtype: dtypes.DataType,
    group_size: int,
    n: int,
    zero_offset: int,
    cfg: Config | None = None,
) -> torch.Tensor:
    m, k = x.shape
    act = ACTIVATION_DTYPES[x.dtype]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    cfg = cfg or choose_config(m, n, k, wtype.nbits, x.device)
    n_tiles = packed.shape[1]
    partial = cfg.splits > 1
    # Without PARTIAL the kernel never reads the workspace; it still takes a float32 tensor.
    shape = (cfg.splits, m, n) if partial else (1,)
    work = torch.empty(shape, dtype=torch.float32, device=x.device)
    grid = (-(-m // cfg.block_m), -(-n_tiles // cfg.warps), cfg.splits)
    bias_arg = bias if bias is not None else x  # not read without HAS_BIAS
    GEMM[act][grid](
        x,
        packed,
        scales,
        zeros if zeros is not None else x,  # not read without HAS_ZEROS
        bias_arg,
        out,
        work,
        m,
        n,
        k,
        n_tiles,
        cfg.k_tiles_per_split,
        wtype,
        0 if group_size == -1 else group_size,
        cfg.block_m,
        cfg.warps,
        zeros is not None,
        zero_offset,
        bias is not None,
        partial,
    )
    if partial:
        reduce = REDUCE[act]
        block_m, block_n = 4, 256
        grid = (-(-m // block_m), -(-n // block_n))
        reduce[grid](work, bias_arg, out, m, n, cfg.splits, bias is not None, block_m, block_n)
    return out


# -- the torch custom op ---------------------------------------------------------------------------
@torch.library.custom_op("tilevm::quant_matmul", mutates_args=())
def _quant_matmul_op(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    wtype: str,
    group_size: int,
    n: int,
    zero_offset: int,
) -> torch.Tensor:
    return _run(x, packed, scales, zeros, bias, dtypes.dtype(wtype), group_size, n, zero_offset)


@_quant_matmul_op.register_fake
def _(x, packed, scales, zeros, bias, wtype, group_size, n, zero_offset):
    return x.new_empty(x.shape[0], n)


# -- the public function ---------------------------------------------------------------------------
def _fail(message: str) -> None:
    raise ValueError(f"quant_matmul: {message}")


def _check(x: Any, qweight: Any, bias: Any) -> None:
    if not isinstance(qweight, QuantizedWeight):
        raise TypeError(
            f"quant_matmul: qweight must be a tilevm.QuantizedWeight; got {type(qweight).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"quant_matmul: x must be a torch tensor; got {type(x).__name__}")
    n, k = qweight.shape
    if x.dtype not in ACTIVATION_DTYPES:
        _fail(f"x must be float16 or bfloat16; got {x.dtype}")
    if x.dtype != qweight.scale_dtype:
        _fail(
            f"x is {x.dtype} but the weight's scales are {qweight.scale_dtype}; quantise with "
            f"scale_dtype={x.dtype} (or cast x)"
        )
    if x.dim() < 1 or x.shape[-1] != k:
        _fail(f"x must have shape [..., {k}] (K = in_features); got {list(x.shape)}")
    if x.device != qweight.device:
        _fail(f"x is on {x.device} but qweight is on {qweight.device}; move one with .to()")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"quant_matmul: bias must be a tensor or None; got {type(bias)}")
        if bias.shape != (n,):
            _fail(f"bias must have shape [{n}] (N = out_features); got {list(bias.shape)}")
        if bias.dtype != x.dtype or bias.device != x.device:
            _fail(f"bias must be {x.dtype} on {x.device} like x; got {bias.dtype} on {bias.device}")


def quant_matmul(
    x: torch.Tensor, qweight: QuantizedWeight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ qweight.dequantize().T (+ bias)`` with fp32 accumulation, in x's dtype.

    Parameters
    ----------
    x
        ``[..., K]`` float16 or bfloat16, on the weight's device (any strides:
        it is made contiguous).
    qweight
        A :class:`tilevm.QuantizedWeight` of shape ``[N, K]`` whose scales have
        x's dtype.
    bias
        ``[N]`` in x's dtype, or None.

    Returns
    -------
    torch.Tensor
        ``[..., N]`` in x's dtype.
    """
    _check(x, qweight, bias)
    n, k = qweight.shape
    x2 = x.reshape(-1, k).contiguous()
    y = torch.ops.tilevm.quant_matmul(
        x2,
        qweight.packed,
        qweight.scales,
        qweight.zeros,
        None if bias is None else bias.contiguous(),
        str(qweight.dtype),
        qweight.group_size,
        n,
        qweight.zero_offset,
    )
    return y.reshape(*x.shape[:-1], n)


__all__ = ["ACTIVATION_DTYPES", "Config", "choose_config", "quant_matmul"]
