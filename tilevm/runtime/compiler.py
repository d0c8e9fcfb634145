"""CUDA C++ to a cubin for one GPU architecture, through NVRTC.

tilevm always builds a cubin for the exact architecture of the device and
never leaves PTX for the driver to JIT: PTX from a newer NVRTC does not load
on an older driver, its cubins do (checked on an H100 with driver 580). One
NVRTC compilation for a real architecture (``--gpu-architecture=sm_80``)
yields both: the PTX, kept for inspection and for tests that look for the
instructions meant to be there, and the cubin that gets loaded. ``-Xptxas=-v``
puts the ptxas report (registers, spills) in the log, parsed into a
:class:`~tilevm.runtime.ptxas.PtxasReport` kept next to the binary.

The options are fixed except for what the caller adds: C++17, device code by
default, the target architecture, the ptxas report; never fast math (tilevm's
numerics are checked bit for bit against its interpreter).

Generated code must not need CUDA headers: NVRTC has no built-in
``cuda_fp16.h`` and tilevm does not depend on the wheel that ships it; halves
are raw ``unsigned short`` and tensor-core work is inline PTX.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TileVMError
from . import nvrtc
from .ptxas import FunctionResources, PtxasReport, parse_ptxas_report

logger = logging.getLogger(__name__)

ELF_MAGIC = b"\x7fELF"


class TargetError(TileVMError, ValueError):
    """A GPU architecture that tilevm cannot compile for (malformed, or unknown to NVRTC)."""


class CudaCompileError(TileVMError):
    """NVRTC rejected CUDA source; the message has the log and the lines around the first error.

    Attributes: ``name`` (the kernel), ``target``, ``options``, ``log`` (NVRTC's
    full log), ``source``, ``ptx`` (empty unless the error came from ptxas, i.e.
    from inline PTX), and ``line``: the first error's line in ``source`` (or in
    ``ptx`` for a ptxas error), ``None`` if the log names none.
    """

    def __init__(
        self,
        name: str,
        target: Target,
        options: tuple[str, ...],
        log: str,
        source: str,
        ptx: str = "",
    ):
        self.name = name
        self.target = target
        self.options = options
        self.log = log
        self.source = source
        self.ptx = ptx
        self.line: int | None = None
        message = f"NVRTC could not compile kernel {name!r} for {target}:\n{log.rstrip()}"
        if (m := _source_error(log, f"{name}.cu")) is not None:
            self.line = m
            message += f"\n\n{name}.cu around line {m}:\n{numbered_excerpt(source, m)}"
        elif ptx and (m := _ptx_error(log)) is not None:
            self.line = m
            message += f"\n\ngenerated PTX around line {m}:\n{numbered_excerpt(ptx, m)}"
        super().__init__(message)


def numbered_excerpt(text: str, line: int, context: int = 3) -> str:
    """Lines ``line - context .. line + context`` of ``text``, numbered, ``line`` marked ``>``."""
    lines = text.splitlines()
    lo, hi = max(1, line - context), min(len(lines), line + context)
    width = len(str(hi))
    return "\n".join(
        f"{'>' if i == line else ' '} {i:>{width}} | {lines[i - 1]}" for i in range(lo, hi + 1)
    )


def _source_error(log: str, filename: str) -> int | None:
    # NVRTC writes front-end errors as `name.cu(12): error: ...`; errors inside headers name
    # another file and get no excerpt.
    pattern = re.compile(rf"^{re.escape(filename)}\((\d+)\): (?:catastrophic )?error", re.M)
    m = pattern.search(log)
    return int(m.group(1)) if m else None


def _ptx_error(log: str) -> int | None:
    m = re.search(r"^ptxas application ptx input, line (\d+); error", log, re.M)
    return int(m.group(1)) if m else None


# -- targets -------------------------------------------------------------------------------------
_ARCH = re.compile(r"sm_(\d{2,3})([af]?)")


@functools.cache
def _supported() -> tuple[int, ...]:
    return nvrtc.supported_archs()


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor), asked once per process."""
    return nvrtc.version()


@dataclass(frozen=True, slots=True)
class Target:
    """A real GPU architecture to build a cubin for: ``sm_80``, ``sm_86``, ``sm_89``, ``sm_90a``.

    The constructor checks the spelling only; :meth:`parse`, :meth:`for_device`
    and :func:`compile_cuda` also check that the installed NVRTC supports it
    (loading NVRTC on first use). The ``a`` suffix (architecture-specific
    features such as ``wgmma``) exists from ``sm_90``, ``f`` (family) from
    ``sm_100``. ``compute_XX`` is refused: tilevm never ships PTX.
    """

    arch: str

    def __post_init__(self) -> None:
        m = _ARCH.fullmatch(self.arch) if isinstance(self.arch, str) else None
        if m is None:
            hint = (
                " (a virtual architecture: tilevm builds cubins, never PTX for the driver to JIT)"
                if isinstance(self.arch, str) and self.arch.startswith("compute_")
                else ""
            )
            raise TargetError(
                f"a target is a real GPU architecture such as 'sm_80' or 'sm_90a'; "
                f"got {self.arch!r}{hint}"
            )
        cc, suffix = int(m.group(1)), m.group(2)
        if (suffix == "a" and cc < 90) or (suffix == "f" and cc < 100):
            first = "sm_90" if suffix == "a" else "sm_100"
            raise TargetError(
                f"the '{suffix}' suffix exists from {first} on; got {self.arch!r} "
                f"(did you mean 'sm_{cc}'?)"
            )

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"sm_90a"`` (any case, blanks around ignored) -> ``Target``, checked against NVRTC."""
        if not isinstance(text, str):
            raise TargetError(f"a target is a string such as 'sm_80'; got {text!r}")
        return cls(text.strip().lower()).check_supported()

    @classmethod
    def for_device(cls, major: int, minor: int) -> Target:
        """The target for a device of compute capability ``major.minor``: ``sm_90a`` on Hopper
        (to use ``wgmma`` and TMA), ``sm_{major}{minor}`` elsewhere."""
        suffix = "a" if (major, minor) == (9, 0) else ""
        return cls(f"sm_{major}{minor}{suffix}").check_supported()

    @property
    def compute_capability(self) -> tuple[int, int]:
        """``(9, 0)`` for ``sm_90a``, ``(12, 1)`` for ``sm_121``."""
        cc = int(_ARCH.fullmatch(self.arch).group(1))
        return divmod(cc, 10)

    def check_supported(self) -> Target:
        """This target if the installed NVRTC can compile for it; else :class:`TargetError`."""
        major, minor = self.compute_capability
        archs = _supported()
        if major * 10 + minor not in archs:
            v = ".".join(map(str, nvrtc_version()))
            raise TargetError(
                f"NVRTC {v} cannot compile for {self.arch}; it supports "
                f"{', '.join(f'sm_{a}' for a in archs)} (plus 'a' variants from sm_90)"
            )
        return self

    def __str__(self) -> str:
        return self.arch


def as_target(target: Target | str) -> Target:
    """A :class:`Target` from a ``Target`` or an architecture string."""
    return target if isinstance(target, Target) else Target.parse(target)


# -- the compiler's own sources ------------------------------------------------------------------
@functools.cache
def hash_compiler_sources() -> str:
    """sha256 over every ``tilevm/**/*.py`` file (relative path and bytes), once per process.

    All of the package, not a hand-kept list of the modules that affect code
    generation: a list goes stale silently, and hashing ~50 small files costs
    a millisecond. The price is that editing an unrelated module (the CLI, a
    docstring) invalidates the compile cache, which only costs recompiling.
    """
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


# -- compiling -----------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARCH_OPTIONS = ("--gpu-architecture", "-arch")


def compile_options(
    target: Target,
    options: Sequence[str] = (),
    include_dirs: Sequence[str | Path] = (),
    lineinfo: bool = False,
) -> tuple[str, ...]:
    """The full NVRTC option list :func:`compile_cuda` uses (and the cache key covers).

    ``--std=c++17 -default-device --gpu-architecture=<arch> -Xptxas=-v``, then
    ``-lineinfo`` if asked, ``-I<dir>`` per include directory, then ``options``.
    ``options`` may not set the architecture: that is the target's job.
    """
    extra = tuple(options)
    for opt in extra:
        if not isinstance(opt, str):
            raise TypeError(f"NVRTC options are strings; got {opt!r} in {extra!r}")
        if opt.startswith(_ARCH_OPTIONS):
            raise TargetError(
                f"pass the architecture as the target, not as an option; got {opt!r} in {extra!r}"
            )
    return (
        "--std=c++17",
        "-default-device",
        f"--gpu-architecture={target.arch}",
        "-Xptxas=-v",
        *(("-lineinfo",) if lineinfo else ()),
        *(f"-I{d}" for d in include_dirs),
        *extra,
    )


@dataclass(frozen=True, slots=True)
class CompiledModule:
    """A cubin with the PTX, log and ptxas report of the compilation that made it.

    ``name`` is the kernel the module was built for (a module may hold more
    entry points; ``report.entries`` lists them). ``options`` is the full NVRTC
    option list. ``compile_time_s`` is how long NVRTC took (the original
    compilation's time for a module read from the cache); it takes no part in
    equality.
    """

    name: str
    target: Target
    cubin: bytes = field(repr=False)
    ptx: str = field(repr=False)
    log: str = field(repr=False)
    report: PtxasReport = field(repr=False)
    nvrtc_version: tuple[int, int]
    options: tuple[str, ...] = field(repr=False)
    compile_time_s: float = field(default=0.0, compare=False, repr=False)

    @property
    def kernel(self) -> FunctionResources | None:
        """The ptxas record of the kernel named ``name``, if ptxas reported one by that name."""
        return self.report.get(self.name)

    def __repr__(self) -> str:
        k = self.kernel
        regs = "?" if k is None or k.registers is None else k.registers
        return (
            f"CompiledModule({self.name!r}, {self.target}, cubin={len(self.cubin)} bytes, "
            f"registers={regs}, spill_bytes={self.report.spill_bytes})"
        )


def compile_cuda(
    source: str,
    name: str,
    target: Target | str,
    *,
    options: Sequence[str] = (),
    include_dirs: Sequence[str | Path] = (),
    lineinfo: bool = False,
) -> CompiledModule:
    """Compile CUDA C++ ``source`` to a cubin (and PTX) for ``target`` with NVRTC.

    Parameters
    ----------
    source
        The translation unit; it must not include CUDA headers (see the module docstring).
    name
        The kernel it is built for, a C identifier; NVRTC calls the source ``<name>.cu``.
    target
        The architecture, a :class:`Target` or a string such as ``"sm_90a"``.
    options, include_dirs, lineinfo
        Added to the fixed options; see :func:`compile_options`.

    Raises
    ------
    CudaCompileError
        The source does not compile; the message carries NVRTC's log and the
        numbered lines around the first error.
    TargetError
        NVRTC cannot compile for ``target``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TileVMError(f"a kernel name is a C identifier; got {name!r}")
    target = as_target(target).check_supported()
    opts = compile_options(target, options, include_dirs, lineinfo)
    api = nvrtc.bindings()
    start = time.perf_counter()
    program = nvrtc.check(
        api.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], []),
        "nvrtcCreateProgram",
    )
    try:
        encoded = [o.encode() for o in opts]
        (status,) = api.nvrtcCompileProgram(program, len(encoded), encoded)
        log = _read(api, program, "ProgramLog")
        failed = (
            api.nvrtcResult.NVRTC_ERROR_COMPILATION,
            api.nvrtcResult.NVRTC_ERROR_INVALID_OPTION,
        )
        if status in failed:
            # A ptxas error (bad inline PTX) comes after NVRTC produced PTX; show that PTX.
            ptx = _read(api, program, "PTX") if _ptx_error(log) is not None else ""
            raise CudaCompileError(name, target, opts, log, source, ptx)
        nvrtc.check((status,), "nvrtcCompileProgram")
        ptx = _read(api, program, "PTX")
        cubin = _read_bytes(api, program, "CUBIN")
    finally:
        api.nvrtcDestroyProgram(program)  # its status is moot; raising here would hide the error
    elapsed = time.perf_counter() - start
    assert cubin.startswith(ELF_MAGIC), f"NVRTC gave no cubin for {target}"
    module = CompiledModule(
        name=name,
        target=target,
        cubin=cubin,
        ptx=ptx,
        log=log,
        report=parse_ptxas_report(log),
        nvrtc_version=nvrtc_version(),
        options=opts,
        compile_time_s=elapsed,
    )
    logger.debug(
        "compiled %s for %s in %.3f s: %d-byte cubin, %s registers, %d spill bytes",
        name,
        target,
        elapsed,
        len(cubin),
        module.report.max_registers,
        module.report.spill_bytes,
    )
    return module


def _read_bytes(api, program, what: str) -> bytes:
    """``nvrtcGet<what>`` into a buffer of ``nvrtcGet<what>Size`` bytes."""
    size = nvrtc.check(getattr(api, f"nvrtcGet{what}Size")(program), f"nvrtcGet{what}Size")
    if not size:
        return b""
    buffer = bytearray(size)
    nvrtc.check(getattr(api, f"nvrtcGet{what}")(program, buffer), f"nvrtcGet{what}")
    return bytes(buffer)


def _read(api, program, what: str) -> str:
    """A NUL-terminated text result (PTX, the log) as a ``str``."""
    return _read_bytes(api, program, what).rstrip(b"\0").decode(errors="replace")
