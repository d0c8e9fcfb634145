"""``@tilevm.autotune``: choosing, bucketing, persisting and compiling configs.

Everything a GPU does while tuning goes through a platform object; ``FakeGPU``
replaces it with the CPU interpreter and a table of times per config, so the
whole tuning path runs here. NVRTC compiles (no GPU needed) are real.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import tilevm
import tilevm.lang as tl
from tilevm.autotune import (
    AutotuneError,
    Autotuner,
    AutotuneWarning,
    CudaPlatform,
    compile_configs,
    compile_one,
    kernel_reference,
    next_power_of_two,
)
from tilevm.lang import LaunchError

autotune_module = sys.modules["tilevm.autotune"]  # tilevm.autotune is the decorator


@tilevm.kernel
def bump(
    x: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    n: tilevm.int32,
    tag: tilevm.int32,
    BLOCK: tilevm.constexpr = 64,
    BAD: tilevm.constexpr = False,
):
    """out = x + BLOCK (so the output tells which config ran), then x += 1 in place."""
    start = tl.block_idx() * BLOCK
    gx = tl.global_view(x, [n])
    go = tl.global_view(out, [n])
    a = tl.load(gx, [start], [BLOCK])
    if BAD:
        a = tl.load(gx, [start], [BLOCK, BLOCK])  # a compile error: rank 2 tile of a rank 1 view
    tl.store(go, a + BLOCK, [start])
    tl.store(gx, a + 1.0, [start])


CONFIGS = [{"BLOCK": 32}, {"BLOCK": 64}, {"BLOCK": 128}]
TIMES = {32: 5.0, 64: 2.0, 128: 3.0}  # µs per BLOCK: 64 wins


def grid(args):
    return ((args["n"] + args["BLOCK"] - 1) // args["BLOCK"],)


class FakeGPU(CudaPlatform):
    """Every launch 'is on GPU 0'; candidates run on the interpreter; times come from a table."""

    def __init__(self, times=None, name="Fake GPU 80GB HBM3", capturing=False, broken=()):
        self.times = dict(TIMES if times is None else times)
        self.name = name
        self.is_capturing = capturing
        self.broken = set(broken)  # BLOCK values whose launch fails (as too much shared memory)
        self.timed: list[int] = []
        self.compiled: list[dict] = []

    def device(self, values):
        return 0

    def current_device(self):
        return 0

    def device_name(self, device):
        return self.name

    def capturing(self, device):
        return self.is_capturing

    def compile(self, kernel, configs, device, on_done=None):
        errors = []
        for i, config in enumerate(configs):
            self.compiled.append(dict(config))
            try:
                kernel.program(**config)
                errors.append(None)
            except tilevm.TileVMError as err:
                errors.append(str(err))
            if on_done is not None:
                on_done(i + 1)
        return errors

    def launch(self, kernel, grid, values):
        self.last = values["BLOCK"]
        if self.last in self.broken:
            raise tilevm.TileVMError(f"BLOCK={self.last} needs too much shared memory")
        kernel.launch(grid, (), values, "cpu")

    def time(self, run):
        run()
        self.timed.append(self.last)
        return self.times[self.last]


def tuner(platform=None, configs=CONFIGS, key=("n",), **kwargs) -> Autotuner:
    return Autotuner(bump, configs, list(key), platform=platform or FakeGPU(), **kwargs)


def run(tuned: Autotuner, n: int = 100, tag: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    tuned[grid](x, out, n, tag)
    return x, out


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TILEVM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEVM_AUTOTUNE", raising=False)
    return tmp_path / "cache"


# -- choosing ------------------------------------------------------------------------------------
def test_the_fastest_config_wins_and_the_launch_runs_it(capsys):
    gpu = FakeGPU()
    tuned = tuner(gpu)
    _, out = run(tuned, n=100)
    assert sorted(gpu.timed) == [32, 64, 128]
    assert tuned.best_config(n=100) == {"BLOCK": 64}
    np.testing.assert_array_equal(out, np.arange(100) + 64)
    err = capsys.readouterr().err
    assert "tuning bump (n=128): 3/3 configs, best #1 (BLOCK=64), 2.0 µs" in err


def test_a_second_launch_in_the_same_bucket_does_not_tune_again():
    gpu = FakeGPU()
    tuned = tuner(gpu)
    run(tuned, n=100)
    run(tuned, n=128)
    run(tuned, n=65)
    assert len(gpu.timed) == 3


def test_the_choice_is_persisted_and_read_back_by_a_fresh_autotuner(cache_dir):
    run(tuner(FakeGPU()), n=100)

    class MustNotTune(FakeGPU):
        def compile(self, *args, **kwargs):
            raise AssertionError("a persisted choice must not be tuned again")

    fresh = tuner(MustNotTune())  # as a new process: empty memory, same cache directory
    assert fresh.best_config(n=120) == {"BLOCK": 64}
    _, out = run(fresh, n=120)
    np.testing.assert_array_equal(out, np.arange(120) + 64)

    (path,) = (cache_dir / "autotune" / "Fake_GPU_80GB_HBM3").glob("bump-*.json")
    assert path == fresh.path("Fake GPU 80GB HBM3")
    data = json.loads(path.read_text())
    assert data["format"] == "tilevm-autotune 1"
    assert data["kernel"] == "bump"
    assert data["device"] == "Fake GPU 80GB HBM3"
    assert data["configs"] == CONFIGS
    assert data["best"] == {"n=128": {"config": 1, "times_us": [5.0, 2.0, 3.0]}}


def test_choices_are_per_device_name():
    run(tuner(FakeGPU(name="GPU A")), n=100)
    other = tuner(FakeGPU(name="GPU B", times={32: 1.0, 64: 2.0, 128: 3.0}))
    assert other.best_config(n=100) is None  # never tuned on a GPU B
    run(other, n=100)
    assert other.best_config(n=100) == {"BLOCK": 32}
    assert tuner(FakeGPU(name="GPU A")).best_config(n=100) == {"BLOCK": 64}


def test_the_file_name_changes_with_the_configs():
    a = tuner(FakeGPU()).path("gpu")
    b = tuner(FakeGPU(), configs=[{"BLOCK": 32}, {"BLOCK": 64}]).path("gpu")
    assert a.parent == b.parent and a.name != b.name
    assert a.name.startswith("bump-") and a.suffix == ".json"


# -- bucketing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0, 0), (1, 1), (2, 2), (3, 4), (16, 16), (17, 32), (4096, 4096), (14336, 16384)],
)
def test_ints_round_up_to_a_power_of_two(value, bucket):
    assert next_power_of_two(value) == bucket


def test_a_dynamic_size_is_bucketed():
    gpu = FakeGPU()
    tuned = tuner(gpu)
    for n in (9, 16, 12, 17, 32):  # buckets 16, 16, 16, 32, 32
        run(tuned, n=n)
    assert len(gpu.timed) == 2 * len(CONFIGS)
    # Compiled once: the key values are runtime values; the launch's own constants come along.
    assert gpu.compiled == [{"BAD": False, **c} for c in CONFIGS]
    assert tuned.best_config(n=10) == tuned.best_config(n=30) == {"BLOCK": 64}


def test_a_key_may_have_its_own_bucket_function():
    gpu = FakeGPU()
    tuned = tuner(gpu, key=("n", "tag"), bucket={"tag": lambda t: "even" if t % 2 == 0 else "odd"})
    for tag in (0, 2, 1, 4, 3):
        run(tuned, n=50, tag=tag)
    assert len(gpu.timed) == 2 * len(CONFIGS)
    data = json.loads(tuned.path(gpu.name).read_text())
    assert sorted(data["best"]) == ['n=64, tag="even"', 'n=64, tag="odd"']


def test_numpy_ints_bucket_like_ints():
    tuned = tuner(FakeGPU())
    run(tuned, n=100)
    assert tuned.best_config(n=np.int64(100)) == {"BLOCK": 64}


# -- when tuning does not happen -----------------------------------------------------------------
def test_tilevm_autotune_0_uses_the_default_config_without_tuning(monkeypatch):
    monkeypatch.setenv("TILEVM_AUTOTUNE", "0")
    gpu = FakeGPU()
    tuned = tuner(gpu, default=2)
    _, out = run(tuned, n=100)
    np.testing.assert_array_equal(out, np.arange(100) + 128)
    assert gpu.compiled == [] and gpu.timed == []
    assert tuned.best_config(n=100) == {"BLOCK": 128}


def test_the_cpu_interpreter_uses_the_default_config_without_tuning(cache_dir):
    tuned = Autotuner(bump, CONFIGS, ["n"], default=2)  # the real platform: numpy args are CPU
    _, out = run(tuned, n=100)
    np.testing.assert_array_equal(out, np.arange(100) + 128)
    assert not (cache_dir / "autotune").exists()


def test_an_explicit_cpu_backend_is_not_tuned():
    gpu = FakeGPU()
    tuned = tuner(gpu, default=0)
    x, out = np.zeros(10, np.float32), np.zeros(10, np.float32)
    tuned[grid](x, out, 10, 0, backend="cpu")
    assert gpu.timed == []
    np.testing.assert_array_equal(out, np.full(10, 32.0))


def test_a_launch_during_graph_capture_uses_the_default_and_remembers_nothing():
    gpu = FakeGPU(capturing=True)
    tuned = tuner(gpu, default=2)
    with pytest.warns(AutotuneWarning, match="CUDA graph capture"):
        _, out = run(tuned, n=100)
    np.testing.assert_array_equal(out, np.arange(100) + 128)
    assert gpu.timed == [] and tuned.best_config(n=100) is None


# -- failures ------------------------------------------------------------------------------------
def test_configs_that_fail_to_compile_or_launch_are_skipped_with_a_warning():
    gpu = FakeGPU(times={32: 9.0, 64: 1.0, 128: 3.0}, broken={64})
    configs = [*CONFIGS, {"BLOCK": 16, "BAD": True}]
    tuned = tuner(gpu, configs=configs)
    with pytest.warns(AutotuneWarning) as record:
        _, out = run(tuned, n=100)
    messages = [str(w.message) for w in record]
    assert any(
        "config #1 {'BLOCK': 64}: TileVMError: BLOCK=64 needs too much" in m for m in messages
    )
    assert any("config #3" in m and "tile rank 2 != tensor rank 1" in m for m in messages)
    assert tuned.best_config(n=100) == {"BLOCK": 128}
    np.testing.assert_array_equal(out, np.arange(100) + 128)
    times = json.loads(tuned.path(gpu.name).read_text())["best"]["n=128"]["times_us"]
    assert times == [9.0, None, 3.0, None]


def test_configs_compile_with_the_constants_the_launch_passes():
    gpu = FakeGPU()
    tuned = tuner(gpu)
    x, out = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.warns(AutotuneWarning), pytest.raises(AutotuneError, match="every config failed"):
        tuned[grid](x, out, 4, 0, BAD=True)
    assert gpu.compiled == [{"BAD": True, **c} for c in CONFIGS]


def test_when_every_config_fails_the_error_lists_each_reason():
    tuned = tuner(FakeGPU(broken={32, 64, 128}))
    with pytest.warns(AutotuneWarning), pytest.raises(AutotuneError) as exc:
        run(tuned, n=100)
    message = str(exc.value)
    assert "every config failed" in message
    for block in (32, 64, 128):
        assert f"BLOCK={block} needs too much shared memory" in message


def test_a_corrupt_file_is_ignored_and_rewritten():
    gpu = FakeGPU()
    path = tuner(gpu).path(gpu.name)
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "tilevm-autotune 1", "best": {"n=128": ')  # torn
    tuned = tuner(gpu)
    with pytest.warns(AutotuneWarning, match="corrupt"):
        run(tuned, n=100)
    assert json.loads(path.read_text())["best"]["n=128"]["config"] == 1


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"format": "something else", "best": {}}',
        '{"format": "tilevm-autotune 1", "best": {"n=128": {"config": "fast"}}}',
        '{"format": "tilevm-autotune 1", "best": {"n=128": 3}}',
    ],
)
def test_a_file_of_the_wrong_shape_counts_as_corrupt(content):
    gpu = FakeGPU()
    path = tuner(gpu).path(gpu.name)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.warns(AutotuneWarning, match="corrupt"):
        assert tuner(gpu).best_config(n=100) is None


def test_an_entry_naming_a_config_out_of_range_is_dropped():
    gpu = FakeGPU()
    path = tuner(gpu).path(gpu.name)
    path.parent.mkdir(parents=True)
    best = {"n=128": {"config": 7}, "n=256": {"config": 2}}
    path.write_text(json.dumps({"format": "tilevm-autotune 1", "best": best}))
    tuned = tuner(gpu)
    assert tuned.best_config(n=100) is None
    assert tuned.best_config(n=200) == {"BLOCK": 128}


# -- the caller's tensors ------------------------------------------------------------------------
def test_tuning_never_writes_into_the_callers_tensors():
    torch = pytest.importorskip("torch")
    gpu = FakeGPU()
    tuned = tuner(gpu)
    x = torch.arange(100, dtype=torch.float32)
    out = torch.full((100,), -1.0)
    tuned[grid](x, out, 100, 0)
    assert len(gpu.timed) == 3  # each candidate ran twice (warm-up, timing) on the clones
    # Only the final launch touched them: x incremented once, out from the original x.
    torch.testing.assert_close(x, torch.arange(100, dtype=torch.float32) + 1)
    torch.testing.assert_close(out, torch.arange(100, dtype=torch.float32) + 64)


# -- processes sharing the file ------------------------------------------------------------------
def _tune_tags(cache: str, tags: list[int], start) -> None:
    """In a spawned process: tune one bucket per tag, each write merging into the shared file."""
    os.environ["TILEVM_CACHE_DIR"] = cache
    tuned = tuner(FakeGPU(), key=("tag",), bucket={"tag": lambda t: t})
    start.wait()  # both processes write at the same time
    for tag in tags:
        run(tuned, n=4, tag=tag)


def test_two_processes_tuning_different_buckets_keep_each_others_entries(cache_dir):
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    count = 60
    tags = [list(range(0, count, 2)), list(range(1, count, 2))]
    workers = [context.Process(target=_tune_tags, args=(str(cache_dir), t, start)) for t in tags]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    gpu = FakeGPU()
    tuned = tuner(gpu, key=("tag",), bucket={"tag": lambda t: t})
    best = json.loads(tuned.path(gpu.name).read_text())["best"]
    assert sorted(best) == sorted(f"tag={t}" for t in range(count))
    assert {e["config"] for e in best.values()} == {1}
    assert not list(tuned.path(gpu.name).parent.glob("*.tmp"))


# -- compiling candidates ------------------------------------------------------------------------
def test_a_module_level_kernel_has_a_reference_a_local_one_does_not():
    assert kernel_reference(bump) == (__name__, "bump")

    @tilevm.kernel
    def local(x: tilevm.Ptr[tilevm.float32], BLOCK: tilevm.constexpr = 32):
        tl.store(tl.global_view(x, [BLOCK]), tl.zeros([BLOCK], tilevm.float32), [0])

    assert kernel_reference(local) is None


def test_the_compile_workers_fill_the_disk_cache_and_report_failures(monkeypatch):
    configs = [{"BLOCK": 32}, {"BLOCK": 64}, {"BLOCK": 16, "BAD": True}]

    def not_here(*args, **kwargs):
        raise AssertionError("the workers must compile, not this process")

    monkeypatch.setattr(autotune_module, "compile_one", not_here)
    done = []
    errors = compile_configs(bump, configs, "sm_80", workers=2, on_done=done.append)
    assert errors[:2] == [None, None]
    assert "KernelCompileError" in errors[2] and "tile rank 2 != tensor rank 1" in errors[2]
    assert done == [1, 2, 3]

    # This process finds the workers' cubins on disk: compiling again is a cache hit.
    monkeypatch.setattr(autotune_module, "compile_one", compile_one)
    from tilevm.runtime import cache

    monkeypatch.setattr(cache, "compile_cuda", not_here)
    assert [compile_one(bump, c, "sm_80") for c in configs[:2]] == [None, None]


def test_compile_workers_do_not_rerun_the_users_main_script(tmp_path):
    # spawn/forkserver pools would run a script without a __main__ guard once per worker.
    script = tmp_path / "serve.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "print('top level ran', flush=True)\n"
        "import test_autotune as t\n"
        "from tilevm import autotune\n"
        "at = sys.modules['tilevm.autotune']\n"
        "compile_one = at.compile_one\n"
        "at.compile_one = None  # only the workers may compile\n"
        "print(at.compile_configs(t.bump, t.CONFIGS, 'sm_80', workers=2))\n"
    )
    env = {**os.environ, "TILEVM_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["top level ran", "[None, None, None]"]


def test_when_the_workers_cannot_find_the_kernel_this_process_compiles(monkeypatch, caplog):
    monkeypatch.setattr(autotune_module, "kernel_reference", lambda k: ("no_such_module", "bump"))
    errors = compile_configs(bump, CONFIGS, "sm_80", workers=2)
    assert errors == [None, None, None]
    assert "a fresh process cannot find no_such_module.bump" in caplog.text


def test_a_kernel_a_fresh_process_cannot_import_compiles_serially():
    @tilevm.kernel(num_warps="WARPS")
    def local(x: tilevm.Ptr[tilevm.float32], BLOCK: tilevm.constexpr, WARPS: tilevm.constexpr):
        tl.store(tl.global_view(x, [BLOCK]), tl.zeros([BLOCK], tilevm.float32), [0])

    configs = [{"BLOCK": 64, "WARPS": 1}, {"BLOCK": 128, "WARPS": 2}, {"BLOCK": 64, "WARPS": 64}]
    errors = compile_configs(local, configs, "sm_90a", workers=4)
    assert errors[:2] == [None, None]
    assert "must be an int in 1..32; got 64" in errors[2]


# -- declaring and launching ---------------------------------------------------------------------
def test_tilevm_autotune_decorates_a_kernel():
    tuned = tilevm.autotune(configs=CONFIGS, key=["n"], default=1)(bump)
    assert isinstance(tuned, Autotuner)
    assert tuned.kernel is bump and tuned.configs == tuple(CONFIGS) and tuned.key == ("n",)
    assert tuned.__name__ == "bump" and "autotune bump" in repr(tuned)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"configs": []}, "non-empty list of dicts"),
        ({"configs": {"BLOCK": 32}}, "non-empty list of dicts"),
        ({"configs": [{"BLOCK": 32}, {"BLOK": 64}]}, "config #1 sets ['BLOK'], which are not"),
        ({"configs": [{"n": 32}]}, "config #0 sets ['n'], which are not constexpr"),
        ({"configs": [{"BLOCK": object()}]}, "must be an int, float, bool, str, data type"),
        ({"key": ["m"]}, "key names ['m'], which are not parameters"),
        ({"key": ["BLOCK"]}, "['BLOCK'] cannot be both key and tuned"),
        ({"default": 3}, "default must lie in 0..2; got 3"),
        ({"bucket": {"m": len}}, "(['m'] not in the key ['n'])"),
        ({"bucket": {"n": 2}}, "bucket maps key names to callables"),
    ],
)
def test_a_bad_declaration_says_what_is_wrong(kwargs, message):
    args = {"configs": CONFIGS, "key": ["n"], **kwargs}
    with pytest.raises(AutotuneError) as exc:
        Autotuner(bump, **args)
    assert message in str(exc.value)


def test_autotune_must_sit_above_kernel():
    with pytest.raises(AutotuneError, match=r"put @tilevm\.autotune above @tilevm\.kernel"):
        tilevm.autotune(configs=CONFIGS, key=["n"])(lambda x: x)


def test_a_launch_must_not_pass_a_tuned_constant():
    tuned = tuner(FakeGPU())
    x, out = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(LaunchError, match=r"\['BLOCK'\] are chosen by the autotuner"):
        tuned[grid](x, out, 4, 0, BLOCK=32)
    with pytest.raises(LaunchError, match="launch a kernel with a grid"):
        tuned(x, out, 4, 0)


def test_best_config_takes_exactly_the_key():
    with pytest.raises(AutotuneError, match=r"takes the key \['n'\]; got \['m'\]"):
        tuner(FakeGPU()).best_config(m=3)


def test_a_bucket_must_be_json_like():
    tuned = tuner(FakeGPU(), bucket={"n": lambda n: object()})
    with pytest.raises(AutotuneError, match="the bucket of key 'n'"), warnings.catch_warnings():
        warnings.simplefilter("error")
        run(tuned, n=4)


# -- on a GPU ------------------------------------------------------------------------------------
@tilevm.kernel(num_warps="WARPS")
def add_one(
    x: tilevm.Ptr[tilevm.float32],
    out: tilevm.Ptr[tilevm.float32],
    n: tilevm.int32,
    BLOCK: tilevm.constexpr = 256,
    WARPS: tilevm.constexpr = 4,
):
    start = tl.block_idx() * BLOCK
    a = tl.load(tl.global_view(x, [n]), [start], [BLOCK])
    tl.store(tl.global_view(out, [n]), a + 1.0, [start])


@pytest.mark.gpu
def test_on_a_gpu_tuning_picks_a_config_persists_it_and_leaves_the_inputs_alone(cache_dir):
    import torch

    configs = [{"BLOCK": b, "WARPS": w} for b in (256, 1024) for w in (2, 4)]
    tuned = Autotuner(add_one, configs, ["n"])
    n = 1 << 20
    x = torch.randn(n, device="cuda")
    out = torch.zeros(n, device="cuda")
    x0 = x.clone()
    tuned[grid](x, out, n)
    torch.testing.assert_close(out, x0 + 1)
    torch.testing.assert_close(x, x0)
    name = torch.cuda.get_device_name(0)
    best = json.loads(tuned.path(name).read_text())["best"][f"n={n}"]
    assert all(t is not None and t > 0 for t in best["times_us"])
    assert Autotuner(add_one, configs, ["n"]).best_config(n=n) == configs[best["config"]]
