"""``QuantLinear``, a drop-in ``nn.Linear`` over a quantised weight, and ``quantize_model``.

A :class:`QuantLinear` holds the tensors of a :class:`~tilevm.quant.QuantizedWeight`
as buffers (``packed``, ``scales`` and, with zero points, ``zeros``) and its
metadata (dtype, shape, group size, zero offset, format) as the module's extra
state, so ``state_dict()``/``load_state_dict()``, ``torch.save`` and
``.to(device)`` work as for any module::

    layer = tilevm.nn.QuantLinear.from_linear(linear, dtype="int3", group_size=128)
    y = layer(x)                      # tilevm.ops.quant_matmul(x, layer.qweight, layer.bias)
    torch.save(layer.state_dict(), f)
    fresh = tilevm.nn.QuantLinear(4096, 4096, "int3", group_size=128)
    fresh.load_state_dict(torch.load(f))

:func:`quantize_model` swaps every eligible ``nn.Linear`` of a model in place.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..dtypes import DataType
from ..quant import (
    FORMAT,
    QuantizedWeight,
    convert_packed,
    pack_codes,
    packed_shape,
    quantize,
)
from ..quant.weight import (
    QuantError,
    QuantTypeError,
    _check_format,
    _group_size,
    _low_bit_dtype,
    _scale_dtype,
    check_perm,
)

_META_KEYS = ("format", "dtype", "out_features", "in_features", "group_size", "zero_offset")
_OPTIONAL_META_KEYS = ("act_order",)  # absent from checkpoints of older tilevms: False


class QuantLinear(nn.Module):
    """``y = x @ W'^T + bias`` with W' the dequantised low-bit weight (see :mod:`tilevm.quant`).

    Parameters
    ----------
    in_features, out_features
        K and N.
    dtype
        A low-bit type or its name (``"int3"``, ``"uint4"``, ``"float6_e3m2"``, ...).
    group_size
        32, 64, 128 (``in_features`` must be a multiple) or -1 (per output channel).
    bias
        Whether the layer has a bias (a parameter in ``scale_dtype``).
    zero_point
        uint types only: per-group zero points (a ``zeros`` buffer).
    scale_dtype
        torch.float16 or torch.bfloat16: the dtype of the scales, zeros and bias.
    device
        Where the buffers live.
    act_order
        Whether the weight's groups are not runs of K (GPTQ ``desc_act``): a ``perm``
        buffer then holds the stored order of the in-features
        (:attr:`~tilevm.quant.QuantizedWeight.perm`).

    A new layer holds a zero weight (every code means 0); fill it with
    ``load_state_dict`` or build it with :meth:`from_linear` / :meth:`from_quantized`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        dtype: Any,
        group_size: int = 128,
        bias: bool = True,
        zero_point: bool = False,
        scale_dtype: torch.dtype = torch.float16,
        device: torch.device | str | None = None,
        act_order: bool = False,
    ) -> None:
        super().__init__()
        where = "QuantLinear"
        t = _low_bit_dtype(dtype, where)
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise QuantError(f"{where}: {arg} must be a positive int; got {v!r}")
        group_size = _group_size(group_size, in_features, where)
        sd = _scale_dtype(scale_dtype, where, torch.float16)
        if not isinstance(zero_point, bool):
            raise QuantTypeError(f"{where}: zero_point must be a bool; got {zero_point!r}")
        if zero_point and t.kind != "uint":
            raise QuantError(
                f"{where}: zero points apply to uint types; got zero_point=True for {t.name}"
            )
        if not isinstance(act_order, bool):
            raise QuantTypeError(f"{where}: act_order must be a bool; got {act_order!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.dtype: DataType = t
        self.group_size = group_size
        self.zero_offset = 1 << (t.nbits - 1) if t.kind == "uint" and not zero_point else 0
        self.format = FORMAT
        g = 1 if group_size == -1 else in_features // group_size
        # Every tile holds the code of weight 0 (the fixed offset for offset-binary uints).
        tile = pack_codes(torch.full((64, 64), self.zero_offset, dtype=torch.uint8), t.nbits)
        kt, nt, _ = packed_shape(out_features, in_features, t.nbits)
        self.register_buffer("packed", tile.to(device).expand(kt, nt, -1).contiguous())
        self.register_buffer("scales", torch.ones((g, out_features), dtype=sd, device=device))
        zeros = torch.zeros((g, out_features), dtype=sd, device=device) if zero_point else None
        self.register_buffer("zeros", zeros)
        perm = torch.arange(in_features, device=device) if act_order else None
        self.register_buffer("perm", perm)
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(out_features, dtype=sd, device=device), requires_grad=False
            )
        else:
            self.register_parameter("bias", None)

    # -- the weight --------------------------------------------------------------------------
    @property
    def qweight(self) -> QuantizedWeight:
        """A :class:`QuantizedWeight` over this layer's buffers (no copy)."""
        return QuantizedWeight(
            dtype=self.dtype,
            shape=(self.out_features, self.in_features),
            group_size=self.group_size,
            packed=self.packed,
            scales=self.scales,
            zeros=self.zeros,
            zero_offset=self.zero_offset,
            perm=self.perm,
            where="QuantLinear.qweight",
        )

    @property
    def scale_dtype(self) -> torch.dtype:
        return self.scales.dtype

    @property
    def zero_point(self) -> bool:
        return self.zeros is not None

    @property
    def act_order(self) -> bool:
        return self.perm is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..ops import quant_matmul

        return quant_matmul(x, self.qweight, self.bias)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_quantized(
        cls, qweight: QuantizedWeight, bias: torch.Tensor | None = None
    ) -> QuantLinear:
        """A layer over ``qweight``'s tensors (shared, not copied) and an optional bias ``[N]``."""
        if not isinstance(qweight, QuantizedWeight):
            raise QuantTypeError(
                "QuantLinear.from_quantized: qweight must be a QuantizedWeight; "
                f"got {type(qweight).__name__}"
            )
        n, k = qweight.shape
        if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (n,)):
            got = list(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise QuantError(f"QuantLinear.from_quantized: bias must have shape [{n}]; got {got}")
        # A shell on the meta device costs nothing; its buffers are then replaced by qweight's.
        layer = cls(
            k,
            n,
            qweight.dtype,
            qweight.group_size,
            bias=bias is not None,
            zero_point=qweight.zeros is not None,
            scale_dtype=qweight.scale_dtype,
            device="meta",
            act_order=qweight.perm is not None,
        )
        layer.zero_offset = qweight.zero_offset
        layer.packed = qweight.packed
        layer.scales = qweight.scales
        layer.zeros = qweight.zeros
        layer.perm = qweight.perm
        if bias is not None:
            b = bias.detach().to(device=qweight.device, dtype=qweight.scale_dtype)
            layer.bias = nn.Parameter(b.contiguous(), requires_grad=False)
        return layer

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        dtype: Any,
        group_size: int = 128,
        zero_point: bool = False,
        scale_dtype: torch.dtype | None = None,
    ) -> QuantLinear:
        """Quantise an ``nn.Linear`` (:func:`tilevm.quantize` of its weight; bias to scale_dtype).

        ``scale_dtype`` defaults to the weight's dtype when it is float16 or bfloat16,
        else float16. The layer lives on the linear's device.
        """
        if not isinstance(linear, nn.Linear):
            raise QuantTypeError(
                f"QuantLinear.from_linear: linear must be an nn.Linear; got {type(linear).__name__}"
            )
        qweight = quantize(linear.weight, dtype, group_size, zero_point, scale_dtype)
        return cls.from_quantized(qweight, linear.bias)

    # -- state -------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dtype": self.dtype.name,
            "out_features": self.out_features,
            "in_features": self.in_features,
            "group_size": self.group_size,
            "zero_offset": self.zero_offset,
            "act_order": self.act_order,
        }

    def set_extra_state(self, state: Any) -> None:
        where = "QuantLinear.load_state_dict"
        if not isinstance(state, dict) or not (
            set(_META_KEYS) <= set(state) <= set(_META_KEYS + _OPTIONAL_META_KEYS)
        ):
            raise QuantError(
                f"{where}: the extra state must be a dict with the keys "
                f"{', '.join(_META_KEYS)} (and optionally {', '.join(_OPTIONAL_META_KEYS)}); "
                f"got {state!r}"
            )
        _check_format(state["format"], where)
        t = _low_bit_dtype(state["dtype"], where)
        theirs = (t, state["out_features"], state["in_features"], state["group_size"])
        ours = (self.dtype, self.out_features, self.in_features, self.group_size)
        if theirs != ours:
            raise QuantError(
                f"{where}: the checkpoint holds a {t.name} weight [{theirs[1]}, {theirs[2]}] with "
                f"group_size={theirs[3]}, but this layer is {self.dtype.name} [{ours[1]}, "
                f"{ours[2]}] with group_size={ours[3]}"
            )
        act_order = state.get("act_order", False)
        if act_order != self.act_order:
            raise QuantError(
                f"{where}: the checkpoint's weight has act_order={act_order}, but this layer "
                f"has act_order={self.act_order}; build it with QuantLinear(..., "
                f"act_order={act_order})"
            )
        if self.perm is not None:
            check_perm(self.perm, where, "the checkpoint's perm")
        # The zero offset comes from the checkpoint (from_codes may import another one).
        self.zero_offset = QuantizedWeight(
            dtype=t,
            shape=(self.out_features, self.in_features),
            group_size=self.group_size,
            packed=self.packed,
            scales=self.scales,
            zeros=self.zeros,
            zero_offset=state["zero_offset"],
            where=where,
        ).zero_offset
        # The buffers are loaded before the extra state: an older order is packed anew in place.
        with torch.no_grad():
            self.packed.copy_(
                convert_packed(
                    self.packed, t.nbits, self.out_features, self.in_features, state["format"]
                )
            )

    def extra_repr(self) -> str:
        scale = str(self.scale_dtype).removeprefix("torch.")
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"dtype={self.dtype.name}, group_size={self.group_size}, "
            f"bias={self.bias is not None}, zero_point={self.zero_point}, scale_dtype={scale}"
            + (", act_order=True" if self.act_order else "")
        )


def _skip_matcher(skip: Any) -> Callable[[str, nn.Module], bool]:
    if callable(skip):
        return skip
    patterns = (skip,) if isinstance(skip, str) else skip
    if not isinstance(patterns, Iterable) or not all(isinstance(p, str) for p in patterns):
        raise QuantTypeError(
            "quantize_model: skip must be fnmatch patterns (a str or a sequence of str) or a "
            f"callable(name, module) -> bool; got {skip!r}"
        )
    patterns = tuple(patterns)
    return lambda name, module: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def quantize_model(
    model: nn.Module,
    dtype: Any,
    group_size: int = 128,
    zero_point: bool = False,
    skip: Any = (),
    scale_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Replace every eligible ``nn.Linear`` of ``model`` by a :class:`QuantLinear`, in place.

    A linear is eligible when its qualified name (as in ``model.named_modules()``)
    matches no pattern of ``skip`` (fnmatch patterns such as ``"lm_head"`` or
    ``"*.attn.*"``, or a callable ``(name, module) -> bool`` that says to skip it)
    and ``in_features`` is a multiple of ``group_size``. The others stay
    ``nn.Linear``; those left for their ``in_features`` are listed in a warning.
    A linear shared by several parents is quantised once and replaced under every
    name that is not skipped.

    Returns ``model`` (a new :class:`QuantLinear` when ``model`` is itself an eligible linear).
    """
    where = "quantize_model"
    if not isinstance(model, nn.Module):
        raise QuantTypeError(f"{where}: model must be an nn.Module; got {type(model).__name__}")
    t = _low_bit_dtype(dtype, where)
    group_size = _group_size(group_size, 0, where)  # checks the value; K is checked per layer
    skipped = _skip_matcher(skip)
    done: dict[int, QuantLinear] = {}
    left: list[str] = []
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, nn.Linear):
            continue
        if id(module) not in done:
            if skipped(name, module):
                continue
            if group_size != -1 and module.in_features % group_size:
                left.append(f"{name or '<model>'} (in_features={module.in_features})")
                continue
            done[id(module)] = QuantLinear.from_linear(
                module, t, group_size, zero_point, scale_dtype
            )
        if not name:
            return done[id(module)]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, done[id(module)])
    if left:
        warnings.warn(
            f"{where}: left {len(left)} nn.Linear module(s) unquantised because in_features is "
            f"not a multiple of group_size={group_size}: {', '.join(left)}",
            stacklevel=2,
        )
    return model


__all__ = ["QuantLinear", "quantize_model"]
