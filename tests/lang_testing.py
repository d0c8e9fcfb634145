"""Helpers for the frontend tests: fresh random data, and compile errors checked to the caret."""

from __future__ import annotations

import inspect
import secrets
import traceback
from typing import Any

import numpy as np
import pytest

from tilevm.lang import Kernel, KernelCompileError


def fresh_rng() -> np.random.Generator:
    """A generator on a new seed each run; the seed is printed, so a failure can be replayed."""
    seed = secrets.randbits(32)
    print(f"numpy seed {seed}")
    return np.random.default_rng(seed)


def source_line(fn: Any, snippet: str) -> tuple[str, int, str]:
    """(file, line number, text) of the only line of ``fn``'s source containing ``snippet``."""
    fn = fn.fn if isinstance(fn, Kernel) or hasattr(fn, "source") else fn
    lines, first = inspect.getsourcelines(fn)
    hits = [i for i, text in enumerate(lines) if snippet in text]
    assert len(hits) == 1, f"{snippet!r} is on {len(hits)} lines of {fn.__name__}"
    return inspect.getsourcefile(fn), first + hits[0], lines[hits[0]].rstrip("\n")


def expected_header(fn: Any, snippet: str, label: str) -> str:
    """``file:line:col (in LABEL)`` for the first occurrence of ``snippet`` in ``fn``."""
    file, line, text = source_line(fn, snippet)
    return f"{file}:{line}:{text.index(snippet) + 1} (in {label})"


def expect_compile_error(
    kernel: Kernel,
    reason: str,
    snippet: str,
    *,
    on: str | None = None,
    at: Any = None,
    **constants: Any,
) -> KernelCompileError:
    """Compile ``kernel`` and check the whole error: reason, location, excerpt and caret.

    The error must underline the first ``snippet`` on the line holding ``on``
    (``snippet`` itself by default) in ``at`` (the kernel by default; a
    ``@tilevm.func`` for errors inside a helper), and the traceback must end in
    the frontend's entry point, not in the transpiler.
    """
    with pytest.raises(KernelCompileError) as info:
        kernel.program(**constants)
    err = info.value
    fn = at if at is not None else kernel
    file, line, text = source_line(fn, on or snippet)
    col = text.index(snippet)
    assert err.reason == reason
    assert (err.loc.file, err.loc.line, err.loc.col) == (file, line, col)
    label = f"kernel {kernel.__name__}" if at is None else fn.__name__
    assert str(err).split("\n")[:3] == [
        f"{file}:{line}:{col + 1} (in {label}): {reason}",
        f"    {text}",
        "    " + " " * col + "^" * len(snippet),
    ], str(err)
    frames = [frame.filename for frame in traceback.extract_tb(err.__traceback__)]
    assert not any(name.endswith("transpiler.py") for name in frames), frames
    return err
