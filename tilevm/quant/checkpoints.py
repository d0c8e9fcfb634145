"""Weights from GPTQ and AWQ checkpoints: their packed int32 tensors as :class:`QuantizedWeight`.

A GPTQ linear (AutoGPTQ, GPTQModel, the ``gptq`` format of Hugging Face
checkpoints) holds

* ``qweight``: int32 ``[K * b / 32, N]``, the codes of each column packed along K,
* ``qzeros``: int32 ``[G, N * b / 32]``, the zero points packed along N,
* ``scales``: float16 ``[G, N]``,
* ``g_idx``: int32 ``[K]``, the group of each in-feature (act order puts a
  group's features anywhere in K),

each packed tensor a little-endian stream of b-bit fields: field i of a row
occupies bits ``b i ... b i + b - 1`` of the row's words read as one integer, so
3-bit fields cross word boundaries. The weight is ``(q - z) * s``. The original
``gptq`` format stores ``z - 1`` in qzeros; ``gptq_v2`` stores z.

An AWQ linear (AutoAWQ's GEMM layout) holds 4-bit codes: ``qweight`` int32 ``[K,
N / 8]`` and ``qzeros`` int32 ``[G, N / 8]`` packed along N, the eight nibbles of
a word (low to high) holding columns ``0, 2, 4, 6, 1, 3, 5, 7`` of its eight,
and ``scales`` ``[G, N]``; the weight is ``(q - z) * s``.

Both import exactly: the dequantised weight is the checkpoint's, and zero points
that are all ``2^(b-1)`` (symmetric GPTQ) become the fixed offset of an
offset-binary uint, so the kernels load no zeros.
"""

from __future__ import annotations

from typing import Any

import torch

from .weight import (
    GROUP_SIZES,
    QuantError,
    QuantizedWeight,
    _as_tensor,
    _check_2d,
)

GPTQ_FORMATS = ("gptq", "gptq_v2")
"""How a GPTQ checkpoint stores zero points: ``z - 1`` (the original) or z."""

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
"""The column of its eight that nibble i (from the low end) of an AWQ word holds."""

# Rows unpacked at a time, so the int64 temporaries of a large tensor stay about 64 MiB.
_CHUNK_ELEMENTS = 1 << 23


def unpack_int32(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first ``count`` ``bits``-bit fields of each row of ``packed`` (int32 ``[R, W]``, a
    row a little-endian stream of ``32 W`` bits), as uint8 ``[R, count]``."""
    rows, words = packed.shape
    if count * bits > 32 * words:
        raise QuantError(
            f"unpack_int32: {count} fields of {bits} bits need {-(-count * bits // 32)} words a "
            f"row; the tensor has {words}"
        )
    mask = (1 << bits) - 1
    start = torch.arange(count, device=packed.device) * bits
    word, shift = start // 32, start % 32
    out = torch.empty((rows, count), dtype=torch.uint8, device=packed.device)
    step = max(1, _CHUNK_ELEMENTS // max(count, 1))
    for r in range(0, rows, step):
        w = packed[r : r + step].long() & 0xFFFFFFFF
        w = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)  # a field may end past the last
        # Two adjacent words as one 64-bit integer (the high word's top bits wrap into the sign,
        # below the ones a field takes).
        pair = w[:, word] | (w[:, word + 1] << 32)
        out[r : r + step] = ((pair >> shift) & mask).to(torch.uint8)
    return out


def _int32(value: Any, where: str, arg: str) -> torch.Tensor:
    t = _as_tensor(value, where, arg)
    if t.dtype != torch.int32:
        raise QuantError(f"{where}: {arg} must be int32 (packed fields); got {t.dtype}")
    _check_2d(t, None, where, arg)
    return t


def _words_for(fields: int, bits: int, where: str, what: str) -> int:
    if (fields * bits) % 32:
        raise QuantError(
            f"{where}: {what} = {fields} times {bits} bits is no whole number of words"
        )
    return fields * bits // 32


def _groups(scales: Any, n: int, where: str) -> tuple[torch.Tensor, int]:
    s = _as_tensor(scales, where, "scales")
    _check_2d(s, None, where, "scales [G, N]")
    if s.shape[1] != n:
        raise QuantError(
            f"{where}: scales must have shape [G, {n}] (N from qweight); got {list(s.shape)}"
        )
    return s, s.shape[0]


def _implied_group_size(group_size: Any, k: int, groups: int, where: str) -> int:
    """The group size the scales imply (``k // groups``; -1 for one group), checked against one
    given."""
    implied = -1 if groups == 1 else k // groups
    if groups < 1 or (groups > 1 and k % groups):
        raise QuantError(f"{where}: scales have {groups} groups, which do not divide K = {k}")
    if group_size is not None and group_size != implied and not (groups == 1 and group_size == k):
        raise QuantError(
            f"{where}: group_size = {group_size} but the scales have {groups} groups over "
            f"K = {k}, so group_size = {implied}"
        )
    if implied not in GROUP_SIZES:
        raise QuantError(
            f"{where}: the checkpoint's group size {implied} is not one tilevm's kernels take "
            f"({', '.join(map(str, GROUP_SIZES))})"
        )
    return implied


def _zeros(z: torch.Tensor, bits: int) -> torch.Tensor | None:
    """Per-group zeros, or None when every one is 2^(b-1): offset binary, no zeros to load."""
    return None if bool((z == 1 << (bits - 1)).all()) else z


def from_gptq(
    qweight: Any,
    qzeros: Any,
    scales: Any,
    g_idx: Any = None,
    *,
    bits: int,
    group_size: int | None = None,
    checkpoint_format: str = "gptq",
) -> QuantizedWeight:
    """A GPTQ linear's tensors (see the module docstring) as a ``uint{bits}`` weight.

    ``g_idx`` may be None (feature k in group ``k // group_size``); act-order
    weights keep their order in :attr:`QuantizedWeight.perm`. ``group_size``,
    when given, is checked against the scales'. ``checkpoint_format`` is
    ``"gptq"`` (qzeros hold ``z - 1``) or ``"gptq_v2"`` (they hold z).
    """
    where = "tilevm.quant.from_gptq"
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise QuantError(f"{where}: bits must be an int in 1..8; got {bits!r}")
    if checkpoint_format not in GPTQ_FORMATS:
        raise QuantError(
            f"{where}: checkpoint_format must be one of {', '.join(map(repr, GPTQ_FORMATS))}; "
            f"got {checkpoint_format!r}"
        )
    qw = _int32(qweight, where, "qweight")
    n = qw.shape[1]
    if (qw.shape[0] * 32) % bits:
        raise QuantError(
            f"{where}: qweight's {qw.shape[0]} rows of words hold no whole number "
            f"of {bits}-bit fields"
        )
    k = qw.shape[0] * 32 // bits
    s, g = _groups(scales, n, where)
    gs = _implied_group_size(group_size, k, g, where)
    qz = _int32(qzeros, where, "qzeros")
    want = (g, _words_for(n, bits, where, "N"))
    if tuple(qz.shape) != want:
        raise QuantError(f"{where}: qzeros must have shape {list(want)}; got {list(qz.shape)}")
    codes = unpack_int32(qw.T.contiguous(), bits, k)  # [N, K]
    z = unpack_int32(qz, bits, n).to(torch.int16)  # [G, N]
    if checkpoint_format == "gptq":
        z = z + 1
        if bool((z > (1 << bits) - 1).any()):
            bad = tuple(int(i) for i in (z > (1 << bits) - 1).nonzero()[0])
            raise QuantError(
                f"{where}: qzeros at {bad} is the all-ones field, which the original gptq "
                f"format stores for a zero point of 0 (it cannot represent it: z - 1 = -1 "
                "overflows into the fields above); re-export the checkpoint as gptq_v2"
            )
    return QuantizedWeight.from_codes(
        codes, s, _zeros(z, bits), dtype=f"uint{bits}", group_size=gs, g_idx=g_idx
    )


def from_awq(
    qweight: Any, qzeros: Any, scales: Any, *, group_size: int | None = None
) -> QuantizedWeight:
    """An AWQ linear's tensors (GEMM layout, 4 bits; see the module docstring) as a ``uint4``
    weight. ``group_size``, when given, is checked against the scales'."""
    where = "tilevm.quant.from_awq"
    qw = _int32(qweight, where, "qweight")
    k, n = qw.shape[0], qw.shape[1] * 8
    s, g = _groups(scales, n, where)
    gs = _implied_group_size(group_size, k, g, where)
    qz = _int32(qzeros, where, "qzeros")
    if tuple(qz.shape) != (g, n // 8):
        raise QuantError(f"{where}: qzeros must have shape {[g, n // 8]}; got {list(qz.shape)}")
    # Nibble i of word j holds column 8 j + AWQ_ORDER[i].
    order = torch.tensor(AWQ_ORDER, device=qw.device)
    columns = (torch.arange(n // 8, device=qw.device)[:, None] * 8 + order).reshape(-1)

    def unpacked(t: torch.Tensor) -> torch.Tensor:
        fields = unpack_int32(t, 4, n)
        out = torch.empty_like(fields)
        out[:, columns] = fields
        return out

    codes = unpacked(qw).T.contiguous()  # [N, K]
    zeros = _zeros(unpacked(qz).to(torch.int16), 4)
    return QuantizedWeight.from_codes(codes, s, zeros, dtype="uint4", group_size=gs)


__all__ = ["AWQ_ORDER", "GPTQ_FORMATS", "from_awq", "from_gptq", "unpack_int32"]
