"""Errors a user of tilevm can cause.

Every such error is a :class:`TileVMError`. Subclasses also derive from the
built-in exception a Python user would expect (``ValueError`` for a bad value,
``TypeError`` for a value of the wrong kind), so ``except ValueError`` keeps
working. Internal invariants are plain ``assert`` statements, never these.
"""

from __future__ import annotations


class TileVMError(Exception):
    """Base class of every error a user of tilevm can cause."""


class DTypeError(TileVMError, ValueError):
    """A data type was named or used wrongly (unknown name, value it cannot encode)."""


class PackError(TileVMError, ValueError):
    """Codes or packed bytes do not fit the requested bit width or count."""


class LayoutError(TileVMError, ValueError):
    """A layout operation is impossible (a product, division, view or reshape that does not fit)."""
