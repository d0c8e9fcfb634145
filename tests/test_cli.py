"""The command line: ``python -m tilevm info`` and ``python -m tilevm demo``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tilevm
from tilevm.__main__ import main
from tilevm.dtypes import LOW_BIT_DTYPES


def test_info_reports_versions_and_where_kernels_run(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("tilevm", "python", "numpy", "torch", "cuda-python", "NVRTC", "GPU"):
        assert any(line.startswith(key) for line in out.splitlines()), key
    assert tilevm.__version__ in out
    nvrtc_line = next(line for line in out.splitlines() if line.startswith("NVRTC"))
    assert "sm_80, sm_90" in nvrtc_line  # the wheel compiles for both targets, GPU or not
    from conftest import cuda_available

    if not cuda_available():
        assert "kernels will run on the CPU interpreter" in out


def test_demo_lists_every_low_bit_format_with_range_and_encodings(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for t in LOW_BIT_DTYPES:
        assert f"\n{t.name} " in out, t
    assert "float8_e4m3  f8e4m3  8     7     -448 .. 448" in out
    assert "float4_e2m1  0001 = 0.5" in out  # 0.3 rounds to 0.5
    assert "ac 8f 68" in out  # int3 -4..3 packed


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_python_dash_m_tilevm_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "tilevm", "demo"], capture_output=True, text=True, check=True
    )
    assert "float6_e3m2" in result.stdout


def test_importing_tilevm_does_not_import_torch_or_cuda():
    code = "import sys, tilevm; print(sorted({'torch', 'cuda', 'sympy'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_examples_run(tmp_path):
    from pathlib import Path

    for script in sorted((Path(__file__).parent.parent / "examples").glob("*.py")):
        subprocess.run([sys.executable, str(script)], capture_output=True, check=True, cwd=tmp_path)


def test_the_format_table_in_the_docs_is_current():
    from pathlib import Path

    from tilevm.__main__ import format_dtype_table

    docs = (Path(__file__).parent.parent / "docs" / "dtypes.md").read_text()
    assert format_dtype_table() in docs


def test_the_readme_examples_run(tmp_path, capsys):
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):  # as scripts: kernels read their own source
        script = tmp_path / f"readme_{i}.py"
        script.write_text(block)
        runpy.run_path(str(script), run_name="__main__")


def test_demo_runs_the_example_kernels_on_the_interpreter(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "vector_add           n=1000     max |error| vs numpy = 0" in out
    for label in ("softmax", "matmul_fp16", "W3A16 int3", "W6A16 float6_e3m2"):
        assert f"\n{label} " in out


def test_compile_prints_a_kernels_planned_ir_for_given_constants(capsys):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "lowbit_gemm.py"
    assert main(["compile", f"{example}::lowbit_gemm", "-D", "WTYPE=int5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kernel lowbit_gemm(x: ptr<float16>")
    assert "constants: WTYPE=int5" in out and "view raw : int5[64, 128] layout=" in out
    assert "# dequant.int_f16" in out and "ldmatrix.x4" in out  # the passes' decisions show


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "nofile.py"], "TARGET must be FILE::KERNEL; got 'nofile.py'"),
        (["compile", "missing.py::k"], "no Python file at 'missing.py'"),
        (["compile", "examples/vector_add.py::nope"], "has no @tilevm.kernel named 'nope'"),
        (["compile", "examples/vector_add.py::vector_add", "-D", "BLOCK"], "-D takes NAME=VALUE"),
    ],
)
def test_compile_reports_bad_targets(argv, message, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parent.parent)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_compile_emits_the_generated_cuda_and_its_ptx(capsys):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "matmul_fp16.py"
    assert main(["compile", f"{example}::matmul", "--emit", "cuda"]) == 0
    source = capsys.readouterr().out
    assert "__global__" in source and "mma.sync.aligned.m16n8k16" in source
    assert main(["compile", f"{example}::matmul", "--emit", "ptx", "--arch", "sm_80"]) == 0
    captured = capsys.readouterr()
    assert ".target sm_80" in captured.out and "cp.async.cg.shared.global" in captured.out
    assert "0 spill bytes" in captured.err
