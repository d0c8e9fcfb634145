"""The block runner: checks the arguments, then runs every block of the grid in turn.

Blocks run one after another, grid dimension 0 fastest. Each block starts
with the scalar parameters in its environment, no tiles, no shared memory and
no async copies. Control flow follows Python: ``For`` evaluates its bounds
once, ``If``/``While`` test a scalar for non-zero, ``Break`` leaves the
innermost loop; a ``While`` that runs more than :data:`MAX_WHILE_ITERATIONS`
times is stopped with an error rather than left to hang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..dtypes import DataType, scalar_value
from ..errors import TileVMError
from ..ir.program import Param, Program
from ..ir.stmt import AssignScalar, Break, Declare, For, If, InstStmt, Seq, Stmt, While
from . import memory as _memory  # noqa: F401  (registers the memory rules)
from . import rules as _rules  # noqa: F401  (registers the compute rules)
from .scalars import evaluate, evaluate_int, fit, wrap_scalar
from .state import RULES, Machine
from .values import InterpError, storage_dtype

MAX_WHILE_ITERATIONS = 10**7
"""A ``While`` running more iterations than this is reported as an error (tests lower it)."""


class _Break(Exception):
    """Unwinds to the innermost loop."""


def run(
    program: Program,
    grid: Sequence[int] | None,
    args: Mapping[str, Any],
    *,
    check_races: bool = True,
) -> None:
    """Run ``program`` on the CPU over ``grid``; stores write into the argument arrays.

    Parameters
    ----------
    program
        The thread-block program (for example from :class:`tilevm.ir.Builder`).
    grid
        1 to 3 block counts, dimension 0 first; ``None`` evaluates the
        program's own grid from the scalar arguments.
    args
        Every parameter by name: a C-contiguous numpy array whose dtype is
        :func:`storage_dtype` of the parameter's type for a pointer (a flat
        buffer of elements, written in place by stores), a number for a
        scalar (it must lie in the type's range).
    check_races
        Report shared-memory reads without a barrier after a write, and
        accesses to async copies still in flight.

    Raises
    ------
    InterpError
        For a wrong or missing argument, and for anything the program does
        wrong, with the source line of the instruction when it has one.
    """
    scalars, buffers = _bind_args(program, args)
    m = Machine(program, (1, 1, 1), 1, scalars, buffers, check_races)
    m.start_block((0, 0, 0))
    blocks = _grid(m, program, grid)
    m.grid, m.rank = blocks + (1,) * (3 - len(blocks)), len(blocks)
    # inf and NaN are values like any other here; numpy's warnings about them are noise.
    with np.errstate(all="ignore"):
        for z in range(m.grid[2]):
            for y in range(m.grid[1]):
                for x in range(m.grid[0]):
                    m.start_block((x, y, z))
                    try:
                        execute(m, program.body)
                    except _Break:
                        raise m.error("break outside a loop") from None


def _grid(m: Machine, program: Program, grid: Sequence[int] | None) -> tuple[int, ...]:
    if grid is None:
        if program.grid is None:
            raise InterpError(f"run: '{program.name}' has no grid of its own; pass grid=(...)")
        grid = tuple(evaluate_int(m, g, "a grid size") for g in program.grid)
    if isinstance(grid, (int, np.integer)):
        grid = (grid,)
    grid = tuple(grid)
    if not 1 <= len(grid) <= 3 or not all(
        isinstance(g, (int, np.integer)) and not isinstance(g, bool) and g >= 1 for g in grid
    ):
        raise InterpError(f"run: grid must be 1 to 3 ints >= 1; got {grid!r}")
    return tuple(int(g) for g in grid)


# -- arguments -----------------------------------------------------------------------------------
def _bind_args(program: Program, args: Mapping[str, Any]):
    names = [p.name for p in program.params]
    unknown = sorted(set(args) - set(names))
    if unknown:
        raise InterpError(
            f"run: '{program.name}' has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"its parameters are {', '.join(names) or 'none'}"
        )
    scalars: dict[Any, int | float] = {}
    buffers: dict[Any, tuple[Param, np.ndarray]] = {}
    for p in program.params:
        if p.name not in args:
            raise InterpError(f"run: missing argument '{p.name}': expected {_expected(p)}")
        value = args[p.name]
        if p.kind == "pointer":
            buffers[p.var] = (p, _buffer(p, value))
        else:
            scalars[p.var] = _scalar(p, value)
    return scalars, buffers


def _expected(p: Param) -> str:
    if p.kind == "pointer":
        return f"a C-contiguous numpy array of {storage_dtype(p.dtype)} (the storage of {p.dtype})"
    return f"a {p.dtype} number"


def _buffer(p: Param, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InterpError(
            f"run: argument '{p.name}' must be {_expected(p)}; got {type(value).__name__}"
        )
    if value.dtype != storage_dtype(p.dtype):
        raise InterpError(
            f"run: argument '{p.name}' must be {_expected(p)}; got an array of {value.dtype}"
        )
    if not value.flags.c_contiguous:
        raise InterpError(f"run: argument '{p.name}' must be C-contiguous; got a strided array")
    return value.reshape(-1)


def _scalar(p: Param, value: Any) -> int | float:
    t: DataType = p.dtype
    try:
        return scalar_value(t, value)
    except ValueError as err:
        raise InterpError(f"run: argument '{p.name}' {err}") from None


# -- statements ----------------------------------------------------------------------------------
def execute(m: Machine, stmt: Stmt) -> None:
    """Run one statement of the current block (``Seq`` runs its body in order)."""
    match stmt:
        case Seq():
            for s in stmt.body:
                execute(m, s)
        case InstStmt():
            inst = stmt.inst
            m.loc = inst.loc
            try:
                RULES.lookup(inst)(m, inst)
            except InterpError:
                raise
            except TileVMError as err:
                raise m.error(f"{type(inst).__name__}: {err}") from None
        case Declare() | AssignScalar():
            m.loc = stmt.loc
            m.env[stmt.var] = fit(m, evaluate(m, stmt.value), stmt.value.dtype, stmt.var.dtype)
        case For():
            _for(m, stmt)
        case If():
            m.loc = stmt.loc
            if evaluate(m, stmt.cond):
                execute(m, stmt.then)
            elif stmt.orelse is not None:
                execute(m, stmt.orelse)
        case While():
            _while(m, stmt)
        case Break():
            m.loc = stmt.loc
            raise _Break
        case _:
            raise AssertionError(f"unknown statement {stmt!r}")


def _for(m: Machine, stmt: For) -> None:
    m.loc = stmt.loc
    start, stop, step = (
        evaluate_int(m, e, "a range bound") for e in (stmt.start, stmt.stop, stmt.step)
    )
    if step == 0:
        raise m.error("range() step must not be zero")
    for i in range(start, stop, step):
        m.env[stmt.var] = wrap_scalar(i, stmt.var.dtype)
        try:
            execute(m, stmt.body)
        except _Break:
            break


def _while(m: Machine, stmt: While) -> None:
    cap = MAX_WHILE_ITERATIONS
    count = 0
    while True:
        m.loc = stmt.loc
        if not evaluate(m, stmt.cond):
            return
        count += 1
        if count > cap:
            raise m.error(
                f"while loop ran more than {cap} iterations; the interpreter stopped it "
                "(is its condition ever false?)"
            )
        try:
            execute(m, stmt.body)
        except _Break:
            return
