"""The interpreter's state: one run's arguments and caches, one block's memories and scalars.

:data:`RULES` maps each instruction class to the function that interprets it
(``rule(machine, inst)``); :mod:`.rules` and :mod:`.memory` register them
beside their implementations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dtypes import DataType
from ..ir.inst import CopyAsync, Instruction, SourceLoc
from ..ir.program import Param, Program
from ..ir.registry import RuleTable
from ..ir.tensor import GlobalTensor, RegisterTensor, SharedTensor
from .values import InterpError, value_dtype

RULES = RuleTable("interpret")


def where(loc: SourceLoc | None) -> str:
    """``file:line`` of a source location, or ``"?"`` when there is none."""
    return f"{loc.file}:{loc.line}" if loc is not None else "?"


def line_of(loc: SourceLoc | None) -> str:
    return str(loc.line) if loc is not None else "?"


@dataclass(eq=False)
class Binding:
    """A global tensor bound to its argument buffer, sizes and strides evaluated at its view."""

    param: Param
    buffer: np.ndarray
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def label(self, tensor: GlobalTensor) -> str:
        return f"'{tensor.name or self.param.name}'"


@dataclass(eq=False)
class SharedBuffer:
    """One shared tensor of a block: its values and what race checking needs to know.

    ``written`` holds, per element, the number of the write (an index into
    :attr:`Machine.writes`) that stored it since the last barrier, 0 when
    none; ``pending`` counts the async copies into each element still in
    flight.
    """

    values: np.ndarray
    written: np.ndarray
    pending: np.ndarray
    freed_at: SourceLoc | None = None
    freed: bool = False


@dataclass(eq=False)
class PendingCopy:
    """An async copy: the global data snapshot at issue time, waiting to land in ``dst``."""

    inst: CopyAsync
    dst: SharedTensor
    buffer: SharedBuffer
    values: np.ndarray


@dataclass(eq=False)
class Machine:
    """Everything one :func:`~tilevm.interp.run` needs; :meth:`start_block` resets a block."""

    program: Program
    grid: tuple[int, int, int]
    rank: int
    scalars: dict[Any, int | float]
    buffers: dict[Any, tuple[Param, np.ndarray]]
    check_races: bool = True
    cache: dict[Instruction, Any] = field(default_factory=dict)
    # -- one block's state -----------------------------------------------------------------------
    block: tuple[int, int, int] = (0, 0, 0)
    env: dict[Any, int | float] = field(default_factory=dict)
    tiles: dict[RegisterTensor, np.ndarray] = field(default_factory=dict)
    global_views: dict[GlobalTensor, Binding] = field(default_factory=dict)
    shared: dict[SharedTensor, SharedBuffer] = field(default_factory=dict)
    open_group: list[PendingCopy] = field(default_factory=list)
    committed: list[list[PendingCopy]] = field(default_factory=list)
    writes: list[SourceLoc | None] = field(default_factory=lambda: [None])
    loc: SourceLoc | None = None

    def start_block(self, block: tuple[int, int, int]) -> None:
        self.block = block
        self.env = dict(self.scalars)
        self.tiles = {}
        self.global_views = {}
        self.shared = {}
        self.open_group = []
        self.committed = []
        self.writes = [None]
        self.loc = None

    @property
    def block_label(self) -> str:
        return str(self.block[: self.rank])

    # -- errors ----------------------------------------------------------------------------------
    def error(self, message: str, loc: SourceLoc | None = None) -> InterpError:
        """An :class:`InterpError` prefixed with ``file:line:`` of ``loc`` (default: current)."""
        loc = loc if loc is not None else self.loc
        return InterpError(f"{loc.file}:{loc.line}: {message}" if loc is not None else message)

    # -- register tiles --------------------------------------------------------------------------
    def tile(self, tensor: RegisterTensor) -> np.ndarray:
        try:
            return self.tiles[tensor]
        except KeyError:
            raise self.error(
                f"register tile {tensor_name(tensor)} is read before any instruction wrote it"
            ) from None

    def set_tile(self, tensor: RegisterTensor, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=value_dtype(tensor.dtype))
        assert values.shape == tensor.shape, (values.shape, tensor.shape)
        self.tiles[tensor] = values

    # -- memories --------------------------------------------------------------------------------
    def binding(self, tensor: GlobalTensor) -> Binding:
        try:
            return self.global_views[tensor]
        except KeyError:
            raise self.error(
                f"global tensor {tensor_name(tensor)} is used before its global_view ran"
            ) from None

    def shared_buffer(self, tensor: SharedTensor) -> SharedBuffer:
        buf = self.shared.get(tensor)
        if buf is None:
            raise self.error(f"shared tensor {tensor_name(tensor)} is used before alloc_shared")
        if buf.freed:
            raise self.error(
                f"shared tensor {tensor_name(tensor)} is used after free_shared at line "
                f"{line_of(buf.freed_at)}"
            )
        return buf


def tensor_name(tensor: Any) -> str:
    """A tensor's name for messages: ``'x'``, or its type and shape when unnamed."""
    return f"'{tensor.name}'" if tensor.name else f"{tensor.dtype}{list(tensor.shape)}"


def new_shared(dtype: DataType, shape: tuple[int, ...]) -> SharedBuffer:
    return SharedBuffer(
        np.zeros(shape, dtype=value_dtype(dtype)),
        np.zeros(shape, dtype=np.int64),
        np.zeros(shape, dtype=np.int64),
    )
