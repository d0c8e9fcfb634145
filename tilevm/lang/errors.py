"""Compile errors that point at the kernel author's source line."""

from __future__ import annotations

import linecache

from ..errors import TileVMError
from ..ir.inst import SourceLoc


class KernelCompileError(TileVMError):
    """A kernel could not be compiled; the message shows the file, line, an excerpt and a caret.

    ``loc`` is the :class:`~tilevm.ir.inst.SourceLoc` and ``reason`` the bare message.
    """

    def __init__(self, reason: str, loc: SourceLoc | None):
        self.reason = reason
        self.loc = loc
        super().__init__(format_error(reason, loc))


def format_error(reason: str, loc: SourceLoc | None) -> str:
    if loc is None:
        return reason
    where = f"{loc.file}:{loc.line}:{loc.col + 1}"
    if loc.function:
        where += f" (in kernel {loc.function})"
    text = linecache.getline(loc.file, loc.line).rstrip("\n")
    if not text:
        return f"{where}: {reason}"
    width = max(1, (loc.end_col if loc.end_col is not None else len(text)) - loc.col)
    caret = " " * loc.col + "^" * width
    return f"{where}: {reason}\n    {text}\n    {caret}"
