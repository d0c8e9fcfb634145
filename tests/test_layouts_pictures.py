"""Pictures of layouts: the text grid, layout expressions, draw(), the CLI, and docs/layouts.md.

The doc is checked block by block: every ```python block runs (in order, in one
namespace) and its printed output must equal the ```text block right after it.
After a change that alters the printed grids or the pictures, regenerate them
with ``TILEVM_UPDATE_DOCS=1 pytest tests/test_layouts_pictures.py`` and review
the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import tilevm.layouts
from tilevm.__main__ import main
from tilevm.errors import LayoutError, TileVMError
from tilevm.layouts.draw import MAX_CELLS, _warp_borders, draw
from tilevm.layouts.expr import parse_layout
from tilevm.layouts.fragments import mma_m16n8k16_c
from tilevm.layouts.ops import reduce
from tilevm.layouts.register import column_spatial, local, replicate, spatial
from tilevm.layouts.show import format_grid, grid, show

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "layouts.md"
UPDATE = os.environ.get("TILEVM_UPDATE_DOCS") == "1"
MMA_C = "local(2,1)*spatial(8,4)*local(1,2)"


# -- the text grid -------------------------------------------------------------------------------
def test_grid_of_spatial_2x2_times_local_1x2_shows_thread_colon_register_per_cell():
    assert format_grid(spatial(2, 2) * local(1, 2)) == (
        "tile 2x4, 4 threads (1 warp), 2 registers each; cell = thread:register\n"
        "     0   1   2   3\n"
        "0  0:0 0:1 1:0 1:1\n"
        "1  2:0 2:1 3:0 3:1"
    )


def test_grid_of_replicated_elements_shows_first_owner_and_how_many_more():
    assert format_grid(spatial(2).replicate(4) * local(2)) == (
        "tile 4, 8 threads (1 warp), 2 registers each, 4 owners per element; "
        "cell = thread:register+more owners\n"
        "    0     1     2     3\n"
        "0:0+3 0:1+3 4:0+3 4:1+3"
    )


def test_grid_of_rank_1_is_one_row_without_a_row_label():
    assert format_grid(local(2) * spatial(4)) == (
        "tile 8, 4 threads (1 warp), 2 registers each; cell = thread:register\n"
        "  0   1   2   3   4   5   6   7\n"
        "0:0 1:0 2:0 3:0 0:1 1:1 2:1 3:1"
    )


def test_grid_of_rank_3_flattens_leading_dimensions_into_rows_labelled_by_index():
    assert format_grid(spatial(2, 2, 2) * local(1, 1, 2)) == (
        "tile 2x2x4, 8 threads (1 warp), 2 registers each; cell = thread:register\n"
        "         0   1   2   3\n"
        "(0,0)  0:0 0:1 1:0 1:1\n"
        "(0,1)  2:0 2:1 3:0 3:1\n"
        "(1,0)  4:0 4:1 5:0 5:1\n"
        "(1,1)  6:0 6:1 7:0 7:1"
    )


def test_grid_marks_where_the_warp_changes_with_bars_and_dashes():
    # 2x2 warps, each an 8x4 block of threads: warp 1 is right of warp 0, warps 2, 3 below.
    text = format_grid(spatial(2, 2) * spatial(8, 4))
    lines = text.splitlines()
    assert lines[0] == "tile 16x8, 128 threads (4 warps), 1 register each; cell = thread:register"
    assert lines[2] == "0     0:0   1:0   2:0   3:0| 32:0  33:0  34:0  35:0"
    assert lines[10] == "    " + "-" * 47
    assert lines[11] == "8    64:0  65:0  66:0  67:0| 96:0  97:0  98:0  99:0"
    assert sum(line.count("|") for line in lines) == 16  # one per row


LAYOUTS = {
    "mma C": mma_m16n8k16_c(),
    "column spatial": column_spatial(4, 2) * local(2, 2),
    "replicated": replicate(2, rank=2) * spatial(2, 2) * local(2, 1),
    "reduced": reduce(spatial(4, 8) * local(1, 2), [1]),
    "rank 3": local(2, 1, 1) * spatial(2, 4, 4),
    "two warps": spatial(1, 2) * spatial(8, 4) * local(1, 2),
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_cell_of_the_grid_names_an_owner_of_that_element(layout):
    lines = format_grid(layout).splitlines()[2:]
    rows = [line for line in lines if not set(line) <= {" ", "-"}]
    leading = list(np.ndindex(*layout.shape[:-1])) or [()]
    assert len(rows) == len(leading)
    for index, line in zip(leading, rows):
        cells = re.findall(r"(\d+):(\d+)(?:\+(\d+))?", line.split("  ", 1)[-1])
        assert len(cells) == layout.shape[-1]
        for col, (thread, register, more) in enumerate(cells):
            owners = layout.owners((*index, col))
            assert owners[0] == (int(thread), int(register))
            assert len(owners) == 1 + int(more or 0)


def test_grid_refuses_a_layout_too_large_to_print():
    with pytest.raises(LayoutError, match=r"at most 65536 .* got 1024 threads x 4096 registers"):
        format_grid(spatial(1024) * local(4096))


def test_show_prints_the_grid(capsys):
    layout = spatial(2, 2) * local(1, 2)
    show(layout)
    assert capsys.readouterr().out == format_grid(layout) + "\n"


# -- layout expressions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spatial(8,4)*local(2,2)", spatial(8, 4) * local(2, 2)),
        ("local(2,1).spatial(8,4).local(1,2)", mma_m16n8k16_c()),
        ("(local(2,1)*spatial(8,4)*local(1,2)) / local(1,2)", local(2, 1) * spatial(8, 4)),
        ("divide(mma_m16n8k16_c(), local(1, 2))", local(2, 1) * spatial(8, 4)),
        ("replicate(2, rank=2) * spatial((2), 2)", replicate(2, rank=2) * spatial(2, 2)),
        ("reduce(spatial(4, 8), [1], keepdims=True)", reduce(spatial(4, 8), (1,))),
        ("local(2, 1)\n  * spatial(8, 4)\n  * local(1, 2)", mma_m16n8k16_c()),
    ],
)
def test_parse_layout_reads_products_methods_division_and_keywords(text, expected):
    assert parse_layout(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "caret_line"),
    [
        ("__import__('os')", "unknown name '__import__' at column 1", "  ^^^^^^^^^^"),
        ("x.__class__", "'__class__' is not a layout method at column 3", "    ^^^^^^^^^"),
        ("spatial(2).__class__", "'__class__' is not a layout method at column 12", None),
        ("spatial(2).shape", "'shape' is not a layout method at column 12", None),
        ("spatial(lambda: 8)", "unsupported syntax 'lambda' at column 9", "          ^^^^^^^^^"),
        ("spatial('8')", "unsupported value string '8' at column 9; only ints", "          ^^^"),
        ("spatial(8.0)", "unsupported value float 8.0 at column 9; only ints", "          ^^^"),
        ("spatial(2) + local(2)", "unsupported operator '+' at column 12", "             ^"),
        ("spatail(2)", "unknown name 'spatail' at column 1; did you mean spatial?", None),
        ("spatial(2)[0]", "unsupported syntax 'subscript' at column 1", None),
        ("spatial(*[2])", "unsupported syntax 'star argument' at column 9", None),
        ("product(spatial, local(2))", "'spatial' is a layout function at column 9", None),
        ("local(2).local", "method 'local' is not called at column 10", None),
        ("-spatial(2)", "unsupported operator '-' at column 1", None),
        ("spatial(2) *", "invalid syntax at column 13", None),
        ("spatial(2)\n * local(2).__dict__", "'__dict__' is not a layout method at line 2", None),
    ],
)
def test_parse_layout_rejects_everything_outside_the_language_with_a_caret(
    text, message, caret_line
):
    with pytest.raises(LayoutError) as info:
        parse_layout(text)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(message), lines[0]
    if caret_line is not None:
        assert lines[1:] == [f"  {text}", caret_line]


def test_parse_layout_never_evaluates_python():
    # The check runs on the whole tree, outermost piece first, before anything is evaluated.
    with pytest.raises(LayoutError, match="'read' is not a layout method at column 21"):
        parse_layout("open('/etc/passwd').read()")
    with pytest.raises(LayoutError, match="unknown name 'open' at column 1"):
        parse_layout("open('/etc/passwd')")
    with pytest.raises(LayoutError, match="'__globals__' is not a layout method"):
        parse_layout("spatial.__globals__")


def test_parse_layout_shows_the_expression_under_errors_of_the_algebra():
    with pytest.raises(LayoutError) as info:
        parse_layout("spatial(2) / local(3)")
    assert str(info.value).splitlines() == [
        f"divide({spatial(2)}, {local(3)}): shape (3,) does not divide (2,)",
        "  spatial(2) / local(3)",
        "  ^^^^^^^^^^^^^^^^^^^^^",
    ]
    with pytest.raises(LayoutError, match=r"bad arguments: replicate\(\) takes"):
        parse_layout("replicate(2, 3, 4)")
    with pytest.raises(
        LayoutError, match="'\\*' needs layouts on both sides; the left side is int"
    ):
        parse_layout("2 * spatial(2)")


def test_parse_layout_wants_a_register_layout_in_the_end():
    with pytest.raises(LayoutError, match="gives a value of type ndarray, not a register layout"):
        parse_layout("spatial(2).table()")
    with pytest.raises(LayoutError, match="empty layout expression"):
        parse_layout("  ")


def test_parse_layout_picks_up_functions_added_to_tilevm_layouts(monkeypatch):
    monkeypatch.setattr(tilevm.layouts, "warp_tile", lambda: spatial(8, 4), raising=False)
    monkeypatch.setattr(tilevm.layouts, "__all__", [*tilevm.layouts.__all__, "warp_tile"])
    assert parse_layout("warp_tile().local(1, 2)") == spatial(8, 4) * local(1, 2)


# -- pictures ------------------------------------------------------------------------------------
def _svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [el.text for el in root.iter("{http://www.w3.org/2000/svg}text") if el.text]


def _cell_labels(texts: list[str]) -> list[str]:
    return sorted(t for t in texts if re.fullmatch(r"\d+:\d+(\+\d+)?", t))


def test_draw_writes_an_svg_with_one_text_label_per_cell(tmp_path):
    pytest.importorskip("matplotlib")
    layout = mma_m16n8k16_c()
    written = draw(layout, tmp_path / "c.svg", title=MMA_C)
    assert written == tmp_path / "c.svg"
    texts = _svg_texts(written)
    g = grid(layout)
    assert _cell_labels(texts) == sorted(g.label(r, c) for r in range(16) for c in range(8))
    assert {"0:0", "0:1", "31:3"} <= set(texts)
    assert any(MMA_C in t for t in texts)
    assert [p.name for p in tmp_path.iterdir()] == ["c.svg"]  # no temporary file left


def test_draw_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = draw(spatial(2).replicate(2) * local(1), tmp_path / "r.PNG")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_labels_replicated_cells_with_the_count_of_other_owners(tmp_path):
    pytest.importorskip("matplotlib")
    texts = _svg_texts(draw(spatial(2).replicate(3) * local(2), tmp_path / "r.svg"))
    assert _cell_labels(texts) == ["0:0+2", "0:1+2", "3:0+2", "3:1+2"]


def test_draw_puts_thick_lines_where_the_warp_changes():
    warp = grid(spatial(2, 1) * spatial(8, 4) * local(1, 2)).warp  # rows 0-7 warp 0, 8-15 warp 1
    inner = _warp_borders(warp)[4:]  # after the four sides of the outline
    assert inner == [[(c, 8), (c + 1, 8)] for c in range(8)]


def test_draw_rejects_other_suffixes_naming_the_accepted_ones(tmp_path):
    with pytest.raises(LayoutError, match=r"draw writes \.svg or \.png files.*got '\.pdf'"):
        draw(spatial(2), tmp_path / "x.pdf")
    with pytest.raises(LayoutError, match="got 'no suffix'"):
        draw(spatial(2), tmp_path / "x")


def test_draw_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        TileVMError, match=r"pip install matplotlib \(or pip install tilevm\[plot\]"
    ):
        draw(spatial(2), tmp_path / "x.svg")


def test_draw_refuses_tiles_too_large_to_read(tmp_path):
    with pytest.raises(LayoutError, match=f"at most {MAX_CELLS} cells.*got shape \\(256, 128\\)"):
        draw(spatial(256, 128), tmp_path / "x.svg")


def test_an_interrupted_draw_leaves_the_old_picture_and_no_temporary_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "c.svg"
    path.write_text("old")

    def crash(self, fname, **kwargs):
        Path(fname).write_text("<svg half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(TileVMError, match=r"cannot write .*c\.svg.*disk full"):
        draw(spatial(2), path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.svg"]


def test_draw_into_a_missing_folder_is_an_error(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(TileVMError, match=r"the folder .*nowhere.* does not exist"):
        draw(spatial(2), tmp_path / "nowhere" / "x.svg")


def test_importing_the_layout_pictures_does_not_import_matplotlib():
    code = (
        "import sys, tilevm.layouts.draw, tilevm.layouts.show, tilevm.layouts.expr; "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- the command line ----------------------------------------------------------------------------
def test_cli_layout_prints_the_grid(capsys):
    assert main(["layout", "spatial(2,2)*local(1,2)"]) == 0
    assert capsys.readouterr().out == format_grid(spatial(2, 2) * local(1, 2)) + "\n"


def test_cli_layout_with_output_draws_and_prints_the_path(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "c.svg"
    assert main(["layout", MMA_C, "-o", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}\n"
    assert "31:3" in _svg_texts(path)
    assert main(["layout", MMA_C, "--output", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_layout_errors_go_to_stderr_with_exit_code_1(capsys, tmp_path):
    assert main(["layout", "spatial(8,4) + local(2,2)"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "tilevm layout: unsupported operator '+' at column 14; "
        "layouts combine with * (product) and / (division)\n"
        "  spatial(8,4) + local(2,2)\n"
        "               ^\n"
    )
    assert main(["layout", "spatial(2)", "-o", str(tmp_path / "x.gif")]) == 1
    assert "got '.gif'" in capsys.readouterr().err


# -- docs/layouts.md -----------------------------------------------------------------------------
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
IMAGE = re.compile(r"!\[([^\]]+)\]\(images/([\w.-]+\.svg)\)")
PUBLIC_PICTURE_NAMES = ("show", "format_grid", "draw", "parse_layout")


def _require_public_names():
    missing = [n for n in PUBLIC_PICTURE_NAMES if n not in getattr(tilevm.layouts, "__all__", ())]
    if missing:
        pytest.skip(
            f"tilevm.layouts does not export {', '.join(missing)} yet (the doc imports them)"
        )


def _run_doc(text: str) -> list[tuple[re.Match, str, re.Match | None]]:
    """Run the python blocks in order; each with its output and the text block after it."""
    blocks = list(FENCE.finditer(text))
    namespace: dict = {"__name__": "docs_layouts"}
    runs = []
    for i, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following is not None and (
            following.group(1) != "text" or text[block.end() : following.start()].strip()
        ):
            following = None
        line = text.count("\n", 0, block.start(2)) + 1
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block.group(2), f"{DOC}:{line}", "exec"), namespace)
        runs.append((block, out.getvalue(), following))
    return runs


def test_every_python_block_of_the_layouts_doc_runs_and_prints_the_text_shown_after_it():
    _require_public_names()
    text = DOC.read_text()
    runs = _run_doc(text)
    assert len(runs) >= 20
    if UPDATE:
        for _block, output, following in reversed(runs):
            if following is not None:
                text = text[: following.start(2)] + output + text[following.end(2) :]
        DOC.write_text(text)
        return
    for block, output, following in runs:
        line = text.count("\n", 0, block.start()) + 1
        if following is None:
            assert output == "", f"the block at line {line} prints but no text block follows"
        else:
            assert output == following.group(2), f"the block at line {line} prints other text"


def test_every_picture_in_the_layouts_doc_is_drawn_from_the_expression_in_its_alt_text():
    pytest.importorskip("matplotlib")
    images = IMAGE.findall(DOC.read_text())
    assert len(images) >= 5
    folder = DOC.parent / "images"
    for expression, name in images:
        path = folder / name
        layout = parse_layout(expression)
        if UPDATE:
            draw(layout, path, title=expression)
        g = grid(layout)
        texts = _svg_texts(path)
        assert _cell_labels(texts) == sorted(
            g.label(r, c) for r in range(g.rows) for c in range(g.cols)
        ), name
        assert any(expression in t for t in texts), name
        assert path.stat().st_size < 400_000, f"{name} is too large for the repository"


def test_the_layouts_doc_shows_the_grids_of_its_main_examples():
    # Checked without running the doc, so it holds even before tilevm.layouts exports show().
    text = DOC.read_text()
    assert format_grid(spatial(2, 2) * local(1, 2)) in text
    assert format_grid(mma_m16n8k16_c()) in text
