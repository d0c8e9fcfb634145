"""The tilevm command line: ``python -m tilevm info | demo | layout | compile | cache | bench``."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import dtypes
from ._version import __version__
from .errors import TileVMError


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text columns with a rule under the header."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _number(x: float | int) -> str:
    """A value as the tables write it: large or tiny powers of two as 2^k, else exactly."""
    if x == 0 or isinstance(x, int):
        return str(x)
    mantissa, exponent = math.frexp(abs(x))
    sign = "-" if x < 0 else ""
    if mantissa == 0.5 and not -4 <= exponent - 1 <= 20:
        return f"{sign}2^{exponent - 1}"
    if float(x).is_integer():
        return str(int(x))
    return repr(float(x))


# -- info ----------------------------------------------------------------------------------------
def _versions() -> list[tuple[str, str]]:
    rows = [
        ("tilevm", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
    ]
    try:
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
        rows.append(("torch", f"{torch.__version__} ({build})"))
    except ImportError:
        torch = None
        rows.append(("torch", "not installed"))
    try:
        import cuda.bindings

        rows.append(("cuda-python", cuda.bindings.__version__))
    except ImportError:
        rows.append(("cuda-python", "not installed"))
    from .runtime import nvrtc

    try:
        major, minor = nvrtc.version()
        archs = nvrtc.supported_archs()
        wanted = ", ".join(f"sm_{a}" for a in (80, 90) if a in archs)
        rows.append(
            (
                "NVRTC",
                f"{major}.{minor} (compiles for sm_{archs[0]}..sm_{archs[-1]}; "
                f"tilevm targets: {wanted or 'none of sm_80, sm_90!'})",
            )
        )
    except TileVMError as err:
        rows.append(("NVRTC", f"unavailable: {err}"))
    rows.append(("GPU", _gpu_line(torch)))
    return rows


def _gpu_line(torch) -> str:
    no_gpu = "none found: kernels will run on the CPU interpreter"
    if torch is None or not torch.cuda.is_available():
        return no_gpu
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"{i}: {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)")
    return "; ".join(names)


def cmd_info(args: argparse.Namespace) -> int:
    for key, value in _versions():
        print(f"{key:<12} {value}")
    return 0


# -- demo ----------------------------------------------------------------------------------------
DEMO_VALUES = (0.3, -1.7, 2.5, 100.0)


def _specials(t: dtypes.DataType) -> str:
    if not t.is_float:
        return "-"
    if t.has_inf:
        return "inf, NaN"
    return "NaN" if t.has_nan else "none"


def format_dtype_table() -> str:
    """Every type of at most 8 bits with its range and smallest positive values."""
    rows = []
    for t in dtypes.LOW_BIT_DTYPES:
        rows.append(
            [
                t.name,
                t.short_name,
                str(t.nbits),
                "-" if t.bias is None else str(t.bias),
                f"{_number(t.min_value)} .. {_number(t.max_value)}",
                "-" if t.smallest_normal is None else _number(t.smallest_normal),
                "-" if t.smallest_subnormal is None else _number(t.smallest_subnormal),
                _specials(t),
            ]
        )
    headers = ["type", "short", "bits", "bias", "range", "min normal", "min subnormal", "inf/NaN"]
    return _table(headers, rows)


def format_encoding_table(values: Sequence[float] = DEMO_VALUES) -> str:
    """How each low-bit type encodes a few values: code bits, then the value it decodes to."""
    rows = []
    for t in dtypes.LOW_BIT_DTYPES:
        codes = t.encode(np.asarray(values, dtype=np.float64))
        decoded = t.decode(codes)
        cells = [
            f"{int(c):0{t.nbits}b} = {_number(v.item())}"
            for c, v in zip(codes, decoded, strict=True)
        ]
        rows.append([t.name, *cells])
    return _table(["type", *(f"encode({v:g})" for v in values)], rows)


def format_pack_example() -> str:
    t = dtypes.dtype("int3")
    values = np.arange(-4, 4)
    codes = t.encode(values)
    packed = dtypes.pack(codes, t)
    back = t.decode(dtypes.unpack(packed, t, len(codes)))
    return "\n".join(
        [
            f"int3 values   {values.tolist()}",
            f"codes         {codes.tolist()}",
            f"pack(codes,3) {' '.join(f'{b:02x}' for b in packed)}  "
            f"({len(packed)} bytes for {len(codes)} values, LSB first)",
            f"unpack+decode {back.tolist()}",
        ]
    )


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def run_examples() -> list[str]:
    """Run the example kernels on the CPU interpreter against numpy; one line each."""
    if not (EXAMPLES_DIR / "lowbit_gemm.py").exists():
        return ["(the examples/ folder is not next to this installation; run from a checkout)"]
    sys.path.insert(0, str(EXAMPLES_DIR))
    try:
        import lowbit_gemm
        import matmul_fp16
        import softmax
        import vector_add
    finally:
        sys.path.remove(str(EXAMPLES_DIR))
    lines = [
        f"vector_add           n=1000     max |error| vs numpy = {vector_add.check():g}",
        f"softmax              37x100     max |error| vs numpy = {softmax.check():.2g}",
        f"matmul_fp16          50x40x70   max error / max |C| = {matmul_fp16.check():.2g}",
    ]
    m, n, k = 21, 128, 128
    for name in ("int3", "float6_e3m2"):
        err, qerr = lowbit_gemm.check(name, m, n, k)
        label = f"W{dtypes.dtype(name).nbits}A16 {name}"
        lines.append(
            f"{label:<21}{f'{m}x{n}x{k}':<11}max error / max |y| = {err:.2g} "
            f"(weights quantised with rms error {qerr:.3f})"
        )
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    print(f"tilevm {__version__}: data types of any bit width\n")
    print(f"Every format of at most 8 bits ({len(dtypes.LOW_BIT_DTYPES)} of them):\n")
    print(format_dtype_table())
    print("\nRound to nearest even, saturating: code bits = decoded value\n")
    print(format_encoding_table())
    print("\nDense packing (tilevm.pack / tilevm.unpack):\n")
    print(format_pack_example())
    print("\nKernels from examples/, run on the CPU interpreter against numpy on fresh data:\n")
    for line in run_examples():
        print(line)
    return 0


# -- compile -------------------------------------------------------------------------------------
def _constant(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return dtypes.dtype(text)  # a data type name, e.g. -D WTYPE=int3


def cmd_compile(args: argparse.Namespace) -> int:
    from .ir.printer import format_program
    from .lang.kernel import Kernel

    path, sep, name = args.target.rpartition("::")
    if not sep or not path or not name:
        raise TileVMError(f"TARGET must be FILE::KERNEL; got {args.target!r}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or not Path(path).exists():
        raise TileVMError(f"no Python file at {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    kernel = getattr(module, name, None)
    if not isinstance(kernel, Kernel):
        raise TileVMError(f"{path} has no @tilevm.kernel named {name!r}")
    constants = {}
    for item in args.define:
        key, eq, value = item.partition("=")
        if not eq:
            raise TileVMError(f"-D takes NAME=VALUE; got {item!r}")
        constants[key] = _constant(value)
    from .passes.pipeline import run_pipeline

    program = run_pipeline(kernel.program(**constants))
    if args.emit == "ir":
        print(format_program(program), end="")
        return 0
    from .codegen import emit_cuda

    cuda = emit_cuda(program)
    if args.emit == "cuda":
        print(cuda.source, end="")
        return 0
    from .runtime.cache import compile_kernel

    module = compile_kernel(cuda.source, cuda.name, args.arch)
    print(module.ptx, end="")
    resources = module.kernel
    print(
        f"// {args.arch}: {resources.registers} registers, {module.report.spill_bytes} spill bytes",
        file=sys.stderr,
    )
    return 0


# -- layout --------------------------------------------------------------------------------------
def cmd_layout(args: argparse.Namespace) -> int:
    # Imported here: `info` and `demo` need none of the layout machinery.
    from .layouts.expr import parse_layout
    from .layouts.show import format_grid

    layout = parse_layout(args.expr)
    if args.output is None:
        print(format_grid(layout))
        return 0
    from .layouts.draw import draw

    print(draw(layout, args.output, title=" ".join(args.expr.split())))
    return 0


# -- bench ---------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_command

    return run_command(args)


# -- cache ---------------------------------------------------------------------------------------
def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.1f} MiB"


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{int(seconds // length)} {unit}"
    return f"{max(0, int(seconds))} s"


def cmd_cache(args: argparse.Namespace) -> int:
    import time

    from .runtime import emitted
    from .runtime.cache import default_cache

    cache = default_cache()
    if args.action == "clear":
        count, removed = cache.clear()
        noun = "entry" if count == 1 else "entries"
        print(f"removed {count} {noun} ({_size(removed)}) from {cache.root}")
        count, removed = emitted.clear()
        noun = "translation" if count == 1 else "translations"
        print(f"removed {count} {noun} ({_size(removed)}) from {emitted.emission_dir()}")
        return 0
    entries = cache.entries()
    if not entries:
        print(f"no entries in {cache.root}")
        return 0
    now = time.time()
    rows = []
    for e in entries:
        m = e.module
        if m is None:
            age = _age(now - e.modified)
            rows.append([e.key[:12], "(corrupt, rebuilt on next use)", "-", "-", "-", "-", age])
            continue
        # The named kernel's numbers; a module whose kernel ptxas named otherwise shows its first.
        k = m.kernel or (m.report.entries[0] if m.report.entries else None)
        registers = "-" if k is None or k.registers is None else str(k.registers)
        spills = "-" if k is None else f"{k.spill_store_bytes}/{k.spill_load_bytes} B"
        rows.append(
            [
                e.key[:12],
                m.name,
                m.target.arch,
                _size(e.size_bytes),
                registers,
                spills,
                _age(now - e.modified),
            ]
        )
    headers = ["key", "kernel", "target", "size", "registers", "spills st/ld", "age"]
    print(_table(headers, rows))
    total = sum(e.size_bytes for e in entries)
    noun = "entry" if len(entries) == 1 else "entries"
    print(f"\n{len(entries)} {noun}, {_size(total)} in {cache.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tilevm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="versions of tilevm and its dependencies, and the GPU if any")
    sub.add_parser("demo", help="show tilevm at work (for now: every low-bit data type)")
    layout = sub.add_parser(
        "layout",
        help="show a register layout as a text grid, or draw it to an SVG or PNG file",
        description="Show which thread holds each element of a tile, in which register. "
        "EXPR is a layout expression such as 'spatial(8,4)*local(2,2)' or "
        "'local(2,1).spatial(8,4).local(1,2)' (see docs/layouts.md).",
    )
    compile_ = sub.add_parser(
        "compile",
        help="compile a kernel and print its IR",
        description="Compile FILE::KERNEL for the given compile-time constants and print its IR, "
        "the CUDA C++ generated from it, or the PTX.",
    )
    compile_.add_argument("target", metavar="FILE::KERNEL")
    compile_.add_argument(
        "--emit",
        choices=["ir", "cuda", "ptx"],
        default="ir",
        help="the IR, the generated CUDA C++, or the PTX NVRTC makes of it",
    )
    compile_.add_argument(
        "--arch", default="sm_90a", help="target for --emit ptx (sm_80, sm_90a...)"
    )
    compile_.add_argument(
        "-D",
        dest="define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a compile-time constant (a Python literal or a data type name); repeatable",
    )
    layout.add_argument("expr", metavar="EXPR", help="a layout expression, quoted for the shell")
    layout.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="draw the tile to FILE (.svg or .png, needs matplotlib) instead of printing it",
    )
    cache = sub.add_parser(
        "cache",
        help="list or clear compiled kernels cached on disk",
        description="The compile cache lives in $TILEVM_CACHE_DIR/modules "
        "(default ~/.cache/tilevm/modules), kernels' generated CUDA in "
        "$TILEVM_CACHE_DIR/emitted. 'list' shows one line per cached kernel; "
        "'clear' removes them all.",
    )
    cache.add_argument("action", choices=["list", "clear"])
    from .bench import add_parser as add_bench_parser  # stdlib only until a benchmark runs

    add_bench_parser(sub)
    return parser


COMMANDS = {
    "info": cmd_info,
    "demo": cmd_demo,
    "layout": cmd_layout,
    "compile": cmd_compile,
    "cache": cmd_cache,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TileVMError as err:
        print(f"tilevm {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
