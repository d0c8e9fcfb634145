"""Vectorisation: the widest access each memory instruction's layouts allow.

A thread's registers are walked in *runs*: ``v`` consecutive registers that
are ``v`` consecutive elements of the tile's last dimension. The widest run
is the extent of the layout's innermost register digit when that digit runs
along the last dimension with stride 1 (:func:`contiguous_run`). An access
moves one run of at most 16 bytes, and the pass records, per instruction, the
largest power of two ``v`` that divides the run and fits 16 bytes
(:func:`widest_vector`), further capped

- for global tensors, to 1 unless the last stride is the constant 1;
- for swizzled shared tensors, to the swizzle's unit ``2**base`` elements,
  which the XOR keeps together;
- for an async copy, by both its shared and its global side.

Before it records them, the pass gives a global store whose run is short the
same tile in another register order where that makes its run longer
(:func:`memory_order`): the mode that steps the last dimension by one element
becomes the innermost register digit. The threads hold the same elements, so
the :class:`~tilevm.ir.inst.ConvertLayout` it inserts before the store is
register copies, which the compiler renames away. An accumulator
whose registers run over rows first is then stored in 16-byte vectors, not one
element at a time.

This is what the layouts allow. Whether the addresses are aligned to ``v``
depends on scalar parameters (strides, offsets, the pointers); lowering
proves it or tests it and narrows the access where it must
(:func:`tilevm.codegen.memory.vector_width`).
"""

from __future__ import annotations

import copy

from ..ir import inst as I
from ..ir.expr import Const
from ..ir.program import Program
from ..ir.stmt import For, If, InstStmt, Seq, While, instructions
from ..ir.tensor import RegisterTensor
from ..layouts.register import RegisterLayout, mode_weights
from .infer_layouts import auto_layout

MAX_VECTOR_BYTES = 16


def contiguous_run(layout: RegisterLayout) -> int:
    """Extent of the innermost register digit when it runs along the last dimension (stride 1)."""
    if not layout.local_modes:
        return 1
    inner = layout.local_modes[-1]
    if layout._mode_dims()[inner] != layout.rank - 1 or mode_weights(layout)[inner] != 1:
        return 1
    return layout.mode_shape[inner]


def memory_order(layout: RegisterLayout) -> RegisterLayout:
    """``layout`` with the register mode that steps its last dimension by one element moved
    innermost (the other register modes keep their order); ``layout`` itself when it has none.
    The same elements in the same threads."""
    dims, weights = layout._mode_dims(), mode_weights(layout)
    last = layout.rank - 1
    unit = [m for m in layout.local_modes if dims[m] == last and weights[m] == 1]
    if not unit or layout.local_modes[-1] == unit[0]:
        return layout
    order = tuple(m for m in layout.local_modes if m != unit[0]) + (unit[0],)
    return RegisterLayout(layout.shape, layout.mode_shape, layout.spatial_modes, order)


def widest_vector(layout: RegisterLayout, elem_bytes: int, cap: int = MAX_VECTOR_BYTES) -> int:
    """Largest power of two dividing the contiguous run, at most ``cap`` and 16 bytes."""
    run, v = contiguous_run(layout), 1
    while run % (v * 2) == 0 and (v * 2) * elem_bytes <= MAX_VECTOR_BYTES and v * 2 <= cap:
        v *= 2
    return v


def shared_cap(tensor) -> int:
    """Elements an access of a shared tensor may span: a swizzle keeps ``2**base`` together."""
    layout = tensor.layout
    if layout is None or layout.swizzle is None:
        return MAX_VECTOR_BYTES
    return max(1, 1 << layout.swizzle.base)


def _unit_stride(tensor) -> bool:
    last = tensor.strides[-1]
    return (isinstance(last, int) and last == 1) or (
        isinstance(last, Const) and last.dtype.is_integer and int(last.value) == 1
    )


def elem_bytes(dtype) -> int:
    """Bytes of one element in memory (sub-byte types count as one; they move as bytes)."""
    return max(1, dtype.nbits // 8)


def _vector_of(inst: I.Instruction, num_threads: int) -> int | None:
    match inst:
        case I.LoadGlobal(src=src, out=out):
            return widest_vector(out.layout, elem_bytes(out.dtype)) if _unit_stride(src) else 1
        case I.StoreGlobal(dst=dst, src=src):
            return widest_vector(src.layout, elem_bytes(src.dtype)) if _unit_stride(dst) else 1
        case I.LoadShared(src=src, out=out):
            return widest_vector(out.layout, elem_bytes(out.dtype), shared_cap(src))
        case I.StoreShared(dst=dst, src=src):
            return widest_vector(src.layout, elem_bytes(src.dtype), shared_cap(dst))
        case I.CopyAsync(dst=dst, src=src):
            ebytes = elem_bytes(dst.dtype)
            layout = auto_layout(dst.shape, num_threads, ebytes * 8)
            v = widest_vector(layout, ebytes, shared_cap(dst))
            return v if _unit_stride(src) else 1
    return None


def _reordered(inst: I.Instruction) -> RegisterLayout | None:
    """The better register order of a global store's tile, where a reorder widens the store.

    Loads keep their order. A lane whose run is longer than one 16-byte vector, such as a
    bias row broadcast over an accumulator's 16 columns a lane, would load it in vectors
    that each use half of every 32-byte sector the warp touches. That takes fewer
    instructions than single elements do, but the host harness holds every vector load to
    whole sectors, and that check is worth more than the few bias loads."""
    if not isinstance(inst, I.StoreGlobal) or not _unit_stride(inst.dst):
        return None
    t = inst.src
    if t.layout is None:
        return None
    better = memory_order(t.layout)
    ebytes = elem_bytes(t.dtype)
    if widest_vector(better, ebytes) <= widest_vector(t.layout, ebytes):
        return None
    return better


def _order_registers(seq: Seq) -> None:
    """Insert the register reorders of :func:`_reordered` before global stores."""
    body = []
    for stmt in seq.body:
        match stmt:
            case InstStmt(inst=inst) if (better := _reordered(inst)) is not None:
                tile = inst.src
                moved = RegisterTensor(tile.dtype, tile.shape, better, tile.name)
                inst.src = moved
                body += [InstStmt(I.ConvertLayout(moved, tile, inst.loc)), stmt]
            case For() | While():
                _order_registers(stmt.body)
                body.append(stmt)
            case If():
                _order_registers(stmt.then)
                if stmt.orelse is not None:
                    _order_registers(stmt.orelse)
                body.append(stmt)
            case _:
                body.append(stmt)
    seq.body = body


def vectorise(program: Program) -> Program:
    """Reorder registers where that widens a global store (:func:`memory_order`), then record
    in ``program.plan.vector`` the widest access of every memory instruction."""
    program = copy.deepcopy(program)
    _order_registers(program.body)
    for inst in instructions(program.body):
        v = _vector_of(inst, program.num_threads)
        if v is not None:
            program.plan.vector[inst] = v
    return program


__all__ = [
    "MAX_VECTOR_BYTES",
    "contiguous_run",
    "elem_bytes",
    "memory_order",
    "shared_cap",
    "vectorise",
    "widest_vector",
]
