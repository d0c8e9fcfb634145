"""Shared-memory planning: one byte buffer per block, tensors at 16-byte aligned offsets.

Shared tensors are placed by a stack that follows the program's
``alloc_shared`` / ``free_shared`` order: an allocation goes on top, and
freeing the top tensor (or a run of already-freed tensors under it) lowers the
top again, so a later tensor reuses the space. Freeing a tensor below the top
only marks it; its space comes back when everything above it is freed.
Scratch space (a layout conversion, a cross-warp reduction) is taken just
above the top for one instruction and never outlives it.

Worked example, allocations of 1024, 100 and 512 bytes::

    a = alloc(1024)   -> offset 0,    top 1024
    b = alloc(100)    -> offset 1024, top 1124
    free(a)           -> a marked,    top 1124 (b is still above it)
    scratch(64)       -> offset 1136 (16-byte aligned), top unchanged
    free(b)           -> top 0: a and b are both gone
    c = alloc(512)    -> offset 0

The buffer needs ``peak`` bytes: the highest end any tensor or scratch reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALIGN = 16


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass
class _Slot:
    key: Any
    offset: int
    nbytes: int
    freed: bool = False


@dataclass
class SharedAllocator:
    """Offsets of shared tensors and scratch space in one buffer; see the module docs."""

    align: int = ALIGN
    peak: int = 0
    _stack: list[_Slot] = field(default_factory=list)

    @property
    def top(self) -> int:
        """The first free byte above every live tensor."""
        return self._stack[-1].offset + self._stack[-1].nbytes if self._stack else 0

    def alloc(self, key: Any, nbytes: int) -> int:
        """Place ``nbytes`` on top of the live tensors; returns the offset."""
        assert nbytes >= 0
        assert all(slot.key is not key for slot in self._stack), "allocated twice"
        offset = _round_up(self.top, self.align)
        self._stack.append(_Slot(key, offset, nbytes))
        self.peak = max(self.peak, offset + nbytes)
        return offset

    def free(self, key: Any) -> None:
        """Release the tensor ``key``; the top drops past every freed tensor at the top."""
        for slot in self._stack:
            if slot.key is key:
                slot.freed = True
                break
        else:
            raise AssertionError("freeing a tensor that was never allocated")
        while self._stack and self._stack[-1].freed:
            self._stack.pop()

    def scratch(self, nbytes: int) -> int:
        """An offset for ``nbytes`` of scratch above the live tensors (not kept)."""
        offset = _round_up(self.top, self.align)
        self.peak = max(self.peak, offset + nbytes)
        return offset

    def offset_of(self, key: Any) -> int:
        for slot in self._stack:
            if slot.key is key:
                return slot.offset
        raise AssertionError("not a live shared tensor")


__all__ = ["ALIGN", "SharedAllocator"]
