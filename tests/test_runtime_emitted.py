"""The emission cache: a program's generated CUDA on disk, so a new process skips the passes."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import tilevm
import tilevm.lang as tl
from tilevm.__main__ import main
from tilevm.codegen import emit_cuda
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime import emitted

REPO = Path(__file__).resolve().parent.parent


@tilevm.kernel
def axpy(
    x: tilevm.Ptr[tilevm.float16],
    y: tilevm.Ptr[tilevm.float16],
    a: tilevm.float32,
    n: tilevm.int32,
    BLOCK: tilevm.constexpr = 256,
):
    start = tl.block_idx() * BLOCK
    gx, gy = tl.global_view(x, [n]), tl.global_view(y, [n])
    out = tl.cast(tl.load(gx, [start], [BLOCK]), tilevm.float32) * a
    tl.store(gy, tl.cast(out, tilevm.float16) + tl.load(gy, [start], [BLOCK]), [start])


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache directory and an empty memory cache; returns the emission directory."""
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(emitted, "_MEMORY", {})
    return tmp_path / "emitted"


def test_an_emission_is_what_the_passes_and_the_emitter_make(fresh):
    program = axpy.program(BLOCK=128)
    got = emitted.emit_program(program)
    assert got == emit_cuda(run_pipeline(program))
    assert len(list(fresh.glob("*.json"))) == 1
    assert emitted.emit_program(program) is got  # memory


def test_a_new_process_reads_the_entry_instead_of_emitting(fresh, monkeypatch):
    program = axpy.program(BLOCK=256)
    first = emitted.emit_program(program)
    monkeypatch.setattr(emitted, "_MEMORY", {})  # as in a new process

    def no_passes(program):
        raise AssertionError("the passes ran again")

    monkeypatch.setattr("tilevm.passes.pipeline.run_pipeline", no_passes)
    again = emitted.emit_program(axpy.program(BLOCK=256))
    assert again == first and again is not first


def test_the_key_follows_the_program_and_the_compilers_sources(monkeypatch):
    one, other = axpy.program(BLOCK=128), axpy.program(BLOCK=256)
    assert emitted.program_key(one) == emitted.program_key(axpy.program(BLOCK=128))
    assert emitted.program_key(one) != emitted.program_key(other)
    before = emitted.program_key(one)
    monkeypatch.setattr(emitted, "hash_compiler_sources", lambda: "an edited emitter")
    assert emitted.program_key(one) != before


def test_the_key_is_the_same_in_a_process_with_another_history():
    # Here the program has been through the passes and the emitter (its layouts cache tables
    # and the like on themselves); a fresh process only builds it.
    program = axpy.program(BLOCK=1024)
    emit_cuda(run_pipeline(program))
    code = (
        "import sys; sys.path.insert(0, 'tests'); from test_runtime_emitted import axpy; "
        "from tilevm.runtime.emitted import program_key; "
        "print(program_key(axpy.program(BLOCK=1024)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == emitted.program_key(program)


def test_equal_constants_that_are_other_objects_give_the_same_key():
    # What an autotuner worker sees: its constants arrive pickled, equal but not identical.
    from tilevm.ops.qgemm import _make_gemm

    constants = dict(GROUP=64, HAS_ZEROS=False, ZERO_OFFSET=0, HAS_BIAS=False, BLOCK_M=8, WARPS=1)
    here = _make_gemm(tilevm.float16).program(WTYPE=tilevm.int3, **constants)
    copied = pickle.loads(pickle.dumps(tilevm.int3))
    assert copied is not tilevm.int3
    there = _make_gemm(tilevm.float16).program(WTYPE=copied, **constants)  # a fresh kernel
    assert there is not here
    assert emitted.program_key(here) == emitted.program_key(there)


def test_a_program_holding_a_value_of_unknown_kind_is_not_cached_on_disk(fresh):
    program = axpy.program(BLOCK=8)
    odd = copy.copy(program)
    odd.constants = {**program.constants, "BLOCK": object()}
    assert emitted.fingerprint(odd) is None and emitted.program_key(odd) is None
    assert emitted.fingerprint(program) is not None


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda text: text[: len(text) // 2], "not JSON"),
        (lambda text: text.replace("tv_", "tw_", 1), "checksum mismatch"),
        (lambda text: text.replace('"format": 1', '"format": 7'), "not an emission entry"),
        (lambda text: "[]", "not an emission entry"),
    ],
)
def test_a_damaged_entry_is_emitted_again_and_rewritten(fresh, caplog, monkeypatch, damage, why):
    program = axpy.program(BLOCK=64)
    good = emitted.emit_program(program)
    (path,) = fresh.glob("*.json")
    path.write_text(damage(path.read_text()))
    monkeypatch.setattr(emitted, "_MEMORY", {})
    assert emitted.emit_program(program) == good
    assert why in caplog.text
    assert emitted.decode(path.stem, path.read_text()) == good


def test_an_entry_under_another_key_is_refused(fresh):
    program = axpy.program(BLOCK=32)
    kernel = emitted.emit_program(program)
    text = emitted.encode("a" * 64, kernel)
    with pytest.raises(ValueError, match="another key"):
        emitted.decode("b" * 64, text)
    fields = json.loads(text)
    assert fields["kernel"]["name"] == "axpy" and fields["format"] == emitted.FORMAT


def test_an_unwritable_cache_directory_still_emits(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(blocker))
    monkeypatch.setattr(emitted, "_MEMORY", {})
    program = axpy.program(BLOCK=512)
    assert emitted.emit_program(program) == emit_cuda(run_pipeline(program))
    assert "cannot write emission cache entry" in caplog.text


def test_cli_cache_clear_removes_the_emissions_too(fresh, capsys):
    emitted.emit_program(axpy.program(BLOCK=16))
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 translation" in out
    assert not list(fresh.glob("*.json"))
