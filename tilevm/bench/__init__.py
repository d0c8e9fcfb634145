"""Benchmarks on a CUDA GPU: the timing all tilevm measurements share, and ``tilevm bench``.

How a kernel is timed (:func:`time_cuda`, used by the benchmarks and by
``tilevm.autotune``): one untimed call (it compiles and loads), then per
repetition

1. write zeros over a buffer of at least 256 MiB (twice the L2 if that is
   larger), so the call starts with a cold L2, as a layer of a real model does;
2. record a CUDA event, make the call, record a second event;

and the result is the median of the event-to-event times, in microseconds.
The flush also keeps the GPU busy while the host enqueues the call, so launch
overhead on the host does not show up as idle time between the events. The
number of repetitions is chosen from a first estimate to fill a time budget
(at least 10, at most 1000) unless given.

Nothing here imports torch until a measurement runs: ``python -m tilevm bench
gemm`` on a machine without a GPU answers with exit status 2 and one line
(``bench startup`` measures what it can without one, see :mod:`.startup`;
``bench sass`` needs none, see :mod:`.sass`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

from ..errors import TileVMError

FLUSH_BYTES = 256 << 20
MIN_REPS = 10
MAX_REPS = 1000
NO_GPU_STATUS = 2


class NoGPUError(TileVMError, RuntimeError):
    """A benchmark needs a CUDA GPU and there is none (or torch is a CPU build)."""


def require_cuda() -> Any:
    """The torch module, once it is known to see a CUDA GPU; else :class:`NoGPUError`."""
    try:
        import torch
    except ImportError as err:
        raise NoGPUError(f"needs torch with CUDA; torch is not importable ({err})") from None
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
        raise NoGPUError(
            f"needs a CUDA GPU and torch {torch.__version__} ({build}) sees none; "
            "run it on a machine with one"
        )
    return torch


# -- timing --------------------------------------------------------------------------------------
_flush_buffers: dict[int, Any] = {}


def _flush_buffer(torch: Any, device: int) -> Any:
    buffer = _flush_buffers.get(device)
    if buffer is None:
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0
        buffer = torch.empty(max(FLUSH_BYTES, 2 * l2), dtype=torch.uint8, device=device)
        _flush_buffers[device] = buffer
    return buffer


def measure_cuda(
    fn: Callable[[], Any],
    *,
    reps: int | None = None,
    budget_ms: float = 100.0,
    flush_l2: bool = True,
) -> list[float]:
    """Times of ``fn()`` on the current CUDA device in µs, one per repetition (module docs).

    ``reps`` fixes the number of repetitions; by default they fill about
    ``budget_ms`` of GPU time (including the flushes), within 10..1000.
    """
    torch = require_cuda()
    device = torch.cuda.current_device()
    flush = _flush_buffer(torch, device) if flush_l2 else None

    def run(count: int) -> list[tuple[Any, Any]]:
        events = []
        for _ in range(count):
            if flush is not None:
                flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            events.append((start, end))
        return events

    fn()  # compiles, loads, allocates: not timed
    torch.cuda.synchronize()
    if reps is None:
        # A few runs say what one repetition costs (start to start: call and flush); then
        # repetitions fill the budget.
        events = run(3)
        torch.cuda.synchronize()
        per_rep_us = events[0][0].elapsed_time(events[-1][0]) * 1e3 / (len(events) - 1)
        reps = round(min(MAX_REPS, max(MIN_REPS, budget_ms * 1e3 / max(per_rep_us, 1e-3))))
    if reps < 1:
        raise ValueError(f"reps must be at least 1; got {reps}")
    events = run(reps)
    torch.cuda.synchronize()
    return [start.elapsed_time(end) * 1e3 for start, end in events]


def time_cuda(
    fn: Callable[[], Any],
    *,
    reps: int | None = None,
    budget_ms: float = 100.0,
    flush_l2: bool = True,
) -> float:
    """The median time of ``fn()`` in µs, L2 flushed before each repetition (module docs)."""
    return statistics.median(measure_cuda(fn, reps=reps, budget_ms=budget_ms, flush_l2=flush_l2))


def copy_bandwidth(nbytes: int = 1 << 30, *, reps: int | None = None) -> float:
    """The current device's copy bandwidth in bytes/s: bytes read plus written per second.

    One device-to-device copy of ``nbytes`` (default 1 GiB, far larger than any
    L2), timed like a kernel; a quarter of the free memory if that is less.
    """
    torch = require_cuda()
    free, _ = torch.cuda.mem_get_info()
    nbytes = int(min(nbytes, free // 4)) // 16 * 16
    src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = time_cuda(lambda: dst.copy_(src), reps=reps, flush_l2=False)
    return 2 * nbytes / (us * 1e-6)


# -- the command line ----------------------------------------------------------------------------
def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``bench`` and its suites with the ``python -m tilevm`` parser."""
    from . import gemm, sass, startup

    bench = commands.add_parser(
        "bench",
        help="benchmark tilevm's kernels against torch on a CUDA GPU",
        description="Benchmarks on a CUDA GPU: medians of CUDA-event times with the L2 flushed "
        "before every repetition. Without a GPU the command exits with status 2.",
    )
    suites = bench.add_subparsers(dest="suite", required=True, metavar="SUITE")
    gemm.add_arguments(
        suites.add_parser(
            "gemm",
            help="quant_matmul for low-bit weights against cuBLAS fp16 and torch's int4 kernel",
            description=gemm.__doc__.split("\n\n")[0],
        )
    )
    startup.add_arguments(
        suites.add_parser(
            "startup",
            help="seconds from a new process to its first quant_matmul result (cold, warm cache)",
            description=startup.__doc__.split("\n\n")[0],
        )
    )
    sass.add_arguments(
        suites.add_parser(
            "sass",
            help="SASS instructions of the GEMM kernels' compute per weight tile (no GPU needed)",
            description=sass.__doc__.split("\n\n")[0],
        )
    )


def run_command(args: argparse.Namespace) -> int:
    """Run ``python -m tilevm bench SUITE``; exit status 2 with one line when there is no GPU."""
    from . import gemm, sass, startup

    suites = {"gemm": gemm.run, "startup": startup.run, "sass": sass.run}
    try:
        return suites[args.suite](args)
    except NoGPUError as err:
        print(f"tilevm bench {args.suite}: {err}", file=sys.stderr)
        return NO_GPU_STATUS
