#!/usr/bin/env bash
# Everything that needs a GPU, for a machine with one and no network (the device tool's
# machines): system python3 with torch and cuda-python, tilevm from this source tree.
#
#   scripts/gpu_check.sh tests     # the `gpu`-marked tests, then the whole suite's GPU tests
#   scripts/gpu_check.sh bench     # bench gemm (table, CSV, PNG) and bench startup
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
  bench)
    python3 -m tilevm bench gemm --out "$out/bench" 2>&1 | tee "$out/bench_gemm.txt"
    python3 -m tilevm bench startup --m 1 256 2>&1 | tee "$out/bench_startup.txt"
    ;;
  *)
    echo "usage: $0 tests|bench" >&2
    exit 2
    ;;
esac
