"""A register layout as a text grid: which thread holds each element, in which register.

Every cell of the tile shows its owner as ``thread:register``. For
``spatial(2, 2) * local(1, 2)``::

    tile 2x4, 4 threads (1 warp), 2 registers each; cell = thread:register
         0   1   2   3
    0  0:0 0:1 1:0 1:1
    1  2:0 2:1 3:0 3:1

- The header row holds column indices, the first column row indices. A tile
  of rank 1 is one row without a row label; in a tile of rank > 2 the leading
  dimensions are flattened into rows, each labelled with its full leading
  index, e.g. ``(1,3)``.
- A replicated element (held by several threads) shows its first owner, the
  lowest thread, and ``+k`` for the k further owners: ``0:1+3`` is held by
  thread 0 in register 1 and by three more threads.
- Warps are threads ``32*w .. 32*w + 31``. When the tile spans several warps,
  ``|`` between two cells and ``-`` under a cell mark where the warp of the
  (first) owner changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LayoutError
from .register import RegisterLayout

WARP_SIZE = 32

MAX_GRID_ENTRIES = 1 << 16
"""The most (thread, register) pairs a grid is built for; more raise :class:`LayoutError`."""


@dataclass(frozen=True)
class Grid:
    """A layout's tile as a 2-D grid of cells: the model behind the text grid and the picture.

    Attributes
    ----------
    row_labels
        One label per row: ``""`` for rank 1, ``"i"`` for rank 2, ``"(i,j)"`` above.
    thread, register
        ``(rows, cols)`` int arrays: each cell's first owner (the lowest thread, then register).
    more
        ``(rows, cols)`` int array: how many further owners each cell has (replication).
    """

    row_labels: tuple[str, ...]
    thread: np.ndarray
    register: np.ndarray
    more: np.ndarray

    @property
    def rows(self) -> int:
        return self.thread.shape[0]

    @property
    def cols(self) -> int:
        return self.thread.shape[1]

    def label(self, row: int, col: int) -> str:
        """The cell's text: ``thread:register``, plus ``+k`` when k more threads hold it."""
        text = f"{self.thread[row, col]}:{self.register[row, col]}"
        more = self.more[row, col]
        return f"{text}+{more}" if more else text

    @property
    def warp(self) -> np.ndarray:
        """The warp of each cell's first owner."""
        return self.thread // WARP_SIZE


def grid(layout: RegisterLayout) -> Grid:
    """Lay out ``layout``'s tile as rows and columns of owners.

    Parameters
    ----------
    layout
        The register layout.

    Returns
    -------
    Grid
        Rows are the leading dimensions flattened (one row for rank 1), columns the last
        dimension; ``grid.thread[r, c]`` and ``grid.register[r, c]`` hold the first owner.

    Raises
    ------
    LayoutError
        When the layout has more than :data:`MAX_GRID_ENTRIES` (thread, register) pairs.
    """
    entries = layout.num_threads * layout.local_size
    if entries > MAX_GRID_ENTRIES:
        raise LayoutError(
            f"a grid shows at most {MAX_GRID_ENTRIES} (thread, register) pairs; got "
            f"{layout.num_threads} threads x {layout.local_size} registers = {entries} "
            f"for a tile of shape {layout.shape}"
        )
    shape = layout.shape
    table = layout.table()
    flat = np.ravel_multi_index(tuple(table[..., d] for d in range(layout.rank)), shape).ravel()
    # The table lists (thread, register) pairs in order, so the smallest position owning an
    # element is its first owner.
    first = np.full(layout.size, entries, dtype=np.int64)
    np.minimum.at(first, flat, np.arange(entries))
    assert (first < entries).all(), "every element of a tile has an owner"
    count = np.bincount(flat, minlength=layout.size)
    cols = shape[-1]
    rows = layout.size // cols
    if layout.rank == 1:
        labels = ("",)
    elif layout.rank == 2:
        labels = tuple(str(i) for i in range(rows))
    else:
        labels = tuple(
            "(" + ",".join(str(int(i)) for i in index) + ")" for index in np.ndindex(*shape[:-1])
        )
    return Grid(
        row_labels=labels,
        thread=(first // layout.local_size).reshape(rows, cols),
        register=(first % layout.local_size).reshape(rows, cols),
        more=(count - 1).reshape(rows, cols),
    )


def legend(layout: RegisterLayout) -> str:
    """One line: the tile's shape, its threads and warps, registers per thread, replication."""
    warps = -(-layout.num_threads // WARP_SIZE)
    parts = [
        f"tile {'x'.join(map(str, layout.shape))}",
        f"{_count(layout.num_threads, 'thread')} ({_count(warps, 'warp')})",
        f"{_count(layout.local_size, 'register')} each",
    ]
    cell = "thread:register"
    if layout.replication > 1:
        parts.append(f"{layout.replication} owners per element")
        cell += "+more owners"
    return ", ".join(parts) + "; cell = " + cell


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_grid(layout: RegisterLayout) -> str:
    """The layout's tile as a text grid, each cell ``thread:register``; see the module docs.

    Parameters
    ----------
    layout
        The register layout to show.

    Returns
    -------
    str
        A legend line, a header row of column indices, then one line per row of the tile
        (leading dimensions flattened), without a trailing newline. Replicated elements show
        their first owner and ``+k`` for k more; ``|`` and ``-`` mark warp boundaries.

    Raises
    ------
    LayoutError
        When the layout is too large to print (see :data:`MAX_GRID_ENTRIES`).

    Examples
    --------
    >>> from tilevm.layouts.register import local, spatial
    >>> print(format_grid(spatial(2, 2) * local(1, 2)))
    tile 2x4, 4 threads (1 warp), 2 registers each; cell = thread:register
         0   1   2   3
    0  0:0 0:1 1:0 1:1
    1  2:0 2:1 3:0 3:1
    """
    g = grid(layout)
    cells = [[g.label(r, c) for c in range(g.cols)] for r in range(g.rows)]
    width = max(len(str(g.cols - 1)), *(len(cell) for row in cells for cell in row))
    label_width = max(len(label) for label in g.row_labels)
    indent = " " * (label_width + 2) if label_width else ""
    warp = g.warp
    lines = [legend(layout), indent + " ".join(str(c).rjust(width) for c in range(g.cols))]
    for r in range(g.rows):
        line = g.row_labels[r].ljust(label_width) + "  " if label_width else ""
        for c in range(g.cols):
            if c:
                line += "|" if warp[r, c] != warp[r, c - 1] else " "
            line += cells[r][c].rjust(width)
        lines.append(line.rstrip())
        if r + 1 < g.rows and (warp[r] != warp[r + 1]).any():
            lines.append(_warp_rule(warp[r] != warp[r + 1], width, indent))
    return "\n".join(lines)


def _warp_rule(changes: np.ndarray, width: int, indent: str) -> str:
    """The line between two rows: ``-`` under each cell whose warp changes below it."""
    line = indent
    for c, change in enumerate(changes):
        if c:
            line += "-" if change and changes[c - 1] else " "
        line += ("-" if change else " ") * width
    return line.rstrip()


def show(layout: RegisterLayout) -> None:
    """Print :func:`format_grid` of ``layout``.

    Parameters
    ----------
    layout
        The register layout to show.
    """
    print(format_grid(layout))
