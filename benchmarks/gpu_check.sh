#!/usr/bin/env bash
# The GPU check, in one call of the device tool (see benchmarks/gpu_check.py for what it does).
# Here first:  python benchmarks/prepare_gpu_assets.py   (builds .carry/, ignored by git)
# Then run:    bash benchmarks/gpu_check.sh              (with .carry carried; results in $OUT)
# Without CUDA it rehearses every part at toy sizes on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PYTHON" benchmarks/gpu_check.py --assets .carry --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
