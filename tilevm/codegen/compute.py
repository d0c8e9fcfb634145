"""Register instructions as per-thread C: creation, conversions, views, elementwise ops, moves.

Everything here works register by register: a thread computes its own
elements, so ``out[l] = f(a[la], b[lb])`` where ``la`` is the register of ``a``
holding the element that register ``l`` of ``out`` needs (the same element,
or its broadcast source). Layout inference gives operands layouts where those
registers are in the same thread; when one is not, the program was not run
through the pass pipeline and the emitter says so.

Values follow :mod:`.values`: float16, bfloat16 and small floats compute in
float32 and round back (to nearest even, arithmetic overflowing to inf,
casts saturating); integers compute in ``long long`` and wrap to their width.
A cast of a type of at most 8 bits to float16 or bfloat16 instead converts
two registers at a time with the bit tricks of :mod:`.dequant`.

A transpose (``trans``) only renames: its operand's layout is the result's
with the dimensions swapped, so a thread's registers stay where they are.
Moving elements between threads (``convert_layout``, a ``reshape`` whose
layouts do not line up, ``print`` of a tile) goes through shared memory: the
owner of each element stores it row-major, a barrier, every thread loads what
its layout wants, a barrier.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import DataType, float32, int32, int64, is_bf16, is_f16
from ..errors import LayoutError
from ..interp.values import round_arith
from ..ir import inst as I
from ..ir.expr import BOOL, COMPARISONS, Expr
from ..ir.tensor import RegisterTensor
from ..layouts.indexing import broadcast_transform, local_map, local_parts, reshape_transform
from ..layouts.register import RegisterLayout
from ..layouts.view import check_view_legal, view_moves
from .dequant import PAIR_OPS, arith_pair, bit_masks_from_words, cast_pair, pairs_from_words
from .emitter import EMIT, Emitter, SharedVar
from .memory import shared_access
from .scalars import paren
from .text import add
from .values import (
    CodegenError,
    convert,
    elem_bytes,
    elem_ctype,
    elem_literal,
    from_code,
    load,
    store,
    to_code,
    value_ctype,
    value_literal,
)


# -- operands --------------------------------------------------------------------------------------
class Operand:
    """A tile or scalar operand of an elementwise instruction, as seen from ``out``'s registers."""

    def __init__(self, em: Emitter, value: Any, like: DataType, out: RegisterTensor):
        self.em = em
        self.tile: str | None = None
        self.map: list[int] = []
        self.size = 0  # a tile's registers
        if isinstance(value, RegisterTensor):
            self.tile, self.dtype = em.tile(value), value.dtype
            self.size = em.layout(value).local_size
            self.map = registers_for(em, out, value, broadcast_transform(out.shape, value.shape))
            self.text = ""
        elif isinstance(value, Expr):
            text = em.expr(value)
            simple = text.isidentifier() or text.replace(".", "").rstrip("f").isdigit()
            self.dtype, self.text = value.dtype, text if simple else f"({text})"
        elif (
            isinstance(value, (int, np.integer))
            and not isinstance(value, bool)
            and not like.is_float
        ):
            # Exact either way; a literal that fits 32 bits keeps int32 arithmetic in C.
            t = int32 if -(2**31) <= int(value) < 2**31 else int64
            self.dtype, self.text = t, value_literal(int(value), t)
        else:
            target = like if like.is_float else float32
            v = float(round_arith(np.asarray(float(value), dtype=np.float32), target))
            self.dtype, self.text = target, value_literal(v, target)

    def value(self, idx: str) -> str:
        """The operand's value (a C value of its type) for the out register ``idx``."""
        if self.tile is not None:
            return load(f"{self.tile}[{idx}]", self.dtype, self.em.prelude)
        return self.text


def registers_for(em: Emitter, out: RegisterTensor, x: RegisterTensor, transform=None) -> list[int]:
    """Per register of ``out``, the register of ``x`` in the same thread holding what it needs."""
    found = local_map(em.layout(out), em.layout(x), em.block_threads, transform)
    if found is None:
        raise CodegenError(
            f"{em.names[x]} ({x.layout}) is not in the threads {em.names[out]} ({out.layout}) "
            "needs it in; layout inference inserts a convert_layout there"
        )
    return found


def _dtype_of(value: Any) -> DataType | None:
    """A tile's or scalar expression's type; ``None`` for a Python number (it takes the other's)."""
    return value.dtype if isinstance(value, (RegisterTensor, Expr)) else None


# -- creation --------------------------------------------------------------------------------------
@EMIT.rule(I.Full)
def _full(em: Emitter, inst: I.Full) -> None:
    out = inst.out
    name = em.declare(out)
    if isinstance(inst.value, Expr):
        src = inst.value.dtype
        element = store(em.expr(inst.value), src, out.dtype, "cast", em.prelude)
    else:
        value = out.dtype.decode(out.dtype.encode(np.asarray(inst.value))).item()
        element = elem_literal(value, out.dtype)
    em.local_loop(out, [], lambda idx: [f"{name}[{idx(0)}] = {element};"])


@EMIT.rule(I.Arange)
def _arange(em: Emitter, inst: I.Arange) -> None:
    out = inst.out
    name = em.declare(out)
    layout = em.layout(out)
    thread = em.coords(layout).dims[inst.dim]
    part = local_parts(layout)[inst.dim]
    values = [int(part(reg)) for reg in range(layout.local_size)]

    def body(idx: Callable[[int], str]) -> list[str]:
        # An index is below 2^31, so it converts as an int32 would.
        element = store(add(thread, idx(1)), DataType("int", 32), out.dtype, "cast", em.prelude)
        return [f"{name}[{idx(0)}] = {element};"]

    em.local_loop(out, [values], body)


# -- conversions -----------------------------------------------------------------------------------
@EMIT.rule(I.Cast)
def _cast(em: Emitter, inst: I.Cast) -> None:
    out, x = inst.out, inst.x
    name = em.declare(out)
    src = em.tile(x)
    regs = registers_for(em, out, x)

    def element(reg: str) -> str:
        element = f"{src}[{reg}]"
        if x.dtype == out.dtype:
            return element
        return store(load(element, x.dtype, em.prelude), x.dtype, out.dtype, "cast", em.prelude)

    chosen = em.program.plan.selected.get(inst)  # the select_instructions pass's dequant sequence
    kind, from_words, offset = chosen.data if chosen is not None else (None, False, 0)
    if kind is None or len(regs) < 2:
        em.local_loop(out, [regs], lambda idx: [f"{name}[{idx(0)}] = {element(idx(1))};"])
        return
    # Registers 2p and 2p + 1 in one 32-bit word; an odd last one alone.
    pairs = len(regs) // 2
    maps = [list(range(0, 2 * pairs, 2)), list(range(1, 2 * pairs, 2)), regs[0::2], regs[1::2]]

    def pair(idx: Callable[[int], str]) -> list[str]:
        word = cast_pair(kind, x.dtype, f"{src}[{idx(2)}]", f"{src}[{idx(3)}]", em.prelude)
        return [f"tv_unpack2({name}[{idx(0)}], {name}[{idx(1)}], {word});"]

    packed = em.packed_codes.get(id(x)) if from_words else None
    fused = None
    if packed is not None:
        # Codes a view cut from packed words: each pair read straight from the words.
        words, num_words, starts = packed
        positions = [(starts[r0], starts[r1]) for r0, r1 in zip(maps[2][:pairs], maps[3][:pairs])]
        fused = pairs_from_words(
            kind, x.dtype, words, positions, num_words, em.prelude, offset=offset
        )
    assert fused is not None or not offset, "select_instructions folds offsets into word casts"
    if fused is not None:
        for p, word in enumerate(fused):
            em.line(f"tv_unpack2({name}[{2 * p}], {name}[{2 * p + 1}], {word});")
    else:
        em.per_local(pairs, ((1, pairs),), [m[:pairs] for m in maps], pair)
    if len(regs) % 2:
        em.line(f"{name}[{len(regs) - 1}] = {element(str(regs[-1]))};")


def view_plan(
    src_locals: int, src_bits: int, dst_locals: int, dst_bits: int
) -> list[list[tuple[int, int, int, int]]]:
    """Per destination register, its pieces ``(src register, src bit, dst bit, nbits)``.

    A thread's registers are one bit string, register 0 in the lowest bits; the
    destination re-slices it (the same in every thread, hence static).
    """
    assert src_locals * src_bits == dst_locals * dst_bits
    plan = []
    for v in range(dst_locals):
        pieces, lo, hi = [], v * dst_bits, (v + 1) * dst_bits
        while lo < hi:
            s, offset = divmod(lo, src_bits)
            n = min(hi - lo, src_bits - offset)
            pieces.append((s, offset, lo - v * dst_bits, n))
            lo += n
        plan.append(pieces)
    return plan


@EMIT.rule(I.View)
def _view(em: Emitter, inst: I.View) -> None:
    x, out = inst.x, inst.out
    xl, ol = em.layout(x), em.layout(out)
    try:
        check_view_legal(xl, x.dtype.nbits, ol, out.dtype.nbits)
        view_moves(xl, x.dtype.nbits, ol, out.dtype.nbits)  # replicas must agree
    except LayoutError as err:
        raise CodegenError(f"view of {em.names[x]} as {em.names[out]}: {err}") from None
    name, src = em.declare(out), em.tile(x)
    wide = out.dtype.nbits > 32 or x.dtype.nbits > 32
    plan = view_plan(xl.local_size, x.dtype.nbits, ol.local_size, out.dtype.nbits)
    if x.dtype.nbits == 32 and out.dtype.nbits <= 8:
        # Codes cut from 32-bit words: a cast selected as ".words" (select_instructions checked
        # that nothing overwrites them) may read them from the words directly.
        starts = tuple(32 * pieces[0][0] + pieces[0][1] for pieces in plan)
        em.packed_codes[id(out)] = (src, xl.local_size, starts)
    for v, pieces in enumerate(plan):
        parts = []
        for s, src_bit, dst_bit, n in pieces:
            code = _code(f"{src}[{s}]", x.dtype, wide)
            text = f"({code} >> {src_bit})" if src_bit else code
            if src_bit + n < x.dtype.nbits:
                text = f"({text} & 0x{(1 << n) - 1:X})"
            if dst_bit:
                text = f"({text} << {dst_bit})"
            parts.append(text)
        em.line(f"{name}[{v}] = {from_code(' | '.join(parts), out.dtype)};")


def _code(elem: str, t: DataType, wide: bool) -> str:
    """An element's bits as an unsigned integer (plain when the element type is unsigned)."""
    if elem_ctype(t) in ("tv_u8", "tv_u16", "tv_f16", "tv_bf16") and not wide:
        return elem
    code = to_code(elem, t)
    return f"(tv_u64){code}" if wide and t.nbits <= 32 else code


# -- elementwise -----------------------------------------------------------------------------------
_FLOAT_FN = {
    "floordiv": ("tv_ffloordiv", "float_division"),
    "mod": ("tv_fmod_py", "float_division"),
    "min": ("tv_fmin", "float_minmax"),
    "max": ("tv_fmax", "float_minmax"),
}
_C_OP = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "truediv": "/",
    "and": "&",
    "or": "|",
    "xor": "^",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "eq": "==",
    "ne": "!=",
}


def _store_bool(cond: str, out: DataType, em: Emitter) -> str:
    """A 0/1 result (a C condition) as an element of ``out``."""
    if out == BOOL:
        return f"(tv_u8)({cond})"
    return store(f"(int)({cond})", DataType("int", 32), out, "arith", em.prelude)


def binary_value(op: str, a: str, ta: DataType, b: str, tb: DataType, out: DataType, em) -> str:
    """The element of ``out`` for ``a op b`` (values of types ``ta``, ``tb``)."""
    pre = em.prelude
    if op in ("land", "lor"):
        sym = "&&" if op == "land" else "||"
        return _store_bool(f"({a} != 0) {sym} ({b} != 0)", out, em)
    if op in COMPARISONS:
        if ta.is_float or tb.is_float:
            a = a if ta.is_float else f"(float)({a})"
            b = b if tb.is_float else f"(float)({b})"
        else:
            a, b = _as_int_type(a, ta, _int_ctype(ta, tb)), _as_int_type(b, tb, _int_ctype(ta, tb))
        return _store_bool(f"{a} {_C_OP[op]} {b}", out, em)
    if out.is_float:
        a, b = convert(a, ta, out, "convert", pre), convert(b, tb, out, "convert", pre)
        if op in _FLOAT_FN:
            fn, snippet = _FLOAT_FN[op]
            pre.use(snippet)
            result = f"{fn}({a}, {b})"
        else:
            result = f"{paren(a, 15, 13)} {_C_OP[op]} {paren(b, 15, 14)}"
        return store(result, float32, out, "arith", pre)
    # The clamping shift helpers work on 64 bits.
    ctype = "long long" if op in ("shl", "shr") else _int_ctype(ta, tb, out)
    a, b = _as_int_type(a, ta, ctype), _as_int_type(b, tb, ctype)
    if op in ("floordiv", "mod"):
        pre.use("int_division")
        result = f"tv_{'floordiv' if op == 'floordiv' else 'mod'}({a}, {b})"
    elif op in ("shl", "shr"):
        pre.use("int_shift")
        result = f"tv_{op}({a}, {b})"
    elif op in ("min", "max"):
        pre.use("int_minmax")
        result = f"tv_{op}({a}, {b})"
    else:
        result = f"{paren(a, 15, 12)} {_C_OP[op]} {paren(b, 15, 13)}"
    return store(result, int64 if ctype == "long long" else int32, out, "arith", pre)


def _int_ctype(*types: DataType) -> str:
    """``int`` when every type's values and wrapped results fit C int arithmetic, else 64 bits.

    Adding, subtracting or multiplying in ``int`` keeps the low 32 bits exact, and
    a result of at most 32 bits is wrapped from those anyway.
    """
    return "int" if all(value_ctype(t) == "int" for t in types) else "long long"


def _as_int_type(text: str, t: DataType, ctype: str) -> str:
    return text if value_ctype(t) == ctype else f"({ctype})({text})"


@EMIT.rule(I.ElementwiseBinary)
def _binary(em: Emitter, inst: I.ElementwiseBinary) -> None:
    out = inst.out
    chosen = em.program.plan.selected.get(inst)
    if chosen is not None and chosen.name == "folded_into_cast":  # the cast subtracted it
        _move(em, out, inst.a, None)
        return
    da, db = _dtype_of(inst.a), _dtype_of(inst.b)
    a = Operand(em, inst.a, da or db, out)
    b = Operand(em, inst.b, db or da, out)
    name = em.declare(out)
    t = out.dtype
    count = em.layout(out).local_size
    paired = (
        inst.op in PAIR_OPS
        and (is_f16(t) or is_bf16(t))
        and a.tile
        and b.tile
        and a.dtype == b.dtype == t
        and count >= 2
    )
    if paired:
        # Registers 2p and 2p + 1 in one 32-bit word, two lanes an instruction; an odd last
        # register alone, below.
        pairs = count // 2
        maps = [list(range(0, 2 * pairs, 2)), list(range(1, 2 * pairs, 2))]
        for o in (a, b):
            maps += [o.map[0 : 2 * pairs : 2], o.map[1 : 2 * pairs : 2]]

        def pair(idx: Callable[[int], str]) -> list[str]:
            wa = f"tv_pack2({a.tile}[{idx(2)}], {a.tile}[{idx(3)}])"
            wb = f"tv_pack2({b.tile}[{idx(4)}], {b.tile}[{idx(5)}])"
            word = arith_pair(inst.op, t, wa, wb, em.prelude)
            return [f"tv_unpack2({name}[{idx(0)}], {name}[{idx(1)}], {word});"]

        em.per_local(pairs, ((1, pairs),), maps, pair)
        if count % 2 == 0:
            return

    def body(idx: Callable[[int], str]) -> list[str]:
        va = a.value(idx(1)) if a.tile else a.text
        vb = b.value(idx(2) if a.tile else idx(1)) if b.tile else b.text
        value = binary_value(inst.op, va, a.dtype, vb, b.dtype, out.dtype, em)
        return [f"{name}[{idx(0)}] = {value};"]

    maps = [o.map for o in (a, b) if o.tile]
    if paired:  # the odd last register
        em.extend(body(lambda k: str(([count - 1], *[[m[-1]] for m in maps])[k][0])))
        return
    em.local_loop(out, maps, body)


@EMIT.rule(I.ElementwiseUnary)
def _unary(em: Emitter, inst: I.ElementwiseUnary) -> None:
    out, x = inst.out, inst.x
    name = em.declare(out)
    src = em.tile(x)
    regs = registers_for(em, out, x)
    t = x.dtype

    def body(idx: Callable[[int], str]) -> list[str]:
        v = load(f"{src}[{idx(1)}]", t, em.prelude)
        match inst.op:
            case "lnot":
                return [f"{name}[{idx(0)}] = {_store_bool(f'{v} == 0', out.dtype, em)};"]
            case "exp" | "log" | "sqrt":
                arg = v if t.is_float else f"(float)({v})"
                result, rt = f"{inst.op}f({arg})", float32
            case "neg":
                result, rt = (
                    (f"-{paren(v, 15, 15)}", t) if t.is_float else (f"-(long long)({v})", int64)
                )
            case "abs":
                result, rt = (
                    (f"fabsf({v})", t) if t.is_float else (f"tv_abs((long long)({v}))", int64)
                )
                if t.is_integer:
                    em.prelude.use("int_minmax")
            case "invert":
                result, rt = f"~(long long)({v})", int64
            case _:
                raise AssertionError(f"unknown unary op {inst.op!r}")
        rt = float32 if rt.is_float else rt
        return [f"{name}[{idx(0)}] = {store(result, rt, out.dtype, 'arith', em.prelude)};"]

    em.local_loop(out, [regs], body)


def _lane_pair(o: Operand, r: int) -> str:
    """The 32-bit word of ``o``'s values for out registers ``r`` and ``r + 1``. Where both are
    one register of a broadcast, it is copied into both lanes by one ``prmt`` from the word
    that holds it with its neighbour (the compiler's own pairing costs two instructions)."""
    r0, r1 = o.map[r], o.map[r + 1]
    if r0 != r1 or (r0 | 1) >= o.size:
        return f"tv_pack2({o.tile}[{r0}], {o.tile}[{r1}])"
    word = f"tv_pack2({o.tile}[{r0 & ~1}], {o.tile}[{r0 | 1}])"
    return f"tv_prmt<0x{0x3232 if r0 & 1 else 0x1010:04X}>({word}, {word})"


@EMIT.rule(I.Where)
def _where(em: Emitter, inst: I.Where) -> None:
    out = inst.out
    cond = Operand(em, inst.cond, int64, out)
    a = Operand(em, inst.a, out.dtype, out)
    b = Operand(em, inst.b, out.dtype, out)
    name = em.declare(out)
    tiles = [o for o in (cond, a, b) if o.tile]
    count = em.layout(out).local_size
    paired = inst in em.program.plan.selected  # select.bits_from_words
    if paired:
        # Two lanes an instruction: a mask of the pair's code bits (bit_masks_from_words)
        # picks each lane's bits from a or b.
        words, num_words, starts = em.packed_codes[id(inst.cond)]
        pairs = count // 2
        positions = [(starts[cond.map[2 * p]], starts[cond.map[2 * p + 1]]) for p in range(pairs)]
        masks = bit_masks_from_words(words, positions, num_words)
        em.prelude.use("dq_ops", "pack")
        for p, mask in enumerate(masks):
            wa, wb = (_lane_pair(o, 2 * p) for o in (a, b))
            word = f"tv_lop3<0xCA>({mask}, {wa}, {wb})"
            em.line(f"tv_unpack2({name}[{2 * p}], {name}[{2 * p + 1}], {word});")
        if count % 2 == 0:
            return

    def body(idx: Callable[[int], str]) -> list[str]:
        k = {id(o): 1 + i for i, o in enumerate(tiles)}
        values = [o.value(idx(k[id(o)])) if o.tile else o.text for o in (cond, a, b)]
        va = convert(values[1], a.dtype, out.dtype, "convert", em.prelude)
        vb = convert(values[2], b.dtype, out.dtype, "convert", em.prelude)
        pick = f"({values[0]} != 0) ? {paren(va, 15, 4)} : {paren(vb, 15, 3)}"
        return [f"{name}[{idx(0)}] = {store(pick, out.dtype, out.dtype, 'arith', em.prelude)};"]

    if paired:  # the odd last register
        em.extend(body(lambda i: str(([count - 1], *[[o.map[-1]] for o in tiles])[i][0])))
        return
    em.local_loop(out, [o.map for o in tiles], body)


# -- moves -----------------------------------------------------------------------------------------
@EMIT.rule(I.Assign)
def _assign(em: Emitter, inst: I.Assign) -> None:
    out, x = inst.out, inst.x
    name, src = em.tile(out), em.tile(x)
    regs = registers_for(em, out, x)
    em.local_loop(out, [regs], lambda idx: [f"{name}[{idx(0)}] = {src}[{idx(1)}];"])


@EMIT.rule(I.AnnotateLayout)
def _annotate_layout(em: Emitter, inst: I.AnnotateLayout) -> None:
    """Layout inference has used the annotation; nothing runs."""


def _move(em: Emitter, out: RegisterTensor, x: RegisterTensor, transform, offsets=None) -> None:
    """``out``'s registers from ``x``'s: in place when every thread holds what it needs.

    Otherwise through a row-major scratch copy of ``x``, read back with
    ``out``'s shape (a reshape) or as ``x``'s part at ``offsets`` (a slice).
    """
    name = em.declare(out)
    src = em.tile(x)
    regs = local_map(em.layout(out), em.layout(x), em.block_threads, transform)
    if regs is not None:
        em.local_loop(out, [regs], lambda idx: [f"{name}[{idx(0)}] = {src}[{idx(1)}];"])
        if id(x) in em.packed_codes:  # the same codes of the same words, in another order
            words, num_words, starts = em.packed_codes[id(x)]
            em.packed_codes[id(out)] = (words, num_words, tuple(starts[r] for r in regs))
        return
    with em.block():
        sv = scratch_tile(em, x)
        store_scratch(em, sv, x)
        if offsets is None:
            view = SharedVar(sv.name, sv.tensor, sv.offset, _row_major(out.shape), None)
            offsets = [0] * out.rank
        else:
            view = sv
        shared_access(em, view, em.layout(out), list(offsets), name, False, out.dtype)
        em.line("__syncthreads();")


@EMIT.rule(I.ConvertLayout)
def _convert_layout(em: Emitter, inst: I.ConvertLayout) -> None:
    _move(em, inst.out, inst.x, None)


@EMIT.rule(I.Reshape)
def _reshape(em: Emitter, inst: I.Reshape) -> None:
    _move(em, inst.out, inst.x, reshape_transform(inst.out.shape, inst.x.shape))


@EMIT.rule(I.Slice)
def _slice(em: Emitter, inst: I.Slice) -> None:
    shift = np.array(inst.offsets)
    _move(em, inst.out, inst.x, lambda index: index + shift, inst.offsets)


@EMIT.rule(I.Transpose)
def _transpose(em: Emitter, inst: I.Transpose) -> None:
    """Register copies, which the compiler renames away: layout inference gave ``x`` the
    result's layout with its dimensions put back, so each thread holds what it needs."""
    out, x = inst.out, inst.x
    name, src = em.declare(out), em.tile(x)
    back = [inst.dims.index(d) for d in range(x.rank)]  # x's dimension d is out's back[d]
    regs = registers_for(em, out, x, lambda index: index[..., back])
    em.local_loop(out, [regs], lambda idx: [f"{name}[{idx(0)}] = {src}[{idx(1)}];"])


def _row_major(shape) -> tuple[int, ...]:
    strides = [1] * len(shape)
    for d in reversed(range(len(shape) - 1)):
        strides[d] = strides[d + 1] * shape[d + 1]
    return tuple(strides)


def scratch_tile(em: Emitter, x: RegisterTensor) -> SharedVar:
    """Row-major shared scratch for a tile (the pointer ``s`` declared in the current scope)."""
    ctype = elem_ctype(x.dtype)
    offset, busy = em.scratch(x.size * elem_bytes(x.dtype))
    if busy:
        em.line("__syncthreads();  // the scratch space may still be read")
    em.line(f"{ctype}* scratch = reinterpret_cast<{ctype}*>(smem + {offset});")
    from ..ir.tensor import SharedTensor

    return SharedVar("scratch", SharedTensor(x.dtype, x.shape), offset, _row_major(x.shape), None)


def store_scratch(em: Emitter, sv: SharedVar, x: RegisterTensor) -> None:
    """Each element of ``x`` stored once into the scratch, then a barrier."""
    layout: RegisterLayout = em.layout(x)
    owner = em.owner(layout)
    with em.block(f"if ({owner})" if owner else ""):
        shared_access(em, sv, layout, [0] * x.rank, em.tile(x), True, x.dtype)
    em.line("__syncthreads();")


# -- printing --------------------------------------------------------------------------------------
_FORMATS = {"float": "%g", "int": "%d", "tv_u32": "%u", "long long": "%lld"}


@EMIT.rule(I.Print)
def _print(em: Emitter, inst: I.Print) -> None:
    fmt = "block (%d, %d, %d): " + _c_string(inst.message)
    args = ["(int)blockIdx.x", "(int)blockIdx.y", "(int)blockIdx.z"]
    tiles = []
    for arg in inst.args:
        if isinstance(arg, RegisterTensor):
            tiles.append(arg)
            continue
        if not isinstance(arg, Expr):
            fmt += " " + _c_string(str(arg))
            continue
        ctype = value_ctype(arg.dtype)
        fmt += " " + _FORMATS[ctype]
        args.append(f"(double)({em.expr(arg)})" if ctype == "float" else em.expr(arg))
    with em.block():
        em.line(f'if (tid == 0) printf("{fmt}\\n", {", ".join(args)});')
        for t in tiles:
            with em.block():
                sv = scratch_tile(em, t)
                store_scratch(em, sv, t)
                ctype = value_ctype(t.dtype)
                value = load("scratch[elem]", t.dtype, em.prelude)
                value = f"(double)({value})" if ctype == "float" else value
                last = t.shape[-1]
                loop = f"for (int elem = 0; elem < {t.size}; ++elem)"
                with em.block("if (tid == 0)"), em.block(loop):
                    sep = f'elem % {last} == {last - 1} ? "\\n" : " "'
                    em.line(f'printf("{_FORMATS[ctype]}%s", {value}, {sep});')
                em.line("__syncthreads();")


def _c_string(text: str) -> str:
    return json.dumps(text)[1:-1].replace("%", "%%")


__all__ = ["Operand", "binary_value", "registers_for", "view_plan"]
