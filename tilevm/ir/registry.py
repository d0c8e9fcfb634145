"""Per-instruction rules of a pass, registered beside the pass with a decorator.

Each pass keeps one :class:`RuleTable`; ``@table.rule(LoadGlobal)`` registers
the function that handles ``LoadGlobal`` there. Registering a class twice is an
error naming both places, and looking up an instruction with no rule says
which pass lacks it, so adding an instruction is one dataclass plus its rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class RuleTable:
    """Functions keyed by instruction (or statement) class, for one pass."""

    def __init__(self, name: str):
        self.name = name
        self._rules: dict[type, Callable[..., Any]] = {}

    def rule(self, *classes: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            for cls in classes:
                if cls in self._rules:
                    old = self._rules[cls]
                    raise AssertionError(
                        f"{self.name}: {cls.__name__} registered twice: at {_where(old)} "
                        f"and at {_where(fn)}"
                    )
                self._rules[cls] = fn
            return fn

        return register

    def lookup(self, node: Any) -> Callable[..., Any]:
        for cls in type(node).__mro__:
            if cls in self._rules:
                return self._rules[cls]
        raise AssertionError(f"{self.name} has no rule for {type(node).__name__}")

    def classes(self) -> set[type]:
        return set(self._rules)


def _where(fn: Callable[..., Any]) -> str:
    try:
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return repr(fn)
