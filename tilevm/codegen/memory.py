"""Memory instructions as per-thread C: global views, loads and stores, shared memory, cp.async.

A thread touches the tile elements its layout gives it: element ``index_d =
offset_d + thread_part_d + local_part_d(l)`` of the tensor, at element
address ``sum_d index_d * stride_d``. The thread's registers are walked in
*runs*: ``v`` consecutive registers that are ``v`` consecutive elements of the
last dimension (the layout's innermost register digit, along the last
dimension, stride 1). A run is one access of ``v * bytes`` when that is at most
16 bytes and every run's address is a multiple of it:

- the tile offset, the thread parts and the register parts of each dimension,
  times its stride, must all be multiples of ``v`` (see :func:`vector_width`);
  where that holds only if a scalar parameter (a runtime row stride, an
  offset) is a multiple of something, the kernel tests it once and takes the
  element-by-element path when it fails (or, with ``speculate="assume"``,
  records it for the launcher to check);
- the pointer must be aligned to the access: assumed of every pointer
  argument, and recorded when the access is wider than one element.

A masked run loads (or stores) as one vector when all of it is inside the
tensor, else element by element with the bounds test of each (a load reads
``other`` outside). Stores skip threads that are not their element's owner
(replicas, threads past the layout's thread count).

Shared tensors live in one buffer, at the 16-byte aligned offsets and in the
layouts (row-major, perhaps swizzled) that the ``plan_shared_memory`` pass
gave them.
A shared load whose register layout is a sequence of 8x8 matrices of 16-bit
elements goes through ``ldmatrix`` instead (:mod:`.ldmatrix`).
An async copy assigns the tile's elements to threads with the coalesced
``auto_layout`` and issues ``cp.async`` of 16 bytes (``.cg``) or 8/4 bytes
(``.ca``) per run, zero-filling what lies outside a masked tensor through
``src-size``; runs narrower than 4 bytes copy synchronously instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..ir import inst as I
from ..ir.expr import Binary, Const, Expr
from ..ir.tensor import SharedTensor
from ..layouts.indexing import local_parts, local_radices
from ..layouts.register import RegisterLayout
from ..layouts.shared import shared_row_major
from ..passes.infer_layouts import auto_layout
from ..passes.ldmatrix_match import rows_fit_shared
from ..passes.vectorise import widest_vector
from .emitter import EMIT, CodegenError, Emitter, GlobalVar, SharedVar
from .ldmatrix import emit_ldmatrix
from .text import add, as_int, linear, mul
from .values import elem_bytes, elem_ctype, elem_literal, from_code, scalar_ctype, to_code

_VECTOR_TYPES = {2: "tv_u16", 4: "tv_u32", 8: "tv_b64", 16: "tv_b128"}


def _vector_type(em: Emitter, nbytes: int) -> str:
    if nbytes in (8, 16):
        em.prelude.use("vectors")
    return _VECTOR_TYPES.get(nbytes, "")


# -- runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Runs:
    """A thread's registers as ``count`` runs of ``vector``, and each run's local parts."""

    vector: int
    count: int
    radices: tuple[tuple[int, int], ...]
    parts: tuple[tuple[int, ...], ...]  # parts[d][r]: local part of run r's first element

    def maps(self) -> list[list[int]]:
        """For :meth:`Emitter.per_local`: the first register of each run, then the parts."""
        return [[r * self.vector for r in range(self.count)], *map(list, self.parts)]


def runs(layout: RegisterLayout, vector: int) -> Runs:
    count = layout.local_size // vector
    radices = []
    for stride, extent in local_radices(layout):
        if stride == 1:
            if extent // vector > 1:
                radices.append((1, extent // vector))
        else:
            radices.append((stride // vector, extent))
    lparts = local_parts(layout)
    starts = np.arange(count) * vector
    parts = tuple(tuple(int(x) for x in np.broadcast_to(p(starts), (count,))) for p in lparts)
    return Runs(vector, count, tuple(radices), parts)


def _gcd_values(values: np.ndarray) -> int:
    return math.gcd(*(int(v) for v in np.unique(np.abs(values)))) if values.size else 0


def _variation(em: Emitter, layout: RegisterLayout, r: Runs, dim: int) -> int:
    """gcd of the thread and register parts of ``dim`` over every thread and run start."""
    from ..layouts.indexing import thread_parts

    t = np.arange(em.block_threads) % layout.num_threads
    tp = np.broadcast_to(thread_parts(layout)[dim](t), t.shape)
    return math.gcd(_gcd_values(tp), _gcd_values(np.asarray(r.parts[dim])))


def vector_width(
    em: Emitter,
    layout: RegisterLayout,
    offsets: Sequence[Expr | int],
    strides: Sequence[Expr | int],
    ebytes: int,
    max_elements: int,
    pointer: str | None,
    pointer_bytes: int,
) -> tuple[int, str]:
    """Elements per access, and the kernel's test for them (``""``: none needed).

    The widest power of two whose runs are aligned: provably, or when scalar
    parameters are multiples of something, which ``EmitOptions.speculate`` turns
    into a test in the kernel (``"guard"``, the returned text) or an assumption
    (``"assume"``). ``pointer`` names the pointer parameter behind a global
    tensor (``None`` for shared memory, whose buffer is 16-byte aligned; its
    accesses do not speculate); ``pointer_bytes`` is the size of its elements,
    which the pointer is aligned to anyway.
    """
    v = widest_vector(layout, ebytes, max_elements)
    if as_int(_const(strides[-1])) != 1:
        return 1, ""
    speculate = pointer is not None and em.options.speculate != "off"
    while v > 1:
        needs = _alignment_needs(em, layout, offsets, strides, v, speculate)
        nbytes = v * ebytes
        fits_pointer = pointer is None or nbytes <= em.options.pointer_alignment
        if needs is not None and fits_pointer:
            if pointer is not None and nbytes > pointer_bytes:
                em.assume_address(pointer, nbytes)
            if em.options.speculate == "assume":
                for param, d in needs.items():
                    em.assume_value(param, d)
                return v, ""
            return v, em.guard(needs) if needs else ""
        v //= 2
    return 1, ""


def _const(e: Expr | int) -> str | int:
    if isinstance(e, Const) and e.dtype.is_integer:
        return int(e.value)
    return e if isinstance(e, int) else "?"


def _alignment_needs(em, layout, offsets, strides, v, speculate) -> dict[str, int] | None:
    """The parameter divisibility every run start's address needs to be a multiple of ``v``.

    ``None`` when it needs something else (or anything, without ``speculate``).
    """
    r = runs(layout, v)
    needs: dict[str, int] = {}
    for d, (offset, stride) in enumerate(zip(offsets, strides)):
        ds = em.divisor(stride)
        for coeff, speculate_on_offset in (
            (em.divisor(offset), True),
            (_variation(em, layout, r, d), False),
        ):
            if coeff == 0 or ds == 0 or (coeff * ds) % v == 0:
                continue
            param, rest = _param_factor(em, stride, strides)
            if param is not None and speculate:
                needs[param] = math.lcm(needs.get(param, 1), v // math.gcd(v, coeff * rest))
                continue
            param = em.param_of(offset) if speculate_on_offset else None
            if param is not None and speculate:
                needs[param] = math.lcm(needs.get(param, 1), v // math.gcd(v, ds))
                continue
            return None
    return needs


def _param_factor(em, stride, strides) -> tuple[str | None, int]:
    """(A scalar parameter that ``stride`` is a multiple of, the known divisor of the rest):
    the stride itself, or a factor of a product, preferring one that is another dimension's
    stride (``m * n``, the stride of a ``[s, m, n]`` view's first dimension, is a multiple of
    4 once n, the next one's, is); ``(None, 1)`` when there is none."""
    param = em.param_of(stride)
    if param is not None:
        return param, 1
    if not (isinstance(stride, Binary) and stride.op == "mul"):
        return None, 1
    others = {em.param_of(s) for s in strides} - {None}
    factors = [(stride.lhs, stride.rhs), (stride.rhs, stride.lhs)]
    factors.sort(key=lambda pair: em.param_of(pair[0]) not in others)
    for factor, rest in factors:
        param = em.param_of(factor)
        if param is not None:
            return param, em.divisor(rest)
    return None, 1


# -- texts shared by the rules ---------------------------------------------------------------------
def bases(em: Emitter, layout: RegisterLayout, offsets: Sequence[Expr | int]) -> list[str]:
    """Per dimension, the C text of ``offset_d + thread_part_d`` (declared ``i{d}`` if compound)."""
    coords = em.coords(layout)
    out = []
    for d, (offset, part) in enumerate(zip(offsets, coords.dims)):
        text = add(_operand(em.expr(offset)), part)
        if as_int(text) is None and not text.isidentifier():
            em.line(f"const int i{d} = {text};")
            text = f"i{d}"
        out.append(text)
    return out


def _operand(text: str) -> str:
    """A scalar expression's text as an operand of ``+``."""
    if text.isidentifier() or as_int(text) is not None:
        return text
    return f"({text})" if any(op in text for op in ("?", "&", "|", "<", ">", "=")) else text


def address(index: Sequence[str], strides: Sequence[str | int]) -> str:
    return add(*(mul(i, s) for i, s in zip(index, strides)))


def unpack(word: str, vtype: str, dtype, count: int, pre) -> list[str]:
    """The ``count`` elements of ``dtype`` in a loaded vector ``word`` of type ``vtype``."""
    bits = elem_bytes(dtype) * 8
    if bits == 16 and count > 1:
        pre.use("halves")
    words = [f"{word}.w[{k}]" for k in range(4)] if vtype.startswith("tv_b") else [word]
    out = []
    for j in range(count):
        if bits == 64:
            code = f"((tv_u64){words[2 * j]} | ((tv_u64){words[2 * j + 1]} << 32))"
        else:
            per = 32 // bits
            w, shift = (words[j // per] if len(words) > 1 else words[0]), (j % per) * bits
            if bits == 16:
                out.append(from_code(f"tv_half({w}, {int(shift > 0)})", dtype))
                continue
            code = f"({w} >> {shift})" if shift else w
        out.append(from_code(code, dtype))
    return out


def pack(elements: Sequence[str], vtype: str, dtype, pre) -> str:
    """A vector of type ``vtype`` holding ``elements`` of ``dtype`` (lowest index lowest)."""
    bits = elem_bytes(dtype) * 8
    codes = [to_code(e, dtype) for e in elements]
    words: list[str] = []
    if bits == 64:
        for c in codes:
            words += [f"(tv_u32)({c})", f"(tv_u32)({c} >> 32)"]
    elif bits == 32:
        words = codes
    elif bits == 16:
        pre.use("pack")
        words = [f"tv_pack2({elements[k]}, {elements[k + 1]})" for k in range(0, len(elements), 2)]
    else:  # bytes
        if vtype == "tv_u16":
            return f"(tv_u16)({codes[0]} | ({codes[1]} << 8))"
        pre.use("pack")
        words = [
            "tv_pack4(" + ", ".join(elements[k : k + 4]) + ")" for k in range(0, len(elements), 4)
        ]
    if vtype.startswith("tv_b"):
        return f"{{{{{', '.join(words)}}}}}"
    return words[0]


# -- global memory ---------------------------------------------------------------------------------
@EMIT.rule(I.GlobalView)
def _global_view(em: Emitter, inst: I.GlobalView) -> None:
    t = inst.out
    name = em.c[t]
    param = em.params.get(t.ptr)
    ctype = elem_ctype(t.dtype)
    ptr = em.c[t.ptr]
    if param is None or elem_ctype(param.dtype) != ctype:
        ptr = f"reinterpret_cast<{ctype}*>({ptr})"
    em.line(f"{ctype}* {name} = {ptr};")
    shape = [_size(em, f"{name}_size{d}", e) for d, e in enumerate(t.shape)]
    strides = [_size(em, f"{name}_stride{d}", e) for d, e in enumerate(t.strides)]
    em.globals[id(t)] = GlobalVar(name, t, tuple(shape), tuple(strides))


@EMIT.rule(I.AtomicAdd)
def _atomic_add(em: Emitter, inst: I.AtomicAdd) -> None:
    """Thread 0 adds; the old value reaches every thread through shared memory."""
    g = em.global_var(inst.dst)
    at = address([_operand(em.expr(o)) for o in inst.offsets], g.strides)
    ctype = scalar_ctype(inst.out.dtype)
    value = em.expr(inst.value)
    slot = em.c.fresh("atomic_old")
    em.line(f"__shared__ {ctype} {slot};")
    with em.block("if (tid == 0)"):
        em.line(f"{slot} = atomicAdd(&{g.name}[{at}], ({ctype})({value}));")
    em.line("__syncthreads();")
    em.line(f"const {ctype} {em.c[inst.out]} = {slot};")
    em.line("__syncthreads();  // every thread has read the slot before it is written again")


@EMIT.rule(I.Fence)
def _fence(em: Emitter, inst: I.Fence) -> None:
    em.line("__threadfence();")


def _size(em: Emitter, hint: str, e: Expr | int) -> str:
    """A size or stride as a C operand; an expression is evaluated once, here (as the view is)."""
    text = em.expr(e)
    if as_int(text) is not None or (text.isidentifier() and em.stable(e)):
        return text
    name = em.c.fresh(hint)
    em.line(f"const int {name} = {text};")
    return name


def _in_bounds(em: Emitter, index: str, size: str) -> str:
    em.prelude.use("in_bounds")
    return f"tv_in({index}, {size})"


def _masks(
    em: Emitter, g: GlobalVar, index: list[str], masked: bool, skip_last: bool, inside: list[bool]
) -> list[str]:
    """Bounds tests of a masked access, leaving out dimensions that are surely inside."""
    if not masked:
        return []
    dims = range(len(index) - 1) if skip_last else range(len(index))
    return [_in_bounds(em, index[d], g.shape[d]) for d in dims if not inside[d]]


def surely_inside(em: Emitter, g: GlobalVar, layout: RegisterLayout, offsets) -> list[bool]:
    """Per dimension: constant offset and size, and every index of the tile within them."""
    from ..layouts.indexing import thread_parts

    t = np.arange(em.block_threads) % layout.num_threads
    out = []
    for d, (offset, size) in enumerate(zip(offsets, g.tensor.shape)):
        o, n = as_int(_const(offset)), as_int(_const(size))
        if o is None or n is None:
            out.append(False)
            continue
        tp = np.broadcast_to(thread_parts(layout)[d](t), t.shape)
        lp = np.broadcast_to(
            local_parts(layout)[d](np.arange(layout.local_size)), (layout.local_size,)
        )
        out.append(o + int(tp.min()) + int(lp.min()) >= 0 and o + int(tp.max()) + int(lp.max()) < n)
    return out


def _global_access(em: Emitter, g: GlobalVar, layout, offsets, dtype) -> tuple[int, str, Runs]:
    param = em.params.get(g.tensor.ptr)
    pbytes = elem_bytes(param.dtype) if param is not None else 1
    v, guard = vector_width(
        em, layout, offsets, g.tensor.strides, elem_bytes(dtype), 16, g.tensor.ptr.name, pbytes
    )
    return v, guard, runs(layout, v)


def _vector_test(em, inst, g, index, inside, guard, v) -> tuple[str, list[str]]:
    """(The test that a run goes as one vector, the bounds tests of its other dimensions)."""
    tests = _masks(em, g, index, inst.masked, True, inside)
    run = _run_inside(em, inst.offsets[-1], index[-1], v, g, inside[-1]) if inst.masked else []
    return " && ".join([t for t in (guard, *tests, *run) if t]), tests


def _element_test(em, inst, g, index, inside, tests, j) -> str:
    if not inst.masked or inside[-1]:
        return " && ".join(tests)
    return " && ".join([*tests, _in_bounds(em, add(index[-1], j), g.shape[-1])])


@EMIT.rule(I.LoadGlobal)
def _load_global(em: Emitter, inst: I.LoadGlobal) -> None:
    out, g = inst.out, em.global_var(inst.src)
    name = em.declare(out)
    layout = em.layout(out)
    v, guard, r = _global_access(em, g, layout, inst.offsets, out.dtype)
    other = elem_literal(_other(inst), out.dtype)
    inside = surely_inside(em, g, layout, inst.offsets)
    vtype = _vector_type(em, v * elem_bytes(out.dtype))
    with em.block():
        base = bases(em, layout, inst.offsets)

        def body(idx: Callable[[int], str]) -> list[str]:
            index = [add(base[d], idx(1 + d)) for d in range(len(base))]
            reg = idx(0)
            if v == 1:
                value = f"{g.name}[{address(index, g.strides)}]"
                tests = _masks(em, g, index, inst.masked, False, inside)
                if tests:
                    value = f"{' && '.join(tests)} ? {value} : {other}"
                return [f"{name}[{reg}] = {value};"]
            lines, o = _address_var(address(index, g.strides))
            loaded = f"*reinterpret_cast<const {vtype}*>(&{g.name}[{o}])"
            spread = [
                f"{name}[{add(reg, j)}] = {e};"
                for j, e in enumerate(unpack("vec", vtype, out.dtype, v, em.prelude))
            ]
            whole, tests = _vector_test(em, inst, g, index, inside, guard, v)
            if not whole:
                return [*lines, f"const {vtype} vec = {loaded};", *spread]
            # Both paths make the vector and it is taken apart after them, so that the compiler
            # sees the vector's words go straight to their users (no split and re-pair of
            # 16-bit halves where a pair's two elements meet again).
            elements = []
            for j in range(v):
                each = _element_test(em, inst, g, index, inside, tests, j)
                value = f"{g.name}[{add(o, j)}]"
                elements.append(f"({each} ? {value} : {other})" if each else value)
            lines += [f"{vtype} vec;", f"if ({whole}) {{", f"  vec = {loaded};", "} else {"]
            lines += [f"  vec = {pack(elements, vtype, out.dtype, em.prelude)};", "}", *spread]
            return lines

        em.per_local(r.count, r.radices, r.maps(), body, var="r")


def _run_inside(em: Emitter, offset, start: str, v: int, g: GlobalVar, inside: bool) -> list[str]:
    """Tests that a run of ``v`` elements from ``start`` lies inside the last dimension."""
    if inside:
        return []
    end = f"{add(start, v - 1)} < {g.shape[-1]}"
    return [end] if em.nonnegative(offset) else [f"0 <= {start}", end]


def _address_var(text: str) -> tuple[list[str], str]:
    """A run's element address: used as is when it is a name, else declared as ``o``."""
    if text.isidentifier() or as_int(text) is not None:
        return [], text
    return [f"const int at = {text};"], "at"


def _other(inst: I.LoadGlobal):
    t = inst.out.dtype
    return t.decode(t.encode(np.asarray(inst.other))).item()


@EMIT.rule(I.StoreGlobal)
def _store_global(em: Emitter, inst: I.StoreGlobal) -> None:
    src, g = inst.src, em.global_var(inst.dst)
    name = em.tile(src)
    layout = em.layout(src)
    v, guard, r = _global_access(em, g, layout, inst.offsets, src.dtype)
    vtype = _vector_type(em, v * elem_bytes(src.dtype))
    owner = em.owner(layout)
    inside = surely_inside(em, g, layout, inst.offsets)
    with em.block(f"if ({owner})" if owner else ""):
        base = bases(em, layout, inst.offsets)

        def body(idx: Callable[[int], str]) -> list[str]:
            index = [add(base[d], idx(1 + d)) for d in range(len(base))]
            reg = idx(0)
            if v == 1:
                store = f"{g.name}[{address(index, g.strides)}] = {name}[{reg}];"
                tests = _masks(em, g, index, inst.masked, False, inside)
                return [f"if ({' && '.join(tests)}) {store}" if tests else store]
            elements = [f"{name}[{add(reg, j)}]" for j in range(v)]
            value = pack(elements, vtype, src.dtype, em.prelude)
            lines, o = _address_var(address(index, g.strides))
            lines.append(f"const {vtype} vec = {value};")
            vector = f"*reinterpret_cast<{vtype}*>(&{g.name}[{o}]) = vec;"
            whole, tests = _vector_test(em, inst, g, index, inside, guard, v)
            if not whole:
                return [*lines, vector]
            lines += [f"if ({whole}) {{", f"  {vector}", "} else {"]
            for j in range(v):
                each = _element_test(em, inst, g, index, inside, tests, j)
                store = f"{g.name}[{add(o, j)}] = {elements[j]};"
                lines.append(f"  if ({each}) {store}" if each else f"  {store}")
            lines.append("}")
            return lines

        em.per_local(r.count, r.radices, r.maps(), body, var="r")


# -- shared memory ---------------------------------------------------------------------------------
def shared_geometry(t: SharedTensor) -> tuple[tuple[int, ...], object, int]:
    """(strides, swizzle, span in elements) of a shared tensor, row-major without a layout."""
    layout = t.layout if t.layout is not None else shared_row_major(*t.shape)
    return layout.strides, layout.swizzle, layout.size


@EMIT.rule(I.AllocShared)
def _alloc_shared(em: Emitter, inst: I.AllocShared) -> None:
    t = inst.out
    strides, swizzle, span = shared_geometry(t)
    ctype = elem_ctype(t.dtype)
    offset = em.smem.alloc(t, span * elem_bytes(t.dtype))
    planned = em.program.plan.shared_offsets.get(t)
    if planned is not None and planned != offset:
        raise CodegenError(f"shared tensor {em.c[t]}: planned at {planned}, placed at {offset}")
    name = em.c[t]
    em.line(f"{ctype}* {name} = reinterpret_cast<{ctype}*>(smem + {offset});")
    em.shared[id(t)] = SharedVar(name, t, offset, tuple(strides), swizzle)


@EMIT.rule(I.FreeShared)
def _free_shared(em: Emitter, inst: I.FreeShared) -> None:
    em.smem.free(inst.tensor)


def shared_offset(sv: SharedVar, index: Sequence[str], pre) -> str:
    """The element offset of ``index`` in ``sv``: strided, then swizzled.

    The index's constants are taken apart from the terms ``t`` that vary:
    ``c = l + h`` with ``h`` a multiple of the swizzle's span ``2**(base +
    shift + bits)``. A swizzle reads and changes only the bits below its span,
    so ``h`` passes through it, ``swizzle(t + c) = swizzle(t + l) + h``: the
    parts a thread accesses a whole span apart share one swizzled address and
    differ by an immediate offset.
    """
    terms, const = linear(index, sv.strides)
    if sv.swizzle is None:
        return add(terms, const)
    pre.use("swizzle")
    z = sv.swizzle
    span = 1 << (z.base + z.shift + z.bits)
    low = const % span
    return add(f"tv_swizzle<{z.bits}, {z.base}, {z.shift}>({add(terms, low)})", const - low)


def _shared_vector(em: Emitter, sv: SharedVar, layout, offsets, ebytes: int) -> int:
    z = sv.swizzle
    max_elements = 16 if z is None else max(1, 1 << z.base)
    return vector_width(em, layout, offsets, sv.strides, ebytes, max_elements, None, 1)[0]


def shared_access(
    em: Emitter,
    sv: SharedVar,
    layout: RegisterLayout,
    offsets: Sequence[Expr | int],
    reg_name: str,
    store: bool,
    dtype,
) -> None:
    """Load the tile at ``offsets`` of ``sv`` into registers ``reg_name`` (or store them)."""
    v = _shared_vector(em, sv, layout, offsets, elem_bytes(dtype))
    r = runs(layout, v)
    vtype = _vector_type(em, v * elem_bytes(dtype))
    base = bases(em, layout, offsets)

    def body(idx: Callable[[int], str]) -> list[str]:
        index = [add(base[d], idx(1 + d)) for d in range(len(base))]
        reg = idx(0)
        at = f"{sv.name}[{shared_offset(sv, index, em.prelude)}]"
        if v == 1:
            return [f"{at} = {reg_name}[{reg}];" if store else f"{reg_name}[{reg}] = {at};"]
        if store:
            value = pack([f"{reg_name}[{add(reg, j)}]" for j in range(v)], vtype, dtype, em.prelude)
            return [f"*reinterpret_cast<{vtype}*>(&{at}) = {value};"]
        lines = [f"const {vtype} vec = *reinterpret_cast<const {vtype}*>(&{at});"]
        unpacked = unpack("vec", vtype, dtype, v, em.prelude)
        lines += [f"{reg_name}[{add(reg, j)}] = {e};" for j, e in enumerate(unpacked)]
        return lines

    em.per_local(r.count, r.radices, r.maps(), body, var="r")


@EMIT.rule(I.LoadShared)
def _load_shared(em: Emitter, inst: I.LoadShared) -> None:
    name = em.declare(inst.out)
    layout, dtype = em.layout(inst.out), inst.out.dtype
    with em.block():
        sv = em.shared_var(inst.src)
        chosen = em.program.plan.selected.get(inst)
        plan = chosen.data if chosen is not None else None
        known = [em.divisor(o) for o in inst.offsets]
        if plan is not None and rows_fit_shared(plan, sv.strides, sv.swizzle, known):
            offsets = [_operand(em.expr(o)) for o in inst.offsets]

            def pointer(index: list[str]) -> str:
                return f"&{sv.name}[{shared_offset(sv, index, em.prelude)}]"

            emit_ldmatrix(em, plan, offsets, pointer, name, dtype)
        else:
            shared_access(em, sv, layout, inst.offsets, name, False, dtype)


@EMIT.rule(I.StoreShared)
def _store_shared(em: Emitter, inst: I.StoreShared) -> None:
    layout = em.layout(inst.src)
    owner = em.owner(layout)
    with em.block(f"if ({owner})" if owner else ""):
        sv = em.shared_var(inst.dst)
        shared_access(em, sv, layout, inst.offsets, em.tile(inst.src), True, inst.src.dtype)


@EMIT.rule(I.SyncThreads)
def _sync_threads(em: Emitter, inst: I.SyncThreads) -> None:
    em.line("__syncthreads();")


# -- asynchronous copies ---------------------------------------------------------------------------
@EMIT.rule(I.CopyAsync)
def _copy_async(em: Emitter, inst: I.CopyAsync) -> None:
    sv, g = em.shared_var(inst.dst), em.global_var(inst.src)
    dtype = inst.dst.dtype
    ebytes = elem_bytes(dtype)
    layout = auto_layout(inst.dst.shape, em.block_threads, ebytes * 8)
    zeros = [0] * len(inst.dst.shape)
    param = em.params.get(g.tensor.ptr)
    pbytes = elem_bytes(param.dtype) if param is not None else 1
    z = sv.swizzle
    smax = 16 if z is None else max(1, 1 << z.base)
    # The widest run both sides allow: shared offsets come from the same thread parts.
    v, _ = vector_width(em, layout, zeros, sv.strides, ebytes, smax, None, 1)
    v, guard = vector_width(
        em, layout, inst.offsets, g.tensor.strides, ebytes, v, g.tensor.ptr.name, pbytes
    )
    nbytes = v * ebytes
    r = runs(layout, v)
    owner = em.owner(layout)
    inside = surely_inside(em, g, layout, inst.offsets)
    zero = elem_literal(0, dtype)
    with em.block(f"if ({owner})" if owner else ""):
        gbase = bases(em, layout, inst.offsets)
        sbase = list(em.coords(layout).dims)

        def indices(idx: Callable[[int], str]) -> tuple[list[str], list[str]]:
            gi = [add(gbase[d], idx(1 + d)) for d in range(len(gbase))]
            si = [add(sbase[d], idx(1 + d)) for d in range(len(sbase))]
            return gi, si

        def copy(idx: Callable[[int], str]) -> list[str]:
            """One cp.async of the run (src-size zero-fills what lies outside the tensor)."""
            gi, si = indices(idx)
            dst = f"&{sv.name}[{shared_offset(sv, si, em.prelude)}]"
            src = f"&{g.name}[{address(gi, g.strides)}]"
            if not inst.masked or all(inside):
                return [f"tv_cp_async{nbytes}({dst}, {src}, {nbytes});"]
            tests = _masks(em, g, gi, True, True, inside)
            last = gi[-1]
            start = [] if em.nonnegative(inst.offsets[-1]) else [f"0 <= {last}"]
            cond = " && ".join(tests + start)
            count = f"tv_clamp({g.shape[-1]} - {_operand(last)}, 0, {v})"
            size = f"{cond} ? {mul(count, ebytes)} : 0" if cond else mul(count, ebytes)
            return [
                f"const int src_bytes = {size};",
                f"tv_cp_async{nbytes}({dst}, {src}, src_bytes);",
            ]

        def elements(idx: Callable[[int], str]) -> list[str]:
            """The run copied element by element, synchronously (zeros outside the tensor)."""
            lines = []
            for j in range(v):
                gi, si = indices(idx)
                gi[-1], si[-1] = add(gi[-1], j), add(si[-1], j)
                value = f"{g.name}[{address(gi, g.strides)}]"
                tests = _masks(em, g, gi, inst.masked, False, inside)
                if tests:
                    value = f"{' && '.join(tests)} ? {value} : {zero}"
                lines.append(f"{sv.name}[{shared_offset(sv, si, em.prelude)}] = {value};")
            return lines

        def body(idx: Callable[[int], str]) -> list[str]:
            if nbytes not in (4, 8, 16):
                return elements(idx)
            em.prelude.use("cp_async")
            if inst.masked:
                em.prelude.use("int_minmax")
            if not guard:
                return copy(idx)
            inner = lambda lines: ["  " + x for x in lines]  # noqa: E731
            return [f"if ({guard}) {{", *inner(copy(idx)), "} else {", *inner(elements(idx)), "}"]

        em.per_local(r.count, r.radices, r.maps(), body, var="r")


@EMIT.rule(I.CopyAsyncCommit)
def _copy_async_commit(em: Emitter, inst: I.CopyAsyncCommit) -> None:
    em.prelude.use("cp_async")
    em.line("tv_cp_async_commit();")


@EMIT.rule(I.CopyAsyncWait)
def _copy_async_wait(em: Emitter, inst: I.CopyAsyncWait) -> None:
    em.prelude.use("cp_async")
    em.line(f"tv_cp_async_wait<{inst.pending}>();")


__all__ = ["Runs", "address", "bases", "pack", "runs", "shared_access", "unpack", "vector_width"]
