"""Statements: structured control flow around instructions, and scalar variables.

A kernel body is a :class:`Seq` of statements. ``For`` runs ``var`` over
``range(start, stop, step)`` with an unroll hint; ``If`` and ``While`` test a
scalar expression; ``Declare`` introduces a scalar variable with its first
value and ``AssignScalar`` gives it a new one (the frontend turns a Python
variable that changes inside a loop into one of these).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .expr import Expr, Var
from .inst import Instruction, SourceLoc


@dataclass(eq=False)
class Stmt:
    pass


@dataclass(eq=False)
class Seq(Stmt):
    body: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class InstStmt(Stmt):
    inst: Instruction


@dataclass(eq=False)
class For(Stmt):
    var: Var
    start: Expr
    stop: Expr
    step: Expr
    body: Seq
    unroll: int | None = None
    loc: SourceLoc | None = None


@dataclass(eq=False)
class If(Stmt):
    cond: Expr
    then: Seq
    orelse: Seq | None = None
    loc: SourceLoc | None = None


@dataclass(eq=False)
class While(Stmt):
    cond: Expr
    body: Seq
    loc: SourceLoc | None = None


@dataclass(eq=False)
class Break(Stmt):
    loc: SourceLoc | None = None


@dataclass(eq=False)
class Declare(Stmt):
    var: Var
    value: Expr
    loc: SourceLoc | None = None


@dataclass(eq=False)
class AssignScalar(Stmt):
    var: Var
    value: Expr
    loc: SourceLoc | None = None


def instructions(seq: Seq) -> Iterator[Instruction]:
    """Every instruction in ``seq``, in program order, each loop body once."""
    for stmt in seq.body:
        match stmt:
            case InstStmt(inst=inst):
                yield inst
            case For() | While():
                yield from instructions(stmt.body)
            case If():
                yield from instructions(stmt.then)
                if stmt.orelse is not None:
                    yield from instructions(stmt.orelse)
            case Seq():
                yield from instructions(stmt)
