"""Benchmark tilevm.ops.quant_matmul against cuBLAS fp16 (x @ w.T) and torch's int4 kernel.

For each weight type, weight shape (N, K) and number of rows M: quantise a
random weight (group size ``--group``, scales in the activation type), check
``quant_matmul(x, qweight)`` against ``x.float() @ qweight.dequantize().float().T``
(relative error: max |difference| / max |reference|; at most 2e-3 for fp16
activations, 1e-2 for bf16, else the command fails), then time it, the dense
matmul in the activation type, and ``torch._weight_int4pack_mm`` (tinygemm)
where torch has it and it takes the shape. Times are medians of CUDA-event
times with the L2 flushed before every repetition (:func:`tilevm.bench.time_cuda`).

Columns: µs; TFLOP/s (2·M·N·K / time); BW %: the bytes of packed weights,
scales and zeros per second as a percentage of the device's copy bandwidth
(a large device-to-device copy, bytes read plus written, measured once); the
speedup over the dense matmul; torch int4 µs. The table is printed, and
written with the device and command to ``--out`` (``gemm.txt``), with
``gemm.csv`` and a plot ``gemm.png`` (needs matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import dtypes
from .._files import write_atomically
from .._version import __version__
from ..errors import TileVMError
from . import copy_bandwidth, require_cuda, time_cuda

DEFAULT_DTYPES = ("uint4", "int4", "int3", "int2", "int8", "float6_e3m2", "float4_e2m1")
DEFAULT_SHAPES = ((12288, 4096), (4096, 4096), (4096, 14336), (28672, 4096))
DEFAULT_MS = (1, 4, 16, 64, 256, 1024, 4096)
GROUP_SIZES = (32, 64, 128, -1)
TOLERANCE = {"fp16": 2e-3, "bf16": 1e-2}
CSV_FIELDS = (
    "dtype",
    "m",
    "n",
    "k",
    "us",
    "tflops",
    "bandwidth_pct",
    "weight_bytes",
    "copy_bandwidth_gbs",
    "dense_us",
    "speedup",
    "torch_int4_us",
    "rel_error",
    "tolerance",
    "ok",
    "note",
)


# -- arguments -----------------------------------------------------------------------------------
def _items(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list; got nothing")
    return items


def parse_dtypes(text: str) -> tuple[str, ...]:
    """``"int4,e3m2"`` -> ``("int4", "float6_e3m2")``: low-bit type names, canonical."""
    names = []
    for item in _items(text):
        try:
            t = dtypes.dtype(item)
        except TileVMError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        if t not in dtypes.LOW_BIT_DTYPES:
            raise argparse.ArgumentTypeError(f"weights are 1 to 8 bits wide; got {t.name}")
        names.append(t.name)
    return tuple(names)


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"12288x4096,4096x4096"`` -> ``((12288, 4096), (4096, 4096))``: (N, K) pairs."""
    shapes = []
    for item in _items(text):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(
                f"a shape is NxK of positive ints (e.g. 12288x4096); got {item!r}"
            )
        shapes.append((int(parts[0]), int(parts[1])))
    return tuple(shapes)


def parse_ints(text: str) -> tuple[int, ...]:
    """``"1,16,4096"`` -> ``(1, 16, 4096)``: positive ints."""
    values = []
    for item in _items(text):
        if not item.isdigit() or int(item) < 1:
            raise argparse.ArgumentTypeError(f"expected positive ints; got {item!r}")
        values.append(int(item))
    return tuple(values)


def _group(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in GROUP_SIZES:
        raise argparse.ArgumentTypeError(f"the group size is one of {GROUP_SIZES}; got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``"16"`` -> ``16``: one positive int."""
    (value,) = parse_ints(text)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_shapes = ",".join(f"{n}x{k}" for n, k in DEFAULT_SHAPES)
    parser.add_argument(
        "--dtypes",
        type=parse_dtypes,
        default=DEFAULT_DTYPES,
        metavar="LIST",
        help=f"weight types, comma-separated (default: {','.join(DEFAULT_DTYPES)})",
    )
    parser.add_argument(
        "--shapes",
        type=parse_shapes,
        default=DEFAULT_SHAPES,
        metavar="LIST",
        help=f"weight shapes NxK (out x in features), comma-separated (default: {default_shapes})",
    )
    parser.add_argument(
        "--m",
        type=parse_ints,
        default=DEFAULT_MS,
        metavar="LIST",
        help=f"rows of x, comma-separated (default: {','.join(map(str, DEFAULT_MS))})",
    )
    parser.add_argument(
        "--group",
        type=_group,
        default=128,
        metavar="G",
        help="quantisation group size: 32, 64, 128 or -1 (per channel) (default: 128)",
    )
    parser.add_argument(
        "--act",
        choices=tuple(TOLERANCE),
        default="fp16",
        help="activation (and scale) type (default: fp16)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        metavar="DIR",
        help="where gemm.txt, gemm.csv and gemm.png go (default: bench-results)",
    )
    parser.add_argument(
        "--reps",
        type=positive_int,
        default=None,
        metavar="N",
        help="timed repetitions per measurement (default: enough for about 100 ms)",
    )


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Result:
    """One (dtype, M, N, K) measurement; ``us`` is None when the kernel failed (see ``note``)."""

    dtype: str
    m: int
    n: int
    k: int
    us: float | None
    weight_bytes: int
    copy_bandwidth: float  # bytes/s, read + written
    dense_us: float | None
    int4_us: float | None
    error: float | None  # relative to the reference's largest magnitude
    tolerance: float
    note: str = ""

    @property
    def tflops(self) -> float | None:
        return None if not self.us else 2 * self.m * self.n * self.k / (self.us * 1e-6) / 1e12

    @property
    def bandwidth_pct(self) -> float | None:
        if not self.us or not self.copy_bandwidth:
            return None
        return 100 * self.weight_bytes / (self.us * 1e-6) / self.copy_bandwidth

    @property
    def speedup(self) -> float | None:
        return None if not self.us or self.dense_us is None else self.dense_us / self.us

    @property
    def ok(self) -> bool:
        return self.us is not None and self.error is not None and self.error <= self.tolerance


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _error(r: Result) -> str:
    if r.error is None:
        return "FAIL"
    text = f"{r.error:.1e}"
    return text if r.ok else f"{text} FAIL"


def table_rows(results: Sequence[Result], act: str = "fp16") -> tuple[list[str], list[list[str]]]:
    """Headers and text cells of the results table."""
    headers = [
        "dtype",
        "M",
        "N",
        "K",
        "µs",
        "TFLOP/s",
        "BW %",
        f"{act} µs",
        f"vs {act}",
        "torch int4 µs",
        "rel err",
    ]
    rows = []
    for r in results:
        speedup = r.speedup
        rows.append(
            [
                r.dtype,
                str(r.m),
                str(r.n),
                str(r.k),
                _fmt(r.us),
                _fmt(r.tflops, 2),
                _fmt(r.bandwidth_pct),
                _fmt(r.dense_us),
                "-" if speedup is None else f"{speedup:.2f}x",
                _fmt(r.int4_us),
                _error(r),
            ]
        )
    return headers, rows


def format_table(results: Sequence[Result], act: str = "fp16") -> str:
    """The results as aligned text: the type left-aligned, numbers right-aligned."""
    headers, rows = table_rows(results, act)
    widths = [max(len(c) for c in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:]))
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(results: Sequence[Result], path: str | Path) -> Path:
    """One row per result, columns ``CSV_FIELDS``; empty cells for what was not measured.
    Written atomically: a reader (or a run cut short) sees a whole file."""
    path = Path(path)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_FIELDS)
    for r in results:
        values = {
            "dtype": r.dtype,
            "m": r.m,
            "n": r.n,
            "k": r.k,
            "us": r.us,
            "tflops": r.tflops,
            "bandwidth_pct": r.bandwidth_pct,
            "weight_bytes": r.weight_bytes,
            "copy_bandwidth_gbs": r.copy_bandwidth / 1e9,
            "dense_us": r.dense_us,
            "speedup": r.speedup,
            "torch_int4_us": r.int4_us,
            "rel_error": r.error,
            "tolerance": r.tolerance,
            "ok": int(r.ok),
            "note": r.note,
        }
        writer.writerow([_csv_value(values[f]) for f in CSV_FIELDS])
    write_atomically(path, text.getvalue())
    return path


def plot(results: Sequence[Result], path: str | Path, title: str = "", act: str = "fp16") -> Path:
    """µs and BW % against M, one column of plots per weight shape, saved as a PNG.

    Raises :class:`TileVMError` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TileVMError(
            "plotting needs matplotlib (pip install 'tilevm[plot]'); the table and CSV are written"
        ) from None
    shapes = sorted({(r.n, r.k) for r in results})
    fig, axes = plt.subplots(
        2, max(1, len(shapes)), figsize=(4.5 * max(1, len(shapes)), 7), squeeze=False
    )
    for col, (n, k) in enumerate(shapes):
        mine = [r for r in results if (r.n, r.k) == (n, k)]
        top, bottom = axes[0][col], axes[1][col]
        for name in dict.fromkeys(r.dtype for r in mine):
            rows = sorted((r for r in mine if r.dtype == name and r.us), key=lambda r: r.m)
            if rows:
                ms = [r.m for r in rows]
                top.plot(ms, [r.us for r in rows], marker="o", label=name)
                bottom.plot(ms, [r.bandwidth_pct for r in rows], marker="o", label=name)
        for label, attr, style in (
            (f"cuBLAS {act}", "dense_us", "k--"),
            ("torch int4", "int4_us", "k:"),
        ):
            points = sorted({(r.m, getattr(r, attr)) for r in mine if getattr(r, attr)})
            if points:
                top.plot(*zip(*points), style, label=label)
        top.set_title(f"N={n}, K={k}")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("M")
            ax.grid(True, which="both", alpha=0.3)
        top.set_yscale("log")
        top.set_ylabel("µs (median, L2 flushed)")
        bottom.set_ylabel("weights+scales bytes/s, % of copy")
        bottom.set_ylim(bottom=0)
    axes[0][0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _short(err: BaseException, limit: int = 160) -> str:
    """The first line of an error, cut to ``limit`` characters (torch's can run to pages)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- torch's int4 kernel -------------------------------------------------------------------------
def prepare_torch_int4(torch: Any, w: Any, group_size: int) -> tuple[Callable | None, str]:
    """``(fn, note)``: ``fn(x)`` runs ``torch._weight_int4pack_mm`` on ``w`` quantised to int4,
    or None with the reason.

    The weight's packed form changed across torch versions: uint8 ``[N, K/2]``
    (two codes a byte) since 2.5, int32 ``[N, K]`` before; both are tried. The
    CUDA kernel wants bf16 activations on some versions: the activation type
    is tried first, then bf16 (said in the note).
    """
    mm = getattr(torch, "_weight_int4pack_mm", None)
    convert = getattr(torch, "_convert_weight_to_int4pack", None)
    if mm is None or convert is None:
        return None, f"torch {torch.__version__} has no _weight_int4pack_mm"
    n, k = w.shape
    group = k if group_size == -1 else group_size
    if group not in (32, 64, 128, 256) or n % 8 or k % 32:
        return None, f"torch int4 takes groups of 32..256, N % 8 == 0, K % 32 == 0 (N={n}, K={k})"
    inner_k_tiles = next(t for t in (8, 4, 2) if k % (16 * t) == 0)
    wf = w.float().reshape(n, k // group, group)
    scale = wf.abs().amax(-1).clamp_min(1e-8) / 7
    codes = ((wf / scale[..., None]).round().clamp(-8, 7) + 8).to(torch.int32).reshape(n, k)
    # tinygemm dequantises (q - 8) * scale + zero; [K / group, N, 2] of (scale, zero).
    scales_zeros = torch.stack([scale.T, torch.zeros_like(scale.T)], dim=-1).contiguous()
    packed, errors = None, []
    for form in ("uint8", "int32"):
        try:
            q = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8) if form == "uint8" else codes
            packed = convert(q.contiguous(), inner_k_tiles)
            break
        except Exception as err:  # the other form, or no kernel for this device
            errors.append(f"{form}: {_short(err)}")
    if packed is None:
        return None, "torch int4 weight packing failed (" + "; ".join(errors) + ")"
    x = torch.randn(1, k, device=w.device, dtype=w.dtype)
    for dtype in dict.fromkeys((w.dtype, torch.bfloat16)):
        sz = scales_zeros.to(dtype)
        try:
            y = mm(x.to(dtype), packed, group, sz)
            if y.is_cuda:
                torch.cuda.synchronize()  # an asynchronous error shows here, not in the timing
            if tuple(y.shape) != (1, n):
                raise ValueError(f"output shape {tuple(y.shape)}")
        except Exception as err:
            errors.append(f"{dtype}: {_short(err)}")
            continue
        note = "" if dtype == w.dtype else "torch int4 runs with bf16 activations"
        return (lambda x, d=dtype, sz=sz: mm(x.to(d), packed, group, sz)), note
    return None, "torch._weight_int4pack_mm failed (" + "; ".join(errors) + ")"


# -- running -------------------------------------------------------------------------------------
def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _time_int4(int4: Callable | None, x: Any, reps: int | None, notes: list[str]) -> float | None:
    if int4 is None:
        return None
    try:
        return time_cuda(lambda: int4(x), reps=reps)
    except Exception as err:
        notes.append(f"torch int4 failed for x of shape {list(x.shape)}: {_short(err)}")
        return None


def measure(
    args: argparse.Namespace,
    torch: Any,
    notes: list[str],
    device: str = "cuda",
    on_result: Callable[[list[Result]], None] | None = None,
) -> list[Result]:
    """Every (dtype, shape, M) of ``args``, with progress lines on stderr.

    ``device="cpu"`` runs the same steps on the interpreter (tests do, with a
    fake timer); the numbers only mean something on a GPU. ``on_result`` is
    called with the results so far after each one (``run`` rewrites the CSV,
    so a run cut short still leaves what it measured).

    1-bit weights exist only as uint1 with zero points (the levels 0 and 1
    times a scale, shifted), so ``uint1`` is quantised with them; every
    other type without.
    """
    import tilevm

    try:
        from ..ops import quant_matmul
    except ImportError as err:
        raise TileVMError(f"tilevm.ops.quant_matmul is not available ({err})") from None

    act = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.act]
    tolerance = TOLERANCE[args.act]
    _progress("measuring the copy bandwidth ...")
    bandwidth = copy_bandwidth(reps=args.reps)
    _progress(f"copy bandwidth: {bandwidth / 1e12:.2f} TB/s")
    total = len(args.dtypes) * len(args.shapes) * len(args.m)
    count = 0
    results = []
    gen = torch.Generator(device=device).manual_seed(0)
    for n, k in args.shapes:
        w = torch.randn(n, k, device=device, dtype=act, generator=gen)
        xs = {m: torch.randn(m, k, device=device, dtype=act, generator=gen) for m in args.m}
        dense = {m: time_cuda(lambda x=xs[m], w=w: x @ w.T, reps=args.reps) for m in args.m}
        int4, note = prepare_torch_int4(torch, w, args.group)
        if note:
            notes.append(f"N={n}, K={k}: {note}")
        int4_us = {m: _time_int4(int4, xs[m], args.reps, notes) for m in args.m}
        for name in args.dtypes:
            blank = {
                m: Result(name, m, n, k, None, 0, bandwidth, dense[m], int4_us[m], None, tolerance)
                for m in args.m
            }
            try:
                zero_point = tilevm.dtype(name).nbits == 1
                qw = tilevm.quantize(w, name, group_size=args.group, zero_point=zero_point)
                reference_w = qw.dequantize().float()
            except Exception as err:
                count += len(args.m)
                why = f"quantize failed: {type(err).__name__}: {_short(err)}"
                _progress(f"[{count}/{total}] {name} N={n} K={k}: {why}")
                results.extend(replace(blank[m], note=why) for m in args.m)
                if on_result is not None:
                    on_result(results)
                continue
            for m in args.m:
                count += 1
                x = xs[m]
                us = error = None
                why = ""
                try:
                    y = quant_matmul(x, qw)
                    reference = x.float() @ reference_w.T
                    scale = reference.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
                    error = float(((y.float() - reference).abs().max() / scale).item())
                    del y, reference
                    us = time_cuda(lambda x=x, qw=qw: quant_matmul(x, qw), reps=args.reps)
                except Exception as err:
                    why = f"{type(err).__name__}: {_short(err)}"
                r = replace(blank[m], us=us, weight_bytes=qw.nbytes, error=error, note=why)
                results.append(r)
                if on_result is not None:
                    on_result(results)
                state = f"{_fmt(us)} µs, {_fmt(r.bandwidth_pct)}% BW, error {_error(r)}"
                _progress(f"[{count}/{total}] {name} M={m} N={n} K={k}: {why or state}")
            del qw, reference_w
        del w, xs, int4
        if device == "cuda":
            torch.cuda.empty_cache()
    return results


def command_line(args: argparse.Namespace) -> str:
    """The command that measures exactly ``args``, every option spelled out."""
    parts = [
        "python -m tilevm bench gemm",
        f"--dtypes {','.join(args.dtypes)}",
        f"--shapes {','.join(f'{n}x{k}' for n, k in args.shapes)}",
        f"--m {','.join(map(str, args.m))}",
        f"--group {args.group}",
        f"--act {args.act}",
    ]
    if args.reps is not None:
        parts.append(f"--reps {args.reps}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """``python -m tilevm bench gemm``: measure, print, write; 1 if any result is wrong."""
    torch = require_cuda()
    device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    header = [
        f"device: {torch.cuda.get_device_name(device)} (sm_{major}{minor}); torch "
        f"{torch.__version__} (CUDA {torch.version.cuda}); tilevm {__version__}",
        f"command: {command_line(args)}",
        f"activations {args.act}, group size {args.group}; medians of CUDA-event times, L2 "
        "flushed before every repetition",
    ]
    notes: list[str] = []
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(
        args, torch, notes, on_result=lambda so_far: write_csv(so_far, args.out / "gemm.csv")
    )
    table = format_table(results, args.act)
    text = "\n".join([*header, "", table, *([""] + notes if notes else [])])
    print(text)
    (args.out / "gemm.txt").write_text(text + "\n")
    written = [write_csv(results, args.out / "gemm.csv")]
    try:
        written.append(plot(results, args.out / "gemm.png", header[0], args.act))
    except TileVMError as err:
        print(f"tilevm bench gemm: {err}", file=sys.stderr)
    _progress("wrote " + ", ".join(str(p) for p in [args.out / "gemm.txt", *written]))
    bad = [r for r in results if not r.ok]
    if bad:
        print(f"tilevm bench gemm: {len(bad)} of {len(results)} results failed:", file=sys.stderr)
        for r in bad:
            why = r.note or f"relative error {r.error:.2e} > {r.tolerance:g}"
            print(f"  {r.dtype} M={r.m} N={r.n} K={r.k}: {why}", file=sys.stderr)
        return 1
    return 0
