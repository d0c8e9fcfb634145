"""Layout expressions: text such as ``"spatial(8, 4) * local(2, 2)"`` read into a layout.

The command line (``python -m tilevm layout EXPR``) and other places that take a
layout as text use :func:`parse_layout`. It never runs ``eval``: the text is
parsed with :mod:`ast` and walked by a small interpreter that knows only

- int constants (and ``True``/``False``), with an optional leading minus, and
  tuples or lists of them;
- the public functions of :mod:`tilevm.layouts` (its ``__all__``, read at each
  call, so new ones are picked up), called with positional or keyword arguments;
- public methods of :class:`~tilevm.layouts.register.RegisterLayout`, called on a
  layout: ``local(2, 1).spatial(8, 4).local(1, 2)``;
- ``*`` (product) and ``/`` (division) between layouts.

Anything else is a :class:`LayoutError` naming the piece, its column (counted
from 1) and a caret under it::

    unsupported syntax 'lambda' at column 9
      spatial(lambda: 8)
              ^^^^^^^^^

The tree is checked whole, outermost piece first, before anything runs, so
``open('f').read()`` fails on ``read`` without calling anything. Errors of the
layout algebra itself (a division that does not exist, a wrong argument count)
come back as the same error with the expression and a caret under the failing
step added.
"""

from __future__ import annotations

import ast
import difflib
import importlib
from collections.abc import Callable
from typing import Any

from ..errors import LayoutError, TileVMError
from .register import RegisterLayout

# Functions of tilevm.layouts that are not layout builders: they print, draw or parse.
_NOT_BUILDERS = frozenset({"show", "format_grid", "draw", "parse_layout"})

_MAX_TEXT = 2000

_SYNTAX_NAMES = {
    ast.Lambda: "lambda",
    ast.IfExp: "if-else",
    ast.BoolOp: "and/or",
    ast.Compare: "comparison",
    ast.Subscript: "subscript",
    ast.Starred: "star argument",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.NamedExpr: "':='",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield from",
}

_OPERATORS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.Not: "not",
    ast.UAdd: "+",
    ast.USub: "-",
}


def layout_functions() -> dict[str, Callable[..., Any]]:
    """The names a layout expression may call: the public layout builders of tilevm.layouts.

    Read from ``tilevm.layouts.__all__`` at each call, so functions added there are
    picked up. Anything not callable, exception classes, and the functions that print,
    draw or parse layouts are left out.

    Returns
    -------
    dict
        Name to function, sorted by name.
    """
    package = importlib.import_module("tilevm.layouts")
    out = {}
    for name in sorted(getattr(package, "__all__", ())):
        value = getattr(package, name, None)
        if (
            name.startswith("_")
            or name in _NOT_BUILDERS
            or not callable(value)
            or (isinstance(value, type) and issubclass(value, BaseException))
        ):
            continue
        out[name] = value
    return out


def layout_methods() -> frozenset[str]:
    """The method names a layout expression may call on a layout: RegisterLayout's public ones."""
    return frozenset(
        name
        for name in dir(RegisterLayout)
        if not name.startswith("_") and callable(getattr(RegisterLayout, name))
    )


def parse_layout(text: str) -> RegisterLayout:
    """Read a layout expression such as ``"local(2, 1) * spatial(8, 4) * local(1, 2)"``.

    Parameters
    ----------
    text
        The expression. It may use int constants, tuples and lists of ints, the
        public layout functions of :mod:`tilevm.layouts` (see :func:`layout_functions`),
        public methods of a layout, keyword arguments, and ``*`` and ``/`` between
        layouts. See the module docs.

    Returns
    -------
    RegisterLayout
        The layout the expression denotes.

    Raises
    ------
    LayoutError
        For anything outside that language, naming the offending piece with its column
        and a caret under it; for an expression that is not a register layout; and, with
        the expression and a caret added, for errors of the layout algebra itself (a
        division that does not exist, a wrong argument count, ...).

    Examples
    --------
    >>> parse_layout("spatial(2, 2) * local(1, 2)").shape
    (2, 4)
    """
    if not isinstance(text, str):
        raise LayoutError(f"a layout expression must be a str; got {type(text).__name__}")
    if len(text) > _MAX_TEXT:
        raise LayoutError(
            f"a layout expression has at most {_MAX_TEXT} characters; got {len(text)}"
        )
    if not text.strip():
        raise LayoutError("empty layout expression; try e.g. 'spatial(8, 4) * local(2, 2)'")
    source = _wrap(text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        line = (err.lineno or 2) - 2
        column = max((err.offset or 1) - 1, 0)
        if not 0 <= line < len(text.splitlines() or [""]):
            line, column = _end_of(text)
        reason = "" if err.msg == "invalid syntax" else f" ({err.msg})"
        raise _error(f"invalid syntax{reason}", text, line, column) from None
    evaluator = _Evaluator(text, layout_functions(), layout_methods())
    evaluator.check(tree.body)
    result = evaluator.value(tree.body)
    if not isinstance(result, RegisterLayout):
        raise LayoutError(
            f"the expression gives a value of type {type(result).__name__}, "
            f"not a register layout: {text.strip()}"
        )
    return result


def _wrap(text: str) -> str:
    # Parenthesised so that an expression may span lines, as it can inside a Python call.
    return "(\n" + text + "\n)"


def _end_of(text: str) -> tuple[int, int]:
    lines = text.splitlines() or [""]
    return len(lines) - 1, len(lines[-1])


def _error(
    message: str,
    text: str,
    line: int,
    column: int,
    width: int = 1,
    hint: str = "",
    *,
    located: bool = True,
) -> LayoutError:
    """A LayoutError: message, column and hint, then the expression's line and a caret under it."""
    lines = text.splitlines() or [""]
    at = lines[line]
    caret = " " * column + "^" * max(1, min(width, len(at) - column))
    if located:
        where = (
            f"line {line + 1}, column {column + 1}" if len(lines) > 1 else f"column {column + 1}"
        )
        message += f" at {where}"
    if hint:
        message += f"; {hint}"
    return LayoutError(f"{message}\n  {at}\n  {caret}")


class _Evaluator:
    """Checks a parsed expression against the language, then evaluates it."""

    def __init__(self, text: str, functions: dict, methods: frozenset[str]):
        self.text = text
        self.source = _wrap(text)
        self.lines = text.splitlines() or [""]
        self.functions = functions
        self.methods = methods

    # -- locations -----------------------------------------------------------------------------
    def _position(self, lineno: int, byte_offset: int) -> tuple[int, int]:
        """(line, column in characters) of an ast position in ``text`` (ast counts UTF-8 bytes)."""
        line = lineno - 2  # the parse added one line before the text
        encoded = self.lines[line].encode()
        return line, len(encoded[:byte_offset].decode(errors="ignore"))

    def fail(
        self,
        message: str,
        node: ast.AST,
        hint: str = "",
        *,
        at: tuple[int, int] | None = None,
        width: int | None = None,
        located: bool = True,
    ) -> LayoutError:
        """An error about ``node``: the caret spans its first line unless told otherwise."""
        line, start = at or self._position(node.lineno, node.col_offset)
        if width is None:
            segment = ast.get_source_segment(self.source, node) or ""
            width = len(segment.splitlines()[0]) if segment else 1
        return _error(message, self.text, line, start, width, hint, located=located)

    def piece(self, node: ast.AST, limit: int = 30) -> str:
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        segment = " ".join(segment.split())
        return segment if len(segment) <= limit else segment[: limit - 3] + "..."

    # -- the language --------------------------------------------------------------------------
    def check(self, node: ast.AST) -> None:
        """Raise for a piece of ``node`` outside the language: the outermost, then left to right.

        Runs on the whole tree before anything is evaluated.
        """
        match node:
            case ast.Constant(value=value):
                if isinstance(value, int):  # bool is an int
                    return
                kind = {str: "string ", bytes: "bytes ", float: "float ", complex: "complex "}
                what = kind.get(type(value), "") + self.piece(node)
                raise self.fail(f"unsupported value {what}", node, "only ints are allowed")
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int())):
                return
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                for elt in elts:
                    if isinstance(elt, ast.Starred):
                        raise self.fail("unsupported syntax 'star argument'", elt)
                    self.check(elt)
            case ast.Name(id=name):
                self._check_name(node)
                raise self.fail(f"'{name}' is a layout function", node, f"call it: '{name}(...)'")
            case ast.BinOp(left=left, op=ast.Mult() | ast.Div(), right=right):
                self.check(left)
                self.check(right)
            case ast.BinOp(left=left, op=op, right=right):
                self.check(left)
                symbol = _OPERATORS.get(type(op), type(op).__name__)
                line, column = self._operator_column(left, right, symbol)
                hint = "layouts combine with * (product) and / (division)"
                raise _error(
                    f"unsupported operator '{symbol}'", self.text, line, column, len(symbol), hint
                )
            case ast.UnaryOp(op=op):
                symbol = _OPERATORS.get(type(op), type(op).__name__)
                raise self.fail(
                    f"unsupported operator '{symbol}'",
                    node,
                    "only int constants may be negated",
                    width=len(symbol),
                )
            case ast.Call(func=func, args=args, keywords=keywords):
                match func:
                    case ast.Name():
                        self._check_name(func)
                    case ast.Attribute(value=value, attr=attr):
                        self._check_method(func, attr)
                        self.check(value)
                    case _:
                        raise self.fail(
                            f"unsupported call of {self.piece(func)}",
                            func,
                            "call a layout function by name or a method of a layout",
                        )
                for arg in args:
                    if isinstance(arg, ast.Starred):
                        raise self.fail("unsupported syntax 'star argument'", arg)
                    self.check(arg)
                for keyword in keywords:
                    if keyword.arg is None:
                        raise self.fail("unsupported syntax '**' argument", keyword)
                    self.check(keyword.value)
            case ast.Attribute(attr=attr):
                self._check_method(node, attr)
                raise self.fail(
                    f"method '{attr}' is not called",
                    node,
                    f"write '.{attr}(...)'",
                    at=self._attribute_position(node),
                    width=len(attr),
                )
            case _:
                name = _SYNTAX_NAMES.get(type(node), self.piece(node))
                raise self.fail(f"unsupported syntax '{name}'", node)

    def _check_name(self, node: ast.Name) -> None:
        if node.id in self.functions:
            return
        close = difflib.get_close_matches(node.id, self.functions, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        hint += f"layout functions: {', '.join(self.functions)}"
        raise self.fail(f"unknown name '{node.id}'", node, hint)

    def _attribute_position(self, node: ast.Attribute) -> tuple[int, int]:
        line, end = self._position(node.end_lineno, node.end_col_offset)
        return line, end - len(node.attr)

    def _check_method(self, node: ast.Attribute, attr: str) -> None:
        if attr not in self.methods:
            raise self.fail(
                f"'{attr}' is not a layout method",
                node,
                f"methods: {', '.join(sorted(self.methods))}",
                at=self._attribute_position(node),
                width=len(attr),
            )

    def _operator_column(self, left: ast.AST, right: ast.AST, symbol: str) -> tuple[int, int]:
        line, start = self._position(left.end_lineno, left.end_col_offset)
        if right.lineno == left.end_lineno:
            _, end = self._position(right.lineno, right.col_offset)
            found = self.lines[line].find(symbol, start, end)
            if found >= 0:
                return line, found
        return line, start

    # -- evaluation ----------------------------------------------------------------------------
    def value(self, node: ast.AST) -> Any:
        """Evaluate a checked expression."""
        match node:
            case ast.Constant(value=value):
                return value
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=value)):
                return -value
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                return tuple(self.value(elt) for elt in elts)
            case ast.BinOp(left=left, op=op, right=right):
                a, b = self.value(left), self.value(right)
                symbol = "*" if isinstance(op, ast.Mult) else "/"
                for side, operand in (("left", a), ("right", b)):
                    if not isinstance(operand, RegisterLayout):
                        raise self.fail(
                            f"'{symbol}' needs layouts on both sides; the {side} side is "
                            f"{self._describe(operand)}",
                            left if side == "left" else right,
                            located=False,
                        )
                return self._apply(node, lambda: a * b if symbol == "*" else a / b)
            case ast.Call(func=func, args=args, keywords=keywords):
                if isinstance(func, ast.Attribute):
                    target = self.value(func.value)
                    if not isinstance(target, RegisterLayout):
                        raise self.fail(
                            f"'.{func.attr}()' is a layout method; it was called on "
                            f"{self._describe(target)}",
                            func.value,
                            located=False,
                        )
                    function = getattr(target, func.attr)
                else:
                    function = self.functions[func.id]
                positional = [self.value(arg) for arg in args]
                named = {keyword.arg: self.value(keyword.value) for keyword in keywords}
                return self._apply(node, lambda: function(*positional, **named))
        raise AssertionError(f"unchecked node {ast.dump(node)}")

    def _describe(self, value: Any) -> str:
        if isinstance(value, (int, tuple)):
            return f"{type(value).__name__} {value!r}"
        return getattr(value, "__name__", None) or type(value).__name__

    def _apply(self, node: ast.AST, compute: Callable[[], Any]) -> Any:
        """Run one step of the algebra; its errors name the step in the expression."""
        try:
            return compute()
        except (TypeError, AttributeError) as err:  # wrong argument count or kind
            raise self.fail(f"bad arguments: {err}", node, located=False) from None
        except TileVMError as err:
            wrapped = self.fail(str(err), node, located=False)
            try:
                error = type(err)(str(wrapped))
            except TypeError:
                error = wrapped
            raise error from err
