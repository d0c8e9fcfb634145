"""``@tilevm.autotune``: run each launch with the fastest of a kernel's configs, and remember it.

A config is a dict of compile-time constants (the warp count too, when
``num_warps`` names a constexpr). ``key`` names the arguments the best config
depends on; their values are bucketed (ints round up to a power of two, so a
dynamic M of 9..16 shares a choice, and so does 17..32) and the choice is kept
per (device name, kernel, bucket). A constexpr passed at launch that changes
what runs best (the weight type, say) belongs in the key too::

    @tilevm.autotune(
        configs=[{"BLOCK_N": 64, "WARPS": 4}, {"BLOCK_N": 128, "WARPS": 8}],
        key=["m", "n", "k"],
    )
    @tilevm.kernel(num_warps="WARPS")
    def qgemm(x: tilevm.Ptr[tilevm.float16], ..., m: tilevm.int32, n: tilevm.int32,
              k: tilevm.int32, BLOCK_N: tilevm.constexpr, WARPS: tilevm.constexpr): ...

    # The grid may read the chosen config's constants; BLOCK_N and WARPS are not passed.
    qgemm[lambda a: ((a["n"] + a["BLOCK_N"] - 1) // a["BLOCK_N"],)](x, w, y, m, n, k)

A launch with CUDA tensors looks the bucket up in memory, then on disk, and
otherwise tunes:

=============================  =================================================================
step                           what happens
=============================  =================================================================
compile                        every config to a cubin, in fresh worker processes that only
                               run NVRTC and fill the compile cache (:func:`compile_configs`);
                               serially here for a kernel a fresh process cannot import
time                           each config on clones of the tensor arguments (the caller's
                               tensors are never written), median of CUDA-event times with the
                               L2 flushed (:func:`tilevm.bench.time_cuda`)
remember                       the fastest, in memory and in the JSON file below
=============================  =================================================================

A config that fails to compile, load or launch (too much shared memory, say)
is skipped with an :class:`AutotuneWarning`. Tuning prints one progress line
on stderr: ``tuning qgemm (m=16, n=4096, k=4096): 3/8 configs``.

The choices live in ``<cache dir>/autotune/<device name>/<kernel>-<hash>.json``
(cache dir as for compiled kernels, see :func:`tilevm.runtime.cache.cache_dir`;
the hash covers the kernel's source, the configs, the key names, tilevm's
version and its compiler's sources), one map from bucket to choice::

    {"format": "tilevm-autotune 1", "kernel": "qgemm", "device": "NVIDIA H100 80GB HBM3",
     "configs": [...], "best": {"m=16, n=4096, k=4096": {"config": 1, "times_us": [14.2, 11.0]}}}

Writers hold an exclusive lock on ``<file>.lock``, read the file, add their
entries and replace it atomically, so processes tuning different buckets keep
each other's entries; readers need no lock. A file that does not parse is
ignored (with a warning) and rewritten by the next tuning.

``TILEVM_AUTOTUNE=0`` launches ``configs[default]`` without tuning; so does a
launch on the CPU interpreter (timing it would say nothing about a GPU) and a
launch while a CUDA graph is being captured with no choice made yet.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import numbers
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._files import write_atomically
from ._version import __version__
from .dtypes import DataType
from .errors import TileVMError
from .lang.kernel import ArgumentBinder, Kernel, LaunchError

logger = logging.getLogger(__name__)

ENV_VAR = "TILEVM_AUTOTUNE"
FORMAT = "tilevm-autotune 1"
_OFF = ("0", "false", "no", "off")


class AutotuneError(TileVMError, ValueError):
    """An autotuner was declared or used wrongly, or every config failed."""


class AutotuneWarning(UserWarning):
    """A config was skipped while tuning (it failed to compile, load or launch)."""


def enabled() -> bool:
    """False when ``TILEVM_AUTOTUNE`` is 0 (or false, no, off): launches use the default config."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def next_power_of_two(value: int) -> int:
    """The bucket of an int key: the least power of two >= ``value`` (below 1: ``value``)."""
    return value if value <= 1 else 1 << (value - 1).bit_length()


# -- where tuning touches a GPU ------------------------------------------------------------------
class CudaPlatform:
    """Everything tuning does on a GPU, one method each, so tests can replace them.

    The autotuner itself is plain Python over these: a fake that times configs
    from a table runs the whole tuning path on a machine without a GPU.
    """

    def device(self, values: Mapping[str, Any]) -> int | None:
        """The CUDA device of the tensor arguments, or None when none is on a GPU."""
        from .lang.launch import _is_torch

        for v in values.values():
            if _is_torch(v) and v.device.type == "cuda":
                return v.device.index
        return None

    def current_device(self) -> int | None:
        """The device :meth:`Autotuner.best_config` reports for; None without a GPU."""
        try:
            import torch
        except ImportError:
            return None
        return torch.cuda.current_device() if torch.cuda.is_available() else None

    def device_name(self, device: int) -> str:
        import torch

        return torch.cuda.get_device_name(device)

    def capturing(self, device: int) -> bool:
        """Whether a CUDA graph is being captured (tuning then would break the capture)."""
        import torch

        with torch.cuda.device(device):
            return torch.cuda.is_current_stream_capturing()

    def compile(
        self,
        kernel: Kernel,
        configs: Sequence[Mapping[str, Any]],
        device: int,
        on_done: Callable[[int], None] | None = None,
    ) -> list[str | None]:
        """Fill the compile cache for every config; the error text of each that failed."""
        import torch

        from .runtime.compiler import Target

        arch = Target.for_device(*torch.cuda.get_device_capability(device)).arch
        return compile_configs(kernel, configs, arch, on_done=on_done)

    def launch(self, kernel: Kernel, grid: Any, values: dict[str, Any]) -> None:
        kernel.launch(grid, (), values, "cuda")

    def time(self, run: Callable[[], None]) -> float:
        """The median time of ``run()`` in µs, L2 flushed (:func:`tilevm.bench.time_cuda`)."""
        from .bench import time_cuda

        return time_cuda(run, budget_ms=25.0)


# -- compiling candidates ------------------------------------------------------------------------
def kernel_reference(kernel: Kernel) -> tuple[str, str] | None:
    """``(module, qualname)`` under which a fresh process finds ``kernel``, or None.

    None for kernels defined in ``__main__`` or inside a function, and for any
    whose name does not lead back to this very kernel (or an autotuner of it).
    """
    module = getattr(kernel.fn, "__module__", None)
    qualname = getattr(kernel.fn, "__qualname__", "")
    if not module or module in ("__main__", "__mp_main__") or "<" in qualname:
        return None
    try:
        found = _resolve(module, qualname)
    except Exception:
        return None
    return (module, qualname) if found is kernel else None


def _resolve(module: str, qualname: str) -> Kernel:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, Autotuner):
        obj = obj.kernel
    if not isinstance(obj, Kernel):
        raise TypeError(f"{module}.{qualname} is a {type(obj).__name__}, not a tilevm kernel")
    return obj


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def compile_one(kernel: Kernel, config: Mapping[str, Any], arch: str) -> str | None:
    """Compile ``kernel`` for ``config`` through the emission and compile caches; the error
    text, or None."""
    from .runtime.cache import compile_kernel
    from .runtime.emitted import emit_program

    try:
        cuda = emit_program(kernel.program(**dict(config)))
        compile_kernel(cuda.source, cuda.name, arch)
    except Exception as err:
        return _describe(err)
    return None


def compile_configs(
    kernel: Kernel,
    configs: Sequence[Mapping[str, Any]],
    arch: str,
    *,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[str | None]:
    """Compile every config for ``arch`` (e.g. ``"sm_90a"``) into the disk cache.

    Returns, per config, the error text of a failure or None. With more than
    one config and worker, and a kernel a fresh process can import (see
    :func:`kernel_reference`), the compiles run in worker processes; otherwise,
    or if they cannot run, serially here. ``on_done(count)`` reports progress.

    The workers are fresh interpreters started with ``subprocess``, not a
    ``multiprocessing`` pool: spawn and forkserver children re-run the user's
    ``__main__`` script (a script without an ``if __name__ == "__main__"``
    guard would load its model again in every worker), and fork is unsafe in
    a process holding a CUDA context and torch's threads. A worker receives
    the parent's ``sys.path``, then the kernel's module and qualified name,
    the target and its share of the configs (pickled), and answers one line
    per config; it only runs the frontend, the passes and NVRTC.
    """
    configs = [dict(c) for c in configs]
    workers = min(len(configs), os.cpu_count() or 1, 16) if workers is None else workers
    ref = kernel_reference(kernel)
    results: dict[int, str | None] = {}
    if ref is not None and workers > 1 and len(configs) > 1:
        try:
            _compile_in_workers(ref, configs, arch, workers, results, on_done)
        except Exception as err:  # no processes, unpicklable constants, a worker that died
            logger.warning(
                "autotune %s: the compile workers failed (%s); compiling the rest in this process",
                kernel.__name__,
                _describe(err),
            )
    for i, config in enumerate(configs):
        if i not in results:
            results[i] = compile_one(kernel, config, arch)
            if on_done is not None:
                on_done(len(results))
    return [results[i] for i in range(len(configs))]


_WORKER = (
    "import pickle, sys\n"
    "sys.path[:] = pickle.load(sys.stdin.buffer)\n"
    "from tilevm.autotune import _serve_compiles\n"
    "_serve_compiles(sys.stdin.buffer, sys.stdout)\n"
)
_ANSWER = "tilevm-autotune-compiled "  # the prefix of a worker's answers; other output is ignored


def _serve_compiles(stdin: Any, stdout: Any) -> None:
    """A compile worker's main: read the task, answer one line per config (JSON)."""
    import pickle

    module, qualname, arch, tasks = pickle.load(stdin)
    try:
        kernel = _resolve(module, qualname)
    except Exception as err:
        stdout.write(_ANSWER + json.dumps({"unresolved": _describe(err)}) + "\n")
        return
    for index, config in tasks:
        error = compile_one(kernel, config, arch)
        stdout.write(_ANSWER + json.dumps({"index": index, "error": error}) + "\n")
        stdout.flush()


def _compile_in_workers(
    ref: tuple[str, str],
    configs: list[dict[str, Any]],
    arch: str,
    workers: int,
    results: dict[int, str | None],
    on_done: Callable[[int], None] | None,
) -> None:
    """Fill ``results`` (config index -> error) from worker processes; raises if one fails."""
    import pickle
    import subprocess
    import threading

    path = pickle.dumps(list(sys.path))
    shares = [[(i, configs[i]) for i in range(w, len(configs), workers)] for w in range(workers)]
    # Pickled before any process starts: unpicklable constants fail here, not in a worker.
    payloads = [pickle.dumps((*ref, arch, share)) for share in shares if share]
    lock = threading.Lock()
    failures: list[str] = []

    def serve(payload: bytes) -> None:
        try:
            run_worker(payload)
        except Exception as err:  # could not start it, or it closed its stdin early
            failures.append(_describe(err))

    def run_worker(payload: bytes) -> None:
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=False,
            )
            try:
                proc.stdin.write(path + payload)
                proc.stdin.close()
                for raw in proc.stdout:
                    line = raw.decode(errors="replace")
                    if not line.startswith(_ANSWER):
                        continue  # the kernel module printed something
                    answer = json.loads(line[len(_ANSWER) :])
                    if "unresolved" in answer:
                        where = ".".join(ref)
                        failures.append(
                            f"a fresh process cannot find {where}: {answer['unresolved']}"
                        )
                        continue
                    with lock:
                        results[answer["index"]] = answer["error"]
                        if on_done is not None:
                            on_done(len(results))
            finally:
                code = proc.wait()
            if code != 0:
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace").strip().splitlines()[-3:]
                failures.append(f"a compile worker exited with status {code}: {' '.join(tail)}")

    threads = [threading.Thread(target=serve, args=(p,), daemon=True) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError("; ".join(failures))


# -- the choices on disk -------------------------------------------------------------------------
def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"


def _jsonable(value: Any, what: str) -> Any:
    if isinstance(value, DataType):
        return value.name
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, what) for v in value]
    raise AutotuneError(
        f"{what} must be an int, float, bool, str, data type or a tuple of them; got {value!r}"
    )


def _read_choices(path: Path, num_configs: int) -> dict[str, dict[str, Any]]:
    """The entries of a choices file; {} for a missing file, {} with a warning for a bad one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        logger.warning("tilevm autotune: cannot read %s (%s); tuning again", path, err)
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT!r} file")
        best = data["best"]
        if not isinstance(best, dict):
            raise ValueError("'best' is not a map")
        entries = {}
        for bucket, entry in best.items():
            index = entry["config"]
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"bucket {bucket!r}: config {index!r} is not an index")
            if 0 <= index < num_configs:
                entries[str(bucket)] = entry
        return entries
    except (ValueError, KeyError, TypeError) as err:
        warnings.warn(
            f"tilevm autotune: {path} is corrupt ({err}); ignoring it, the next tuning rewrites it",
            AutotuneWarning,
            stacklevel=2,
        )
        return {}


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created) for the duration; none where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX: last writer wins
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# -- the autotuner -------------------------------------------------------------------------------
class Autotuner:
    """A kernel that launches with the best of ``configs`` for its ``key``; see the module docs.

    Parameters
    ----------
    kernel
        The ``@tilevm.kernel`` to tune.
    configs
        Dicts of values for the kernel's constexpr parameters; a launch must not
        pass those parameters itself.
    key
        Names of the arguments whose values the choice depends on.
    default
        Index of the config used without tuning (``TILEVM_AUTOTUNE=0``, the CPU
        interpreter, CUDA graph capture).
    bucket
        ``{name: callable}``: the bucket of that key's value, instead of rounding
        ints up to a power of two.
    platform
        What tuning does on a GPU (:class:`CudaPlatform`); tests pass a fake.
    """

    def __init__(
        self,
        kernel: Kernel,
        configs: Sequence[Mapping[str, Any]],
        key: Sequence[str],
        default: int = 0,
        bucket: Mapping[str, Callable[[Any], Any]] | None = None,
        *,
        platform: CudaPlatform | None = None,
    ):
        if not isinstance(kernel, Kernel):
            raise AutotuneError(
                f"@tilevm.autotune decorates a @tilevm.kernel; got {type(kernel).__name__} "
                "(put @tilevm.autotune above @tilevm.kernel)"
            )
        name = kernel.__name__
        if isinstance(configs, Mapping) or not configs:
            raise AutotuneError(f"autotune {name}: configs must be a non-empty list of dicts")
        constants = [p.name for p in kernel.params if p.kind == "constexpr"]
        checked = []
        for i, config in enumerate(configs):
            if not isinstance(config, Mapping):
                raise AutotuneError(f"autotune {name}: config #{i} must be a dict; got {config!r}")
            unknown = sorted(set(config) - set(constants))
            if unknown:
                raise AutotuneError(
                    f"autotune {name}: config #{i} sets {unknown}, which are not constexpr "
                    f"parameters of the kernel; it has {constants}"
                )
            for k, v in config.items():
                _jsonable(v, f"autotune {name}: config #{i}, {k}")
            checked.append(dict(config))
        if isinstance(key, str):
            key = [key]
        params = [p.name for p in kernel.params]
        missing = [k for k in key if k not in params]
        if missing:
            raise AutotuneError(
                f"autotune {name}: key names {missing}, which are not parameters of the kernel; "
                f"it has {params}"
            )
        tuned = sorted({k for c in checked for k in c} & set(key))
        if tuned:
            raise AutotuneError(f"autotune {name}: {tuned} cannot be both key and tuned")
        if isinstance(default, bool) or not isinstance(default, int):
            raise AutotuneError(f"autotune {name}: default must be a config index; got {default!r}")
        if not 0 <= default < len(checked):
            raise AutotuneError(
                f"autotune {name}: default must lie in 0..{len(checked) - 1}; got {default}"
            )
        bucket = dict(bucket or {})
        stray = sorted(set(bucket) - set(key))
        if stray or not all(callable(b) for b in bucket.values()):
            raise AutotuneError(
                f"autotune {name}: bucket maps key names to callables; got {bucket!r}"
                + (f" ({stray} not in the key {list(key)})" if stray else "")
            )
        self.kernel = kernel
        self.configs: tuple[dict[str, Any], ...] = tuple(checked)
        self.key: tuple[str, ...] = tuple(key)
        self.default = default
        self.bucket = bucket
        self.platform = platform if platform is not None else CudaPlatform()
        self.__name__ = kernel.__name__
        self.__doc__ = kernel.__doc__
        self._signature = inspect.signature(kernel.fn)
        self._binder = ArgumentBinder(self._signature)
        self._tuned_names = frozenset(k for c in self.configs for k in c)
        self._choices: dict[tuple[str, str], int] = {}  # (device name, bucket) -> config index
        self._device_names: dict[int, str] = {}
        self._compiled: dict[tuple[int, str], list[str | None]] = {}  # error text per config
        self._stem: str | None = None

    def __repr__(self) -> str:
        return f"<tilevm.autotune {self.__name__}: {len(self.configs)} configs, key {self.key}>"

    # -- launching -----------------------------------------------------------------------------
    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, backend: str | None = None, **kwargs: Any) -> None:
            self.launch(grid, args, kwargs, backend)

        return launch

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"launch a kernel with a grid: {self.__name__}[grid](...)")

    def launch(
        self, grid: Any, args: Sequence[Any], kwargs: dict[str, Any], backend: str | None = None
    ) -> None:
        """Launch with the chosen config (tuning first if this bucket has no choice yet)."""
        values = self._bind(args, kwargs)
        index = self.default
        if enabled() and backend != "cpu":
            device = self.platform.device(values)
            if device is not None:
                index = self._choose(grid, values, device)
        self.kernel.launch(grid, (), {**values, **self.configs[index]}, backend)

    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        tuned = self._tuned_names
        passed = set(self._binder.names[: len(args)]) | set(kwargs)
        chosen = sorted(tuned & passed)
        if chosen:
            raise LaunchError(
                f"{self.__name__}: {chosen} are chosen by the autotuner; do not pass them"
            )
        try:
            values = self._binder.bind(args, kwargs, partial=True)
        except TypeError as err:
            raise LaunchError(f"{self.__name__}: {err}") from None
        return {k: v for k, v in values.items() if k not in tuned}

    def _bucket(self, values: Mapping[str, Any]) -> str:
        parts = []
        for name in self.key:
            if name not in values:
                raise LaunchError(f"{self.__name__}: the autotune key {name!r} has no value")
            value = values[name]
            if name in self.bucket:
                value = self.bucket[name](value)
            elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = next_power_of_two(int(value))  # numpy ints too
            value = _jsonable(value, f"{self.__name__}: the bucket of key {name!r}")
            plain = isinstance(value, int) and not isinstance(value, bool)
            parts.append(f"{name}={value if plain else json.dumps(value)}")
        return ", ".join(parts)

    # -- choosing ------------------------------------------------------------------------------
    def best_config(self, **key_values: Any) -> dict[str, Any] | None:
        """The config a launch with these key values uses on the current device.

        The default config when tuning is off or there is no GPU; None when the
        bucket has not been tuned on this device (by any process).
        """
        missing = sorted(set(self.key) - set(key_values))
        extra = sorted(set(key_values) - set(self.key))
        if missing or extra:
            raise AutotuneError(
                f"autotune {self.__name__}: best_config takes the key {list(self.key)}; got "
                f"{sorted(key_values)}"
            )
        device = self.platform.current_device() if enabled() else None
        if device is None:
            return dict(self.configs[self.default])
        index = self._lookup(self._device_name(device), self._bucket(key_values))
        return None if index is None else dict(self.configs[index])

    def path(self, device_name: str) -> Path:
        """The JSON file of this kernel's choices on devices named ``device_name``."""
        from .runtime.cache import cache_dir

        if self._stem is None:
            self._stem = f"{_sanitise(self.__name__)}-{self._hash()[:16]}"
        return cache_dir() / "autotune" / _sanitise(device_name) / f"{self._stem}.json"

    def _hash(self) -> str:
        from .runtime.cache import cache_key
        from .runtime.compiler import hash_compiler_sources

        try:
            source = inspect.getsource(self.kernel.fn)
        except (OSError, TypeError):  # no source file (exec, a REPL)
            source = self.kernel.fn.__code__.co_code.hex()
        configs = [{k: _jsonable(v, "a config value") for k, v in c.items()} for c in self.configs]
        return cache_key(
            "autotune", source, configs, list(self.key), __version__, hash_compiler_sources()
        )

    def _device_name(self, device: int) -> str:
        name = self._device_names.get(device)
        if name is None:
            name = self._device_names[device] = str(self.platform.device_name(device))
        return name

    def _lookup(self, device_name: str, bucket: str) -> int | None:
        index = self._choices.get((device_name, bucket))
        if index is None:
            # Another process may have tuned it since: read the file, keep everything in it.
            for b, entry in _read_choices(self.path(device_name), len(self.configs)).items():
                self._choices.setdefault((device_name, b), entry["config"])
            index = self._choices.get((device_name, bucket))
        return index

    def _choose(self, grid: Any, values: dict[str, Any], device: int) -> int:
        name = self._device_name(device)
        bucket = self._bucket(values)
        index = self._lookup(name, bucket)
        if index is not None:
            return index
        if self.platform.capturing(device):
            warnings.warn(
                f"autotune {self.__name__} ({bucket}): launched during CUDA graph capture "
                f"before it was tuned; using config #{self.default} (launch it once outside "
                "the capture to tune)",
                AutotuneWarning,
                stacklevel=4,
            )
            return self.default
        return self._tune(grid, values, device, name, bucket)

    def _tune(self, grid: Any, values: dict[str, Any], device: int, name: str, bucket: str) -> int:
        configs = self.configs
        progress = _Progress(f"{self.__name__} ({bucket})", len(configs))
        # The launch's own constants (those no config sets) compile with every config.
        fixed = {
            p.name: values[p.name]
            for p in self.kernel.params
            if p.kind == "constexpr" and p.name in values
        }
        memo = (device, repr(sorted(fixed.items())))
        compiled = self._compiled.get(memo)
        if compiled is None:
            # Once per device and constants: runtime key values (sizes) compile nothing new.
            progress.show("compiling", 0)
            compiled = self._compiled[memo] = list(
                self.platform.compile(
                    self.kernel,
                    [{**fixed, **c} for c in configs],
                    device,
                    lambda n: progress.show("compiling", n),
                )
            )
        errors = list(compiled)
        # Candidates write into copies: the caller's outputs (and inputs) stay as they were.
        clones = {k: _clone(v) for k, v in values.items()}
        times: list[float | None] = [None] * len(configs)
        for i, config in enumerate(configs):
            if errors[i] is None:
                run = functools.partial(
                    self.platform.launch, self.kernel, grid, {**clones, **config}
                )
                try:
                    run()  # builds and loads: a config the device cannot run fails here
                    times[i] = float(self.platform.time(run))
                except Exception as err:
                    errors[i] = _describe(err)
            if errors[i] is not None:
                warnings.warn(
                    f"autotune {self.__name__} ({bucket}): skipping config #{i} {config}: "
                    f"{errors[i]}",
                    AutotuneWarning,
                    stacklevel=5,
                )
            progress.show("", i + 1)
        ok = [i for i, t in enumerate(times) if t is not None]
        if not ok:
            progress.finish("every config failed")
            reasons = "\n".join(f"  #{i} {c}: {errors[i]}" for i, c in enumerate(configs))
            raise AutotuneError(
                f"autotune {self.__name__} ({bucket}): every config failed:\n{reasons}"
            )
        best = min(ok, key=lambda i: times[i])
        self._choices[(name, bucket)] = best
        self._save(name, bucket, best, times)
        progress.finish(f"best #{best} {_show(configs[best])}, {times[best]:.1f} µs")
        return best

    def _save(self, device_name: str, bucket: str, best: int, times: list[float | None]) -> None:
        path = self.path(device_name)
        entry = {"config": best, "times_us": [None if t is None else round(t, 3) for t in times]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(path.with_name(path.name + ".lock")):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AutotuneWarning)  # reported when read
                    best_map = _read_choices(path, len(self.configs))
                best_map[bucket] = entry
                data = {
                    "format": FORMAT,
                    "kernel": self.__name__,
                    "device": device_name,
                    "configs": [
                        {k: _jsonable(v, "a config value") for k, v in c.items()}
                        for c in self.configs
                    ],
                    "best": dict(sorted(best_map.items())),
                }
                write_atomically(path, json.dumps(data, indent=1) + "\n")
        except OSError as err:
            logger.warning("tilevm autotune: cannot write %s (%s); not persisting", path, err)


def _clone(value: Any) -> Any:
    from .lang.launch import _is_torch

    if _is_torch(value):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _show(config: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")"


class _Progress:
    """One line on stderr: rewritten in place on a terminal, written once when done otherwise."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.total = total
        self.width = 0

    def _write(self, text: str, end: str) -> None:
        stream = sys.stderr
        if _is_terminal(stream):
            text = "\r" + text.ljust(self.width)
            self.width = len(text) - 1
        stream.write(text + end)
        stream.flush()

    def show(self, phase: str, done: int) -> None:
        if _is_terminal(sys.stderr):
            phase = f"{phase} " if phase else ""
            self._write(f"tuning {self.label}: {phase}{done}/{self.total} configs", "")

    def finish(self, outcome: str) -> None:
        self._write(f"tuning {self.label}: {self.total}/{self.total} configs, {outcome}", "\n")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def autotune(
    configs: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    default: int = 0,
    bucket: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Callable[[Kernel], Autotuner]:
    """Decorate a ``@tilevm.kernel`` to launch with the fastest of ``configs`` per key bucket.

    Parameters
    ----------
    configs
        Dicts of constexpr values, e.g. ``[{"BLOCK": 64, "WARPS": 4}, ...]``.
    key
        Names of the arguments the best config depends on, e.g. ``["m", "n", "k"]``.
    default
        Index of the config used without tuning (``TILEVM_AUTOTUNE=0``, the CPU).
    bucket
        Per key name, a callable giving the bucket of a value (default: ints
        round up to a power of two, anything else is its own bucket).

    Returns
    -------
    Callable
        A decorator making an :class:`Autotuner`; launch it like the kernel,
        ``tuned[grid](*args)``, without the tuned constants.
    """

    def decorate(kernel: Kernel) -> Autotuner:
        return Autotuner(kernel, configs, key, default, bucket)

    return decorate
