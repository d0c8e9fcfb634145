"""Layout inference: give every register tile a layout, inserting conversions where demands clash.

Each instruction class registers a rule that, given the layouts known so far,
may fix the layouts of its other tiles. The pass runs in three phases:

1. **anchors.** User layouts (``load(..., layout=)``, ``view``,
   ``annotate_layout``) are kept and propagated first (as in phase 2), so
   that a dot sees the layouts its operands inherit from them: dequantised
   weights viewed straight into B fragments stay in registers. Then every
   ``dot`` picks a warp arrangement and fixes the mma fragment layouts of its
   operands and accumulator (agreeing with an operand that already has a
   layout when one arrangement does).
2. **propagation**, to a fixed point: elementwise ops, casts and assignments
   share one layout between their tiles (a broadcast operand gets the result's
   layout reduced over the broadcast dimensions); reductions and reshapes map
   layouts through :func:`~tilevm.layouts.reduce` and
   :func:`~tilevm.layouts.reshape`, a transpose through
   :func:`~tilevm.layouts.permute` (so it moves no data: a weight tile
   dequantised as k x n can feed a dot as the n x k A operand, in the same
   registers). Information flows forwards and backwards,
   so a load that feeds a dot loads straight into the dot's fragments.
3. **defaults and conflicts.** Tiles still without a layout (a load nobody
   constrains) get a coalesced one (:func:`auto_layout`); then every
   instruction whose operand has a layout other than the one it needs gets a
   :class:`~tilevm.ir.inst.ConvertLayout` of that operand inserted before it.

The pass works on a copy: the input program is not changed.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

from ..errors import LayoutError
from ..ir import inst as I
from ..ir.builder import IRError
from ..ir.program import Program
from ..ir.registry import RuleTable
from ..ir.stmt import For, If, InstStmt, Seq, While
from ..ir.stmt import instructions as stmt_instructions
from ..ir.tensor import RegisterTensor
from ..layouts import fragments
from ..layouts.indexing import local_map
from ..layouts.ops import part as part_layout
from ..layouts.ops import permute
from ..layouts.ops import reduce as reduce_layout
from ..layouts.ops import reshape as reshape_layout
from ..layouts.register import RegisterLayout, local, replicate, spatial

RULES = RuleTable("infer_layouts")


class LayoutInferenceError(IRError):
    """Layout demands that cannot be met (a dot shape the tensor cores cannot take...)."""


# -- the default layout ------------------------------------------------------------------------
def auto_layout(shape: tuple[int, ...], num_threads: int, elem_bits: int) -> RegisterLayout:
    """A coalesced layout: 16-byte runs along the last dimension, threads row-major over the rest.

    Each thread holds ``v`` consecutive elements of the last dimension (the most
    that fit 16 bytes and divide it); threads cover the tile row-major from the
    innermost dimension out; extents left over become registers (outermost), and
    threads left over hold copies (replication).
    """
    rest = list(shape)
    vector = 1
    while rest[-1] % (vector * 2) == 0 and vector * 2 * elem_bits <= 128 and rest[-1] > vector:
        vector *= 2
    rest[-1] //= vector
    threads = [1] * len(shape)
    left = num_threads
    for d in reversed(range(len(shape))):
        t = math.gcd(rest[d], left)
        threads[d], rest[d], left = t, rest[d] // t, left // t
    vec_shape = [1] * (len(shape) - 1) + [vector]
    layout = local(*rest) * spatial(*threads) * local(*vec_shape)
    if left > 1:
        layout = replicate(left, rank=len(shape)) * layout
    return layout


# -- the mma arrangement -----------------------------------------------------------------------
def dot_layouts(
    m: int, n: int, k: int, num_warps: int, int8: bool, prefer: dict[str, RegisterLayout]
) -> tuple[RegisterLayout, RegisterLayout, RegisterLayout]:
    """Layouts (a, b, c) of an m x n x k dot on mma.sync fragments spread over the warps.

    Tries every arrangement of warps (wm along m, wn along n) that divides the
    tile, with all the warps or, for a tile too small for them, the first
    ``wm * wn`` with the others holding replicas (each computes the same mma
    tiles; stores take one copy). Each comes in two forms: *interleaved* (a
    warp's mma tiles are every wm-th along m and wn-th along n) and *blocked*
    (warp (i, j) owns one contiguous block of m / wm rows and n / wn columns,
    as pre-packed weights are laid out). It prefers one that agrees with
    layouts in ``prefer`` ('a', 'b', 'c'), then the fewest replicas, then the
    squarest per-warp tile, then the interleaved form. Either
    way each thread's registers run over (m, k) / (k, n) / (m, n) mma tiles
    in the same order, which is what the mma emission relies on.

    A pure function of its arguments (layouts are immutable values), so its
    answers are remembered: a GEMM asks it the same question for every k step.
    """
    return _dot_layouts(m, n, k, num_warps, int8, tuple(sorted(prefer.items())))


@functools.lru_cache(maxsize=512)
def _dot_layouts(
    m: int, n: int, k: int, num_warps: int, int8: bool, preferred: tuple
) -> tuple[RegisterLayout, RegisterLayout, RegisterLayout]:
    prefer = dict(preferred)
    atom_k = 32 if int8 else 16
    atoms = (
        (fragments.mma_m16n8k32_a(), fragments.mma_m16n8k32_b(), fragments.mma_m16n8k32_c())
        if int8
        else (fragments.mma_m16n8k16_a(), fragments.mma_m16n8k16_b(), fragments.mma_m16n8k16_c())
    )
    if m % 16 or n % 8 or k % atom_k:
        raise LayoutInferenceError(
            f"dot of {m}x{k} by {k}x{n}: tensor cores need m a multiple of 16, n of 8 and k of "
            f"{atom_k}"
        )
    best = None
    for used in (u for u in range(num_warps, 0, -1) if num_warps % u == 0):
        copies = num_warps // used  # warps beyond the tile's mma tiles hold replicas
        for wm in (w for w in range(1, used + 1) if used % w == 0):
            wn = used // wm
            if (m // 16) % wm or (n // 8) % wn:
                continue
            rm, rn, rk = m // (16 * wm), n // (8 * wn), k // atom_k
            rep = replicate(copies, rank=2)
            wa = rep * spatial(wm, 1) * replicate(wn, rank=2)
            wb = rep * replicate(wm, rank=2) * spatial(1, wn)
            wc = rep * spatial(wm, wn)
            forms = (
                (1, local(rm, rk) * wa * atoms[0], local(rk, rn) * wb * atoms[1],
                 local(rm, rn) * wc * atoms[2]),
                (0, wa * local(rm, rk) * atoms[0], wb * local(rk, rn) * atoms[1],
                 wc * local(rm, rn) * atoms[2]),
            )  # fmt: skip
            for interleaved, a, b, c in forms:
                pairs = (("a", a), ("b", b), ("c", c))
                agree = sum(prefer.get(key) == value for key, value in pairs)
                score = (agree, -copies, -abs(math.log2((m / wm) / (n / wn))), interleaved)
                if best is None or score > best[0]:
                    best = (score, (a, b, c))
    assert best is not None  # one warp and replicas always fit
    return best[1]


# -- the pass ----------------------------------------------------------------------------------
class State:
    """Layouts found so far, by tile (identity), and the kernel's thread count."""

    def __init__(self, program: Program):
        self.num_threads = program.num_threads
        self.num_warps = program.num_warps
        self.changed = False

    def get(self, t) -> RegisterLayout | None:
        return t.layout if isinstance(t, RegisterTensor) else None

    def set(self, t, layout: RegisterLayout | None) -> None:
        if isinstance(t, RegisterTensor) and t.layout is None and layout is not None:
            if layout.shape != t.shape:
                return
            t.layout = layout
            self.changed = True


def infer_layouts(program: Program) -> Program:
    """Give every register tile a layout; see the module docs."""
    program = copy.deepcopy(program)
    state = State(program)
    instructions = list(stmt_instructions(program.body))
    _propagate(instructions, state)  # user layouts reach the dots they feed first
    for inst in instructions:
        if isinstance(inst, I.Dot):
            _fix_dot(inst, state)
    _propagate(instructions, state)
    for inst in instructions:
        out = inst.output
        if isinstance(out, RegisterTensor) and out.layout is None:
            state.set(out, auto_layout(out.shape, state.num_threads, out.dtype.nbits))
            _propagate(instructions, state)
    _resolve(program.body, state)
    return program


def _propagate(instructions: list[I.Instruction], state: State) -> None:
    state.changed = True
    while state.changed:
        state.changed = False
        for inst in instructions:
            RULES.lookup(inst)(inst, state)


def _fix_dot(inst: I.Dot, state: State) -> None:
    (m, k), n = inst.a.shape, inst.b.shape[1]
    prefer = {
        key: t.layout
        for key, t in (("a", inst.a), ("b", inst.b), ("c", inst.c))
        if t.layout is not None
    }
    int8 = not inst.a.dtype.is_float
    try:
        a, b, c = dot_layouts(m, n, k, state.num_warps, int8, prefer)
    except LayoutInferenceError as err:
        raise LayoutInferenceError(_at(inst, str(err))) from None
    for t, layout in ((inst.a, a), (inst.b, b), (inst.c, c), (inst.out, c)):
        state.set(t, layout)


def _at(inst: I.Instruction, message: str) -> str:
    loc = inst.loc
    return f"{loc.file}:{loc.line}: {message}" if loc is not None else message


# -- what each instruction wants of its operands -------------------------------------------------
def wanted(inst: I.Instruction) -> list[tuple[str, RegisterLayout | None]]:
    """(field name, layout it needs) for each tile operand whose layout is constrained."""
    return WANTS.lookup(inst)(inst)


WANTS = RuleTable("infer_layouts.wants")

# Instructions that take no part in layout propagation and ask nothing of operand layouts.
LAYOUT_NEUTRAL = (
    I.ConvertLayout,
    I.StoreGlobal,
    I.StoreShared,
    I.Print,
    I.AnnotateLayout,
    I.GlobalView,
    I.AtomicAdd,
    I.Fence,
    I.LoadGlobal,
    I.LoadShared,
    I.AllocShared,
    I.FreeShared,
    I.CopyAsync,
    I.CopyAsyncCommit,
    I.CopyAsyncWait,
    I.SyncThreads,
    I.Full,
    I.Arange,
)


def _broadcast_layout(out: RegisterLayout, operand: RegisterTensor) -> RegisterLayout:
    """``out``'s layout as seen by an operand broadcast to it (numpy rules)."""
    rank = len(out.shape)
    shape = (1,) * (rank - operand.rank) + operand.shape
    dims = [d for d in range(rank) if shape[d] == 1 and out.shape[d] != 1]
    layout = reduce_layout(out, dims) if dims else out
    return reshape_layout(layout, operand.shape) if operand.rank != rank else layout


def _elementwise_wants(fields: tuple[str, ...]) -> Callable[[I.Instruction], list]:
    def wants(inst):
        out = inst.out.layout
        result = []
        for f in fields:
            v = getattr(inst, f)
            if isinstance(v, RegisterTensor):
                result.append((f, None if out is None else _broadcast_layout(out, v)))
        return result

    return wants


WANTS.rule(I.ElementwiseBinary)(_elementwise_wants(("a", "b")))
WANTS.rule(I.Where)(_elementwise_wants(("cond", "a", "b")))
WANTS.rule(I.ElementwiseUnary, I.Assign)(_elementwise_wants(("x",)))


@WANTS.rule(I.Cast)
def _cast_wants(inst: I.Cast):
    """A cast reads its operand in any register order of the same threads (the lowering pairs
    registers through :func:`~tilevm.layouts.indexing.local_map`), so that codes viewed from
    packed words in their packed order convert straight into the order their user needs."""
    out, x = inst.out.layout, inst.x.layout
    if out is not None and x is not None and x != out and x.shape == out.shape:
        threads = math.lcm(out.num_threads, x.num_threads)
        if local_map(out, x, threads) is not None:
            return [("x", None)]
    return _elementwise_wants(("x",))(inst)


@WANTS.rule(I.Transpose)
def _transpose_wants(inst: I.Transpose):
    """The operand in the result's layout with its dimensions put back: then no data moves."""
    out = inst.out.layout
    return [("x", None if out is None else permute(out, _inverse(inst.dims)))]


def _inverse(dims: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes ``dims``."""
    return tuple(dims.index(d) for d in range(len(dims)))


@WANTS.rule(I.Dot)
def _dot_wants(inst: I.Dot):
    """The mma fragments of the arrangement the dot was given (the one its result's layout
    agrees with): an operand whose layout was fixed before the dot chose, in another
    layout, is converted."""
    out = inst.out.layout
    if out is None:
        return []
    (m, k), n = inst.a.shape, inst.b.shape[1]
    tiles = (("a", inst.a), ("b", inst.b), ("c", inst.out))
    prefer = {key: t.layout for key, t in tiles if t.layout is not None}
    num_warps = out.num_threads // 32
    a, b, c = dot_layouts(m, n, k, num_warps, not inst.a.dtype.is_float, prefer)
    return [("a", a), ("b", b), ("c", c)]


@WANTS.rule(I.Reduce, I.Reshape, I.Slice, I.View, *LAYOUT_NEUTRAL)
def _no_wants(inst):
    return []


# -- propagation rules ---------------------------------------------------------------------------
@RULES.rule(I.ElementwiseBinary, I.Where, I.ElementwiseUnary, I.Cast, I.Assign)
def _elementwise(inst, state: State) -> None:
    out = inst.out
    operands = [v for v in inst.inputs() if isinstance(v, RegisterTensor)]
    if out.layout is None:
        for v in operands:
            if v.shape == out.shape and v.layout is not None:
                state.set(out, v.layout)
                break
    if out.layout is not None:
        for v in operands:
            if v.layout is None:
                state.set(v, _broadcast_layout(out.layout, v))


@RULES.rule(I.Dot)
def _dot(inst: I.Dot, state: State) -> None:
    state.set(inst.out, inst.c.layout)
    state.set(inst.c, inst.out.layout)


@RULES.rule(I.Reduce)
def _reduce(inst: I.Reduce, state: State) -> None:
    if inst.x.layout is not None:
        state.set(inst.out, reduce_layout(inst.x.layout, inst.dims))


@RULES.rule(I.Reshape)
def _reshape(inst: I.Reshape, state: State) -> None:
    try:
        if inst.x.layout is not None:
            state.set(inst.out, reshape_layout(inst.x.layout, inst.out.shape))
        elif inst.out.layout is not None:
            state.set(inst.x, reshape_layout(inst.out.layout, inst.x.shape))
    except LayoutError:
        pass  # not expressible: the default layouts and a conversion take over


@RULES.rule(I.Slice)
def _slice(inst: I.Slice, state: State) -> None:
    """A part at a multiple of its shape takes the repeated layout (its registers), and back."""
    shape = inst.out.shape
    if any(o % s for o, s in zip(inst.offsets, shape)):
        return  # not one of the aligned blocks: the default layouts and a conversion take over
    if inst.x.layout is not None:
        layout = part_layout(inst.x.layout, shape)
        if layout is not None:
            state.set(inst.out, layout)
    elif inst.out.layout is not None:
        state.set(inst.x, local(*(e // s for e, s in zip(inst.x.shape, shape))) * inst.out.layout)


@RULES.rule(I.Transpose)
def _transpose(inst: I.Transpose, state: State) -> None:
    if inst.x.layout is not None:
        state.set(inst.out, permute(inst.x.layout, inst.dims))
    elif inst.out.layout is not None:
        state.set(inst.x, permute(inst.out.layout, _inverse(inst.dims)))


@RULES.rule(I.View)
def _view(inst: I.View, state: State) -> None:
    if inst.x.dtype.nbits == inst.out.dtype.nbits:
        state.set(inst.out, inst.x.layout)
        state.set(inst.x, inst.out.layout)


@RULES.rule(*LAYOUT_NEUTRAL)
def _nothing(inst, state: State) -> None:
    pass


# -- conflicts -----------------------------------------------------------------------------------
def _resolve(seq: Seq, state: State) -> None:
    body = []
    for stmt in seq.body:
        match stmt:
            case InstStmt():
                body.extend(_convert_operands(stmt.inst))
                body.append(stmt)
            case For() | While():
                _resolve(stmt.body, state)
                body.append(stmt)
            case If():
                _resolve(stmt.then, state)
                if stmt.orelse is not None:
                    _resolve(stmt.orelse, state)
                body.append(stmt)
            case _:
                body.append(stmt)
    seq.body = body


def _convert_operands(inst: I.Instruction) -> list[InstStmt]:
    inserted = []
    for field, layout in wanted(inst):
        operand = getattr(inst, field)
        if layout is None or operand.layout == layout:
            continue
        if operand.layout is None:
            raise AssertionError(f"{type(inst).__name__}: operand {field} has no layout")
        moved = RegisterTensor(operand.dtype, operand.shape, layout, operand.name)
        convert = I.ConvertLayout(moved, operand, inst.loc)
        inserted.append(InstStmt(convert))
        setattr(inst, field, moved)
    return inserted
