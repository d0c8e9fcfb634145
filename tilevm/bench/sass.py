"""Static SASS instruction counts of the GEMM kernels' compute, per 64 x 64 weight tile and warp.

No GPU is needed: each kernel is compiled with NVRTC for ``--arch`` and its
cubin disassembled with ``nvdisasm`` (the ``nvidia-cuda-nvdisasm`` wheel, part
of the ``test`` extra; or ``TILEVM_NVDISASM``, or ``nvdisasm`` on ``PATH``).
The count covers the basic blocks that hold the HMMA instructions: the
dequantisation and the mma of the main loop, not the loads of the next tile,
the loop control or the epilogue. It is scaled to 32 HMMA, one 64 x 64 tile
of one warp at 16 rows (a prefill warp tile of 64 rows takes 128 HMMA a
tile, so its count is a quarter of its tile's).

That is the number of instructions a warp issues per tile, the quantity the
decode targets are about: at 80 % of an H100's 3.35 TB/s, a 64 x 64 tile of
b-bit codes arrives every ``44 b`` clocks per SM, in which the SM's four
schedulers issue at most ``176 b`` instructions.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TileVMError
from .gemm import parse_dtypes

DEFAULT_DTYPES = (
    "uint1,int2,int3,int4,uint4,int5,int6,int7,int8,float4_e2m1,float6_e3m2,float8_e4m3"
)
MISSING_STATUS = 2


class NoDisassemblerError(TileVMError, RuntimeError):
    """``nvdisasm`` is not installed."""


def find_nvdisasm() -> str:
    """The ``nvdisasm`` executable: ``TILEVM_NVDISASM``, ``PATH``, or the NVIDIA wheel's."""
    given = os.environ.get("TILEVM_NVDISASM")
    if given:
        return given
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import nvidia  # the namespace package of NVIDIA's CUDA wheels
    except ImportError:
        nvidia = None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(Path(root).glob("*/bin/nvdisasm")):
            return str(candidate)
    raise NoDisassemblerError(
        "needs nvdisasm: pip install nvidia-cuda-nvdisasm (the test extra has it), or set "
        "TILEVM_NVDISASM"
    )


def _found() -> bool:
    """Whether :func:`find_nvdisasm` finds one."""
    try:
        find_nvdisasm()
    except NoDisassemblerError:
        return False
    return True


def _instructions(sass: str) -> list[list[str]]:
    """The disassembly's instructions, split into basic blocks at labels and branches."""
    blocks: list[list[str]] = [[]]
    for line in sass.splitlines():
        if re.match(r"\s*\.L_x_\d+:", line):
            blocks.append([])
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if m:
            blocks[-1].append(m.group(1))
            if re.search(r"\b(BRA|EXIT|BSYNC|RET)\b", m.group(1)):
                blocks.append([])
    return blocks


def _opcode(instruction: str) -> str:
    """``@!P0 LOP3.LUT R1, ...`` -> ``LOP3``."""
    return re.sub(r"^@!?U?P\w+\s+", "", instruction).split()[0].split(".")[0]


def tile_counts(sass: str, hmma_per_tile: int = 32) -> tuple[float, collections.Counter]:
    """(instructions, opcode counts) of the blocks that hold HMMAs, per ``hmma_per_tile`` HMMA
    (a 64 x 64 weight tile and warp: 32 at 16 rows, 16 in the swap-AB kernel's 8)."""
    body = [i for block in _instructions(sass) if any("HMMA" in i for i in block) for i in block]
    ops = collections.Counter(_opcode(i) for i in body)
    if not ops["HMMA"]:
        raise ValueError("the kernel has no HMMA instruction")
    scale = hmma_per_tile / ops["HMMA"]
    return len(body) * scale, collections.Counter({k: v * scale for k, v in ops.items()})


def disassemble(cubin: bytes, nvdisasm: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        done = subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"nvdisasm failed: {done.stderr.strip()}")
    return done.stdout


def _program(t, act, kernel: str):
    from ..ops.qgemm import GEMM, GEMM_TC
    from ..ops.quant_matmul import PREFILL_CONFIGS

    # what tilevm.quantize makes without zero points (offset binary for uint types), but for
    # uint1, which it quantises with zero points only
    zeros = t.kind == "uint" and t.nbits == 1
    common = dict(
        WTYPE=t,
        GROUP=128,
        HAS_ZEROS=zeros,
        ZERO_OFFSET=1 << (t.nbits - 1) if t.kind == "uint" and not zeros else 0,
        HAS_BIAS=False,
    )
    if kernel == "decode":
        return GEMM[act].program(BLOCK_M=16, WARPS=4, **common)
    if kernel == "decode8":
        return GEMM[act].program(BLOCK_M=8, WARPS=4, **common)
    shape = PREFILL_CONFIGS[int(kernel.removeprefix("prefill"))]
    return GEMM_TC[act].program(PARTIAL=False, **shape, **common)


def count(t, act, kernel: str, arch: str, nvdisasm: str) -> dict:
    """One row of the table: registers, spills, instructions a tile and warp, the top opcodes."""
    from ..codegen import emit_cuda
    from ..passes.pipeline import run_pipeline
    from ..runtime.cache import compile_kernel

    source = emit_cuda(run_pipeline(_program(t, act, kernel)))
    module = compile_kernel(source.source, source.name, arch)
    total, ops = tile_counts(disassemble(module.cubin, nvdisasm), 16 if kernel == "decode8" else 32)
    return {
        "registers": module.kernel.registers,
        "spills": module.report.spill_bytes,
        "per_tile": total,
        "ops": ops,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtypes",
        type=parse_dtypes,
        default=parse_dtypes(DEFAULT_DTYPES),
        help=f"comma-separated weight types (default {DEFAULT_DTYPES})",
    )
    parser.add_argument(
        "--kernel",
        default="decode",
        choices=("decode", "decode8", "prefill0", "prefill1", "prefill2"),
        help="decode (16 rows, 4 warps), decode8 (8 rows, 4 warps: swap-AB) or "
        "prefillI, the I-th prefill tile shape (default decode)",
    )
    parser.add_argument("--act", default="float16", choices=("float16", "bfloat16"))
    parser.add_argument("--arch", default="sm_90a", help="the target (default sm_90a)")


def run(args: argparse.Namespace) -> int:
    from .. import dtypes

    try:
        nvdisasm = find_nvdisasm()
    except NoDisassemblerError as err:
        print(f"tilevm bench sass: {err}", file=sys.stderr)
        return MISSING_STATUS
    act = dtypes.dtype(args.act)
    print(f"tilevm bench sass: {args.kernel} kernel, {act} activations, group 128, {args.arch}")
    print("| dtype | registers | spills | SASS a 64x64 tile and warp | most frequent |")
    print("|---|---|---|---|---|")
    for name in args.dtypes:
        t = dtypes.dtype(name)
        row = count(t, act, args.kernel, args.arch, nvdisasm)
        top = ", ".join(f"{op} {n:.0f}" for op, n in row["ops"].most_common(6))
        print(
            f"| {t} | {row['registers']} | {row['spills']} | {row['per_tile']:.0f} | {top} |",
            flush=True,
        )
    return 0


__all__ = ["count", "find_nvdisasm", "tile_counts"]
