"""Building C index expressions as text, folding constants so the output stays short.

Operands are C texts that are safe as operands of ``+`` (an identifier, a
product, a parenthesised shift...) or Python ints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_INT = re.compile(r"-?\d+")


def as_int(text: str | int) -> int | None:
    """The value of an integer literal (or an int), else ``None``."""
    if isinstance(text, int):
        return text
    return int(text) if _INT.fullmatch(text.strip()) else None


def add(*parts: str | int) -> str:
    """The sum of ``parts``: zeros dropped, integer literals folded into one trailing constant."""
    const, terms = 0, []
    for p in parts:
        v = as_int(p)
        if v is not None:
            const += v
        else:
            terms.append(str(p))
    if not terms:
        return str(const)
    text = " + ".join(terms)
    if const > 0:
        text += f" + {const}"
    elif const < 0:
        text += f" - {-const}"
    return text


_TRAILING = re.compile(r"(.+) ([+-]) (\d+)")


def split_const(text: str | int) -> tuple[str, int]:
    """``text`` as (the rest, its trailing integer constants summed), as :func:`add` writes a
    sum: ``"a * 4 + b + 8 + 16"`` is ``("a * 4 + b", 24)``; ``"(a + 1) * 8"`` is itself and 0."""
    v = as_int(text)
    if v is not None:
        return "0", v
    rest, const = str(text), 0
    while (match := _TRAILING.fullmatch(rest)) is not None and not _unbalanced(match.group(1)):
        rest = match.group(1)
        const += (-1 if match.group(2) == "-" else 1) * int(match.group(3))
    return rest, const


def linear(index: Sequence[str | int], strides: Sequence[int]) -> tuple[str, int]:
    """``sum(index[d] * strides[d])`` for integer strides as (the varying terms, one constant):
    each index's trailing constant multiplied out, so that a caller can treat it apart."""
    terms, const = [], 0
    for i, s in zip(index, strides):
        rest, c = split_const(i)
        terms.append(mul(rest, s))
        const += c * s
    return add(*terms), const


def _unbalanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1, "[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            return True
    return depth != 0


def mul(a: str | int, b: str | int) -> str:
    """``a * b`` with 0 and 1 folded; a sum is parenthesised."""
    va, vb = as_int(a), as_int(b)
    if va is not None and vb is not None:
        return str(va * vb)
    if va == 0 or vb == 0:
        return "0"
    if vb == 1:
        return str(a)
    if va == 1:
        return str(b)
    return f"{_factor(a)} * {_factor(b)}"


def _factor(t: str | int) -> str:
    t = str(t)
    return f"({t})" if _loose(t) else t


def _loose(text: str) -> bool:
    """Whether ``text`` has an operator binding looser than ``*`` outside parentheses."""
    depth = 0
    for k, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "+-?&|^<>=" and k > 0 and text[k - 1] == " ":
            return True
    return False


__all__ = ["add", "as_int", "linear", "mul", "split_const"]
