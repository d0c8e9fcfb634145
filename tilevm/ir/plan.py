"""What the passes after layout inference decide, kept beside the program they decided it for.

Layout inference writes its result into the tensors themselves (every
register tile gets a ``layout``). The later passes decide things that belong
to one instruction or to the whole block rather than to a tensor, and record
them in the program's :class:`Plan`:

- ``plan_shared_memory``: where each shared tensor lives in the block's one
  buffer (``shared_offsets``, bytes) and how many bytes the tensors need
  (``shared_bytes``; scratch for layout conversions comes on top at lowering);
- ``vectorise``: per memory instruction, the widest access in elements its
  layouts allow (``vector``); lowering narrows it where the alignment of the
  actual pointers and strides is not known;
- ``select_instructions``: per instruction, the hardware instruction or code
  sequence chosen for it (``selected``), e.g. ``ldmatrix.x4.trans`` for a
  shared load, ``mma.m16n8k16.f16`` for a dot, a dequantisation sequence for
  a cast.

Entries are keyed by the instruction (or tensor) object itself: instructions
compare by identity. The printer shows an instruction's entries after its
line (``# vector=8 ldmatrix.x4``), so ``TILEVM_DUMP_IR`` shows what each pass
decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    """Per-instruction and per-block decisions of the passes; see the module docs."""

    shared_offsets: dict[Any, int] = field(default_factory=dict)
    shared_bytes: int = 0
    vector: dict[Any, int] = field(default_factory=dict)
    selected: dict[Any, Any] = field(default_factory=dict)

    def note(self, inst: Any) -> str:
        """What the plan says of ``inst``, as printed after its line ("" when nothing)."""
        parts = []
        if inst in self.vector:
            parts.append(f"vector={self.vector[inst]}")
        out = getattr(inst, "out", None)
        if out is not None and out in self.shared_offsets:
            parts.append(f"offset={self.shared_offsets[out]}")
        if inst in self.selected:
            parts.append(str(self.selected[inst]))
        return " ".join(parts)


@dataclass(frozen=True)
class Selected:
    """An instruction choice: its ``name`` as printed, and what lowering needs of it."""

    name: str
    data: Any = None

    def __str__(self) -> str:
        return self.name


__all__ = ["Plan", "Selected"]
