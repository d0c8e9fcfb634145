"""Interpretation of the memory instructions: global views, loads, stores, shared memory, copies.

A global access of a ``(m, n)`` tile at offsets ``(i, j)`` touches elements
``(i + a, j + b)`` for ``a < m, b < n``; element ``(r, c)`` is in bounds when
``0 <= r < shape[0]`` and ``0 <= c < shape[1]`` and sits at flat position
``r * strides[0] + c * strides[1]`` of the argument buffer. Masked accesses
skip elements out of bounds (loads give ``other``, converted to the tile's type
like a cast; async copies give zero); an unmasked access with one is an error,
and so is any touched element whose flat position lies outside the buffer,
masked or not.

Worked example: a ``(2, 4)`` load at offsets ``(1, 6)`` of a ``(3, 8)``
tensor with strides ``(10, 1)`` (rows padded to 10 elements):

=======  =========================  =========================
row      elements                   flat positions
=======  =========================  =========================
1        (1,6) (1,7) (1,8)x (1,9)x  16 17 -- --
2        (2,6) (2,7) (2,8)x (2,9)x  26 27 -- --
=======  =========================  =========================

(x: column 8 and 9 are outside the shape, so masked off or an error.)

Shared memory races are checked per element. Each write (a store, or an async
copy landing at a wait) marks the elements it wrote with its own number until
the next ``sync_threads``; a load that meets a mark is a missing barrier. An
async copy marks its destination *pending* from issue until a wait lands it;
touching a pending element is a copy still in flight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import inst as I
from ..ir.tensor import GlobalTensor, SharedTensor
from .scalars import evaluate_int, wrap_scalar
from .state import RULES, Binding, Machine, PendingCopy, line_of, new_shared, tensor_name
from .values import from_storage, storage_dtype, to_storage


# -- global memory -------------------------------------------------------------------------------
@RULES.rule(I.GlobalView)
def _global_view(m: Machine, inst: I.GlobalView) -> None:
    tensor = inst.out
    found = m.buffers.get(tensor.ptr)
    if found is None:
        raise m.error(f"GlobalView: '{tensor.ptr.name}' is not a pointer parameter")
    param, buffer = found
    store = storage_dtype(tensor.dtype)
    if buffer.dtype != store:
        # Viewing a pointer as another type reads the same bytes.
        if buffer.nbytes % store.itemsize:
            raise m.error(
                f"GlobalView: the {buffer.nbytes} bytes of '{param.name}' are not a whole "
                f"number of {tensor.dtype} elements"
            )
        buffer = buffer.view(store)
    shape = tuple(evaluate_int(m, s, "a global tensor size") for s in tensor.shape)
    strides = tuple(evaluate_int(m, s, "a global tensor stride") for s in tensor.strides)
    if any(s < 0 for s in shape):
        raise m.error(f"GlobalView: {tensor_name(tensor)} has a negative size: {list(shape)}")
    m.global_views[tensor] = Binding(param, buffer, shape, strides)


def _global_access(
    m: Machine, inst: Any, tensor: GlobalTensor, offsets, shape: tuple[int, ...], masked: bool
) -> tuple[Binding, np.ndarray, np.ndarray]:
    """The flat buffer positions of a tile's elements and which of them are in bounds."""
    bind = m.binding(tensor)
    what = type(inst).__name__
    offs = [evaluate_int(m, o, f"{what}: an offset") for o in offsets]
    flat = np.zeros(shape, dtype=np.int64)
    inside = np.ones(shape, dtype=bool)
    for d, (o, s) in enumerate(zip(offs, shape)):
        index = (o + np.arange(s, dtype=np.int64)).reshape(
            [-1 if e == d else 1 for e in range(len(shape))]
        )
        inside &= (index >= 0) & (index < bind.shape[d])
        flat = flat + index * bind.strides[d]
    if not masked and not inside.all():
        first = tuple(int(i) for i in np.argwhere(~inside)[0])
        index = tuple(o + i for o, i in zip(offs, first))
        raise m.error(
            f"{what}: index {index} is outside {bind.label(tensor)} of shape {list(bind.shape)} "
            "and the access is not masked"
        )
    outside_buffer = inside & ((flat < 0) | (flat >= bind.buffer.size))
    if outside_buffer.any():
        first = tuple(int(i) for i in np.argwhere(outside_buffer)[0])
        index = tuple(o + i for o, i in zip(offs, first))
        raise m.error(
            f"{what}: element {index} of {bind.label(tensor)} is at position {int(flat[first])} "
            f"of parameter '{bind.param.name}', whose buffer holds {bind.buffer.size} "
            f"{tensor.dtype} elements"
        )
    return bind, flat, inside


def _gather(bind: Binding, tensor: GlobalTensor, flat: np.ndarray, inside: np.ndarray):
    """Values at the in-bounds positions (zero elsewhere)."""
    values = np.zeros(flat.shape, dtype=np.float32 if tensor.dtype.is_float else np.int64)
    if inside.any():
        values = from_storage(bind.buffer[np.where(inside, flat, 0)], tensor.dtype)
    return values


@RULES.rule(I.LoadGlobal)
def _load_global(m: Machine, inst: I.LoadGlobal) -> None:
    out = inst.out
    bind, flat, inside = _global_access(m, inst, inst.src, inst.offsets, out.shape, inst.masked)
    values = _gather(bind, inst.src, flat, inside)
    if not inside.all():
        try:
            other = out.dtype.decode(out.dtype.encode(np.asarray(inst.other)))
        except Exception as err:  # a DTypeError, or a number numpy cannot hold
            raise m.error(f"LoadGlobal: other={inst.other!r} as {out.dtype}: {err}") from None
        values = np.where(inside, values, other)
    m.set_tile(out, values)


@RULES.rule(I.StoreGlobal)
def _store_global(m: Machine, inst: I.StoreGlobal) -> None:
    src = inst.src
    bind, flat, inside = _global_access(m, inst, inst.dst, inst.offsets, src.shape, inst.masked)
    if not bind.buffer.flags.writeable:
        raise m.error(f"StoreGlobal: the buffer of '{bind.param.name}' is read-only")
    codes = to_storage(m.tile(src), inst.dst.dtype)
    bind.buffer[flat[inside]] = codes[inside]


@RULES.rule(I.AtomicAdd)
def _atomic_add(m: Machine, inst: I.AtomicAdd) -> None:
    """Blocks run one after another here, so read-add-write is atomic as it stands."""
    shape = (1,) * inst.dst.rank
    bind, flat, _ = _global_access(m, inst, inst.dst, inst.offsets, shape, masked=False)
    if not bind.buffer.flags.writeable:
        raise m.error(f"AtomicAdd: the buffer of '{bind.param.name}' is read-only")
    at = int(flat.reshape(-1)[0])
    old = int(from_storage(bind.buffer[at : at + 1], inst.dst.dtype)[0])
    new = wrap_scalar(old + evaluate_int(m, inst.value, "AtomicAdd: the value"), inst.dst.dtype)
    bind.buffer[at : at + 1] = to_storage(np.asarray([new]), inst.dst.dtype)
    m.env[inst.out] = old


@RULES.rule(I.Fence)
def _fence(m: Machine, inst: I.Fence) -> None:
    """Writes land at once here: nothing to order."""


# -- shared memory -------------------------------------------------------------------------------
def _region(m: Machine, inst: Any, tensor: SharedTensor, offsets, shape) -> tuple[slice, ...]:
    what = type(inst).__name__
    offs = [evaluate_int(m, o, f"{what}: an offset") for o in offsets]
    if any(o < 0 or o + s > n for o, s, n in zip(offs, shape, tensor.shape)):
        raise m.error(
            f"{what}: a {list(shape)} tile at offsets {offs} leaves shared tensor "
            f"{tensor_name(tensor)} of shape {list(tensor.shape)}"
        )
    return tuple(slice(o, o + s) for o, s in zip(offs, shape))


def _in_flight(m: Machine, tensor: SharedTensor) -> PendingCopy:
    for copy in [*m.open_group, *(c for group in m.committed for c in group)]:
        if copy.dst is tensor:
            return copy
    raise AssertionError("a pending mark without its copy")


def _check_not_in_flight(m: Machine, inst: Any, tensor: SharedTensor, region, verb: str) -> None:
    buf = m.shared_buffer(tensor)
    if m.check_races and buf.pending[region].any():
        copy = _in_flight(m, tensor)
        raise m.error(
            f"{type(inst).__name__} {verb} shared tensor {tensor_name(tensor)} while the async "
            f"copy at line {line_of(copy.inst.loc)} into it is still in flight; land it with "
            "copy_async_wait (then sync_threads) first"
        )


def _mark_written(m: Machine, tensor: SharedTensor, region, loc) -> None:
    m.writes.append(loc)
    m.shared_buffer(tensor).written[region] = len(m.writes) - 1


@RULES.rule(I.AllocShared)
def _alloc_shared(m: Machine, inst: I.AllocShared) -> None:
    m.shared[inst.out] = new_shared(inst.out.dtype, inst.out.shape)


@RULES.rule(I.FreeShared)
def _free_shared(m: Machine, inst: I.FreeShared) -> None:
    buf = m.shared_buffer(inst.tensor)
    _check_not_in_flight(m, inst, inst.tensor, ..., "frees")
    buf.freed, buf.freed_at = True, inst.loc


@RULES.rule(I.LoadShared)
def _load_shared(m: Machine, inst: I.LoadShared) -> None:
    src, out = inst.src, inst.out
    buf = m.shared_buffer(src)
    region = _region(m, inst, src, inst.offsets, out.shape)
    _check_not_in_flight(m, inst, src, region, "reads")
    if m.check_races:
        marks = buf.written[region]
        if marks.any():
            write = m.writes[int(marks[np.nonzero(marks)][0])]
            raise m.error(
                f"missing sync_threads between the write at line {line_of(write)} and this read "
                f"at line {line_of(inst.loc)} of shared tensor {tensor_name(src)}"
            )
    m.set_tile(out, buf.values[region].copy())


@RULES.rule(I.StoreShared)
def _store_shared(m: Machine, inst: I.StoreShared) -> None:
    dst, src = inst.dst, inst.src
    buf = m.shared_buffer(dst)
    region = _region(m, inst, dst, inst.offsets, src.shape)
    _check_not_in_flight(m, inst, dst, region, "writes")
    buf.values[region] = m.tile(src)
    _mark_written(m, dst, region, inst.loc)


@RULES.rule(I.SyncThreads)
def _sync_threads(m: Machine, inst: I.SyncThreads) -> None:
    for buf in m.shared.values():
        buf.written[...] = 0


# -- asynchronous copies -------------------------------------------------------------------------
@RULES.rule(I.CopyAsync)
def _copy_async(m: Machine, inst: I.CopyAsync) -> None:
    dst, src = inst.dst, inst.src
    buf = m.shared_buffer(dst)
    _check_not_in_flight(m, inst, dst, ..., "writes")
    bind, flat, inside = _global_access(m, inst, src, inst.offsets, dst.shape, inst.masked)
    # The global data is read now; out-of-bounds elements of a masked copy are zero-filled.
    values = np.where(inside, _gather(bind, src, flat, inside), 0)
    m.open_group.append(PendingCopy(inst, dst, buf, values.astype(buf.values.dtype)))
    buf.pending += 1


@RULES.rule(I.CopyAsyncCommit)
def _copy_async_commit(m: Machine, inst: I.CopyAsyncCommit) -> None:
    m.committed.append(m.open_group)
    m.open_group = []


@RULES.rule(I.CopyAsyncWait)
def _copy_async_wait(m: Machine, inst: I.CopyAsyncWait) -> None:
    if m.open_group:
        lines = ", ".join(line_of(c.inst.loc) for c in m.open_group)
        raise m.error(
            f"CopyAsyncWait: the async copies at line {lines} are not committed, so no wait "
            "covers them; call copy_async_commit before copy_async_wait"
        )
    landing = max(len(m.committed) - inst.pending, 0)
    for group in m.committed[:landing]:
        for copy in group:
            buf = copy.buffer
            buf.pending -= 1
            if not buf.freed:
                buf.values[...] = copy.values
                m.writes.append(copy.inst.loc)
                buf.written[...] = len(m.writes) - 1
    del m.committed[:landing]
