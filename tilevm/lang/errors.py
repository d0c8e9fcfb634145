"""Compile errors that point at the kernel author's source line."""

from __future__ import annotations

import linecache

from ..errors import TileVMError
from ..ir.inst import SourceLoc


class KernelCompileError(TileVMError):
    """A kernel could not be compiled; the message shows the file, line, an excerpt and a caret.

    ``loc`` is the :class:`~tilevm.ir.inst.SourceLoc` and ``reason`` the bare message.
    ``calls`` holds, for an error inside a ``@tilevm.func`` helper, the lines that
    called it, innermost first (the last one is in the kernel).
    """

    def __init__(self, reason: str, loc: SourceLoc | None, calls: tuple[SourceLoc, ...] = ()):
        self.reason = reason
        self.loc = loc
        self.calls = calls
        super().__init__(format_error(reason, loc, calls))

    def called_from(self, call: SourceLoc) -> KernelCompileError:
        """The same error, noting that the helper it happened in was called at ``call``."""
        return KernelCompileError(self.reason, self.loc, (*self.calls, call))


def format_error(reason: str, loc: SourceLoc | None, calls: tuple[SourceLoc, ...] = ()) -> str:
    if loc is None:
        return reason
    # Only the outermost location is in the kernel; the others are in helpers it inlines.
    where = _where(loc, kernel=not calls)
    text = linecache.getline(loc.file, loc.line).rstrip("\n")
    if not text:
        message = f"{where}: {reason}"
    else:
        width = max(1, (loc.end_col if loc.end_col is not None else len(text)) - loc.col)
        caret = " " * loc.col + "^" * width
        message = f"{where}: {reason}\n    {text}\n    {caret}"
    for i, call in enumerate(calls):
        line = linecache.getline(call.file, call.line).strip()
        message += f"\n  called from {_where(call, kernel=i == len(calls) - 1)}: {line}"
    return message


def _where(loc: SourceLoc, kernel: bool) -> str:
    where = f"{loc.file}:{loc.line}:{loc.col + 1}"
    if loc.function:
        where += f" (in {'kernel ' if kernel else ''}{loc.function})"
    return where
