"""Instruction selection: which hardware instruction or code sequence each instruction becomes.

The choices depend only on layouts and types, so they are made here, once,
and recorded in ``program.plan.selected`` (printed after each instruction);
lowering follows them:

- ``load_shared``: ``ldmatrix`` (x1/x2/x4, ``.trans``) when every warp's
  register pairs form 8x8 matrices of a 16-bit type
  (:func:`tilevm.codegen.ldmatrix.ldmatrix_plan`), else vector ``ld.shared``.
  Lowering still checks that the rows are 16-byte aligned in the shared
  tensor (strides, swizzle, the tile's offsets) and uses ``ld.shared`` when
  it cannot prove it;
- ``dot``: ``mma.sync`` m16n8k16 for fp16 and bf16 operands, m16n8k32 for
  8-bit integers;
- ``cast`` from a low-bit type to fp16/bf16: the cheapest known bit-trick
  sequence (:func:`tilevm.codegen.dequant.fast_cast_kind`), else the generic
  conversion; ``.words`` when the codes are a view of 32-bit words that no
  instruction overwrites, which lowering may then read pairs of straight from
  the words (:func:`tilevm.codegen.dequant.pairs_from_words`). When such a
  cast of unsigned int codes has one user, a subtraction of a constant tile
  (``x - full(c)``, the offset of offset-binary codes) whose whole number
  ``c`` is below ``2^b``, the cast subtracts it in the immediate it already
  adds (``.offset<c>``) and the subtraction becomes a copy
  (``folded_into_cast``): exact, as both give the integer ``u - c``;
- ``where`` whose condition is 1-bit codes viewed from such words (or a layout
  conversion of them) and whose result is a 16-bit type: ``select.bits_from_words``,
  two lanes an instruction, each pair's mask made from the words by one ``prmt``
  (:func:`tilevm.codegen.dequant.bit_masks_from_words`) and the lanes picked by one
  ``lop3``; exact for any 16-bit values, as it moves bits;
- ``copy_async``: ``cp.async`` (16-byte ``.cg``, or 8/4-byte ``.ca``).
"""

from __future__ import annotations

import copy

from ..dtypes import DataType, embeds, float16, is_bf16, is_f16
from ..ir import inst as I
from ..ir.plan import Selected
from ..ir.program import Program
from ..ir.stmt import instructions
from ..ir.tensor import RegisterTensor
from ..layouts.indexing import local_map
from .ldmatrix_match import ldmatrix_plan

# -- casts -------------------------------------------------------------------------------------
KINDS: tuple[str, ...] = (
    # lop3, add.f16x2 (from packed words in their packed order; with a prmt where a pair's codes
    # are not in one word's two halves): 1 instruction a value (1.5)
    "int_f16",
    "int_bf16",  # lop3, fma.bf16x2 (with a prmt): 1 (1.5)
    "int8_bf16",  # per value lop3 and an fp32 subtract, prmt a pair: 2.5
    # prmt, and, imad (sign), shift, mul.f16x2: 2.5 (2 when M = 2, 0.5 for e5m2, 4 for e4m3 with
    # its NaN test); e4m3 from sm_89 on: prmt, cvt.rn.f16x2.e4m3x2, lop3: 1.5
    "float_f16",
    # float_f16, two cvt.f32.f16, prmt: 4 (3.5 when M = 2, 2 for e5m2, 5.5 for e4m3; e4m3 3 from
    # sm_89 on, e5m2 keeping its placement)
    "float_bf16_via_f16",
    "float_bf16",  # per value and, imad, shift, fp32 multiply; prmt a pair: 4.5
)
"""Every sequence :func:`fast_cast_kind` may name, with its SASS instructions per value."""


def _low_bit(t: DataType) -> bool:
    return t.nbits <= 8 and t.kind in ("int", "uint", "float")


def _f16_sequence(t: DataType) -> bool:
    """The float16 sequence handles the small float ``t``: its exponent fits float16's."""
    assert t.exponent_bits is not None
    return t.exponent_bits <= 5


def fast_cast_kind(src: DataType, dst: DataType) -> str | None:
    """The bit-trick sequence that casts ``src`` to ``dst`` exactly, or ``None`` (generic path).

    A pure function of the two types. ``src`` must be a type of at most 8 bits
    (ints, uints, small floats) and ``dst`` float16 or bfloat16; the result
    equals the generic cast bit for bit, except that a NaN may be another NaN.

    ==================  =============================  ============================
    src                 float16                        bfloat16
    ==================  =============================  ============================
    int/uint 1..7       ``int_f16``                    ``int_bf16``
    int8, uint8         ``int_f16``                    ``int8_bf16`` (via float32)
    float E <= 4, e5m2  ``float_f16``                  ``float_bf16_via_f16``
    float e5m0, e5m1    ``float_f16`` (saturating)     ``float_bf16`` (via float32)
    float E >= 6        ``None`` (overflow, rounding)  ``float_bf16`` (via float32)
    ==================  =============================  ============================
    """
    if not _low_bit(src) or not (is_f16(dst) or is_bf16(dst)):
        return None
    if src.is_integer:
        if is_f16(dst):
            return "int_f16"
        return "int_bf16" if src.nbits <= 7 else "int8_bf16"
    if is_f16(dst):
        return "float_f16" if _f16_sequence(src) else None
    # Through float16 only when it holds every value (e5m0 and e5m1 saturate there).
    return "float_bf16_via_f16" if embeds(src, float16) else "float_bf16"


# -- the pass --------------------------------------------------------------------------------------
def _ldmatrix_name(plan) -> str:
    """``ldmatrix.x4`` or, for a mix, the distinct forms: ``ldmatrix.x4+x2.trans``."""
    forms = dict.fromkeys(f"x{op.num}{'.trans' if op.trans else ''}" for op in plan.ops)
    return "ldmatrix." + "+".join(forms)


FROM_WORDS_KINDS = ("int_f16", "int_bf16", "int8_bf16", "float_f16", "float_bf16_via_f16")
"""The cast sequences that can take their codes straight from packed 32-bit words."""


def _views_of_words(program: Program) -> set[int]:
    """Ids of low-bit tiles viewed from 32-bit words that no instruction overwrites, and of
    their layout conversions that keep every code in its thread (only registers move, so
    lowering still reads the codes from the words)."""
    insts = list(instructions(program.body))
    reassigned = {id(inst.out) for inst in insts if isinstance(inst, I.Assign)}
    views: set[int] = set()
    for inst in insts:
        if (
            isinstance(inst, I.View)
            and inst.x.dtype.nbits == 32
            and inst.out.dtype.nbits <= 8
            and id(inst.x) not in reassigned
        ) or (
            isinstance(inst, I.ConvertLayout)
            and id(inst.x) in views
            and local_map(inst.out.layout, inst.x.layout, program.num_threads) is not None
        ):
            views.add(id(inst.out))
    return views


def _offset_folds(program: Program, words: set[int]) -> dict[int, int]:
    """Casts of codes from words whose only user subtracts a constant: ``{id(cast): c}`` and
    ``{id(sub): -1}``."""
    insts = list(instructions(program.body))
    users: dict[int, list[I.Instruction]] = {}
    made: dict[int, I.Instruction] = {}
    for inst in insts:
        if not isinstance(inst, I.AnnotateLayout):  # an annotation reads nothing
            for v in inst.inputs():
                users.setdefault(id(v), []).append(inst)
        if getattr(inst, "out", None) is not None:
            made[id(inst.out)] = inst
    folds: dict[int, int] = {}
    for inst in insts:
        if (
            not isinstance(inst, I.Cast)
            or inst.x.dtype.kind != "uint"
            or id(inst.x) not in words
            or fast_cast_kind(inst.x.dtype, inst.out.dtype) not in ("int_f16", "int_bf16")
        ):
            continue
        use = users.get(id(inst.out), [])
        if len(use) != 1 or not isinstance(use[0], I.ElementwiseBinary):
            continue
        sub = use[0]
        full = made.get(id(sub.b)) if isinstance(sub.b, RegisterTensor) else None
        c = full.value if isinstance(full, I.Full) else None
        if (
            sub.op == "sub"
            and sub.a is inst.out
            and sub.out.shape == inst.out.shape
            and isinstance(c, (int, float))
            and not isinstance(c, bool)
            and float(c).is_integer()
            and 0 <= c < 1 << inst.x.dtype.nbits
        ):
            folds[id(inst)], folds[id(sub)] = int(c), -1
    return folds


def _select(
    inst: I.Instruction, num_threads: int, words: set[int], folds: dict[int, int]
) -> Selected | None:
    match inst:
        case I.LoadShared(out=out):
            plan = ldmatrix_plan(out.layout, out.dtype, num_threads)
            if plan is None:
                return Selected("ld.shared")
            return Selected(_ldmatrix_name(plan), plan)
        case I.Dot(a=a):
            if a.dtype.is_float:
                return Selected(f"mma.m16n8k16.{'bf16' if is_bf16(a.dtype) else 'f16'}")
            return Selected("mma.m16n8k32.s8" if a.dtype.kind == "int" else "mma.m16n8k32.u8")
        case I.CopyAsync():
            return Selected("cp.async")
        case I.Cast(x=x, out=out):
            kind = fast_cast_kind(x.dtype, out.dtype)
            if kind is None:
                return None
            from_words = (
                id(x) in words
                and kind in FROM_WORDS_KINDS
                and not (x.dtype.is_float and x.dtype.nbits == 8)
            )
            offset = folds.get(id(inst), 0) if from_words and kind in ("int_f16", "int_bf16") else 0
            name = f"dequant.{kind}{'.words' if from_words else ''}"
            return Selected(
                name + (f".offset<{offset}>" if offset else ""), (kind, from_words, offset)
            )
        case I.ElementwiseBinary() if folds.get(id(inst)) == -1:
            return Selected("folded_into_cast")
        case I.Where(
            cond=RegisterTensor() as cond, a=RegisterTensor() as a, b=RegisterTensor() as b
        ) if (
            id(cond) in words
            and cond.dtype.nbits == 1
            and a.dtype == b.dtype == inst.out.dtype
            and inst.out.dtype.nbits == 16
        ):
            return Selected("select.bits_from_words")
    return None


def select_instructions(program: Program) -> Program:
    """Record the instruction chosen for each instruction; see the module docs."""
    program = copy.deepcopy(program)
    words = _views_of_words(program)
    folds = _offset_folds(program, words)
    for inst in instructions(program.body):
        chosen = _select(inst, program.num_threads, words, folds)
        if chosen is not None:
            program.plan.selected[inst] = chosen
    return program


__all__ = ["select_instructions"]
