"""Dot as tensor-core code: ``mma.sync`` on the fragment layouts layout inference chose.

Layout inference (:func:`tilevm.passes.infer_layouts.dot_layouts`) gives an
``m x k`` by ``k x n`` dot the layouts

    a = local(rm, rk) * spatial(wm, 1) * replicate(wn) * A_atom
    b = local(rk, rn) * replicate(wm) * spatial(1, wn) * B_atom
    c = local(rm, rn) * spatial(wm, wn) * C_atom

so by the product rule a thread's register ``(mi * rk + ki) * |A_atom| + e``
holds element e of the A fragment of atom tile (mi, ki) of its warp, and so
on for B and C. For every (mi, ni) the emitter packs the atom's registers
into ``.b32`` operands (two 16-bit or four 8-bit elements, the lower element
index in the low bits, as the PTX fragment tables order them) and chains one
``mma.sync.aligned.m16n8k16`` (f16, bf16 into f32) or ``m16n8k32`` (8-bit
integers into s32) per ki, the first adding ``c`` and the rest the running
result.
"""

from __future__ import annotations

from ..dtypes import float32, int32
from ..ir import inst as I
from ..passes.infer_layouts import LayoutInferenceError, dot_layouts
from .emitter import EMIT, Emitter
from .values import CodegenError, is_bf16, is_f16, load, store


def mma_kind(a, b) -> tuple[str, int, int, int]:
    """(helper name, k of one atom, A elements per atom, B elements per atom) for operand types."""
    if is_f16(a) and is_f16(b):
        return "tv_mma_f16", 16, 8, 4
    if is_bf16(a) and is_bf16(b):
        return "tv_mma_bf16", 16, 8, 4
    if a.is_integer and b.is_integer and a.nbits <= 8 and b.nbits <= 8:
        sa = "s8" if a.kind == "int" else "u8"
        sb = "s8" if b.kind == "int" else "u8"
        return f"tv_mma_{sa}{sb}", 32, 16, 8
    raise CodegenError(
        f"dot: tensor cores take float16 x float16, bfloat16 x bfloat16 or 8-bit integer "
        f"operands; got {a} x {b} (cast them first)"
    )


def _byte(elem: str, t, pre) -> str:
    """An integer element of at most 8 bits as its two's-complement byte (for s8/u8 operands)."""
    if t.nbits == 8:
        return elem
    return f"(tv_u8)({load(elem, t, pre)})"


@EMIT.rule(I.Dot)
def _dot(em: Emitter, inst: I.Dot) -> None:
    a, b, c, out = inst.a, inst.b, inst.c, inst.out
    (m, k), n = a.shape, b.shape[1]
    helper, atom_k, a_size, b_size = mma_kind(a.dtype, b.dtype)
    layouts = (em.layout(a), em.layout(b), em.layout(c))
    try:
        want = dot_layouts(
            m, n, k, em.program.num_warps, atom_k == 32, dict(zip("abc", layouts, strict=True))
        )
    except LayoutInferenceError as err:
        raise CodegenError(f"dot: {err}") from None
    if want != layouts or em.layout(out) != want[2]:
        raise CodegenError(
            f"dot: the operands must be on mma fragments ({want[0]}, {want[1]}, {want[2]}); "
            f"got {layouts[0]}, {layouts[1]}, {layouts[2]}"
        )
    em.prelude.use(helper, "pack")
    rk = k // atom_k
    rm = layouts[0].local_size // (rk * a_size)
    rn = layouts[1].local_size // (rk * b_size)
    floating = a.dtype.is_float
    acc_dtype = float32 if floating else int32
    acc_ctype = "float" if floating else "int"
    name = em.declare(out)
    A, B, C = em.tile(a), em.tile(b), em.tile(c)
    with em.block():
        # The accumulator in f32 (s32): c itself when it already is, else converted.
        if c.dtype != acc_dtype:
            em.line(f"{acc_ctype} fc[{layouts[2].local_size}];")
            for i in range(layouts[2].local_size):
                v = load(f"{C}[{i}]", c.dtype, em.prelude)
                em.line(f"fc[{i}] = {store(v, c.dtype, acc_dtype, 'convert', em.prelude)};")
            C = "fc"
        D = name if out.dtype == acc_dtype else "fd"
        if D == "fd":
            em.line(f"{acc_ctype} fd[{layouts[2].local_size}];")
        for mi in range(rm):
            for ki in range(rk):
                base = (mi * rk + ki) * a_size
                words = _pack(A, a.dtype, base, a_size, em.prelude)
                em.line(f"const tv_u32 fa{mi}_{ki}[4] = {{{words}}};")
        for ki in range(rk):
            for ni in range(rn):
                base = (ki * rn + ni) * b_size
                words = _pack(B, b.dtype, base, b_size, em.prelude)
                em.line(f"const tv_u32 fb{ki}_{ni}[2] = {{{words}}};")
        for mi in range(rm):
            for ni in range(rn):
                at = (mi * rn + ni) * 4
                for ki in range(rk):
                    acc = C if ki == 0 else D
                    em.line(f"{helper}(&{D}[{at}], fa{mi}_{ki}, fb{ki}_{ni}, &{acc}[{at}]);")
        if D == "fd":
            for i in range(layouts[2].local_size):
                em.line(
                    f"{name}[{i}] = {store(f'fd[{i}]', acc_dtype, out.dtype, 'arith', em.prelude)};"
                )


def _pack(tile: str, dtype, base: int, size: int, pre) -> str:
    per = 2 if dtype.nbits == 16 else 4
    words = []
    for w in range(size // per):
        elems = [f"{tile}[{base + w * per + e}]" for e in range(per)]
        if per == 2:
            words.append(f"tv_pack2({elems[0]}, {elems[1]})")
        else:
            words.append("tv_pack4(" + ", ".join(_byte(e, dtype, pre) for e in elems) + ")")
    return ", ".join(words)


__all__ = ["mma_kind"]
