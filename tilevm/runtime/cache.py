"""The compile cache: in memory, then on disk, keyed by everything that changes the cubin.

:func:`compile_cached` looks a module up in a per-process dict, then on disk,
and only then runs NVRTC; :func:`compile_kernel` (what launches and the
autotuner use) adds one retry for a kernel that spills. The key
(:func:`module_key`) is a sha256 over the generated source, the kernel name,
the target, the full NVRTC option list, the NVRTC version, a hash of
tilevm's own sources and tilevm's version: a cache keyed on the source alone
would go stale when an emitter changes. Headers found through
``include_dirs`` are not hashed (only their directory names, through the
options); tilevm's generated code includes none.

On disk (``$TILEVM_CACHE_DIR/modules``, by default ``~/.cache/tilevm/modules``)
each key is one file, ``<key>.entry``::

    tilevm-cache-entry 1\\n                  format line
    <sha256 hex of everything below>\\n      checksum
    {"key": ..., "name": ..., "sections": {"cubin": 3112, "ptx": 902, "log": 310}, ...}\\n
    <cubin bytes><ptx utf-8><log utf-8>      the sections, lengths as in the JSON

One file per key makes an entry appear at once: it is written to a temporary
file in the same directory and moved into place with :func:`os.replace`,
atomic on POSIX. Two processes writing one key both succeed; the last move
wins, and both wrote a valid entry. A reader checks the format line, the
checksum (over the metadata and the payload, so a flipped byte anywhere is
caught), the JSON, the section lengths and the ELF magic; an entry failing any
check is a miss, deleted best-effort and rebuilt, never an error. The ptxas
report is parsed again from the stored log rather than stored twice.

No ``fsync``: a crash mid-write leaves a torn temporary file or, on some
file systems, a torn entry, which the checksum turns into a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import write_atomically
from .._version import __version__
from ..errors import TileVMError
from .compiler import (
    ELF_MAGIC,
    CompiledModule,
    Target,
    as_target,
    compile_cuda,
    compile_options,
    hash_compiler_sources,
    nvrtc_version,
)
from .ptxas import parse_ptxas_report

logger = logging.getLogger(__name__)

ENV_VAR = "TILEVM_CACHE_DIR"
FORMAT_LINE = b"tilevm-cache-entry 1\n"
SUFFIX = ".entry"
_KEY = re.compile(r"[0-9a-f]{64}")
_ENTRY_FILE = re.compile(r"([0-9a-f]{64})\.entry")
_TEMP_FILE = re.compile(r"\.[0-9a-f]{16}\..*\.tmp")


class CacheError(TileVMError, ValueError):
    """A cache was used wrongly (a key that is not a sha256 hex digest)."""


class CorruptEntryError(ValueError):
    """A cache file failed a check; internal: readers turn it into a miss."""


def cache_dir() -> Path:
    """``$TILEVM_CACHE_DIR``, else ``$XDG_CACHE_HOME/tilevm``, else ``~/.cache/tilevm``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "tilevm"


def cache_key(*parts: object) -> str:
    """sha256 hex digest of ``parts`` in a canonical JSON encoding.

    Parts may be ``str``, ``int``, ``float``, ``bool``, ``None``, :class:`Target`,
    ``Path`` and lists, tuples or dicts of those (tuples encode as lists, dict
    keys sorted). Anything else is a ``TypeError``, so a key never depends on a
    ``repr``.
    """
    text = json.dumps(
        [_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(part: object) -> object:
    if part is None or isinstance(part, (str, int, float, bool)):
        return part
    if isinstance(part, Target):
        return part.arch
    if isinstance(part, Path):
        return part.as_posix()
    if isinstance(part, (list, tuple)):
        return [_canonical(p) for p in part]
    if isinstance(part, dict):
        return {str(k): _canonical(v) for k, v in part.items()}
    raise TypeError(f"cannot put a {type(part).__name__} in a cache key: {part!r}")


def module_key(source: str, name: str, target: Target, options: Sequence[str]) -> str:
    """The key of a module: source, name, target, full options, NVRTC and tilevm versions."""
    return cache_key(
        "cuda-module",
        source,
        name,
        target,
        list(options),
        list(nvrtc_version()),
        hash_compiler_sources(),
        __version__,
    )


# -- the entry file ------------------------------------------------------------------------------
def encode_entry(key: str, module: CompiledModule) -> bytes:
    """The bytes of ``module``'s cache file (format in the module docstring)."""
    sections = {"cubin": module.cubin, "ptx": module.ptx.encode(), "log": module.log.encode()}
    meta = {
        "key": key,
        "name": module.name,
        "target": module.target.arch,
        "nvrtc_version": list(module.nvrtc_version),
        "options": list(module.options),
        "compile_time_s": module.compile_time_s,
        "tilevm_version": __version__,
        "sections": {k: len(v) for k, v in sections.items()},
    }
    body = json.dumps(meta, sort_keys=True).encode() + b"\n" + b"".join(sections.values())
    return FORMAT_LINE + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def decode_entry(key: str, data: bytes) -> CompiledModule:
    """The module in a cache file's bytes; :class:`CorruptEntryError` if any check fails."""
    if not data.startswith(FORMAT_LINE):
        raise CorruptEntryError("unknown format line")
    checksum, sep, body = data[len(FORMAT_LINE) :].partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != checksum:
        raise CorruptEntryError("checksum mismatch")
    header, sep, payload = body.partition(b"\n")
    try:
        meta = json.loads(header)
        if meta["key"] != key:
            raise CorruptEntryError(f"holds key {meta['key']!r}")
        sizes = [meta["sections"][k] for k in ("cubin", "ptx", "log")]
        if not sep or sum(sizes) != len(payload) or any(s < 0 for s in sizes):
            raise CorruptEntryError("section lengths do not match the payload")
        cubin = payload[: sizes[0]]
        ptx = payload[sizes[0] : sizes[0] + sizes[1]].decode()
        log = payload[sizes[0] + sizes[1] :].decode()
        if not cubin.startswith(ELF_MAGIC):
            raise CorruptEntryError("the cubin is not an ELF file")
        major, minor = meta["nvrtc_version"]
        return CompiledModule(
            name=str(meta["name"]),
            target=Target(meta["target"]),
            cubin=cubin,
            ptx=ptx,
            log=log,
            report=parse_ptxas_report(log),
            nvrtc_version=(int(major), int(minor)),
            options=tuple(str(o) for o in meta["options"]),
            compile_time_s=float(meta["compile_time_s"]),
        )
    except CorruptEntryError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        # json, utf-8 and Target errors are ValueErrors; a wrong shape is one of the others.
        raise CorruptEntryError(f"unreadable metadata or payload ({err})") from err


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One file of a :class:`DiskCache`, as :meth:`DiskCache.entries` found it.

    ``module`` is ``None`` for a corrupt entry (the next lookup rebuilds it).
    """

    key: str
    path: Path
    size_bytes: int
    modified: float
    module: CompiledModule | None


class DiskCache:
    """Compiled modules on disk under ``root``, with a per-process dict in front.

    Safe for several processes (and threads) sharing ``root``; see the module
    docstring. The in-memory layer is this object's: ``clear`` empties it, but
    other processes keep theirs until they exit.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._memory: dict[str, CompiledModule] = {}

    def __repr__(self) -> str:
        return f"DiskCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise CacheError(f"a cache key is a sha256 hex digest (see cache_key); got {key!r}")
        return self.root / f"{key}{SUFFIX}"

    def get(self, key: str) -> CompiledModule | None:
        """The module stored under ``key``, or ``None``: a miss, or a corrupt entry (deleted)."""
        path = self.path(key)
        module = self._memory.get(key)
        if module is not None:
            return module
        try:
            with open(path, "rb") as f:
                data = f.read()
                stat = os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        except OSError as err:
            logger.warning("tilevm cache: cannot read %s (%s); compiling instead", path, err)
            return None
        try:
            module = decode_entry(key, data)
        except CorruptEntryError as err:
            logger.warning("tilevm cache: %s is corrupt (%s); rebuilding it", path, err)
            _remove_if_unchanged(path, stat)
            return None
        self._memory[key] = module
        return module

    def put(self, key: str, module: CompiledModule) -> None:
        """Store ``module`` under ``key``, atomically; a disk that refuses is logged, not raised."""
        path = self.path(key)
        data = encode_entry(key, module)
        self._memory[key] = module
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)
        except OSError as err:
            logger.warning("tilevm cache: cannot write %s (%s); not caching it", path, err)

    def entries(self) -> list[CacheEntry]:
        """Every entry on disk, newest first; corrupt ones with ``module=None``."""
        found = []
        for path, key in self._files():
            if key is None:
                continue
            try:
                data = path.read_bytes()
                stat = path.stat()
            except OSError:  # removed since the listing
                continue
            try:
                module = decode_entry(key, data)
            except CorruptEntryError:
                module = None
            found.append(CacheEntry(key, path, stat.st_size, stat.st_mtime, module))
        return sorted(found, key=lambda e: e.modified, reverse=True)

    def size_bytes(self) -> int:
        """Bytes of the cache's files on disk (entries and unfinished temporary files)."""
        total = 0
        for path, _ in self._files():
            with contextlib.suppress(OSError):  # removed since the listing
                total += path.stat().st_size
        return total

    def clear(self) -> tuple[int, int]:
        """Remove every entry (and leftover temporary file); ``(entries, bytes)`` removed.

        Only files named like the cache's own are touched, so pointing
        ``TILEVM_CACHE_DIR`` at a shared directory never deletes anything else.
        """
        self._memory.clear()
        count = removed = 0
        for path, key in self._files():
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            removed += size
            count += key is not None
        return count, removed

    def _files(self) -> list[tuple[Path, str | None]]:
        """The cache's files under ``root``: ``(path, key)`` for entries, ``(path, None)`` for
        temporary files."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        files = []
        for name in sorted(names):
            if m := _ENTRY_FILE.fullmatch(name):
                files.append((self.root / name, m.group(1)))
            elif _TEMP_FILE.fullmatch(name):
                files.append((self.root / name, None))
        return files


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _remove_if_unchanged(path: Path, seen: os.stat_result) -> None:
    """Delete the corrupt file just read, unless another process has replaced it since."""
    try:
        now = path.stat()
    except OSError:
        return
    if (now.st_ino, now.st_size, now.st_mtime_ns) == (seen.st_ino, seen.st_size, seen.st_mtime_ns):
        _unlink(path)


# -- the process-wide cache ----------------------------------------------------------------------
_CACHES: dict[Path, DiskCache] = {}


def default_cache() -> DiskCache:
    """The :class:`DiskCache` at ``cache_dir() / "modules"``, one per directory per process.

    Looked up on every call, so a changed ``TILEVM_CACHE_DIR`` takes effect.
    """
    root = cache_dir() / "modules"
    cache = _CACHES.get(root)
    if cache is None:
        cache = _CACHES.setdefault(root, DiskCache(root))
    return cache


def compile_cached(
    source: str,
    name: str,
    target: Target | str,
    *,
    options: Sequence[str] = (),
    include_dirs: Sequence[str | Path] = (),
    lineinfo: bool = False,
    cache: DiskCache | None = None,
) -> CompiledModule:
    """:func:`~tilevm.runtime.compiler.compile_cuda`, through the cache: memory, disk, NVRTC.

    ``cache`` defaults to :func:`default_cache`. A compile error is not cached.
    """
    target = as_target(target)
    key = module_key(source, name, target, compile_options(target, options, include_dirs, lineinfo))
    cache = default_cache() if cache is None else cache
    module = cache.get(key)
    if module is None:
        module = compile_cuda(
            source, name, target, options=options, include_dirs=include_dirs, lineinfo=lineinfo
        )
        cache.put(key, module)
    return module


NO_SPILL_RETRY = ("--maxrregcount=255",)
"""The options of :func:`compile_kernel`'s second try."""


def compile_kernel(source: str, name: str, target: Target | str) -> CompiledModule:
    """A generated kernel's module: :func:`compile_cached`, tried again if it spills.

    Without a register limit ptxas aims at an occupancy it picks itself, and a
    kernel just above a step (128 or 168 registers for 128 threads) may come
    out a few bytes of spill below it. Asked again with ``--maxrregcount=255``
    it uses the registers it needs; the try that spills less is kept (the
    first on a tie). Both tries go through the cache, so a later process
    repeats neither.
    """
    module = compile_cached(source, name, target)
    if module.report.spill_bytes == 0:
        return module
    retry = compile_cached(source, name, target, options=NO_SPILL_RETRY)
    return retry if retry.report.spill_bytes < module.report.spill_bytes else module
