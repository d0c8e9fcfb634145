"""Shared-memory planning: a layout for every shared tensor, and its place in the block's buffer.

**Layouts.** A shared tensor without one (``alloc_shared`` in a kernel)
gets row-major storage, with an XOR swizzle when row-major would make the
accesses the program makes of it conflict on banks:
:func:`~tilevm.layouts.shared.choose_swizzle` weighs every register load and
store of the tensor and every async copy into it (the copy uses the
coalesced :func:`~tilevm.passes.infer_layouts.auto_layout`), each as the
instruction that will make it: a load whose layout is a sequence of 8x8
matrices as the rows ``ldmatrix`` addresses (each thread 16 bytes, a phase
of 8 rows per matrix), any other access with the widest vector its layout
allows. A load or store of a part of the tensor (``load(s, offsets,
shape)``) is weighed at its offsets; where an offset is not a constant, at
each place in the tensor that is a whole multiple of the part's extent (the
k steps of a staged tile), up to :data:`PLACES` of them. A user's layout is
kept.

A tensor read (or written) in parts tries padded rows before swizzles: a
padded row keeps every part a plain offset from one address a thread
computes once (an immediate, where the offsets are constants), where a
swizzle costs an XOR a part and a register for each address the compiler
keeps. For a GEMM's staged ``[rows,
64]`` fp16 tile of x, read 16 columns a k step with ``ldmatrix``, row-major
puts the 8 rows of a matrix 128 bytes apart, all in the same 4 banks: 8
wavefronts where 1 is ideal. Rows of 72 elements (8 of padding, 12.5 % more
memory) put them 144 bytes apart, in 8 different groups of 4 banks: 1
wavefront, and the 16-byte ``cp.async`` writes stay conflict-free.
(``Swizzle(3, 3, 3)``, the row's low 3 bits XORed into the 16-byte chunk,
would do it in place, and does for tiles read whole.)

**Offsets.**
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

The pass records each tensor's offset in ``program.plan.shared_offsets`` and
the bytes the tensors need in ``program.plan.shared_bytes``; lowering places
scratch above the live tensors with the same allocator.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LayoutError
from ..ir import inst as I
from ..ir.expr import Const
from ..ir.program import Program
from ..ir.stmt import instructions
from ..layouts.shared import choose_swizzle, shared_row_major
from .infer_layouts import auto_layout
from .ldmatrix_match import ROW, ldmatrix_plan
from .vectorise import elem_bytes, widest_vector

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


def _accesses(program: Program, tensor) -> list[tuple[Any, int]] | None:
    """(register layout or index table, vector) of every access to ``tensor`` (see the module
    docs); None if one has no layout."""
    out: list[tuple[Any, int]] = []
    for inst in instructions(program.body):
        match inst:
            case I.LoadShared(src=src, out=reg) | I.StoreShared(dst=src, src=reg) if src is tensor:
                if reg.layout is None:
                    return None
                load = isinstance(inst, I.LoadShared)
                for table, vector in _instruction_tables(reg, load, program.num_threads):
                    for place in _places(inst.offsets, reg.shape, tensor.shape):
                        out.append((table + np.asarray(place), vector))
            case I.CopyAsync(dst=dst) if dst is tensor:
                layout = auto_layout(tensor.shape, program.num_threads, tensor.dtype.nbits)
                out.append((layout, widest_vector(layout, elem_bytes(tensor.dtype))))
    return out


PLACES = 16  # the most places a part with a variable offset is weighed at


def _instruction_tables(reg, load: bool, num_threads: int) -> list[tuple[np.ndarray, int]]:
    """(index table relative to the part, vector) of each instruction that accesses ``reg``'s
    tile: one per ``ldmatrix`` of a load ``select_instructions`` will make one, else the
    layout's elements in its widest vectors."""
    plan = ldmatrix_plan(reg.layout, reg.dtype, num_threads) if load else None
    if plan is None:
        return [(reg.layout.table(), widest_vector(reg.layout, elem_bytes(reg.dtype)))]
    tid = np.arange(num_threads)
    tables = []
    for op in plan.ops:
        starts = np.stack([np.asarray(rows(tid)) for rows in op.rows], axis=-1)
        table = np.repeat(starts[:, None, :], ROW, axis=1)
        table[:, :, -1] += np.arange(ROW)
        tables.append((table, ROW))
    return tables


def _places(offsets, part: tuple[int, ...], whole: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The offsets a part of extents ``part`` is weighed at: constants as they are, others at
    whole multiples of the extent inside the tensor (the first :data:`PLACES` combinations)."""
    choices = []
    for offset, extent, size in zip(offsets, part, whole):
        if isinstance(offset, int):
            choices.append([offset])
        elif isinstance(offset, Const):
            choices.append([int(offset.value)])
        else:
            choices.append(list(range(0, size - extent + 1, extent)) or [0])
    return list(itertools.islice(itertools.product(*choices), PLACES))


def _accessed_in_parts(program: Program, tensor) -> bool:
    """Whether a load or store takes a part of ``tensor`` rather than all of it."""
    for inst in instructions(program.body):
        match inst:
            case I.LoadShared(src=src, out=reg) | I.StoreShared(dst=src, src=reg) if src is tensor:
                if tuple(reg.shape) != tuple(tensor.shape):
                    return True
    return False


def _choose_layout(program: Program, tensor):
    plain = shared_row_major(*tensor.shape)
    accesses = _accesses(program, tensor)
    if not accesses or tensor.dtype.nbits % 8:
        return plain
    pad_first = _accessed_in_parts(program, tensor)
    try:
        return choose_swizzle(tensor.shape, tensor.dtype.nbits, accesses, pad_first=pad_first)
    except LayoutError:
        return plain  # no candidate is conflict-free, or an access is not costable: keep it plain


def plan_shared_memory(program: Program) -> Program:
    """Give shared tensors layouts and offsets; see the module docs."""
    program = copy.deepcopy(program)
    allocator = SharedAllocator()
    for inst in instructions(program.body):
        if isinstance(inst, I.AllocShared):
            tensor = inst.out
            if tensor.layout is None:
                tensor.layout = _choose_layout(program, tensor)
            nbytes = tensor.layout.size * elem_bytes(tensor.dtype)
            program.plan.shared_offsets[tensor] = allocator.alloc(tensor, nbytes)
        elif isinstance(inst, I.FreeShared):
            allocator.free(inst.tensor)
    program.plan.shared_bytes = allocator.peak
    return program


__all__ = ["ALIGN", "SharedAllocator", "plan_shared_memory"]
