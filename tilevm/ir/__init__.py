"""The program representation: scalar expressions, tensors, instructions, statements, programs.

- :mod:`.expr`: scalar expressions (runtime parameters, block indices, arithmetic);
- :mod:`.tensor`: global, shared and register tensors;
- :mod:`.inst`: the instruction set; :mod:`.stmt`: control flow; :mod:`.program`;
- :mod:`.builder`: building programs with checks; :mod:`.registry`: per-pass rules;
- :mod:`.printer`: the stable text form; :mod:`.verify`: the whole-program verifier.
"""

from .builder import Builder, IRError
from .expr import BlockIdx, Const, Expr, NumBlocks, Var
from .printer import format_expr, format_program
from .program import Param, Program
from .tensor import GlobalTensor, RegisterTensor, SharedTensor
from .verify import VerifyError, verify

__all__ = [
    "BlockIdx",
    "Builder",
    "Const",
    "Expr",
    "GlobalTensor",
    "IRError",
    "NumBlocks",
    "Param",
    "Program",
    "RegisterTensor",
    "SharedTensor",
    "Var",
    "VerifyError",
    "format_expr",
    "format_program",
    "verify",
]
