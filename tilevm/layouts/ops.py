"""Shape operations on register layouts: concat, permute, reshape, reduce, broadcast, slice.

Each is a pure function of layouts (the register-level function changes only
as its post-condition says). Worked example with ``L = spatial(2, 4) * local(1, 2)``
(a 2x8 tile on 8 threads, 2 registers each):

- ``permute(L, (1, 0))`` is the 8x2 tile where element (j, i) of the result is
  held as element (i, j) of L was: same thread, same register.
- ``reshape(L, (16,))`` reads L's tile row-major as a vector: element 8*i + j
  is held as (i, j) was. ``reshape(L, (4, 4))`` also works: element (a, b) is
  held as (a // 2, 4 * (a % 2) + b) was.
- ``reduce(L, [1])`` is the 2x1 tile after summing along dimension 1: the 4
  threads that shared a row now all hold that row's result (4-way replication)
  and the 2 registers along the row collapse into 1.
- ``broadcast(reduce(L, [1]), (2, 8))`` widens it back to 2x8 by giving every
  thread all 8 copies of its row's value in registers: ``reduce`` undoes it.
- ``part(L, (1, 8))`` is None: each row is spread over 4 threads of the 8, so
  a row is not a set of registers. For ``M = local(2, 1) * spatial(1, 4)`` (a
  2x4 tile, 4 threads, 2 registers) ``part(M, (1, 4))`` is ``spatial(1, 4)``:
  row i is register i of every thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import LayoutError
from .register import RegisterLayout, _Form, _ints, left_divide, local, product


def concat(a: RegisterLayout, b: RegisterLayout) -> RegisterLayout:
    """Side by side in separate dimensions: shape ``a.shape + b.shape``.

    Post-condition: ``concat(a, b)(ta * b.num_threads + tb, la * b.local_size + lb)
    == a(ta, la) + b(tb, lb)`` (tuple concatenation).
    """
    wide_a = RegisterLayout(a.shape + (1,) * b.rank, a.mode_shape, a.spatial_modes, a.local_modes)
    wide_b = RegisterLayout((1,) * a.rank + b.shape, b.mode_shape, b.spatial_modes, b.local_modes)
    return product(wide_a, wide_b)


def permute(layout: RegisterLayout, dims: Sequence[int]) -> RegisterLayout:
    """Reorder dimensions: result dimension k is ``layout``'s dimension ``dims[k]``.

    Post-condition: ``permute(L, dims)(t, l)[k] == L(t, l)[dims[k]]``.
    """
    dims = tuple(dims)
    if sorted(dims) != list(range(layout.rank)):
        raise LayoutError(f"permute: dims must order 0..{layout.rank - 1}; got {dims}")
    mode_dims = layout._mode_dims()
    order = [m for d in dims for m in range(len(layout.mode_shape)) if mode_dims[m] == d]
    new = {m: i for i, m in enumerate(order)}
    return RegisterLayout(
        tuple(layout.shape[d] for d in dims),
        tuple(layout.mode_shape[m] for m in order),
        tuple(e if e < 0 else new[e] for e in layout.spatial_modes),
        tuple(new[e] for e in layout.local_modes),
    )


def reshape(layout: RegisterLayout, shape: Sequence[int]) -> RegisterLayout:
    """The same elements under a new shape, both read in row-major order.

    Post-condition: ``flat(reshape(L, s)(t, l), s) == flat(L(t, l), L.shape)`` where
    ``flat`` is the row-major linear index. Possible when every new dimension
    boundary falls on a boundary of L's modes (after splitting a mode where its
    extent allows); otherwise :class:`LayoutError`.
    """
    shape = _ints(shape, "reshape: shape")
    if math.prod(shape) != layout.size:
        raise LayoutError(
            f"reshape: shape {shape} has {math.prod(shape)} elements, the layout {layout.size}"
        )
    form = _Form.of(layout)
    form.dims = [[m for modes in form.dims for m in modes]]
    form.shape = [layout.size]
    context = f"reshape({layout}, {shape})"
    weights = [math.prod(shape[k + 1 :]) for k in range(len(shape))]
    for w in weights:
        form.refine(0, w, context)
    groups: list[list[int]] = [[] for _ in shape]
    covered, k = 1, len(shape) - 1
    for mode in reversed(form.dims[0]):
        while covered >= math.prod(shape[k:]):
            k -= 1
        groups[k].insert(0, mode)
        covered *= form.extent[mode]
    form.dims, form.shape = groups, list(shape)
    return form.layout()


def reduce(layout: RegisterLayout, dims: Sequence[int], keepdims: bool = True) -> RegisterLayout:
    """The layout of a reduction's result along ``dims``.

    The reduced dimensions become extent 1 (or vanish with ``keepdims=False``):
    their spatial modes turn into replication (the threads that shared the
    reduction all hold its result) and their local modes vanish.

    Post-condition: ``reduce(L, dims)(t, l')`` is ``L(t, l)`` with the reduced
    coordinates set to 0, for every l whose non-reduced local digits are l'.
    """
    dims = tuple(sorted(set(dims)))
    if any(not 0 <= d < layout.rank for d in dims):
        raise LayoutError(f"reduce: dims must lie in 0..{layout.rank - 1}; got {dims}")
    form = _Form.of(layout)
    for d in dims:
        for mode in form.dims[d]:
            if mode in form.spatial:
                at = form.spatial.index(mode)
                form.spatial[at] = ("r", form.extent[mode])
            else:
                form.local.remove(mode)
            del form.extent[mode]
        form.dims[d] = []
        form.shape[d] = 1
    result = form.layout()
    if keepdims:
        return result
    kept = [s for d, s in enumerate(result.shape) if d not in dims] or [1]
    return reshape(result, kept)


def broadcast(layout: RegisterLayout, shape: Sequence[int]) -> RegisterLayout:
    """Widen dimensions of extent 1 to ``shape``: each thread holds every copy in registers.

    A right inverse of :func:`reduce`: ``reduce(broadcast(R, s), dims) == R``
    for the widened dims. Post-condition: ``broadcast(R, s)(t, l * n + c)`` is
    ``R(t, l)`` with coordinate c (in row-major order over the widened dims) added.
    """
    shape = _ints(shape, "broadcast: shape")
    if len(shape) != layout.rank:
        raise LayoutError(f"broadcast: shape {shape} must have rank {layout.rank}")
    factors = []
    for have, want in zip(layout.shape, shape):
        if have != want and have != 1:
            raise LayoutError(
                f"broadcast: only extent-1 dimensions widen; got {layout.shape} to {shape}"
            )
        factors.append(want // have)
    return product(layout, local(*factors))


def part(layout: RegisterLayout, shape: Sequence[int]) -> RegisterLayout | None:
    """The layout P of each aligned ``shape`` block of ``layout``'s tile, if it is one of registers.

    That is the P with ``local(q) * P == layout`` where ``q = layout.shape / shape``:
    block ``b`` (row-major over ``q``) is then held in registers
    ``b * P.local_size ... (b + 1) * P.local_size - 1`` of every thread.
    Post-condition: ``layout(t, b * P.local_size + l) == P(t, l) + b_index * shape``
    with ``b_index`` the block's coordinates. None when no such P exists (or
    ``shape`` does not divide the tile).
    """
    shape = _ints(shape, "part: shape")
    if len(shape) != layout.rank or any(s % p for s, p in zip(layout.shape, shape)):
        return None
    try:
        return left_divide(local(*(s // p for s, p in zip(layout.shape, shape))), layout)
    except LayoutError:
        return None


def flatten(layout: RegisterLayout) -> RegisterLayout:
    """``reshape(layout, (layout.size,))``."""
    return reshape(layout, (layout.size,))
