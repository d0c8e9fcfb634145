"""The kernel language: functions a ``@tilevm.kernel`` body calls, one IR instruction each.

Outside a kernel they raise; inside, the frontend calls them with the
:class:`Context` of the kernel being compiled. Tiles support Python operators
(``a + b``, ``a * 2.0``, ``a < b``, ``-a``, ``a @ b``), which the frontend maps to
the same instructions.

============================  ===========================================================
function                      what it does
============================  ===========================================================
``block_idx(d)``              index of this block along grid dimension d
``num_blocks(d)``             grid extent along d
``global_view(p, shape)``     view a pointer parameter as a tensor (strides optional)
``load(t, offsets, shape)``   tile of a global or shared tensor; edges masked by default
``store(t, x, offsets)``      write a tile to a global or shared tensor
``alloc_shared(dt, shape)``   a shared-memory tile; ``free_shared(t)`` releases it
``copy_async(s, g, offs)``    start a global->shared copy; ``copy_async_commit()``,
                              ``copy_async_wait(n)`` group and wait for copies
``sync()``                    block-wide barrier
``full/zeros/arange``         new tiles
``cast(x, dt)``               convert values; ``view(x, dt, layout)`` reinterprets bits
``exp log sqrt abs``          elementwise; ``minimum maximum where`` too
``dot(a, b, c)``              ``c + a @ b`` with float32 (int32) accumulation
``sum/max/min(x, dims)``      reductions (reduced dims keep extent 1 unless keepdims=False)
``reshape annotate_layout``   shape and layout; ``trans(x)`` swaps a 2-D tile's dimensions
``range(..., unroll=k)``      a loop in the kernel; ``static_range`` unrolls while compiling
============================  ===========================================================
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Sequence
from typing import Any

from ..dtypes import DataType
from ..dtypes import dtype as as_dtype
from ..ir import expr as E
from ..ir.builder import Builder, IRError
from ..ir.tensor import GlobalTensor, RegisterTensor, SharedTensor
from ..layouts.register import RegisterLayout


class Context:
    """What a builtin sees while a kernel compiles: the builder and the kernel's warp count."""

    def __init__(self, builder: Builder):
        self.builder = builder


class Builtin:
    """A kernel-language function; calling it outside a kernel is an error."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        signature = inspect.signature(fn)  # without ctx: what the kernel author calls
        self.signature = signature.replace(parameters=list(signature.parameters.values())[1:])

    def __call__(self, *args, **kwargs):
        raise IRError(
            f"tilevm.lang.{self.__name__}() can only be called inside a @tilevm.kernel function"
        )

    def invoke(self, ctx: Context, *args, **kwargs):
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as err:
            raise IRError(f"tilevm.lang.{self.__name__}(): {err}") from None
        return self.fn(ctx, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<tilevm.lang.{self.__name__}>"


def builtin(fn) -> Builtin:
    return Builtin(fn)


def _dtype(value: Any) -> DataType:
    return as_dtype(value)


@builtin
def block_idx(ctx: Context, dim: int = 0) -> E.Expr:
    """The index of the running block along grid dimension ``dim``."""
    return E.BlockIdx(_grid_dim(dim))


@builtin
def num_blocks(ctx: Context, dim: int = 0) -> E.Expr:
    """The number of blocks along grid dimension ``dim``."""
    return E.NumBlocks(_grid_dim(dim))


def _grid_dim(dim: Any) -> int:
    if dim not in (0, 1, 2):
        raise IRError(f"grid dimensions are 0, 1 and 2; got {dim!r}")
    return dim


@builtin
def global_view(ctx, ptr, shape, strides=None, dtype=None) -> GlobalTensor:
    """View pointer parameter ``ptr`` as a tensor of ``shape`` (row-major unless ``strides``)."""
    if not isinstance(ptr, E.Var):
        raise IRError(f"global_view needs a pointer parameter; got {ptr!r}")
    return ctx.builder.global_view(
        ptr, None if dtype is None else _dtype(dtype), _seq(shape), strides, name=""
    )


def _seq(value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


@builtin
def load(ctx, src, offsets=None, shape=None, *, masked=True, other=0, layout=None):
    """A tile of a global (or shared) tensor; global edges are masked unless ``masked=False``."""
    b = ctx.builder
    if isinstance(src, SharedTensor):
        return b.load_shared(
            src, None if offsets is None else _seq(offsets), shape and _seq(shape), layout=layout
        )
    if not isinstance(src, GlobalTensor):
        raise IRError(f"load needs a global or shared tensor; got {src!r}")
    if offsets is None or shape is None:
        raise IRError("load from a global tensor needs offsets and shape")
    return b.load_global(src, _seq(offsets), _seq(shape), masked=masked, other=other, layout=layout)


@builtin
def store(ctx, dst, value, offsets=None, *, masked=True) -> None:
    """Write tile ``value`` into a global (or shared) tensor at ``offsets``."""
    b = ctx.builder
    if isinstance(dst, SharedTensor):
        return b.store_shared(dst, value, None if offsets is None else _seq(offsets))
    if offsets is None:
        raise IRError("store into a global tensor needs offsets")
    return b.store_global(dst, value, _seq(offsets), masked=masked)


@builtin
def atomic_add(ctx, dst, offsets, value):
    """Add scalar ``value`` to one element of int32/uint32 global ``dst``, atomically, once for
    the block; every thread gets the element's old value."""
    if not isinstance(dst, GlobalTensor):
        what = "a shared tensor" if isinstance(dst, SharedTensor) else type(dst).__name__
        raise IRError(f"atomic_add needs a global tensor (global_view); got {what}")
    return ctx.builder.atomic_add(dst, _seq(offsets), value)


@builtin
def fence(ctx) -> None:
    """Make this thread's earlier global writes visible to every block before its later ones."""
    ctx.builder.fence()


@builtin
def alloc_shared(ctx, dtype, shape) -> SharedTensor:
    """A shared-memory tile of ``dtype`` and ``shape`` (zeroed on the interpreter)."""
    return ctx.builder.alloc_shared(_dtype(dtype), _seq(shape))


@builtin
def free_shared(ctx, tensor) -> None:
    ctx.builder.free_shared(tensor)


@builtin
def copy_async(ctx, dst, src, offsets, *, masked=True) -> None:
    """Start copying the tile of global ``src`` at ``offsets`` into shared ``dst``."""
    ctx.builder.copy_async(dst, src, _seq(offsets), masked=masked)


@builtin
def copy_async_commit(ctx) -> None:
    ctx.builder.copy_async_commit()


@builtin
def copy_async_wait(ctx, pending: int = 0) -> None:
    ctx.builder.copy_async_wait(pending)


@builtin
def sync(ctx) -> None:
    """Block-wide barrier."""
    ctx.builder.sync()


@builtin
def full(ctx, shape, value, dtype, *, layout=None) -> RegisterTensor:
    return ctx.builder.full(_seq(shape), value, _dtype(dtype), layout=layout)


@builtin
def zeros(ctx, shape, dtype, *, layout=None) -> RegisterTensor:
    return ctx.builder.full(_seq(shape), 0, _dtype(dtype), layout=layout)


@builtin
def arange(ctx, shape, dim: int = 0, dtype="int32") -> RegisterTensor:
    """A tile whose elements are their own index along ``dim``."""
    return ctx.builder.arange(_seq(shape), dim, _dtype(dtype))


@builtin
def cast(ctx, x, dtype):
    """Convert values to ``dtype`` (nearest even, saturating); scalars too."""
    dtype = _dtype(dtype)
    if isinstance(x, RegisterTensor):
        return ctx.builder.cast(x, dtype)
    return E.cast_expr(x, dtype)


@builtin
def view(ctx, x, dtype, layout: RegisterLayout | None = None) -> RegisterTensor:
    """Reinterpret each thread's bits of ``x`` as ``dtype`` under ``layout``."""
    return ctx.builder.view(x, _dtype(dtype), layout)


def _elementwise(op: str):
    def fn(ctx, x):
        if isinstance(x, RegisterTensor):
            return ctx.builder.unary(op, x)
        if op == "abs" and not isinstance(x, E.Expr):
            return builtins.abs(x)
        return E.Unary(op, E.as_expr(x), E.as_expr(x).dtype)

    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op} of a tile (or a scalar)."
    return builtin(fn)


exp = _elementwise("exp")
log = _elementwise("log")
sqrt = _elementwise("sqrt")
abs = _elementwise("abs")


def _min_max(op: str):
    def fn(ctx, a, b):
        if isinstance(a, RegisterTensor) or isinstance(b, RegisterTensor):
            return ctx.builder.binary(op, a, b)
        if isinstance(a, E.Expr) or isinstance(b, E.Expr):
            return E.minimum(a, b) if op == "min" else E.maximum(a, b)
        return builtins.min(a, b) if op == "min" else builtins.max(a, b)

    fn.__name__ = "minimum" if op == "min" else "maximum"
    fn.__doc__ = f"Elementwise {op} of two tiles or scalars."
    return builtin(fn)


minimum = _min_max("min")
maximum = _min_max("max")


@builtin
def where(ctx, cond, a, b):
    """Elementwise ``a if cond else b``."""
    if not any(isinstance(v, RegisterTensor) for v in (cond, a, b)):
        return E.select(cond, a, b)
    if not any(isinstance(v, (RegisterTensor, E.Expr)) for v in (a, b)):
        # Two Python numbers under a mask: type them here (float32 if either is a float,
        # else int32 or bool), as the builder takes the type from a tile or scalar operand.
        if isinstance(a, float) or isinstance(b, float):
            a, b = float(a), float(b)
        a, b = E.as_expr(a), E.as_expr(b)
    return ctx.builder.where(cond, a, b)


@builtin
def dot(ctx, a, b, c=None) -> RegisterTensor:
    """``c + a @ b`` with float32 accumulation (int32 for integer tiles); ``c`` defaults to 0."""
    return ctx.builder.dot(a, b, c)


def _reduction(op: str):
    def fn(ctx, x, dims=None, keepdims: bool = True):
        if not isinstance(x, RegisterTensor):
            raise IRError(f"{op} reduces a tile; got {x!r}")
        dims = tuple(builtins.range(x.rank)) if dims is None else _seq(dims)
        return ctx.builder.reduce(x, op, dims, keepdims)

    fn.__name__ = op
    fn.__doc__ = f"Reduce a tile by {op} over ``dims`` (all by default)."
    return builtin(fn)


sum = _reduction("sum")
max = _reduction("max")
min = _reduction("min")


@builtin
def reshape(ctx, x, shape) -> RegisterTensor:
    return ctx.builder.reshape(x, _seq(shape))


@builtin
def slice(ctx, x, offsets, shape) -> RegisterTensor:
    """The part of register tile ``x`` at compile-time ``offsets`` with ``shape``.

    Free (a choice of registers) when ``x``'s layout repeats the part's layout
    in registers, as ``local(4, 1) * mma_m16n8k16_b()`` does for each 16-row part.
    """
    return ctx.builder.slice(x, _seq(offsets), _seq(shape))


@builtin
def trans(ctx, x) -> RegisterTensor:
    """The transpose of 2-D register tile ``x``: ``trans(x)[j, i] == x[i, j]``.

    Free: the result's layout is ``x``'s with the two dimensions swapped, so
    every thread keeps its registers. ``dot(trans(w), trans(x))`` computes
    ``(x @ w)^T`` with ``w`` as the A operand, where a tile of ``x`` loaded
    from shared memory still comes from ``ldmatrix``.
    """
    return ctx.builder.trans(x)


@builtin
def permute(ctx, x, dims) -> RegisterTensor:
    """Register tile ``x`` with its dimensions reordered: dimension ``d`` of the result is
    dimension ``dims[d]`` of ``x`` (``trans(x)`` is ``permute(x, (1, 0))``).

    Free, as :func:`trans` is. With :func:`reshape` around it, it relabels the
    columns of a tile: ``reshape(permute(reshape(t, [r, 8, 8]), (0, 2, 1)), [r, 64])``
    puts column ``8 a + b`` at ``8 b + a``, in the same registers.
    """
    return ctx.builder.permute(x, _seq(dims))


@builtin
def annotate_layout(ctx, x, layout) -> RegisterTensor:
    """Fix the register layout of tile ``x``; returns ``x``."""
    ctx.builder.annotate_layout(x, layout)
    return x


@builtin
def print(ctx, message, *args) -> None:
    """Print ``message`` and the values of ``args`` (once per block on the interpreter)."""
    if not isinstance(message, str):
        args, message = (message, *args), ""
    ctx.builder.print(message, *args)


class LoopRange:
    """The iterable of a kernel loop: ``for i in range(...)`` inside a kernel."""

    def __init__(self, start, stop, step, unroll):
        self.start, self.stop, self.step, self.unroll = start, stop, step, unroll


def _range_args(args: Sequence[Any]):
    if not 1 <= len(args) <= 3:
        raise IRError(f"range takes 1 to 3 arguments; got {len(args)}")
    if len(args) == 1:
        return 0, args[0], 1
    return args[0], args[1], args[2] if len(args) == 3 else 1


@builtin
def range(ctx, *args, unroll: int | None = None) -> LoopRange:
    """A loop in the kernel (``for i in range(n)``); ``unroll`` is a hint for code generation."""
    if unroll is not None and (not isinstance(unroll, int) or unroll < 1):
        raise IRError(f"range: unroll must be a positive int; got {unroll!r}")
    return LoopRange(*_range_args(args), unroll)


@builtin
def static_range(ctx, *args):
    """A loop unrolled while compiling: its bounds must be compile-time constants."""
    bounds = _range_args(args)
    if not all(isinstance(v, int) for v in bounds):
        raise IRError(f"static_range needs compile-time int bounds; got {bounds}")
    return builtins.range(*bounds)


LANGUAGE = {name: value for name, value in globals().items() if isinstance(value, Builtin)}
