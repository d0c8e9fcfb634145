"""``ldmatrix`` emission: the code for a load the ``select_instructions`` pass matched.

The matching rule and the plan (which registers each ``ldmatrix.x{1,2,4}``
fills, which row each lane addresses) are in
:mod:`tilevm.passes.ldmatrix_match`; here each lane computes its row's shared
address from the plan and issues the instructions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..dtypes import DataType
from ..passes.ldmatrix_match import LdmatrixPlan
from .emitter import Emitter
from .text import add
from .values import from_code


def emit_ldmatrix(
    em: Emitter,
    plan: LdmatrixPlan,
    offsets: Sequence[str],
    pointer: Callable[[list[str]], str],
    reg_name: str,
    dtype: DataType,
) -> None:
    """Write ``plan``'s instructions into the registers ``reg_name``, in the current scope.

    ``offsets`` are the C texts of the tile's offsets (operands of ``+``);
    ``pointer(index)`` is the C pointer to the shared element at the index texts.
    Word p of the scratch array ``vec`` receives register pair p.
    """
    em.prelude.use("ldmatrix")
    pairs = sum(op.num for op in plan.ops)
    em.line(f"tv_u32 vec[{pairs}];")
    for op in plan.ops:
        index = [add(o, r.render("tid", plan.block_threads)) for o, r in zip(offsets, op.rows)]
        helper = f"tv_ldmatrix_x{op.num}" + ("_trans" if op.trans else "")
        words = "vec" if op.pairs[0] == 0 else f"vec + {op.pairs[0]}"
        em.line(f"{helper}({words}, {pointer(index)});")
    if pairs == 1:
        em.line(f"{reg_name}[0] = {from_code('vec[0]', dtype)};")
        em.line(f"{reg_name}[1] = {from_code('(vec[0] >> 16)', dtype)};")
        return
    em.line("#pragma unroll")
    with em.block(f"for (int i = 0; i < {pairs}; ++i)"):
        em.line(f"{reg_name}[2 * i] = {from_code('vec[i]', dtype)};")
        em.line(f"{reg_name}[2 * i + 1] = {from_code('(vec[i] >> 16)', dtype)};")


__all__ = ["emit_ldmatrix"]
