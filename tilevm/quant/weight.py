"""Quantised weights: :func:`quantize` and :class:`QuantizedWeight`.

A weight ``w`` of shape ``[N, K]`` (N output channels, K input features, the
layout of ``nn.Linear.weight``) is cut along K into groups of ``group_size``
(32, 64, 128, or -1: one group of the whole K). Each group of each channel has
a scale ``s`` (float16 or bfloat16) and, for uint types with zero points, a
zero ``z``. All arithmetic is float32, divides (never multiplies by a
reciprocal) and rounds half to even (``torch.round``):

==========================  =================================  ==============================
dtype                       scale s (rounded to scale_dtype)   code of w
==========================  =================================  ==============================
float (<= 8 bits)           amax(|w|) / dtype.max_value        dtype.encode(w / s) (RNE,
                                                               saturating)
int{b}, b >= 2              amax(|w|) / (2^(b-1) - 1)          clamp(round(w / s), -2^(b-1),
                                                               2^(b-1) - 1), two's complement
uint{b}, zero_point=True    (hi - lo) / (2^b - 1), lo =        clamp(round(w / s) + z, 0,
                            min(min w, 0), hi = max(max w, 0)  2^b - 1), z = clamp(round(-lo /
                                                               s), 0, 2^b - 1)
uint{b}, zero_point=False   amax(|w|) / (2^(b-1) - 1)          clamp(round(w / s) + o, 0,
                                                               2^b - 1), o = 2^(b-1) fixed
==========================  =================================  ==============================

A scale that rounds to 0 (an all-zero group) is stored as 1. The weight the
kernels use, and :meth:`QuantizedWeight.dequantize` returns, is

    w' = scale_dtype(float32(decode(q) - z) * float32(s))

with ``decode`` the value of the code (the integer for int types), and z the
group's zero, the fixed offset o (``zero_offset``), or 0. Both factors are
exact in float32 and so is their product, so there is one rounding.

Worked example: int4, one group ``[0.7, -0.35, 0.1, 0.0]``, float16 scales.
amax = 0.7, s = fp16(0.7 / 7) = 0.0999755859375, w / s = [7.0017, -3.5009,
1.0002, 0], q = [7, -4, 1, 0], codes (4-bit two's complement) = [7, 12, 1, 0],
dequantised [0.69971, -0.39990, 0.099976, 0] (7 * s = 0.699829 rounds to
float16 0.69971).

The codes are stored packed in the kernels' order (:mod:`.packing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..dtypes import LOW_BIT_DTYPES, DataType
from ..dtypes import dtype as _lookup_dtype
from ..errors import DTypeError, TileVMError
from .packing import FORMAT, FORMATS, convert_packed, pack_codes, packed_shape, unpack_codes


class QuantError(TileVMError, ValueError):
    """A quantisation argument has a bad value (shape, range, divisibility, device)."""


class QuantTypeError(TileVMError, TypeError):
    """A quantisation argument has the wrong kind (not a tensor, not a dtype, ...)."""


GROUP_SIZES = (32, 64, 128, -1)
"""Group sizes along K; -1 is one group per output channel (the whole K)."""

SCALE_DTYPES = (torch.float16, torch.bfloat16)

# Rows quantised at a time, so temporaries of a large weight stay about 64 MiB of float32.
_CHUNK_ELEMENTS = 1 << 24


# -- argument checks ------------------------------------------------------------------------------
def _check_format(format: Any, where: str) -> None:
    """A saved weight's packing ``format`` must be one this tilevm reads (:data:`FORMATS`)."""
    if format not in FORMATS:
        raise QuantError(
            f"{where}: unsupported packing format {format!r}; this tilevm reads "
            f"{', '.join(map(repr, FORMATS))}"
        )


def _low_bit_dtype(spec: Any, where: str, arg: str = "dtype") -> DataType:
    try:
        t = _lookup_dtype(spec)
    except DTypeError as err:
        raise QuantError(f"{where}: {arg} must name a low-bit type; {err}") from None
    if t not in LOW_BIT_DTYPES:
        raise QuantError(
            f"{where}: {arg} must be a low-bit type (int1..int8, uint1..uint8 or a float of at "
            f"most 8 bits); got {t.name}"
        )
    return t


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _group_size(group_size: Any, k: int, where: str) -> int:
    if not _is_int(group_size) or int(group_size) not in GROUP_SIZES:
        raise QuantError(
            f"{where}: group_size must be one of 32, 64, 128 or -1 (one group per output "
            f"channel); got {group_size!r}"
        )
    group_size = int(group_size)
    if group_size != -1 and k % group_size:
        raise QuantError(
            f"{where}: in_features K = {k} must be a multiple of group_size = {group_size} "
            "(or use group_size=-1)"
        )
    return group_size


def _scale_dtype(spec: Any, where: str, default: torch.dtype) -> torch.dtype:
    if spec is None:
        return default
    if isinstance(spec, str) and spec.strip().lower() in (
        "float16",
        "f16",
        "half",
        "bfloat16",
        "bf16",
    ):
        spec = getattr(torch, _lookup_dtype(spec).name)
    if spec not in SCALE_DTYPES:
        raise QuantError(
            f"{where}: scale_dtype must be torch.float16 or torch.bfloat16; got {spec!r}"
        )
    return spec


def _as_tensor(value: Any, where: str, arg: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise QuantTypeError(
        f"{where}: {arg} must be a torch.Tensor or numpy array; got {type(value).__name__}"
    )


def _check_2d(t: torch.Tensor, shape: tuple[int, int] | None, where: str, arg: str) -> None:
    if t.dim() != 2 or (shape is not None and tuple(t.shape) != shape):
        want = f"shape {list(shape)}" if shape is not None else "a 2-D shape"
        raise QuantError(f"{where}: {arg} must have {want}; got shape {list(t.shape)}")


def _check_device(t: torch.Tensor, device: torch.device, where: str, arg: str) -> None:
    if t.device != device:
        raise QuantError(f"{where}: {arg} must be on {device} like the codes; got {t.device}")


def _is_integer_dtype(dt: torch.dtype) -> bool:
    return not (dt.is_floating_point or dt.is_complex or dt == torch.bool)


def _first_bad(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


# -- quantisation ---------------------------------------------------------------------------------
def quantize(
    weight: Any,
    dtype: Any,
    group_size: int = 128,
    zero_point: bool = False,
    scale_dtype: torch.dtype | None = None,
) -> QuantizedWeight:
    """Quantise a float weight ``[N, K]`` to a low-bit type, codes packed for the kernels.

    Parameters
    ----------
    weight
        Float tensor ``[N, K]`` (``nn.Linear.weight``), on the CPU or a GPU; a numpy
        array is taken as a CPU tensor. Every value must be finite.
    dtype
        A low-bit type or its name: ``int1..int8``, ``uint1..uint8``, a float of at
        most 8 bits (``"float6_e3m2"``, ``"e2m1"``, ...). int1 is not supported (it
        only holds -1 and 0: use uint1 with ``zero_point=True``).
    group_size
        32, 64, 128 (K must be a multiple) or -1 (one group of the whole K).
    zero_point
        uint types only: store a per-group zero (asymmetric range). Without it a
        uint{b} is offset binary with the fixed zero 2^(b-1) (uint1 needs zero points).
    scale_dtype
        torch.float16 or torch.bfloat16; by default the weight's dtype if it is one
        of them, else float16.

    Returns
    -------
    QuantizedWeight
        On the weight's device; the module docstring gives the exact formulas.

    Examples
    --------
    >>> qw = tilevm.quantize(torch.randn(4096, 4096), "int3", group_size=128)
    >>> qw.packed.shape, qw.scales.shape
    (torch.Size([64, 64, 1536]), torch.Size([32, 4096]))
    """
    where = "quantize"
    t = _low_bit_dtype(dtype, where)
    w = _as_tensor(weight, where, "weight")
    if not w.dtype.is_floating_point:
        raise QuantError(f"{where}: weight must be a float tensor; got {w.dtype}")
    _check_2d(w, None, where, "weight [N, K]")
    n, k = w.shape
    if n == 0 or k == 0:
        raise QuantError(f"{where}: weight must not be empty; got shape {list(w.shape)}")
    group_size = _group_size(group_size, k, where)
    default = w.dtype if w.dtype in SCALE_DTYPES else torch.float16
    sd = _scale_dtype(scale_dtype, where, default)
    if not isinstance(zero_point, bool):
        raise QuantTypeError(f"{where}: zero_point must be a bool; got {zero_point!r}")
    if zero_point and t.kind != "uint":
        raise QuantError(
            f"{where}: zero points apply to uint types; got zero_point=True for {t.name} "
            f"(use uint{t.nbits} for an asymmetric range)"
        )
    if t.kind == "int" and t.nbits == 1:
        raise QuantError(
            f"{where}: int1 holds only -1 and 0, which cannot represent a symmetric range; "
            "use dtype='uint1' with zero_point=True"
        )
    if t.kind == "uint" and t.nbits == 1 and not zero_point:
        raise QuantError(
            f"{where}: uint1 without zero points would have the levels -1 and 0 only; "
            "use zero_point=True"
        )
    w = w.detach()
    bad = ~torch.isfinite(w)
    if bad.any():
        raise QuantError(
            f"{where}: weight must be finite; got {w[bad][0].item()} at index {_first_bad(bad)}"
        )

    gs = k if group_size == -1 else group_size
    g = k // gs
    codes = torch.empty((n, k), dtype=torch.uint8, device=w.device)
    scales = torch.empty((n, g), dtype=sd, device=w.device)
    zeros = torch.empty((n, g), dtype=sd, device=w.device) if zero_point else None
    rows = max(1, _CHUNK_ELEMENTS // k)
    for r in range(0, n, rows):
        x = w[r : r + rows].to(torch.float32).reshape(-1, g, gs)
        c, s, z = _quantize_groups(x, t, zero_point, sd)
        codes[r : r + rows] = c.reshape(-1, k)
        scales[r : r + rows] = s
        if zeros is not None:
            zeros[r : r + rows] = z
    zero_offset = 1 << (t.nbits - 1) if t.kind == "uint" and not zero_point else 0
    return QuantizedWeight(
        dtype=t,
        shape=(n, k),
        group_size=group_size,
        packed=pack_codes(codes, t.nbits),
        scales=scales.T.contiguous(),
        zeros=None if zeros is None else zeros.T.contiguous(),
        zero_offset=zero_offset,
    )


def _divisor(x: torch.Tensor, value: float) -> torch.Tensor:
    # A tensor on x's device, never a Python scalar: CUDA divides by a scalar through its
    # reciprocal, which is not the IEEE quotient.
    return torch.full((), value, dtype=torch.float32, device=x.device)


def _round_scale(s32: torch.Tensor, sd: torch.dtype) -> torch.Tensor:
    s = s32.to(sd)
    if not torch.isfinite(s).all():
        raise QuantError(
            f"quantize: a scale of {s32.max().item():.6g} overflows {sd}; the weight's "
            "magnitudes are too large for it (try scale_dtype=torch.bfloat16)"
        )
    return torch.where(s == 0, torch.ones_like(s), s)


def _quantize_groups(
    x: torch.Tensor, t: DataType, zero_point: bool, sd: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes (uint8, shape of x), scales and zeros ([rows, G], scale dtype) of float32 groups x."""
    b = t.nbits
    if t.is_float:
        s = _round_scale(x.abs().amax(-1) / _divisor(x, float(t.max_value)), sd)
        y = x / s.float()[..., None]
        # The library encoder is the exact, saturating RNE reference; it works on numpy.
        codes = torch.from_numpy(t.encode(y.cpu().numpy())).to(x.device)
        return codes, s, None
    if t.kind == "int":
        qmax = (1 << (b - 1)) - 1
        s = _round_scale(x.abs().amax(-1) / _divisor(x, qmax), sd)
        q = torch.round(x / s.float()[..., None]).clamp_(-(1 << (b - 1)), qmax)
        codes = (q.to(torch.int16) & ((1 << b) - 1)).to(torch.uint8)
        return codes, s, None
    top = (1 << b) - 1
    if zero_point:
        lo = x.amin(-1).clamp(max=0)
        hi = x.amax(-1).clamp(min=0)
        s = _round_scale((hi - lo) / _divisor(x, top), sd)
        sf = s.float()
        z = torch.round(-lo / sf).clamp_(0, top)
        q = (torch.round(x / sf[..., None]) + z[..., None]).clamp_(0, top)
        return q.to(torch.uint8), s, z.to(sd)
    offset = 1 << (b - 1)
    s = _round_scale(x.abs().amax(-1) / _divisor(x, offset - 1), sd)
    q = (torch.round(x / s.float()[..., None]) + offset).clamp_(0, top)
    return q.to(torch.uint8), s, None


# -- the weight -----------------------------------------------------------------------------------
ALIGNMENT = 16
"""Bytes the kernels' vector loads need the start of packed, scales and zeros aligned to."""


def _check_aligned(value: torch.Tensor, where: str, arg: str) -> None:
    if torch.compiler.is_compiling():
        return  # a traced tensor has no address; the buffers were checked when they were made
    offset = value.data_ptr() % ALIGNMENT
    if offset:
        raise QuantError(
            f"{where}: {arg} must start at a {ALIGNMENT}-byte aligned address (the kernels load "
            f"it in 16-byte vectors); its address is {offset} bytes past one: pass "
            f"{arg}.clone()"
        )


def _check_perm_shape(perm: Any, k: int, device: torch.device, where: str) -> None:
    """``perm`` is an int64 ``[K]`` tensor on ``device`` (its values: :func:`check_perm`)."""
    if not isinstance(perm, torch.Tensor):
        raise QuantTypeError(
            f"{where}: perm must be a torch.Tensor or None; got {type(perm).__name__}"
        )
    if perm.dtype != torch.int64 or tuple(perm.shape) != (k,):
        raise QuantError(
            f"{where}: perm must be int64 of shape [{k}] (K = in_features); got {perm.dtype} of "
            f"shape {list(perm.shape)}"
        )
    if not perm.is_contiguous():
        raise QuantError(f"{where}: perm must be contiguous")
    if perm.device != device:
        raise QuantError(
            f"{where}: perm must be on the device of packed ({device}); got {perm.device}"
        )


def check_perm(perm: torch.Tensor, where: str, arg: str = "perm") -> None:
    """``perm`` holds each of ``0 .. K-1`` once (a bad one would gather x out of bounds)."""
    k = perm.numel()
    seen = torch.zeros(k, dtype=torch.bool, device=perm.device)
    inside = (perm >= 0) & (perm < k)
    if not bool(inside.all()):
        raise QuantError(
            f"{where}: {arg} must be a permutation of 0..{k - 1}; got {perm[~inside][0].item()} "
            f"at index {_first_bad(~inside)}"
        )
    seen[perm] = True
    if not bool(seen.all()):
        raise QuantError(
            f"{where}: {arg} must be a permutation of 0..{k - 1}; {_first_bad(~seen)[0]} is missing"
        )


def _group_order(
    g_idx: Any, k: int, groups: int, device: torch.device, where: str
) -> torch.Tensor | None:
    """The stored order of the in-features for the groups ``g_idx`` (:attr:`QuantizedWeight.perm`):
    group after group, each in its features' order; None when that is the order of K."""
    gi = _as_tensor(g_idx, where, "g_idx")
    if not _is_integer_dtype(gi.dtype) or gi.dim() != 1:
        raise QuantError(
            f"{where}: g_idx must be a 1-D integer tensor (the group of each in-feature); got "
            f"{gi.dtype} of shape {list(gi.shape)}"
        )
    _check_device(gi, device, where, "g_idx")
    if gi.numel() != k:
        raise QuantError(f"{where}: g_idx must have shape [{k}] (K); got {list(gi.shape)}")
    gi = gi.long()
    outside = (gi < 0) | (gi >= groups)
    if bool(outside.any()):
        raise QuantError(
            f"{where}: g_idx must hold groups 0..{groups - 1}; got {gi[outside][0].item()} at "
            f"index {_first_bad(outside)}"
        )
    per = k // groups
    counts = torch.bincount(gi, minlength=groups)
    if bool((counts != per).any()):
        bad = int((counts != per).nonzero()[0])
        raise QuantError(
            f"{where}: each group must have group_size = {per} in-features in g_idx; group "
            f"{bad} has {int(counts[bad])}"
        )
    perm = torch.sort(gi, stable=True).indices
    if bool((perm == torch.arange(k, device=device)).all()):
        return None
    return perm.contiguous()


class QuantizedWeight:
    """A quantised ``[N, K]`` weight: packed codes, per-group scales and zeros, metadata.

    Build one with :func:`quantize`, :meth:`from_codes` or :meth:`from_state_dict`;
    the constructor validates shapes, dtypes and devices (not the values).

    Attributes
    ----------
    dtype
        The code type (a low-bit :class:`tilevm.DataType`).
    shape
        ``(N, K)``: out features, in features.
    group_size
        32, 64, 128, or -1 (one group of the whole K).
    packed
        uint8 ``[ceil(K/64), ceil(N/64), 512 * b]`` in the ``tile64x64.v3`` order.
    scales
        ``[G, N]`` float16 or bfloat16, G = K // group_size (1 for -1), contiguous.
    zeros
        ``[G, N]`` in the scales' dtype (small integers), or None.
    zero_offset
        The zero of every group when ``zeros`` is None: 2^(b-1) for uint types
        quantised without zero points, else 0.
    format
        ``"tile64x64.v3"``.
    perm
        None, or int64 ``[K]``, a permutation of the in-features (act-order
        weights, whose groups are not runs of K): the codes, and so the groups,
        are stored in the order ``perm``, stored column j being the weight's
        column ``perm[j]``. :func:`~tilevm.ops.quant_matmul` takes ``x[...,
        perm]``; :meth:`codes` and :meth:`dequantize` answer in the weight's own
        order, where column k is in group ``j // group_size`` for ``perm[j] = k``.
    """

    __slots__ = (
        "dtype",
        "format",
        "group_size",
        "packed",
        "perm",
        "scales",
        "shape",
        "zero_offset",
        "zeros",
    )

    def __init__(
        self,
        *,
        dtype: DataType | str,
        shape: tuple[int, int],
        group_size: int,
        packed: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | None = None,
        zero_offset: int = 0,
        format: str = FORMAT,
        perm: torch.Tensor | None = None,
        where: str = "QuantizedWeight",
    ) -> None:
        t = _low_bit_dtype(dtype, where)
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 2
            or not all(_is_int(v) and v >= 1 for v in shape)
        ):
            raise QuantError(f"{where}: shape must be (N, K) of positive ints; got {shape!r}")
        n, k = (int(v) for v in shape)
        group_size = _group_size(group_size, k, where)
        if format != FORMAT:
            raise QuantError(
                f"{where}: format must be {FORMAT!r} (the packed order this tilevm reads); "
                f"got {format!r}"
            )
        for arg, value in (("packed", packed), ("scales", scales)):
            if not isinstance(value, torch.Tensor):
                raise QuantTypeError(
                    f"{where}: {arg} must be a torch.Tensor; got {type(value).__name__}"
                )
        want = packed_shape(n, k, t.nbits)
        if packed.dtype != torch.uint8 or tuple(packed.shape) != want:
            raise QuantError(
                f"{where}: packed must be uint8 of shape {list(want)} for a [{n}, {k}] {t.name} "
                f"weight; got {packed.dtype} of shape {list(packed.shape)}"
            )
        g = 1 if group_size == -1 else k // group_size
        if scales.dtype not in SCALE_DTYPES:
            raise QuantError(f"{where}: scales must be float16 or bfloat16; got {scales.dtype}")
        _check_2d(scales, (g, n), where, "scales [G, N]")
        for arg, value in (("packed", packed), ("scales", scales)):
            if not value.is_contiguous():
                raise QuantError(f"{where}: {arg} must be contiguous")
            _check_aligned(value, where, arg)
        if scales.device != packed.device:
            raise QuantError(
                f"{where}: scales must be on the device of packed ({packed.device}); "
                f"got {scales.device}"
            )
        if zeros is not None:
            if t.kind != "uint":
                raise QuantError(
                    f"{where}: zero points apply to uint types; got zeros for {t.name}"
                )
            if not isinstance(zeros, torch.Tensor):
                raise QuantTypeError(
                    f"{where}: zeros must be a torch.Tensor or None; got {type(zeros).__name__}"
                )
            if zeros.dtype != scales.dtype:
                raise QuantError(
                    f"{where}: zeros must have the scales' dtype {scales.dtype}; got {zeros.dtype}"
                )
            _check_2d(zeros, (g, n), where, "zeros [G, N]")
            if not zeros.is_contiguous():
                raise QuantError(f"{where}: zeros must be contiguous")
            _check_aligned(zeros, where, "zeros")
            if zeros.device != packed.device:
                raise QuantError(
                    f"{where}: zeros must be on the device of packed ({packed.device}); "
                    f"got {zeros.device}"
                )
        if not _is_int(zero_offset):
            raise QuantTypeError(f"{where}: zero_offset must be an int; got {zero_offset!r}")
        zero_offset = int(zero_offset)
        if (t.kind != "uint" or zeros is not None) and zero_offset != 0:
            raise QuantError(
                f"{where}: zero_offset must be 0 for {t.name}"
                f"{' with zeros' if zeros is not None else ''}; got {zero_offset}"
            )
        if not 0 <= zero_offset < 1 << t.nbits:
            raise QuantError(
                f"{where}: zero_offset must lie in 0..{(1 << t.nbits) - 1}; got {zero_offset}"
            )
        if perm is not None:
            _check_perm_shape(perm, k, packed.device, where)
        self.dtype = t
        self.shape = (n, k)
        self.group_size = group_size
        self.packed = packed
        self.scales = scales
        self.zeros = zeros
        self.zero_offset = zero_offset
        self.format = FORMAT
        self.perm = perm

    # -- properties --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def scale_dtype(self) -> torch.dtype:
        return self.scales.dtype

    @property
    def nbits(self) -> int:
        return self.dtype.nbits

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def num_groups(self) -> int:
        """G, the number of groups along K (1 for per-channel)."""
        return self.scales.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of packed codes, scales and zeros (what a kernel reads)."""
        tensors = (self.packed, self.scales, self.zeros)
        return sum(x.numel() * x.element_size() for x in tensors if x is not None)

    # -- values ------------------------------------------------------------------------------
    def codes(self) -> torch.Tensor:
        """The ``[N, K]`` uint8 codes (two's complement for int types), unpacked, in the
        weight's own column order."""
        return self._unpermuted(self._stored_codes())

    def _stored_codes(self) -> torch.Tensor:
        return unpack_codes(self.packed, self.nbits, *self.shape)

    def _unpermuted(self, stored: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` columns in stored order put back in the weight's order."""
        if self.perm is None:
            return stored
        out = torch.empty_like(stored)
        out[:, self.perm] = stored
        return out

    def dequantize(self) -> torch.Tensor:
        """The weight the kernels use, ``[N, K]`` in the scale dtype (the module docstring)."""
        n, k = self.shape
        g = self.num_groups
        levels = self.dtype.decode(np.arange(1 << self.nbits)).astype(np.float32)
        table = torch.from_numpy(levels).to(self.device)
        v = table[self._stored_codes().long()].view(n, g, k // g)
        if self.zeros is not None:
            v = v - self.zeros.T.float()[..., None]
        elif self.zero_offset:
            v = v - _divisor(v, self.zero_offset)
        w = (v * self.scales.T.float()[..., None]).to(self.scale_dtype).view(n, k)
        return self._unpermuted(w)

    def to(self, device: torch.device | str | int) -> QuantizedWeight:
        """The same weight on ``device`` (self when it is there already)."""
        device = torch.device(device) if not isinstance(device, torch.device) else device
        return QuantizedWeight(
            dtype=self.dtype,
            shape=self.shape,
            group_size=self.group_size,
            packed=self.packed.to(device),
            scales=self.scales.to(device),
            zeros=None if self.zeros is None else self.zeros.to(device),
            zero_offset=self.zero_offset,
            perm=None if self.perm is None else self.perm.to(device),
        )

    def cpu(self) -> QuantizedWeight:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> QuantizedWeight:
        return self.to(torch.device("cuda", device) if device is not None else "cuda")

    def equal(self, other: QuantizedWeight) -> bool:
        """Whether ``other`` has the same metadata and bit-identical tensors."""
        if not isinstance(other, QuantizedWeight):
            return False
        same_meta = (self.dtype, self.shape, self.group_size, self.zero_offset, self.format) == (
            other.dtype,
            other.shape,
            other.group_size,
            other.zero_offset,
            other.format,
        )
        if not same_meta or (self.zeros is None) != (other.zeros is None):
            return False
        if (self.perm is None) != (other.perm is None):
            return False
        pairs = [(self.packed, other.packed), (self.scales, other.scales)]
        for mine, theirs in ((self.zeros, other.zeros), (self.perm, other.perm)):
            if mine is not None:
                pairs.append((mine, theirs))
        return all(
            a.dtype == b.dtype and a.device == b.device and torch.equal(a, b) for a, b in pairs
        )

    # -- serialisation -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors (``packed``, ``scales``, ``zeros`` and ``perm`` if any) and metadata (str and
        int)."""
        d: dict[str, Any] = {
            "packed": self.packed,
            "scales": self.scales,
            "format": self.format,
            "dtype": self.dtype.name,
            "out_features": self.out_features,
            "in_features": self.in_features,
            "group_size": self.group_size,
            "zero_offset": self.zero_offset,
        }
        for key in ("zeros", "perm"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> QuantizedWeight:
        """Rebuild a weight from :meth:`state_dict`, checking the format, shapes and dtypes."""
        where = "QuantizedWeight.from_state_dict"
        if not isinstance(state, Mapping):
            raise QuantTypeError(f"{where}: state must be a mapping; got {type(state).__name__}")
        required = (
            "packed",
            "scales",
            "format",
            "dtype",
            "out_features",
            "in_features",
            "group_size",
            "zero_offset",
        )
        missing = [key for key in required if key not in state]
        if missing:
            raise QuantError(f"{where}: state lacks {', '.join(map(repr, missing))}")
        unknown = sorted(set(state) - set(required) - {"zeros", "perm"})
        if unknown:
            raise QuantError(f"{where}: state has unknown keys {', '.join(map(repr, unknown))}")
        _check_format(state["format"], where)

        def build(packed: torch.Tensor) -> QuantizedWeight:
            return cls(
                dtype=state["dtype"],
                shape=(state["out_features"], state["in_features"]),
                group_size=state["group_size"],
                packed=packed,
                scales=state["scales"],
                zeros=state.get("zeros"),
                zero_offset=state["zero_offset"],
                perm=state.get("perm"),
                where=where,
            )

        weight = build(state["packed"])
        if weight.perm is not None:
            check_perm(weight.perm, where)
        if state["format"] == FORMAT:
            return weight
        # An older order, checked as it is: packed anew.
        n, k = weight.shape
        return build(convert_packed(weight.packed, weight.nbits, n, k, state["format"]))

    @classmethod
    def from_codes(
        cls,
        codes: Any,
        scales: Any,
        zeros: Any = None,
        dtype: Any = None,
        group_size: int = 128,
        *,
        zero_offset: int | None = None,
        g_idx: Any = None,
    ) -> QuantizedWeight:
        """Import integer codes quantised elsewhere (GPTQ, AWQ, ...).

        Parameters
        ----------
        codes
            ``[N, K]`` integers: for uint types the unsigned codes ``0..2^b-1``; for int
            types the signed values ``-2^(b-1)..2^(b-1)-1`` (or their b-bit two's
            complement codes, as :meth:`codes` returns); for floats the code bits.
        scales
            ``[G, N]`` float16 or bfloat16, G = K // group_size (1 for -1).
        zeros
            uint types only: ``[G, N]`` integers in ``0..2^b-1`` (any integer or float
            dtype holding whole numbers), or None.
        dtype
            The low-bit type of the codes (required).
        group_size
            32, 64, 128, or -1.
        zero_offset
            uint types without ``zeros``: the zero of every group, by default 2^(b-1)
            (offset binary, as :func:`quantize` uses); 0 makes the codes plain magnitudes.
        g_idx
            ``[K]`` integers, the group of each in-feature, or None (feature k in group
            ``k // group_size``). Act-order (GPTQ ``desc_act``) weights have each group's
            ``group_size`` features anywhere in K: the weight then stores them in group order
            (:attr:`perm`) and :func:`~tilevm.ops.quant_matmul` gathers x to match.

        The dequantised weight is ``scale_dtype(float32(decode(code) - z) * float32(s))``,
        with the scale and zero of the code's group.
        """
        where = "QuantizedWeight.from_codes"
        if dtype is None:
            raise QuantError(f"{where}: dtype is required (the low-bit type of the codes)")
        t = _low_bit_dtype(dtype, where)
        b = t.nbits
        c = _as_tensor(codes, where, "codes")
        if not _is_integer_dtype(c.dtype):
            raise QuantError(f"{where}: codes must be an integer tensor; got {c.dtype}")
        _check_2d(c, None, where, "codes [N, K]")
        n, k = c.shape
        if n == 0 or k == 0:
            raise QuantError(f"{where}: codes must not be empty; got shape {list(c.shape)}")
        group_size = _group_size(group_size, k, where)
        g = 1 if group_size == -1 else k // group_size
        hi = (1 << b) - 1
        lo = -(1 << (b - 1)) if t.kind == "int" else 0
        if int(c.min()) < lo or int(c.max()) > hi:
            bad = (c.long() < lo) | (c.long() > hi)
            what = (
                f"signed {t.name} values {-(1 << (b - 1))}..{(1 << (b - 1)) - 1} (or their "
                f"codes 0..{hi})"
                if t.kind == "int"
                else f"{t.name} codes 0..{hi}"
            )
            raise QuantError(
                f"{where}: codes must be {what}; got {c[bad][0].item()} at index {_first_bad(bad)}"
            )
        c = (c.to(torch.int16) & hi).to(torch.uint8)
        perm = None if g_idx is None else _group_order(g_idx, k, g, c.device, where)
        if perm is not None:
            c = c[:, perm]
        if t.is_float:
            finite = np.isfinite(t.decode(np.arange(1 << b)))
            if not finite.all():
                bad = ~torch.from_numpy(finite).to(c.device)[c.long()]
                if bad.any():
                    raise QuantError(
                        f"{where}: codes must encode finite {t.name} values; got the inf/NaN "
                        f"code {c[bad][0].item()} at index {_first_bad(bad)}"
                    )
        s = _as_tensor(scales, where, "scales")
        if s.dtype not in SCALE_DTYPES:
            raise QuantError(
                f"{where}: scales must be float16 or bfloat16; got {s.dtype} "
                "(convert with .half() or .bfloat16())"
            )
        _check_2d(s, (g, n), where, "scales [G, N]")
        _check_device(s, c.device, where, "scales")
        if not torch.isfinite(s).all():
            raise QuantError(f"{where}: scales must be finite")
        z = None
        if zeros is not None:
            if t.kind != "uint":
                raise QuantError(
                    f"{where}: zero points apply to uint types; got zeros for {t.name}"
                )
            if zero_offset not in (None, 0):
                raise QuantError(f"{where}: give zeros or zero_offset, not both")
            z = _as_tensor(zeros, where, "zeros")
            _check_2d(z, (g, n), where, "zeros [G, N]")
            _check_device(z, c.device, where, "zeros")
            if z.dtype == torch.bool or z.dtype.is_complex:
                raise QuantError(f"{where}: zeros must hold integers; got {z.dtype}")
            zf = z.double()
            bad = (zf != zf.round()) | (zf < 0) | (zf > hi)
            if bad.any():
                raise QuantError(
                    f"{where}: zeros must be whole numbers in 0..{hi}; got "
                    f"{zf[bad][0].item()} at index {_first_bad(bad)}"
                )
            z = zf.to(s.dtype).contiguous()
            zero_offset = 0
        elif zero_offset is None:
            zero_offset = 1 << (b - 1) if t.kind == "uint" else 0
        return cls(
            dtype=t,
            shape=(n, k),
            group_size=group_size,
            packed=pack_codes(c, b),
            scales=s.contiguous(),
            zeros=z,
            zero_offset=zero_offset,
            perm=perm,
            where=where,
        )

    def __repr__(self) -> str:
        zero = "zeros=per-group" if self.zeros is not None else f"zero_offset={self.zero_offset}"
        scale = str(self.scale_dtype).removeprefix("torch.")
        perm = ", act_order (perm)" if self.perm is not None else ""
        return (
            f"QuantizedWeight({self.dtype.name}, out_features={self.out_features}, "
            f"in_features={self.in_features}, group_size={self.group_size}, "
            f"scale_dtype={scale}, {zero}{perm}, device={self.device}, format={self.format!r})"
        )


__all__ = [
    "GROUP_SIZES",
    "SCALE_DTYPES",
    "QuantError",
    "QuantTypeError",
    "QuantizedWeight",
    "quantize",
]
