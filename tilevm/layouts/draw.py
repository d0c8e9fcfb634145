"""A register layout as a picture (SVG or PNG): the tile, each cell labelled thread:register.

Cells are coloured by their (first) owner's thread, cycling through a
lightened qualitative palette, and labelled ``thread:register`` (``+k`` when k
more threads hold the element, as in :mod:`tilevm.layouts.show`). Thick lines
run along every cell border whose two sides belong to different warps
(warp = thread // 32) and around the tile. Rows and columns are numbered on
the axes as in the text grid; a tile of rank > 2 has its leading dimensions
flattened into rows.

matplotlib is optional (``pip install tilevm[plot]``) and imported only when
:func:`draw` runs; it draws through the Agg and SVG canvases directly, never
through pyplot, so no window opens and no global backend changes.
"""

from __future__ import annotations

import os
import re
import secrets
import textwrap
from pathlib import Path

from ..errors import LayoutError, TileVMError
from .register import RegisterLayout
from .show import grid, legend

SUFFIXES = (".svg", ".png")
"""The picture formats :func:`draw` writes, chosen by the path's suffix."""

MAX_CELLS = 128 * 128
"""The largest tile :func:`draw` draws; bigger ones stop being readable as one picture."""

MAX_SIDE = 256
"""The most rows or columns :func:`draw` draws."""

_CELL_INCHES = 0.5  # a cell's side for labels up to 5 characters; longer labels widen it
_PALETTE = "tab20"
# Labels stay text in SVGs (small files, selectable labels) in one font that matplotlib ships;
# a fixed hash salt keeps SVG ids the same from run to run.
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "tilevm",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
}
_LIGHTEN = 0.45  # share of white mixed into each palette colour, so black text reads on it


def draw(layout: RegisterLayout, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw ``layout``'s tile to an SVG or PNG file.

    Parameters
    ----------
    layout
        The register layout to draw.
    path
        Where to write; the suffix (``.svg`` or ``.png``, any case) picks the format.
        The file is written to a temporary name in the same folder and renamed over
        ``path``, so an interrupted draw never leaves a half-written picture.
    title
        The picture's title, e.g. the expression the layout came from; by default the
        layout's ``str``. A line with the shape, threads, warps and registers follows it.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    LayoutError
        For a suffix other than ``.svg`` or ``.png``, or a tile larger than
        :data:`MAX_CELLS` cells or :data:`MAX_SIDE` rows or columns.
    TileVMError
        When matplotlib is not installed, or the file cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LayoutError(
            f"draw writes {' or '.join(SUFFIXES)} files, chosen by the suffix; "
            f"got {path.suffix or 'no suffix'!r} in {str(path)!r}"
        )
    _check_size(layout)
    try:
        import matplotlib
    except ImportError as err:
        raise TileVMError(
            "drawing a layout needs matplotlib: pip install matplotlib "
            f"(or pip install tilevm[plot]); importing it failed: {err}"
        ) from None
    with matplotlib.rc_context(_RC):
        _save(_figure(layout, title), path, suffix)
    return path


def _figure(layout: RegisterLayout, title: str | None):
    """The picture as a matplotlib Figure on an Agg canvas (no pyplot, no window)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure

    g = grid(layout)
    rows, cols = g.rows, g.cols
    labels = [[g.label(r, c) for c in range(cols)] for r in range(rows)]
    longest = max(len(text) for line in labels for text in line)
    cell_w = _CELL_INCHES * max(1.0, (longest + 1) / 6)
    cell_h = _CELL_INCHES * 0.6
    row_label_w = 0.12 * max(len(label) for label in g.row_labels) + 0.3
    width = max(row_label_w + cols * cell_w + 0.25, 4.0)
    # The heading wraps to the figure's width; below it, a legend line.
    heading = "\n".join(
        _wrap(line, max(30, int(width / 0.075)))
        for line in [title if title is not None else str(layout), legend(layout)]
    )
    margin_top = 0.45 + 0.16 * (heading.count("\n") + 1)  # the heading, then the tick labels
    height = margin_top + rows * cell_h + 0.2

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    left = (width - cols * cell_w - row_label_w - 0.25) / 2 + row_label_w  # centred
    ax = fig.add_axes((left / width, 0.2 / height, cols * cell_w / width, rows * cell_h / height))
    palette = matplotlib.colormaps[_PALETTE]
    colours = []
    boxes = []
    for r in range(rows):
        for c in range(cols):
            boxes.append([(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)])
            colours.append(_colour(palette, int(g.thread[r, c])))
    ax.add_collection(
        PolyCollection(boxes, facecolors=colours, edgecolors="#b0b0b0", linewidths=0.5)
    )
    ax.add_collection(LineCollection(_warp_borders(g.warp), colors="black", linewidths=2.2))

    font = 7.0 * min(1.0, 6 / max(longest, 1)) if longest > 6 else 7.0
    for r in range(rows):
        for c in range(cols):
            ax.text(c + 0.5, r + 0.5, labels[r][c], ha="center", va="center", fontsize=font)

    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.xaxis.tick_top()
    ax.set_xticks([c + 0.5 for c in range(cols)], [str(c) for c in range(cols)])
    ax.set_yticks([r + 0.5 for r in range(rows)], list(g.row_labels) if layout.rank > 1 else [""])
    ax.tick_params(length=0, labelsize=7, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.text(
        0.5,
        1 - 0.12 / height,
        heading,
        ha="center",
        va="top",
        fontsize=8,
        linespacing=1.4,
    )
    return fig


def _colour(palette, thread: int) -> tuple[float, float, float]:
    """Thread t's fill: tab20 holds ten hues, each strong then pale; threads 0..9 get the strong
    ones and 10..19 the pale ones, so neighbouring threads never share a hue."""
    red, green, blue, _ = palette((thread % 10) * 2 + (thread // 10) % 2)
    return tuple(x + (1 - x) * _LIGHTEN for x in (red, green, blue))


def _wrap(text: str, width: int) -> str:
    """Wrap at the breaks after ``,`` and ``;`` where possible, so phrases stay whole."""
    lines: list[str] = []
    for part in re.split(r"(?<=[,;]) ", text):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.extend(textwrap.wrap(part, width) or [""])
    return "\n".join(lines)


def _check_size(layout: RegisterLayout) -> None:
    cols = layout.shape[-1]
    rows = layout.size // cols
    if layout.size > MAX_CELLS or rows > MAX_SIDE or cols > MAX_SIDE:
        raise LayoutError(
            f"draw shows tiles of at most {MAX_CELLS} cells and {MAX_SIDE} rows or columns, "
            f"which stay legible; got shape {layout.shape} ({rows} x {cols} cells). "
            "Draw a sub-tile (divide the layout) or print it with format_grid"
        )


def _warp_borders(warp) -> list[list[tuple[float, float]]]:
    """Line segments along cell borders with different warps on each side, and the outline."""
    rows, cols = warp.shape
    segments = [[(0, 0), (cols, 0)], [(cols, 0), (cols, rows)]]
    segments += [[(cols, rows), (0, rows)], [(0, rows), (0, 0)]]
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols and warp[r, c] != warp[r, c + 1]:
                segments.append([(c + 1, r), (c + 1, r + 1)])
            if r + 1 < rows and warp[r, c] != warp[r + 1, c]:
                segments.append([(c, r + 1), (c + 1, r + 1)])
    return segments


def _save(fig, path: Path, suffix: str) -> None:
    """Write the figure next to ``path`` under a temporary name, then rename it into place."""
    folder = path.parent
    if not folder.is_dir():
        raise TileVMError(f"cannot write {str(path)!r}: the folder {str(folder)!r} does not exist")
    # Not mkstemp: its file is private (mode 0600), and the picture should get the usual mode.
    temp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
    try:
        fig.savefig(
            temp,
            format=suffix[1:],
            dpi=_dpi(fig),
            # No date: drawing the same layout twice gives the same bytes.
            metadata={"Date": None} if suffix == ".svg" else {"Software": None},
        )
        os.replace(temp, path)
    except OSError as err:
        raise TileVMError(f"cannot write {str(path)!r}: {err}") from err
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _dpi(fig) -> float:
    """150 dots per inch, less for large figures so a PNG stays under about 8000 pixels a side."""
    width, height = fig.get_size_inches()
    return max(40.0, min(150.0, 8000 / max(width, height)))
