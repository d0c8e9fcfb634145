"""Small shims over differences between the Python versions tilevm supports (3.10+)."""

from __future__ import annotations

import sys
from typing import NoReturn

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - exercised on Python 3.10 only

    def assert_never(value: NoReturn, /) -> NoReturn:
        """Mark a branch that a closed union makes unreachable."""
        raise AssertionError(f"unhandled case: {value!r}")


__all__ = ["assert_never"]
