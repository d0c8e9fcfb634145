"""The compile cache: keys, the entry file, corruption, processes racing, and ``tilevm cache``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tilevm.runtime.cache as cache_mod
from tilevm.__main__ import main
from tilevm.runtime.cache import (
    FORMAT_LINE,
    CacheError,
    DiskCache,
    cache_dir,
    cache_key,
    compile_cached,
    decode_entry,
    default_cache,
    encode_entry,
    module_key,
)
from tilevm.runtime.compiler import CompiledModule, CudaCompileError, Target, compile_cuda

REPO = Path(__file__).resolve().parent.parent


def kernel_source(tag: str) -> str:
    """A small header-free kernel; ``tag`` makes the source (and so the key) distinct."""
    return (
        f"// {tag}\n"
        'extern "C" __global__ void scale(float* __restrict__ out, const float* __restrict__ in,'
        " int n) {\n"
        "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
        "  if (i < n) out[i] = 3.0f * in[i];\n"
        "}\n"
    )


@pytest.fixture(scope="module")
def module() -> CompiledModule:
    return compile_cuda(kernel_source("fixture"), "scale", "sm_80")


@pytest.fixture
def key(module) -> str:
    return module_key(kernel_source("fixture"), "scale", module.target, module.options)


@pytest.fixture
def env_cache(tmp_path, monkeypatch) -> Path:
    """TILEVM_CACHE_DIR pointed at a fresh directory; returns where the entries go."""
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(tmp_path))
    return tmp_path / "modules"


def entry_files(root: Path) -> list[Path]:
    return sorted(root.glob("*.entry"))


def same_module(a: CompiledModule, b: CompiledModule) -> bool:
    """Equal binaries and metadata (the log differs between compilations: it has ptxas' time)."""
    return (a.cubin, a.ptx, a.name, a.target, a.options) == (
        b.cubin,
        b.ptx,
        b.name,
        b.target,
        b.options,
    )


# -- keys ----------------------------------------------------------------------------------------
def test_the_key_changes_with_every_part(module, monkeypatch):
    args = (kernel_source("k"), "scale", Target("sm_80"), module.options)
    base = module_key(*args)
    variants = {
        "source": module_key(kernel_source("k2"), *args[1:]),
        "name": module_key(args[0], "scale2", *args[2:]),
        "target": module_key(*args[:2], Target("sm_90a"), args[3]),
        "options": module_key(*args[:3], (*module.options, "-lineinfo")),
    }
    for part, value in [
        ("nvrtc_version", lambda: (99, 0)),
        ("hash_compiler_sources", lambda: "0" * 64),
        ("__version__", "9.9.9"),
    ]:
        with monkeypatch.context() as m:
            m.setattr(cache_mod, part, value)
            variants[part] = module_key(*args)
    assert module_key(*args) == base
    assert len({base, *variants.values()}) == 1 + len(variants), variants


def test_the_key_encoding_is_canonical():
    assert cache_key("a", (1, 2), Target("sm_80")) == cache_key("a", [1, 2], "sm_80")
    assert cache_key({"x": 1, "y": 2}) == cache_key({"y": 2, "x": 1})
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key(1) != cache_key("1")
    with pytest.raises(TypeError, match="cannot put a object in a cache key"):
        cache_key(object())


def test_the_cache_dir_is_the_env_var_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TILEVM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "tilevm"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "tilevm"


def test_a_key_must_be_a_sha256_digest(tmp_path, module):
    with pytest.raises(CacheError, match=r"got '\.\./evil'"):
        DiskCache(tmp_path).put("../evil", module)


# -- put and get ---------------------------------------------------------------------------------
def test_put_then_get_from_another_process_view_round_trips(tmp_path, module, key):
    DiskCache(tmp_path).put(key, module)
    (path,) = entry_files(tmp_path)
    assert path.name == f"{key}.entry"
    assert path.read_bytes().startswith(FORMAT_LINE)
    got = DiskCache(tmp_path).get(key)  # a new object: no memory layer, read from disk
    assert got == module
    assert got.report == module.report
    assert got.compile_time_s == module.compile_time_s
    assert DiskCache(tmp_path).get("0" * 64) is None


def test_a_second_get_is_served_from_memory_without_touching_disk(
    tmp_path, module, key, monkeypatch
):
    DiskCache(tmp_path).put(key, module)
    cache = DiskCache(tmp_path)
    first = cache.get(key)

    def no_disk(*args, **kwargs):
        raise AssertionError("read the disk")

    monkeypatch.setattr(cache_mod, "open", no_disk, raising=False)
    assert cache.get(key) is first
    entry_files(tmp_path)[0].unlink()
    assert cache.get(key) is first


def test_the_entry_metadata_is_readable_json(module, key):
    data = encode_entry(key, module)
    meta = json.loads(data.split(b"\n")[2])
    assert meta["name"] == "scale" and meta["target"] == "sm_80" and meta["key"] == key
    assert meta["sections"] == {
        "cubin": len(module.cubin),
        "ptx": len(module.ptx.encode()),
        "log": len(module.log.encode()),
    }
    assert meta["nvrtc_version"] == list(module.nvrtc_version)


# -- corruption ----------------------------------------------------------------------------------
def _reseal(data: bytes, edit) -> bytes:
    """Apply ``edit`` to an entry's body and write a matching checksum, to reach later checks."""
    body = data.split(b"\n", 2)[2]
    body = edit(body)
    return FORMAT_LINE + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _edit_meta(change):
    def edit(body: bytes) -> bytes:
        header, payload = body.split(b"\n", 1)
        meta = json.loads(header)
        change(meta)
        return json.dumps(meta).encode() + b"\n" + payload

    return edit


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


CORRUPTIONS = {
    "empty": lambda d: b"",
    "truncated": lambda d: d[: len(d) // 2],
    "payload byte flipped": lambda d: _flip(d, len(d) - 10),
    "metadata byte flipped": lambda d: _flip(d, len(FORMAT_LINE) + 70),
    "checksum byte flipped": lambda d: _flip(d, len(FORMAT_LINE) + 3),
    "other format": lambda d: b"tilevm-cache-entry 2\n" + d[len(FORMAT_LINE) :],
    "garbage json": lambda d: _reseal(d, lambda b: b"{not json\n" + b.split(b"\n", 1)[1]),
    "json not an object": lambda d: _reseal(d, lambda b: b"[1, 2]\n" + b.split(b"\n", 1)[1]),
    "another key": lambda d: _reseal(d, _edit_meta(lambda m: m.update(key="f" * 64))),
    "bad lengths": lambda d: _reseal(d, _edit_meta(lambda m: m["sections"].update(ptx=1))),
    "bad target": lambda d: _reseal(d, _edit_meta(lambda m: m.update(target="sm_8"))),
    "missing field": lambda d: _reseal(d, _edit_meta(lambda m: m.pop("options"))),
    "not a cubin": lambda d: _reseal(d, lambda b: b.replace(b"\x7fELF", b"\x7fELG", 1)),
    "invalid utf-8": lambda d: _reseal(d, lambda b: b[:-1] + b"\xff"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_entry_is_a_miss_and_is_deleted(tmp_path, module, key, corrupt, caplog):
    DiskCache(tmp_path).put(key, module)
    (path,) = entry_files(tmp_path)
    path.write_bytes(corrupt(path.read_bytes()))
    assert DiskCache(tmp_path).get(key) is None
    assert not path.exists()
    assert "is corrupt" in caplog.text


def test_compile_cached_rebuilds_a_corrupt_entry(env_cache):
    source = kernel_source("rebuild")
    first = compile_cached(source, "scale", "sm_80")
    (path,) = entry_files(env_cache)
    path.write_bytes(path.read_bytes()[:-100])
    rebuilt = compile_cached(source, "scale", "sm_80", cache=DiskCache(env_cache))
    assert same_module(rebuilt, first)
    assert rebuilt is not first
    assert DiskCache(env_cache).get(path.stem) == rebuilt


# -- compile_cached ------------------------------------------------------------------------------
def test_compile_cached_compiles_once_then_hits_memory_then_disk(env_cache, monkeypatch):
    source = kernel_source("once")
    first = compile_cached(source, "scale", "sm_80")
    assert len(entry_files(env_cache)) == 1
    calls = []
    monkeypatch.setattr(cache_mod, "compile_cuda", lambda *a, **k: calls.append(a))
    assert compile_cached(source, "scale", Target("sm_80")) is first  # memory
    assert compile_cached(source, "scale", "sm_80", cache=DiskCache(env_cache)) == first  # disk
    assert calls == []


def test_compile_cached_follows_the_cache_dir_variable(env_cache, tmp_path, monkeypatch):
    assert default_cache().root == env_cache
    assert default_cache() is default_cache()
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(tmp_path / "other"))
    assert default_cache().root == tmp_path / "other" / "modules"


def test_a_compile_error_is_not_cached(env_cache):
    with pytest.raises(CudaCompileError):
        compile_cached("this is not C++", "scale", "sm_80")
    assert not env_cache.exists() or entry_files(env_cache) == []


def test_an_unwritable_cache_is_a_warning_not_an_error(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("the cache root cannot be created here")
    cache = DiskCache(blocker / "modules")
    module = compile_cached(kernel_source("unwritable"), "scale", "sm_80", cache=cache)
    assert module.cubin
    assert "cannot write" in caplog.text
    assert cache.entries() == [] and cache.size_bytes() == 0


# -- processes racing ----------------------------------------------------------------------------
RACE_COMPILE = """
import hashlib, json, os, sys, time
from tilevm.runtime.cache import compile_cached
source, go = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
module = compile_cached(source, "scale", "sm_80")
print(json.dumps({"cubin": hashlib.sha256(module.cubin).hexdigest(), "ptx": module.ptx}))
"""

RACE_PUT_GET = """
import os, sys, time
from tilevm.runtime.cache import DiskCache
from tilevm.runtime.compiler import CompiledModule, Target
from tilevm.runtime.ptxas import PtxasReport
root, key, me, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Each process writes a different, differently sized module under the same key.
module = CompiledModule(
    name=f"writer{me}", target=Target("sm_80"), cubin=b"\\x7fELF" + bytes([me]) * 20000 * (me + 1),
    ptx="p" * 5000 * me, log="", report=PtxasReport(), nvrtc_version=(13, 5), options=(),
)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
misses = 0
for _ in range(150):
    DiskCache(root).put(key, module)
    got = DiskCache(root).get(key)  # a new object each time: always read from disk
    if got is None or got.cubin[4:] != bytes([int(got.name[6:])]) * len(got.cubin[4:]):
        misses += 1
print(misses)
"""


def _race(script: str, args_per_process: list[list[str]], go: Path, env: dict) -> list[str]:
    """Start the processes, wait until each is ready, release them at once; their stdout."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in args_per_process
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outs.append(out)
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _env(cache: Path) -> dict:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TILEVM_CACHE_DIR": str(cache), "PYTHONPATH": pythonpath}


def test_two_processes_compiling_one_source_at_once_both_succeed_leaving_one_entry(tmp_path):
    source = kernel_source("race")
    outs = _race(
        RACE_COMPILE, [[source, str(tmp_path / "go")]] * 2, tmp_path / "go", _env(tmp_path)
    )
    results = [json.loads(out) for out in outs]
    assert results[0] == results[1]
    root = tmp_path / "modules"
    (path,) = entry_files(root)
    assert sorted(os.listdir(root)) == [path.name]  # no temporary file left behind
    stored = DiskCache(root).get(path.stem)
    assert hashlib.sha256(stored.cubin).hexdigest() == results[0]["cubin"]


def test_processes_writing_and_reading_one_key_never_see_a_torn_entry(tmp_path):
    root, key = tmp_path / "modules", "ab" * 32
    args = [[str(root), key, str(me), str(tmp_path / "go")] for me in range(1, 4)]
    outs = _race(RACE_PUT_GET, args, tmp_path / "go", _env(tmp_path))
    assert [int(out) for out in outs] == [0, 0, 0]
    assert os.listdir(root) == [f"{key}.entry"]
    assert DiskCache(root).get(key).name in {"writer1", "writer2", "writer3"}


# -- listing and clearing ------------------------------------------------------------------------
def test_entries_list_newest_first_and_mark_corrupt_ones(tmp_path, module, key):
    cache = DiskCache(tmp_path)
    cache.put(key, module)
    other = "c" * 64
    cache.put(other, module)
    os.utime(tmp_path / f"{key}.entry", (1, 1))  # make it the older one
    (tmp_path / f"{other}.entry").write_bytes(b"garbage")
    entries = cache.entries()
    assert [e.key for e in entries] == [other, key]
    assert entries[0].module is None and entries[1].module == module
    assert entries[1].size_bytes == (tmp_path / f"{key}.entry").stat().st_size


def test_clear_removes_entries_and_temporary_files_only(tmp_path, module, key):
    cache = DiskCache(tmp_path)
    cache.put(key, module)
    stray = tmp_path / f".{key[:16]}.abc123.tmp"
    stray.write_bytes(b"12345")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    size = cache.size_bytes()
    assert size == (tmp_path / f"{key}.entry").stat().st_size + 5
    assert cache.clear() == (1, size)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert cache.get(key) is None  # the memory layer went too
    assert cache.clear() == (0, 0)


def test_cli_cache_list_shows_one_line_per_entry(env_cache, capsys):
    compile_cached(kernel_source("cli-a"), "scale", "sm_80")
    compile_cached(kernel_source("cli-b"), "scale", "sm_90a")
    capsys.readouterr()
    assert main(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "key",
        "kernel",
        "target",
        "size",
        "registers",
        "spills",
        "st/ld",
        "age",
    ]
    rows = [line.split() for line in lines[2:4]]
    assert sorted(r[2] for r in rows) == ["sm_80", "sm_90a"]
    for row in rows:
        assert len(row[0]) == 12 and row[1] == "scale"
        assert row[4] == "KiB" and int(row[5]) > 0  # size "3.5 KiB", then registers
        assert row[6:8] == ["0/0", "B"]
        assert row[-1] == "s"
    assert lines[-1].startswith("2 entries, ") and lines[-1].endswith(f"in {env_cache}")


def test_cli_cache_clear_says_what_it_removed(env_cache, capsys):
    compile_cached(kernel_source("cli-clear"), "scale", "sm_80")
    size = DiskCache(env_cache).size_bytes()
    capsys.readouterr()
    assert main(["cache", "clear"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"removed 1 entry ({size / 1024:.1f} KiB) from {env_cache}"
    assert second == f"removed 0 translations (0 B) from {env_cache.parent / 'emitted'}"
    assert entry_files(env_cache) == []
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out == f"no entries in {env_cache}\n"


def test_decode_rejects_bytes_stored_under_another_key(module, key):
    with pytest.raises(ValueError, match="holds key"):
        decode_entry("d" * 64, encode_entry(key, module))


class _Report:
    def __init__(self, spill_bytes: int):
        self.spill_bytes = spill_bytes


class _Module:
    def __init__(self, options, spill_bytes):
        self.options, self.report = tuple(options), _Report(spill_bytes)


@pytest.mark.parametrize(
    ("first", "retry", "kept"),
    [(0, None, "first"), (8, 0, "retry"), (8, 16, "first"), (8, 8, "first")],
)
def test_a_spilling_kernel_is_compiled_again_without_the_occupancy_target(
    monkeypatch, first, retry, kept
):
    calls = []

    def fake(source, name, target, *, options=()):
        calls.append(tuple(options))
        return _Module(options, first if not options else retry)

    monkeypatch.setattr(cache_mod, "compile_cached", fake)
    module = cache_mod.compile_kernel("src", "k", "sm_80")
    assert calls == ([()] if retry is None else [(), cache_mod.NO_SPILL_RETRY])
    assert module.options == (() if kept == "first" else cache_mod.NO_SPILL_RETRY)
