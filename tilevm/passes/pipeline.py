"""The pass pipeline: one list of named ``Program -> Program`` functions, run in order.

The runner verifies the program before the first pass and after every pass
(a pass that breaks the IR is caught where it happened), times each pass, and
with ``TILEVM_DUMP_IR=DIR`` writes the program after every pass to
``DIR/<kernel>/<nn>-<pass>.txt`` (written atomically). Passes hold no state
between runs and touch no globals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import write_atomically
from ..ir.printer import format_program
from ..ir.program import Program
from ..ir.verify import verify
from .infer_layouts import infer_layouts
from .plan_shared_memory import plan_shared_memory
from .select_instructions import select_instructions
from .vectorise import vectorise

Pass = Callable[[Program], Program]


@dataclass(frozen=True)
class PassTiming:
    name: str
    seconds: float


# The order of DESIGN.md: verify (the runner, before and after every pass), infer layouts, plan
# shared memory, vectorise, select instructions; lowering to per-thread code is tilevm.codegen.
PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("infer_layouts", infer_layouts),
    ("plan_shared_memory", plan_shared_memory),
    ("vectorise", vectorise),
    ("select_instructions", select_instructions),
)


def run_pipeline(
    program: Program,
    passes: Sequence[tuple[str, Pass]] = PIPELINE,
    *,
    dump_dir: str | os.PathLike | None = None,
    timings: list[PassTiming] | None = None,
) -> Program:
    """Run ``passes`` over ``program``, verifying after each; see the module docs."""
    dump = Path(dump_dir) if dump_dir is not None else _env_dump_dir()
    verify(program)
    if dump is not None:
        _dump(dump, program, 0, "input")
    for i, (name, run) in enumerate(passes, start=1):
        start = time.perf_counter()
        program = run(program)
        elapsed = time.perf_counter() - start
        if timings is not None:
            timings.append(PassTiming(name, elapsed))
        verify(program)
        if dump is not None:
            _dump(dump, program, i, name)
    return program


def _env_dump_dir() -> Path | None:
    value = os.environ.get("TILEVM_DUMP_IR")
    return Path(value) if value else None


def _dump(root: Path, program: Program, index: int, name: str) -> None:
    folder = root / program.name
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / f"{index:02d}-{name}.txt", format_program(program))
