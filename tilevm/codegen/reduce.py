"""Reductions as per-thread C: within a thread, across a warp's lanes, across warps.

The result's layout is ``reduce(x.layout, dims)`` (:func:`tilevm.layouts.reduce`):
the registers along the reduced dimensions fold into one, and the thread
digits along them become replication, so every thread of a reduction group
ends up holding the result. Three stages, each skipped when it has nothing to
do:

1. **registers**: each result register folds the thread's registers that map
   to it, in register order;
2. **lanes**: for every thread-id bit below 32 that belongs to a reduced
   dimension's thread digit, one butterfly step ``v = op(v, shfl_xor(v, bit))``;
   lanes combine the same operands (in swapped order, which addition and
   max/min do not mind), so they all agree;
3. **warps**: the remaining reduced thread digits (bits from 32 up, or digits
   of a size that is not a power of two) go through shared memory: every
   thread writes its partial to ``partials[tid]``, a barrier, every thread folds the
   partials of its group in the same fixed order, a barrier.

Sums accumulate in float32 for float tiles (one rounding to the result type at
the end, as the interpreter's ``np.sum(..., dtype=float32)``) and in ``long
long`` for integers; max and min propagate NaN as numpy does.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import inst as I
from ..layouts.indexing import DigitSum, Term, local_map
from ..layouts.ops import reduce as reduce_layout
from .emitter import EMIT, Emitter
from .values import CodegenError, load, store

_FLOAT_OPS = {"sum": "{a} + {b}", "max": "tv_fmax({a}, {b})", "min": "tv_fmin({a}, {b})"}
_INT_OPS = {"sum": "{a} + {b}", "max": "tv_max({a}, {b})", "min": "tv_min({a}, {b})"}
WARP = 32


def reduction_digits(layout, dims, block_threads: int) -> tuple[list[int], list[tuple[int, int]]]:
    """(lane masks for shuffles, (stride, extent) thread digits folded through shared memory).

    The digits are those of the layout's thread id that belong to a reduced dimension.
    """
    mode_dims = layout._mode_dims()
    extents = [-e if e < 0 else layout.mode_shape[e] for e in layout.spatial_modes]
    strides = [math.prod(extents[k + 1 :]) for k in range(len(extents))]
    lanes, shared = [], []
    for entry, stride, extent in zip(layout.spatial_modes, strides, extents):
        if entry < 0 or mode_dims[entry] not in dims or extent == 1:
            continue
        if _pow2(stride) and _pow2(extent):
            for bit in range(stride.bit_length() - 1, (stride * extent).bit_length() - 1):
                if (1 << bit) < WARP:
                    lanes.append(1 << bit)
                else:
                    shared.append((1 << bit, 2))
        else:
            shared.append((stride, extent))
    return lanes, shared


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@EMIT.rule(I.Reduce)
def _reduce(em: Emitter, inst: I.Reduce) -> None:
    x, out = inst.x, inst.out
    xl, ol = em.layout(x), em.layout(out)
    if reduce_layout(xl, inst.dims) != ol:
        raise CodegenError(
            f"reduce: the result {em.names[out]} must have the layout reduce(x.layout) = "
            f"{reduce_layout(xl, inst.dims)}; got {ol}"
        )
    dims = set(inst.dims)

    def zero(index: np.ndarray) -> np.ndarray:
        index = index.copy()
        index[..., list(dims)] = 0
        return index

    target = local_map(xl, ol, em.block_threads, zero)
    assert target is not None, "reduce(layout) keeps every result in its thread"
    groups = [[lx for lx, lo in enumerate(target) if lo == o] for o in range(ol.local_size)]
    floating = out.dtype.is_float
    acc_type = "float" if floating else "long long"
    ops = _FLOAT_OPS if floating else _INT_OPS
    em.prelude.use("float_minmax" if floating else "int_minmax")
    name = em.declare(out)
    src = em.tile(x)
    count = ol.local_size

    def fold(a: str, b: str) -> str:
        return ops[inst.op].format(a=a, b=b)

    def value(reg: int | str) -> str:
        v = load(f"{src}[{reg}]", x.dtype, em.prelude)
        return v if floating else f"(long long)({v})"

    with em.block():
        em.line(f"{acc_type} part[{count}];")
        # 1. the thread's own registers
        for k in range(len(groups[0])):
            regs = [g[k] for g in groups]
            if k == 0:
                em.local_loop(out, [regs], lambda idx: [f"part[{idx(0)}] = {value(idx(1))};"])
            else:
                em.local_loop(
                    out,
                    [regs],
                    lambda idx: [f"part[{idx(0)}] = {fold(f'part[{idx(0)}]', value(idx(1)))};"],
                )
        # 2. lanes of the warp
        lanes, shared = reduction_digits(xl, dims, em.block_threads)
        for mask in lanes:

            def shuffle(idx, mask=mask) -> list[str]:
                other = f"__shfl_xor_sync(0xFFFFFFFFu, part[{idx(0)}], {mask})"
                return [f"part[{idx(0)}] = {fold(f'part[{idx(0)}]', other)};"]

            em.local_loop(out, [], shuffle)
        # 3. warps, through shared memory
        if shared:
            _across_warps(em, out, shared, acc_type, fold)
        em.local_loop(
            out,
            [],
            lambda idx: [
                f"{name}[{idx(0)}] = "
                f"{store(f'part[{idx(0)}]', _acc_dtype(floating), out.dtype, 'arith', em.prelude)};"
            ],
        )


def _acc_dtype(floating: bool):
    from ..dtypes import float32, int64

    return float32 if floating else int64


def _across_warps(em: Emitter, out, digits: list[tuple[int, int]], acc_type: str, fold) -> None:
    count = em.layout(out).local_size
    nbytes = em.block_threads * count * (4 if acc_type == "float" else 8)
    offset, busy = em.scratch(nbytes)
    if busy:
        em.line("__syncthreads();  // the scratch space may still be read")
    em.line(f"{acc_type}* partials = reinterpret_cast<{acc_type}*>(smem + {offset});")
    em.local_loop(out, [], lambda idx: [f"partials[tid * {count} + {idx(0)}] = part[{idx(0)}];"])
    em.line("__syncthreads();")
    own = DigitSum(tuple(Term(s, n, s) for s, n in digits))
    em.line(f"const int group = tid - ({own.render('tid', em.block_threads, standalone=True)});")
    offsets = [0]
    for s, n in digits:
        offsets = [o + d * s for o in offsets for d in range(n)]
    offsets.sort()  # every thread of a group folds the partials in this one order

    def body(idx) -> list[str]:
        lines = [f"part[{idx(0)}] = partials[group * {count} + {idx(0)}];"]
        for off in offsets[1:]:
            item = f"partials[(group + {off}) * {count} + {idx(0)}]"
            lines.append(f"part[{idx(0)}] = {fold(f'part[{idx(0)}]', item)};")
        return lines

    em.local_loop(out, [], body)
    em.line("__syncthreads();")


__all__ = ["reduction_digits"]
