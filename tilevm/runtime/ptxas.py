"""The ptxas resource report: registers, spills, stack and shared memory per function.

With ``-Xptxas=-v`` ptxas appends lines like these to the NVRTC program log
(NVRTC 13.5, ``sm_80``, a kernel that spills and a ``__noinline__`` helper)::

    ptxas info    : 0 bytes gmem
    ptxas info    : Compiling entry function 'spill' for 'sm_80'
    ptxas info    : Function properties for spill
    ptxas         .     256 bytes stack frame, 280 bytes spill stores, 356 bytes spill loads
    ptxas info    : Used 32 registers, used 0 barriers, 256 bytes cumulative stack size, ...
    ptxas info    : Compile time = 9.355 ms
    ptxas info    : Function properties for _Z6helperf
    ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads

which :func:`parse_ptxas_report` reads as

    ============  =====  =========  ========  =====  ============  ===========  ====
    function      entry  registers  barriers  stack  spill stores  spill loads  smem
    ============  =====  =========  ========  =====  ============  ===========  ====
    spill         yes    32         0         256    280           356          0
    _Z6helperf    no     -          -         0      0             0            0
    ============  =====  =========  ========  =====  ============  ===========  ====

The parser goes by phrases, not by columns, because the layout varies between
versions: nvcc indents the stack-frame line instead of prefixing ``ptxas .``,
older ptxas writes shared memory as ``1024+16 bytes smem`` and has no
barrier count, sm_90 omits ``cmem``. A line naming a function (``Compiling
entry function 'F'``, ``Function properties for F``) makes it the current one;
numbers on the following lines belong to it. A ``-warn-spills`` warning names
its function (``... in function 'F', 8 bytes spill stores, ...``) and applies
to that one only. Phrases it does not know are ignored; the raw text is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPERTIES = re.compile(r"Function properties for '?([^'\s]+)'?")
_IN_FUNCTION = re.compile(r"in function '([^']+)'")
_NUMBERS = {
    "stack_frame_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
    "registers": re.compile(r"Used (\d+) registers", re.IGNORECASE),
    "barriers": re.compile(r"used (\d+) barriers", re.IGNORECASE),
    "shared_bytes": re.compile(r"(\d+)(?:\+(\d+))? bytes smem"),
}


@dataclass(frozen=True, slots=True)
class FunctionResources:
    """What ptxas reported for one function; ``None`` where it said nothing.

    ``entry`` is true for a kernel (``__global__``), false for a device
    function ptxas kept out of line. Byte counts are per thread, except
    ``shared_bytes`` (static shared memory per block).
    """

    name: str
    entry: bool = False
    registers: int | None = None
    barriers: int | None = None
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    shared_bytes: int = 0

    @property
    def spill_bytes(self) -> int:
        """Spill stores plus spill loads, in bytes per thread; 0 when nothing spills."""
        return self.spill_store_bytes + self.spill_load_bytes


@dataclass(frozen=True, slots=True)
class PtxasReport:
    """The ptxas report of one compilation: a record per function, the warnings, the raw lines."""

    functions: tuple[FunctionResources, ...] = ()
    warnings: tuple[str, ...] = ()
    raw: str = ""

    def __getitem__(self, name: str) -> FunctionResources:
        for f in self.functions:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.functions) or "none"
        raise KeyError(f"ptxas reported no function {name!r}; it reported: {known}")

    def get(self, name: str) -> FunctionResources | None:
        """The record for ``name``, or ``None``."""
        return next((f for f in self.functions if f.name == name), None)

    @property
    def entries(self) -> tuple[FunctionResources, ...]:
        """The kernels (entry functions), in the order ptxas compiled them."""
        return tuple(f for f in self.functions if f.entry)

    @property
    def spill_bytes(self) -> int:
        """Spill stores plus loads summed over every function; 0 means nothing spilled."""
        return sum(f.spill_bytes for f in self.functions)

    @property
    def max_registers(self) -> int | None:
        """The most registers any kernel uses, or ``None`` if ptxas reported none."""
        counts = [f.registers for f in self.functions if f.registers is not None]
        return max(counts) if counts else None

    def __str__(self) -> str:
        if not self.functions:
            return "(no ptxas report)"
        rows = [
            (
                f.name,
                "yes" if f.entry else "no",
                "-" if f.registers is None else str(f.registers),
                str(f.stack_frame_bytes),
                f"{f.spill_store_bytes}/{f.spill_load_bytes}",
                str(f.shared_bytes),
            )
            for f in self.functions
        ]
        headers = ("function", "entry", "registers", "stack", "spills st/ld", "smem")
        widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (headers, *rows)
        )


def parse_ptxas_report(log: str) -> PtxasReport:
    """Read the ``-Xptxas=-v`` report out of an NVRTC (or nvcc) log; see the module docstring.

    Never raises: a log without a report gives an empty :class:`PtxasReport`.
    ``raw`` holds the lines that start with ``ptxas`` and the indented lines
    that continue them.
    """
    records: dict[str, dict[str, object]] = {}
    warnings: list[str] = []
    raw: list[str] = []
    current: str | None = None
    in_report = False
    for line in log.splitlines():
        stripped = line.strip()
        if stripped.startswith("ptxas"):
            in_report = True
        elif not (in_report and line[:1].isspace() and stripped):
            in_report = False
            continue
        raw.append(line.rstrip())
        if stripped.startswith("ptxas warning"):
            warnings.append(stripped.split(":", 1)[-1].strip())

        if m := _ENTRY.search(line):
            current = m.group(1)
            records.setdefault(current, {"name": current})["entry"] = True
            continue
        if m := _PROPERTIES.search(line):
            current = m.group(1)
            records.setdefault(current, {"name": current})
            continue
        named = _IN_FUNCTION.search(line)
        name = named.group(1) if named else current
        if name is None:
            continue
        for field, pattern in _NUMBERS.items():
            if m := pattern.search(line):
                value = sum(int(g) for g in m.groups() if g is not None)
                records.setdefault(name, {"name": name})[field] = value
    functions = tuple(FunctionResources(**fields) for fields in records.values())  # type: ignore[arg-type]
    return PtxasReport(functions, tuple(warnings), "\n".join(raw))
