"""Global-memory layouts: shapes and strides that may be runtime sizes, and how far a thread's
access to one can be vectorised.

A global layout is a shape and strides in elements, ``offset(index) =
sum(index[d] * strides[d])``. Entries are ints or sympy integer expressions of
runtime sizes made with :func:`size_symbol`. What is known about a runtime size
is a divisibility fact, ``{K: 8}`` ("K is a multiple of 8"), and
:func:`known_divisor` turns facts into the largest integer known to divide an
offset.

:func:`access_info` answers the vectoriser's question for a register tile that
sits at the tensor's leading corner (index 0 of the tile is index 0 of the
tensor, so only the strides matter): how many consecutive registers of a thread
are consecutive in memory, how aligned is each run, and so how wide can one
load or store be.

Worked example: a row-major ``(M, K)`` fp16 tensor, strides ``(K, 1)``, read by
``spatial(16, 8) * local(1, 8)``. Thread t holds row ``t // 8``, columns
``8 * (t % 8) + l`` for registers ``l = 0..7``.

===============  =====================  ==================  =================
facts            run of 8 registers     run start offset    result
===============  =====================  ==================  =================
``{K: 8}``       offsets o .. o+7       ``r*K + 8*c``: 8|o  16-byte aligned: 8 x fp16
``{K: 2}``       offsets o .. o+7       ``r*K + 8*c``: 2|o  4-byte aligned: 2 x fp16
(column-major)   ``o, o+M, ...``        --                  1 x fp16
===============  =====================  ==================  =================

So ``access_info`` gives ``contiguous=8, alignment=16, vector=8`` in the first
row and ``contiguous=8, alignment=4, vector=2`` in the second. sympy is
imported only when an entry is symbolic, so int-only layouts stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LayoutError
from .register import RegisterLayout

if TYPE_CHECKING:
    import sympy

DEFAULT_CAP = 2**31


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _entry(value: Any, what: str, *, minimum: int) -> int | sympy.Expr:
    """An int, or a sympy integer expression; sympy integers become ints."""
    if _is_int(value):
        if value < minimum:
            raise LayoutError(f"{what} must be >= {minimum}; got {value}")
        return int(value)
    import sympy

    if not isinstance(value, sympy.Expr):
        raise LayoutError(f"{what} must be an int or a sympy expression; got {value!r}")
    if isinstance(value, sympy.Integer):
        return _entry(int(value), what, minimum=minimum)
    if value.is_integer is not True:
        raise LayoutError(
            f"{what} must be an integer expression (make sizes with size_symbol()); got {value}"
        )
    if (value.is_positive if minimum > 0 else value.is_nonnegative) is False:
        raise LayoutError(f"{what} must be >= {minimum}; got {value}")
    return value


def _simplify(value: Any) -> int | sympy.Expr:
    """Ints stay ints; a sympy value is expanded, and an integer result becomes an int."""
    if _is_int(value):
        return int(value)
    import sympy

    value = sympy.expand(value)
    return int(value) if isinstance(value, sympy.Integer) else value


@dataclass(frozen=True, slots=True)
class GlobalLayout:
    """A tensor in global memory: ``offset(index) = sum(index[d] * strides[d])``, in elements.

    Entries are ints or sympy integer expressions (runtime sizes). Checked on
    construction: one stride per dimension, extents ``>= 1`` and strides
    ``>= 0`` wherever that can be decided.
    """

    shape: tuple[int | sympy.Expr, ...]
    strides: tuple[int | sympy.Expr, ...]

    def __post_init__(self) -> None:
        shape = tuple(_entry(n, "GlobalLayout shape entries", minimum=1) for n in self.shape)
        strides = tuple(_entry(s, "GlobalLayout strides", minimum=0) for s in self.strides)
        if not shape or len(shape) != len(strides):
            raise LayoutError(
                f"GlobalLayout needs one stride per dimension of a non-empty shape; "
                f"got shape {_show(shape)}, strides {_show(strides)}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def offset(self, index: Sequence[int | sympy.Expr]) -> int | sympy.Expr:
        """The element offset of ``index`` (ints or expressions): an int when it is one."""
        index = tuple(index)
        if len(index) != self.rank:
            raise LayoutError(f"index must have {self.rank} entries; got {_show(index)}")
        return _simplify(sum(i * s for i, s in zip(index, self.strides)))

    def __str__(self) -> str:
        return f"GlobalLayout(shape={_show(self.shape)}, strides={_show(self.strides)})"


def _show(values: Sequence[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def size_symbol(name: str) -> sympy.Symbol:
    """A runtime size: a sympy ``Symbol`` that is a positive integer."""
    import sympy

    return sympy.Symbol(name, integer=True, positive=True)


def global_strided(
    shape: Sequence[int | sympy.Expr], strides: Sequence[int | sympy.Expr]
) -> GlobalLayout:
    """A layout with the given strides, in elements."""
    return GlobalLayout(tuple(shape), tuple(strides))


def global_row_major(*shape: int | sympy.Expr) -> GlobalLayout:
    """Row-major (the last dimension fastest): strides ``(prod(shape[1:]), ..., shape[-1], 1)``."""
    shape = tuple(_entry(n, "global_row_major() shape", minimum=1) for n in shape)
    strides: list[int | sympy.Expr] = [1] * len(shape)
    for dim in reversed(range(len(shape) - 1)):
        strides[dim] = _simplify(strides[dim + 1] * shape[dim + 1])
    return GlobalLayout(tuple(shape), tuple(strides))


def global_column_major(*shape: int | sympy.Expr) -> GlobalLayout:
    """Column-major (dimension 0 fastest): strides ``(1, shape[0], shape[0] * shape[1], ...)``."""
    shape = tuple(_entry(n, "global_column_major() shape", minimum=1) for n in shape)
    strides: list[int | sympy.Expr] = [1] * len(shape)
    for dim in range(1, len(shape)):
        strides[dim] = _simplify(strides[dim - 1] * shape[dim - 1])
    return GlobalLayout(tuple(shape), tuple(strides))


def _facts(divisibility: Mapping[Any, int] | None) -> dict[Any, int]:
    facts = dict(divisibility or {})
    for symbol, divisor in facts.items():
        if not getattr(symbol, "is_Symbol", False):
            raise LayoutError(f"divisibility keys must be sympy Symbols; got {symbol!r}")
        if not _is_int(divisor) or divisor < 1:
            raise LayoutError(f"divisibility of {symbol} must be an int >= 1; got {divisor!r}")
    return facts


def known_divisor(
    expr: int | sympy.Expr,
    divisibility: Mapping[sympy.Symbol, int] | None = None,
    *,
    cap: int = DEFAULT_CAP,
) -> int:
    """The largest integer known to divide the integer-valued ``expr``, at most ``cap``.

    ``expr`` is expanded into monomials ``c * prod(s**k)``; each contributes
    ``|c| * prod(divisibility.get(s, 1)**k)`` and the result is the gcd of the
    contributions. A rational coefficient ``p/q`` contributes ``|p| * D / q``
    when q divides the monomial's known divisor D; otherwise the monomial may
    not be an integer on its own and the answer is 1. A factor other than a
    symbol to a positive power (``floor(K/4)``, say) counts as 1 when it is an
    integer and makes the answer 1 when that is unknown.

    Zero is divisible by everything, so ``known_divisor(0)`` is ``cap``; every
    other answer is ``min(d, cap)``.

    Examples
    --------
    With ``K`` and ``N`` from :func:`size_symbol`: ``known_divisor(K*N + 4*K, {K: 8})``
    is 8 (8 and 32); ``known_divisor(3*K**2, {K: 2})`` is 12; ``known_divisor(K + 1,
    {K: 8})`` is 1; ``known_divisor(K / 2, {K: 8})`` is 4.
    """
    if not _is_int(cap) or cap < 1:
        raise LayoutError(f"known_divisor() cap must be an int >= 1; got {cap!r}")
    if _is_int(expr):
        return min(abs(int(expr)), cap) or cap
    import sympy

    facts = _facts(divisibility)
    expr = sympy.expand(sympy.sympify(expr))
    if expr == 0:
        return cap
    result = 0
    for term in sympy.Add.make_args(expr):
        coeff, rest = term.as_coeff_Mul()
        if not coeff.is_Rational:
            return 1
        known = 1
        for factor, power in rest.as_powers_dict().items():
            if factor.is_Symbol and power.is_Integer and power > 0:
                known *= facts.get(factor, 1) ** int(power)
            elif (factor**power).is_integer is not True:
                return 1
        if known % coeff.q:
            return 1
        result = math.gcd(result, abs(coeff.p) * known // coeff.q)
    return min(result, cap)


@dataclass(frozen=True, slots=True)
class AccessInfo:
    """What :func:`access_info` found.

    Attributes
    ----------
    contiguous
        The largest v dividing the local size such that every thread's registers
        ``g*v .. g*v + v - 1`` sit at consecutive offsets ``o .. o + v - 1``.
    alignment
        The largest power of two (bytes, at most the base pointer's alignment)
        known to divide the byte address of every such run's start; 0 when some
        run starts inside a byte.
    vector
        Elements per load or store: the largest power of two dividing
        ``contiguous`` whose bytes are a power of two, at most ``max_bytes`` and
        at most ``alignment``; 0 when no whole-byte access fits.
    access_bytes
        ``vector * elem_bits / 8``.
    """

    contiguous: int
    alignment: int
    vector: int
    access_bytes: int


def _is_one(value: int | sympy.Expr) -> bool:
    return _simplify(value) == 1


def _contiguous(strides: tuple[int | sympy.Expr, ...], table: np.ndarray) -> int:
    threads, size, rank = table.shape
    if size == 1:
        return 1
    steps = (table[:, 1:, :] - table[:, :-1, :]).reshape(-1, rank)
    # Few distinct index steps occur; each is compared symbolically once.
    distinct, inverse = np.unique(steps, axis=0, return_inverse=True)
    unit = np.array([_is_one(sum(int(c) * s for c, s in zip(step, strides))) for step in distinct])
    unit_pair = unit[inverse.reshape(threads, size - 1)].all(axis=0)  # register r to r + 1
    for v in sorted((d for d in range(1, size + 1) if size % d == 0), reverse=True):
        if all(unit_pair[r] for r in range(size - 1) if (r + 1) % v):
            return v
    raise AssertionError("v = 1 always qualifies")


def access_info(
    glayout: GlobalLayout,
    layout: RegisterLayout,
    elem_bits: int,
    *,
    divisibility: Mapping[sympy.Symbol, int] | None = None,
    base_alignment: int = 16,
    max_bytes: int = 16,
) -> AccessInfo:
    """How wide a vector access each thread of ``layout`` can make into ``glayout``.

    The register tile sits at the tensor's leading corner: its index 0 is the
    tensor's index 0, at a base pointer aligned to ``base_alignment`` bytes.

    Parameters
    ----------
    glayout
        The tensor; its rank must be ``layout.rank``.
    layout
        Which thread holds which element of the tile.
    elem_bits
        Bits per element.
    divisibility
        Facts about runtime sizes, ``{K: 8}`` for "K is a multiple of 8".
    base_alignment
        Known alignment of the base pointer in bytes, a power of two.
    max_bytes
        The widest access the target has (16 bytes on NVIDIA GPUs), a power of two.

    Returns
    -------
    AccessInfo
        See its attributes. Post-condition: registers ``g*vector .. g*vector +
        vector - 1`` of every thread are one aligned ``access_bytes`` access.

    Raises
    ------
    LayoutError
        If the ranks differ or a parameter is out of range.
    """
    if not isinstance(glayout, GlobalLayout) or not isinstance(layout, RegisterLayout):
        raise LayoutError(
            f"access_info() needs a GlobalLayout and a RegisterLayout; got {glayout!r}, {layout!r}"
        )
    if glayout.rank != layout.rank:
        raise LayoutError(
            f"access_info() needs a register layout of the tensor's rank {glayout.rank}; got "
            f"rank {layout.rank} ({layout}) for {glayout}"
        )
    for name, value in (("base_alignment", base_alignment), ("max_bytes", max_bytes)):
        if not _is_int(value) or value < 1 or value & (value - 1):
            raise LayoutError(f"{name} must be a power of two >= 1; got {value!r}")
    if not _is_int(elem_bits) or elem_bits < 1:
        raise LayoutError(f"elem_bits must be an int >= 1; got {elem_bits!r}")
    facts = _facts(divisibility)
    table = layout.table()
    contiguous = _contiguous(glayout.strides, table)
    starts = table[:, ::contiguous, :]
    # Every run start is sum(i_d * stride_d); g_d divides every i_d, so
    # gcd_d(g_d * known_divisor(stride_d)) divides every start (0: all starts are 0).
    divisor = 0
    for dim, stride in enumerate(glayout.strides):
        g = math.gcd(*starts[:, :, dim].ravel().tolist())
        if g and stride != 0:
            divisor = math.gcd(divisor, g * known_divisor(stride, facts))
    start_bits = divisor * elem_bits
    if start_bits == 0:
        alignment = base_alignment
    elif start_bits % 8:
        alignment = 0
    else:
        alignment = min((start_bits // 8) & -(start_bits // 8), base_alignment)
    vector, v = 0, 1
    while contiguous % v == 0 and v * elem_bits <= 8 * max_bytes:
        nbytes, partial = divmod(v * elem_bits, 8)
        if not partial and nbytes & (nbytes - 1) == 0 and nbytes <= alignment:
            vector = v
        v *= 2
    return AccessInfo(contiguous, alignment, vector, vector * elem_bits // 8)


__all__ = [
    "AccessInfo",
    "GlobalLayout",
    "access_info",
    "global_column_major",
    "global_row_major",
    "global_strided",
    "known_divisor",
    "size_symbol",
]
