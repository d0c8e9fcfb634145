"""Golden files: compare a test's text output with ``tests/golden/{name}.txt``.

Run the tests with ``TILEVM_UPDATE_GOLDEN=1`` to (re)write the files from the
current output instead of comparing; review the diff and commit it. A refactor
that should not change the output leaves them unchanged.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_VARIABLE = "TILEVM_UPDATE_GOLDEN"


def assert_golden(name: str, text: str, directory: Path | None = None) -> None:
    """Assert ``text`` equals the golden file ``{directory}/{name}.txt`` byte for byte.

    With ``TILEVM_UPDATE_GOLDEN=1`` in the environment, write ``text`` to the file
    instead (atomically: a temporary file in the same folder, then a rename).
    ``directory`` defaults to ``tests/golden``.
    """
    path = (GOLDEN_DIR if directory is None else Path(directory)) / f"{name}.txt"
    if os.environ.get(UPDATE_VARIABLE) == "1":
        _write_atomically(path, text)
        return
    if not path.exists():
        pytest.fail(
            f"golden file {path} does not exist; create it by running this test with "
            f"{UPDATE_VARIABLE}=1, then review and commit it",
            pytrace=False,
        )
    with open(path, encoding="utf-8", newline="") as f:
        expected = f.read()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (expected)",
                tofile="output",
            )
        )
        pytest.fail(
            f"output differs from golden file {path}; if the change is intended, rerun with "
            f"{UPDATE_VARIABLE}=1 and commit the new file\n{diff}",
            pytrace=False,
        )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
