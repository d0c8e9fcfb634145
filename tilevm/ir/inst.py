"""Instructions: what a thread block does to its tensors, one dataclass each.

Every instruction names its ``output`` (a new tensor, an existing one it
writes in place, or ``None``) and its inputs; ``loc`` is the kernel source
position it came from, for error messages. What each instruction does in a
given pass (printing, verification, interpretation, code generation) is
registered beside that pass with :func:`tilevm.ir.registry.rule`, keyed by the
instruction class.

Indices into global and shared tensors are tile *offsets*: a load of shape
``(BM, BK)`` at offsets ``(i, k)`` reads elements ``[i:i+BM, k:k+BK]``. With
``masked=True`` elements outside the tensor's shape read ``other`` (loads) or
are skipped (stores); with ``masked=False`` they are an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..dtypes import DataType
from ..layouts.register import RegisterLayout
from .expr import Expr, Var
from .tensor import GlobalTensor, RegisterTensor, SharedTensor

Scalar = int | float | Expr
Operand = RegisterTensor | int | float | Expr


@dataclass(frozen=True, slots=True)
class SourceLoc:
    """A position in the kernel's Python source (1-based line, 0-based column)."""

    file: str
    line: int
    col: int = 0
    end_col: int | None = None
    function: str = ""


@dataclass(eq=False)
class Instruction:
    """Base class; subclasses are plain dataclasses compared by identity.

    A subclass names the fields it reads in ``INPUTS``; the tensor it defines or
    writes in place, if any, is its field ``out``.
    """

    INPUTS: ClassVar[tuple[str, ...]] = ()

    def inputs(self) -> tuple[Any, ...]:
        """Tensors (and scalar operands) this instruction reads."""
        return tuple(getattr(self, name) for name in self.INPUTS)

    @property
    def output(self) -> Any:
        return getattr(self, "out", None)


_inst = dataclass(eq=False)


@_inst
class GlobalView(Instruction):
    """``out`` = a view of ``out.ptr`` as ``out.dtype`` with ``out.shape`` and ``out.strides``."""

    out: GlobalTensor
    loc: SourceLoc | None = None


@_inst
class LoadGlobal(Instruction):
    out: RegisterTensor
    src: GlobalTensor
    offsets: tuple[Scalar, ...]
    masked: bool = True
    other: int | float = 0
    loc: SourceLoc | None = None

    INPUTS = ("src",)


@_inst
class StoreGlobal(Instruction):
    dst: GlobalTensor
    src: RegisterTensor
    offsets: tuple[Scalar, ...]
    masked: bool = True
    loc: SourceLoc | None = None

    INPUTS = ("dst", "src")


@_inst
class AtomicAdd(Instruction):
    """``out`` = ``dst[offsets]``, then ``dst[offsets] += value``, atomically, once for the block.

    One thread performs it; every thread gets the old value (a block-uniform
    scalar), so it can steer an ``if`` (the last block to arrive, say).
    """

    out: Var
    dst: GlobalTensor
    offsets: tuple[Scalar, ...]
    value: Scalar
    loc: SourceLoc | None = None

    INPUTS = ("dst", "value")


@_inst
class Fence(Instruction):
    """The thread's global writes before it are seen by every block before its writes after it
    (``__threadfence``): what makes partial results visible to the block that sums them."""

    loc: SourceLoc | None = None


@_inst
class AllocShared(Instruction):
    out: SharedTensor
    loc: SourceLoc | None = None


@_inst
class FreeShared(Instruction):
    tensor: SharedTensor
    loc: SourceLoc | None = None

    INPUTS = ("tensor",)


@_inst
class LoadShared(Instruction):
    """``out`` = the tile of ``src`` at ``offsets`` (of ``out.shape``)."""

    out: RegisterTensor
    src: SharedTensor
    offsets: tuple[Scalar, ...]
    loc: SourceLoc | None = None

    INPUTS = ("src",)


@_inst
class StoreShared(Instruction):
    """Write ``src`` into ``dst`` at ``offsets``."""

    dst: SharedTensor
    src: RegisterTensor
    offsets: tuple[Scalar, ...]
    loc: SourceLoc | None = None

    INPUTS = ("dst", "src")


@_inst
class CopyAsync(Instruction):
    """Start copying the tile of ``src`` at ``offsets`` (shape of ``dst``) into ``dst``.

    The data lands once a :class:`CopyAsyncWait` covers the group this copy was
    committed in; reading ``dst`` before then is a race.
    """

    dst: SharedTensor
    src: GlobalTensor
    offsets: tuple[Scalar, ...]
    masked: bool = True
    loc: SourceLoc | None = None

    INPUTS = ("dst", "src")


@_inst
class CopyAsyncCommit(Instruction):
    """Close the group of copies started since the last commit."""

    loc: SourceLoc | None = None


@_inst
class CopyAsyncWait(Instruction):
    """Wait until at most ``pending`` committed groups are still in flight."""

    pending: int = 0
    loc: SourceLoc | None = None


@_inst
class SyncThreads(Instruction):
    """Block-wide barrier: shared-memory writes before it are visible to every thread after it."""

    loc: SourceLoc | None = None


@_inst
class Full(Instruction):
    """``out`` = a tile with every element ``value`` (a constant or a scalar expression)."""

    out: RegisterTensor
    value: Scalar
    loc: SourceLoc | None = None


@_inst
class Arange(Instruction):
    """``out[i0, i1, ...]`` = ``i_dim``: the element's own index along ``dim``."""

    out: RegisterTensor
    dim: int = 0
    loc: SourceLoc | None = None


@_inst
class Cast(Instruction):
    """``out`` = ``x`` converted value by value to ``out.dtype`` (nearest even, saturating)."""

    out: RegisterTensor
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class View(Instruction):
    """``out`` = each thread's bits of ``x`` read as ``out.dtype`` under ``out.layout``."""

    out: RegisterTensor
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class ElementwiseUnary(Instruction):
    out: RegisterTensor
    op: str
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class ElementwiseBinary(Instruction):
    """``out = a op b`` with broadcasting; either side may be a scalar."""

    out: RegisterTensor
    op: str
    a: Operand
    b: Operand
    loc: SourceLoc | None = None

    INPUTS = ("a", "b")


@_inst
class Where(Instruction):
    out: RegisterTensor
    cond: Operand
    a: Operand
    b: Operand
    loc: SourceLoc | None = None

    INPUTS = ("cond", "a", "b")


@_inst
class Dot(Instruction):
    """``out = c + a @ b``, accumulating in float32 (int32 for integer operands)."""

    out: RegisterTensor
    a: RegisterTensor
    b: RegisterTensor
    c: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("a", "b", "c")


@_inst
class Reduce(Instruction):
    """``out`` = ``x`` reduced by ``op`` (sum, max, min) over ``dims``, which keep extent 1."""

    out: RegisterTensor
    x: RegisterTensor
    op: str
    dims: tuple[int, ...]
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class Reshape(Instruction):
    """``out`` = the elements of ``x`` in row-major order under a new shape."""

    out: RegisterTensor
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class Slice(Instruction):
    """``out`` = the part of ``x`` at static ``offsets`` with ``out.shape`` (``x[o : o + s]``).

    When ``x``'s layout is ``local(q) * L`` with the part one of the ``q``
    blocks, ``out`` is ``L`` and the slice is a choice of registers: no data
    moves (a 64 x 64 weight tile sliced into four k16 steps, say).
    """

    out: RegisterTensor
    x: RegisterTensor
    offsets: tuple[int, ...]
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class Transpose(Instruction):
    """``x`` with its dimensions reordered: dimension ``d`` of ``out`` is dimension ``dims[d]``
    of ``x`` (``out[j, i] = x[i, j]`` for the 2-D ``dims = (1, 0)``). ``out``'s layout is
    ``x``'s with its dimensions reordered the same way, so every thread keeps its registers
    and no data moves.

    Layout inference gives the two tiles such layouts (a conversion of ``x``
    where other demands clash): a dequantised weight tile read as the A
    operand of a dot, an accumulator stored transposed, the columns of a tile
    relabelled (split into dimensions, reordered, merged back).
    """

    out: RegisterTensor
    x: RegisterTensor
    dims: tuple[int, ...] = (1, 0)
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class ConvertLayout(Instruction):
    """``out`` = ``x`` moved to ``out.layout`` (through shared memory on a GPU).

    Layout inference inserts it where two instructions demand different layouts
    of the same tile.
    """

    out: RegisterTensor
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class Assign(Instruction):
    """Copy ``x`` into the existing tensor ``out`` (a variable assigned again, e.g. in a loop)."""

    out: RegisterTensor
    x: RegisterTensor
    loc: SourceLoc | None = None

    INPUTS = ("x",)


@_inst
class AnnotateLayout(Instruction):
    """Fix the layout of ``tensor`` (user annotations win in layout inference)."""

    tensor: RegisterTensor
    layout: RegisterLayout
    loc: SourceLoc | None = None

    INPUTS = ("tensor",)


@_inst
class Print(Instruction):
    """Print a message with scalar values and tiles, once per block (the interpreter's stdout)."""

    message: str
    args: tuple[Any, ...] = field(default=())
    loc: SourceLoc | None = None

    def inputs(self) -> tuple[Any, ...]:
        return self.args


REDUCE_OPS = ("sum", "max", "min")


def operand_dtype(value: Operand) -> DataType:
    """The element type of a tensor or scalar operand."""
    from .expr import as_expr

    if isinstance(value, RegisterTensor):
        return value.dtype
    return as_expr(value).dtype
