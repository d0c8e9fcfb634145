#!/usr/bin/env bash
# Everything that needs a GPU, for a machine with one and no network (the device tool's
# machines): system python3 with torch and cuda-python, tilevm from this source tree.
#
#   scripts/gpu_check.sh quick     # all of it in one call of under 10 minutes (see below)
#   scripts/gpu_check.sh tests     # the `gpu`-marked tests, then the whole suite's GPU tests
#   scripts/gpu_check.sh bench     # bench gemm (table, CSV, PNG) and bench startup
#
# `quick` fits a task's device time (15 minutes, a start included): the issue's target points
# first (every width 1-8, e3m2, e2m1; N, K = 12288, 4096; M = 1, 16, 4096; each result checked
# against the dequantised reference on fresh data), then the GPU tests until their time is up,
# then bench startup. Each step has its own time limit and writes as it goes, so a step cut
# short still leaves what it measured. Run it with the device tool's timeout_s=600.
#
# Results go to $OUT (the device tool brings that folder back) or ./gpu-check.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-gpu-check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.txt" || true
python3 -m tilevm info >> "$out/device.txt" 2>&1 || true
case "${1:-}" in
  tests)
    # -p no:cacheprovider: the tree may be read-only; -rs: say why anything skipped.
    python3 -m pytest -p no:cacheprovider -q -rs -m gpu tests/ 2>&1 | tee "$out/gpu_tests.txt"
    ;;
  quick)
    timeout 300 python3 -m tilevm bench gemm \
      --dtypes uint1,int2,int3,int4,int5,int6,int8,float6_e3m2,float4_e2m1,int7 \
      --shapes 12288x4096 --m 1,16,4096 --out "$out/bench" 2>&1 | tee "$out/bench_gemm.txt" || true
    timeout 200 python3 -m pytest -p no:cacheprovider -q -rs -x -m gpu \
      tests/test_gpu_backend.py tests/test_trans.py tests/test_lang_launch.py \
      tests/test_quant_matmul_gpu.py tests/ 2>&1 \
      | tee "$out/gpu_tests.txt" || true
    timeout 60 python3 -m tilevm bench startup --m 1 256 2>&1 | tee "$out/bench_startup.txt" || true
    ;;
  bench)
    python3 -m tilevm bench gemm --out "$out/bench" 2>&1 | tee "$out/bench_gemm.txt"
    python3 -m tilevm bench startup --m 1 256 2>&1 | tee "$out/bench_startup.txt"
    ;;
  *)
    echo "usage: $0 tests|bench" >&2
    exit 2
    ;;
esac
