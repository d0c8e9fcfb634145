"""A program: one kernel's parameters, body, grid and warp count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..dtypes import DataType
from .expr import Expr, Var
from .plan import Plan
from .stmt import Seq


@dataclass(eq=False)
class Param:
    """A runtime parameter: a ``pointer`` to elements of ``dtype`` or a ``scalar`` of ``dtype``."""

    name: str
    kind: Literal["pointer", "scalar"]
    dtype: DataType
    var: Var


@dataclass(eq=False)
class Program:
    """One thread-block program.

    ``constants`` records the compile-time constants it was specialised with
    (for printing and cache keys); ``grid`` is the default launch grid as
    expressions of the parameters, or ``None`` when the caller gives one;
    ``plan`` holds what the passes after layout inference decided
    (:mod:`tilevm.ir.plan`).
    """

    name: str
    params: list[Param]
    body: Seq
    num_warps: int = 4
    grid: tuple[Expr, ...] | None = None
    constants: dict[str, Any] = field(default_factory=dict)
    plan: Plan = field(default_factory=Plan)

    @property
    def num_threads(self) -> int:
        return 32 * self.num_warps
