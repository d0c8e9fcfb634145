"""How long a new process takes to its first ``quant_matmul`` result, cold and with a warm cache.

Each figure comes from a fresh Python process (``sys.executable``), timed from
inside it with ``time.perf_counter``:

================  ==============================================================
column            what it covers
================  ==============================================================
import            ``import torch, tilevm, tilevm.ops`` (torch is most of it)
first call        the first ``quant_matmul(x, qweight)`` for the shape: the
                  frontend, the passes and CUDA emission (or the emission
                  cache), NVRTC or the compile cache, autotuning of a
                  prefill shape, the module load and the launch, up to
                  ``torch.cuda.synchronize()``
================  ==============================================================

*cold* runs with an empty cache directory (``TILEVM_CACHE_DIR``), *warm* in a
second process with the cache the first one filled. Quantising the weight is
done before the clock starts (a model does it once, ahead of serving).

Without a GPU the first call cannot run; the child then does what the call
would compile, for ``--arch``: every decode or prefill tile shape in the
autotuner's worker processes (cold), and the first shape (warm, where a tuned
process would find its choice on disk and compile only that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from .gemm import parse_dtypes, positive_int

_CHILD = r"""
import json, sys, time
start = time.perf_counter()
import torch, tilevm, tilevm.ops
imported = time.perf_counter()
m, n, k, dtype, arch, cold = json.loads(sys.argv[1])
gpu = torch.cuda.is_available()
device = "cuda" if gpu else "cpu"
gen = torch.Generator().manual_seed(0)
q = tilevm.quantize(torch.randn(n, k, generator=gen), dtype).to(device)
x = torch.randn(m, k, generator=gen).half().to(device)
begin = time.perf_counter()
if gpu:
    y = tilevm.ops.quant_matmul(x, q)
    torch.cuda.synchronize()
    what = "quant_matmul on " + torch.cuda.get_device_name()
else:
    from tilevm.autotune import compile_configs
    import importlib
    qm = importlib.import_module("tilevm.ops.quant_matmul")  # the module, not the function
    from tilevm.runtime.cache import compile_kernel
    from tilevm.runtime.emitted import emit_program
    cfg = qm.choose_config(m, n, k, q.nbits, x.device)
    common = dict(WTYPE=q.dtype, GROUP=q.group_size if q.group_size > 0 else 0,
                  HAS_ZEROS=q.zeros is not None, ZERO_OFFSET=q.zero_offset, HAS_BIAS=False)
    if cfg.prefill:
        kernel, configs, kind = qm.GEMM_TC[tilevm.float16], qm.PREFILL_CONFIGS, "prefill"
        common["PARTIAL"] = False
    else:
        kernel, configs, kind = qm.GEMM[tilevm.float16], qm.DECODE_CONFIGS, "decode"
        common["BLOCK_M"] = cfg.block_m
    if cold:
        errors = compile_configs(kernel, [dict(common, **c) for c in configs], arch)
        assert not any(errors), errors
        what = f"compile {len(configs)} {kind} shapes for {arch} (tuner workers)"
    else:
        cuda = emit_program(kernel.program(**common, **configs[0]))
        compile_kernel(cuda.source, cuda.name, arch)
        what = f"compile the chosen {kind} shape for {arch}"
done = time.perf_counter()
print("tilevm-startup " + json.dumps(
    {"import_s": imported - start, "first_call_s": done - begin, "what": what}))
"""


def _child(m: int, n: int, k: int, dtype: str, arch: str, cache: str, cold: bool) -> dict:
    env = dict(os.environ, TILEVM_CACHE_DIR=cache)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([m, n, k, dtype, arch, cold])],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("tilevm-startup ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the start-up child failed (status {proc.returncode}):\n{proc.stderr}")
    return json.loads(lines[-1].split(" ", 1)[1])


def _dtype(text: str) -> str:
    (name,) = parse_dtypes(text)
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", type=_dtype, default="int4", help="weight type (default int4)")
    parser.add_argument("--n", type=positive_int, default=4096, help="out_features N (4096)")
    parser.add_argument("--k", type=positive_int, default=4096, help="in_features K (4096)")
    parser.add_argument(
        "--m", type=positive_int, nargs="+", default=[1, 256], help="rows of x, a run each (1 256)"
    )
    parser.add_argument("--arch", default="sm_90a", help="target without a GPU (sm_90a)")


def run(args: argparse.Namespace) -> int:
    """Print one row per M: import and first-call seconds, cold and warm."""
    print(f"tilevm bench startup: {args.dtype}, N = {args.n}, K = {args.k}", flush=True)
    print("| M | import s (cold / warm) | first call s (cold / warm) | what the call did |")
    print("|---|---|---|---|")
    for m in args.m:
        with tempfile.TemporaryDirectory(prefix="tilevm-startup-") as cache:
            cold = _child(m, args.n, args.k, args.dtype, args.arch, cache, True)
            warm = _child(m, args.n, args.k, args.dtype, args.arch, cache, False)
        print(
            f"| {m} | {cold['import_s']:.2f} / {warm['import_s']:.2f} | "
            f"{cold['first_call_s']:.2f} / {warm['first_call_s']:.2f} | {cold['what']} |",
            flush=True,
        )
    return 0
