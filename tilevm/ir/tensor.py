"""Tensors of the IR: global views of pointers, shared-memory buffers and register tiles.

Tensors are IR values: each is created by one instruction and compared by
identity. ``name`` is a hint for the printer (the frontend passes the Python
variable name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..dtypes import DataType
from ..layouts.register import RegisterLayout
from ..layouts.shared import SharedLayout
from .expr import Expr, Var


@dataclass(eq=False)
class GlobalTensor:
    """A view of global memory: element (i, j, ...) is at ``ptr + sum(index[d] * strides[d])``.

    ``shape`` and ``strides`` are ints or scalar expressions of runtime values;
    ``ptr`` is the pointer parameter it views.
    """

    dtype: DataType
    shape: tuple[int | Expr, ...]
    strides: tuple[int | Expr, ...]
    ptr: Var
    name: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(eq=False)
class SharedTensor:
    """A tile in the block's shared memory, logical shape ``shape``; layout chosen by a pass."""

    dtype: DataType
    shape: tuple[int, ...]
    layout: SharedLayout | None = None
    name: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(eq=False)
class RegisterTensor:
    """A tile distributed over the block's threads by ``layout`` (inferred when ``None``)."""

    dtype: DataType
    shape: tuple[int, ...]
    layout: RegisterLayout | None = None
    name: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


Tensor = GlobalTensor | SharedTensor | RegisterTensor
