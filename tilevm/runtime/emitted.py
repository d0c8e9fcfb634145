"""The emission cache: a program's generated CUDA, kept on disk so a new process skips the passes.

Running the pass pipeline and emitting CUDA C++ takes a large GEMM kernel
about a quarter of a second, every process, before the compile cache
(:mod:`.cache`) can even be asked for its cubin. :func:`emit_program` keeps
the result (a :class:`~tilevm.codegen.CudaKernel`) in memory and on disk,
keyed by

- a sha256 of the program's structure (:func:`fingerprint`: every field of
  every IR node, constant, layout and source location, the passes' whole
  input; a program holding a value it cannot describe is simply not cached
  on disk),
- a hash of tilevm's own sources (:func:`.compiler.hash_compiler_sources`),
  so an edited pass or emitter never serves an old translation, and tilevm's
  version.

Emission does not depend on the target (architecture-specific choices are
preprocessor tests in the generated source), so one entry serves every GPU.

On disk (``$TILEVM_CACHE_DIR/emitted/<key>.json``) an entry is one JSON
object: the format number, the key, the kernel's fields and a sha256 of their
canonical JSON. It is written to a temporary file and moved into place
(atomic, as the compile cache does); a reader that finds a wrong format, key
or checksum, or JSON that does not parse, treats the entry as missing and
writes it again. Nothing from the file is executed: it is data, read back
into the frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from .. import dtypes
from .._files import write_atomically
from .._version import __version__
from ..codegen.kernel import Assumption, CudaKernel, KernelParam
from ..ir.program import Program
from .cache import cache_dir, cache_key
from .compiler import hash_compiler_sources

log = logging.getLogger(__name__)

FORMAT = 1
_MEMORY: dict[int, tuple[Program, CudaKernel]] = {}


def emission_dir() -> Path:
    """``cache_dir() / "emitted"``, looked up on every call (``TILEVM_CACHE_DIR`` may change)."""
    return cache_dir() / "emitted"


def program_key(program: Program) -> str | None:
    """The cache key of ``program``'s emission, or None when :func:`fingerprint` cannot
    describe it."""
    digest = fingerprint(program)
    if digest is None:
        return None
    return cache_key("cuda-emission", digest, hash_compiler_sources(), __version__)


class _Opaque(Exception):
    """A value the fingerprint has no description of."""


def fingerprint(program: Program) -> str | None:
    """A sha256 of the program's structure, or None if it holds a value of an unknown kind.

    Dataclass nodes are described by their type and their fields, in order
    (not by what else an object caches on itself, nor by how pickle would
    share equal objects: either makes one program describe itself
    differently in two processes). Values with structural equality (dtypes,
    layouts, source locations) are described in full wherever they occur; IR
    values compared by identity (tensors, variables) are described at their
    first visit and referred back to after, so sharing them is part of the
    structure. Numbers, strings, enums, tuples, lists and dicts are described
    by value.
    """
    tokens: list[str] = []
    seen: dict[int, int] = {}
    keep: list[object] = []  # ids stay unique while the walk holds the objects

    def walk(value: object) -> None:
        if value is None or isinstance(value, (bool, int, float, str)):
            tokens.append(f"{type(value).__name__}:{value!r}")
        elif isinstance(value, enum.Enum):
            tokens.append(f"enum:{type(value).__qualname__}.{value.name}")
        elif isinstance(value, (tuple, list)):
            tokens.append(f"{type(value).__name__}[{len(value)}")
            for item in value:
                walk(item)
            tokens.append("]")
        elif isinstance(value, dict):
            tokens.append(f"dict[{len(value)}")
            for k, v in value.items():
                walk(k)
                walk(v)
            tokens.append("]")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            if not value.__dataclass_params__.eq:  # an IR value: shared by identity
                ref = seen.get(id(value))
                if ref is not None:
                    tokens.append(f"ref:{ref}")
                    return
                seen[id(value)] = len(seen)
                keep.append(value)
            tokens.append(f"{type(value).__module__}.{type(value).__qualname__}(")
            for field in dataclasses.fields(value):
                tokens.append(field.name)
                walk(getattr(value, field.name))
            tokens.append(")")
        else:
            raise _Opaque(type(value).__qualname__)

    try:
        walk(program)
    except (_Opaque, RecursionError):
        return None
    return hashlib.sha256("\x1f".join(tokens).encode()).hexdigest()


def emit_program(program: Program) -> CudaKernel:
    """``emit_cuda(run_pipeline(program))``, through the memory and disk caches."""
    hit = _MEMORY.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    key = program_key(program)
    kernel = None if key is None else _read(key)
    if kernel is None:
        from ..codegen import emit_cuda
        from ..passes.pipeline import run_pipeline

        kernel = emit_cuda(run_pipeline(program))
        if key is not None:
            _write(key, kernel)
    _MEMORY[id(program)] = (program, kernel)
    return kernel


# -- the entry file ----------------------------------------------------------------------------
def encode(key: str, kernel: CudaKernel) -> str:
    """The text of ``kernel``'s entry (format in the module docstring)."""
    fields = _fields(kernel)
    return json.dumps(
        {"format": FORMAT, "key": key, "kernel": fields, "sha256": _checksum(fields)},
        sort_keys=True,
    )


def decode(key: str, text: str) -> CudaKernel:
    """The kernel in an entry's ``text``; ValueError (saying why) for anything but a whole,
    matching entry."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise ValueError("not an emission entry of this format")
    if entry.get("key") != key:
        raise ValueError("the entry is for another key")
    fields = entry.get("kernel")
    if entry.get("sha256") != _checksum(fields):
        raise ValueError("checksum mismatch")
    try:
        return CudaKernel(
            name=fields["name"],
            source=fields["source"],
            params=tuple(
                KernelParam(p["name"], p["kind"], dtypes.dtype(p["dtype"]), p["ctype"])
                for p in fields["params"]
            ),
            num_threads=fields["num_threads"],
            shared_bytes=fields["shared_bytes"],
            assumptions=tuple(
                Assumption(a["param"], a["kind"], a["divisor"]) for a in fields["assumptions"]
            ),
            dynamic_shared=fields["dynamic_shared"],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed kernel fields: {err!r}") from None


def _fields(kernel: CudaKernel) -> dict[str, Any]:
    return {
        "name": kernel.name,
        "source": kernel.source,
        "params": [
            {"name": p.name, "kind": p.kind, "dtype": p.dtype.name, "ctype": p.ctype}
            for p in kernel.params
        ],
        "num_threads": kernel.num_threads,
        "shared_bytes": kernel.shared_bytes,
        "assumptions": [
            {"param": a.param, "kind": a.kind, "divisor": a.divisor} for a in kernel.assumptions
        ],
        "dynamic_shared": kernel.dynamic_shared,
    }


def _checksum(fields: Any) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _path(key: str) -> Path:
    return emission_dir() / f"{key}.json"


def _read(key: str) -> CudaKernel | None:
    path = _path(key)
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        log.warning("cannot read emission cache entry %s: %s", path, err)
        return None
    try:
        return decode(key, text)
    except ValueError as err:
        log.warning("ignoring emission cache entry %s: %s", path, err)
        return None


def _write(key: str, kernel: CudaKernel) -> None:
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, encode(key, kernel))
    except OSError as err:  # a read-only or full cache directory: emit again next time
        log.warning("cannot write emission cache entry %s: %s", path, err)


def clear() -> tuple[int, int]:
    """Remove every emission entry: (entries, bytes) removed."""
    count = size = 0
    root = emission_dir()
    for path in root.glob("*.json") if root.is_dir() else ():
        try:
            size += path.stat().st_size
            path.unlink()
            count += 1
        except FileNotFoundError:
            continue
    return count, size


__all__ = [
    "clear",
    "decode",
    "emission_dir",
    "emit_program",
    "encode",
    "fingerprint",
    "program_key",
]
