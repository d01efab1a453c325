#!/usr/bin/env bash
# The GPU measurements of issues 9 and 10, in stages that each fit one call of the device tool
# (10 minutes; at most 64 MiB carried per call, so the runtime and the assets travel apart).
#
# Here first (files land in .carry/, ignored by git):
#   mkdir -p .carry/ort && cp ../shared/gpu/ort-cuda-1.31.1-sm90only.tar.xz .carry/ort/
#   python -m benchmarks gpu-assets            # .carry/minilm (fp16 copy) and .carry/ag_news
# Then, back to back (the machine keeps /tmp while warm, 30 s):
#   run(carry=[".carry/ort"])                  bash benchmarks/gpu_session.sh runtime
#   run(carry=[".carry/minilm",".carry/ag_news"]) bash benchmarks/gpu_session.sh assets
#   run()                                      bash benchmarks/gpu_session.sh export     (~4 min)
#   run()                                      bash benchmarks/gpu_session.sh classify   (~8 min)
#   run()                                      bash benchmarks/gpu_session.sh train      (~5 min)
#   run()                                      bash benchmarks/gpu_session.sh embedded   (~5 min)
# Each writes into $OUT (JSON, logs) and benchmarks/results/ (copied into $OUT too).
# Without a GPU, `QUICK=1 bash benchmarks/gpu_session.sh all` rehearses every stage on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?stage: runtime, assets, export, classify, train, embedded or all}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
WORK=${WORK:-/tmp/newsclf-gpu}; mkdir -p "$WORK"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=true
PYTHON=${PYTHON:-python3}
QUICK=${QUICK:-}
ASSETS=${ASSETS:-/tmp/newsclf-assets}
if [ -d /tmp/ortsite/onnxruntime ]; then export PYTHONPATH="/tmp/ortsite:$PYTHONPATH"; fi
if [ -n "$QUICK" ]; then export NEWSCLF_RESULTS="$OUT/results"; fi
if [ -n "$QUICK" ]; then ROWS=2000; TRAIN_ROWS=256; STEPS=5; WARM=256; ROUNDS=1; BATCH="--batch-size 8 --grad-accum 1"
else ROWS=200000; TRAIN_ROWS=16384; STEPS=60; WARM=8192; ROUNDS=2; BATCH="--batch-size 64 --grad-accum 2"; fi
DEVICE=cuda; [ -n "$QUICK" ] && ! nvidia-smi >/dev/null 2>&1 && DEVICE=cpu
log() { echo "[$(date +%H:%M:%S)] $*"; }
needs_runtime() { [ -n "$QUICK" ] || test -d /tmp/ortsite/onnxruntime || { echo "no /tmp/ortsite: run the runtime stage first"; exit 3; }; }
needs_assets() { test -d "$ASSETS/minilm" || { echo "no $ASSETS: run the assets stage first"; exit 3; }; }
keep() { cp "${NEWSCLF_RESULTS:-benchmarks/results}"/*gpu-* "$OUT/" 2>/dev/null; true; }

runtime() {
  mkdir -p /tmp/ortsite
  test -d /tmp/ortsite/onnxruntime || "$PYTHON" -c "import tarfile; tarfile.open('.carry/ort/ort-cuda-1.31.1-sm90only.tar.xz').extractall('/tmp/ortsite', filter='data')"
  export PYTHONPATH="/tmp/ortsite:$PYTHONPATH"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
  # torch first: its nvidia-* wheels bring the CUDA 13 / cuDNN 9 libraries ORT's provider needs.
  "$PYTHON" -c "import torch, benchmarks.gpu as g; from pathlib import Path; g.probe(Path('$OUT'))"
}

assets() { mkdir -p "$ASSETS" && cp -r .carry/minilm .carry/ag_news "$ASSETS/" && du -sh "$ASSETS"; }

export_stage() {
  # bert-base shape, random weights: exported on the machine, parity checked on CUDA
  # (fp32 and optimized with TF32 off, within 1e-4 and identical labels; fp16 >= 99% agreement).
  "$PYTHON" -c "import torch" && "$PYTHON" -m benchmarks make-model --target "$WORK/bert-base-shape" \
    --tokenizer "$ASSETS/minilm" --export-device "$DEVICE" --data "$ASSETS/ag_news/test.csv" \
    2>&1 | tee "$OUT/export-bert-base.log"
  cp "$WORK/bert-base-shape-onnx/export_report.json" "$OUT/export_report-bert-base.json"
  # newsclf classify --device auto must pick CUDA and fp16 by itself, end to end.
  auto_input="$ASSETS/ag_news/test.csv"
  if [ -n "$QUICK" ]; then head -201 "$auto_input" > "$WORK/head.csv"; auto_input="$WORK/head.csv"; fi
  "$PYTHON" -c "import torch; from newsclf.cli import main; main()" classify "$auto_input" \
    --model "$WORK/bert-base-shape-onnx" --device auto --output "$WORK/auto.csv" \
    --report "$OUT/classify-auto-report.json" 2>&1 | tee "$OUT/classify-auto.log"
}

classify_stage() {
  for model in bert-base-shape embedded; do
    if [ $model = embedded ]; then folder="$WORK/embedded/embedded-embedded-settings"; else folder="$WORK/bert-base-shape"; fi
    if [ $model = embedded ] && [ ! -d "$folder/onnx" ]; then log "no embedded export yet (embedded stage)"; continue; fi
    export_dir="$folder/onnx"; [ $model = bert-base-shape ] && export_dir="$WORK/bert-base-shape-onnx"
    "$PYTHON" -c "import torch" && "$PYTHON" -m benchmarks classify --model "$folder" --export "$export_dir" \
      --model-label $model --data "$ASSETS/ag_news/test.csv" --rows $ROWS --rounds $ROUNDS \
      --warmup-rows $WARM --device $DEVICE $( [ "$DEVICE" = cpu ] && echo "--engines pipeline,newsclf-fp32" ) \
      --suite-name gpu-classify 2>&1 | tee "$OUT/classify-$model.log"
  done
  keep
}

train_stage() {
  "$PYTHON" -m benchmarks train --model bert-base-shape --model-label bert-base-shape \
    --data "$ASSETS/ag_news/train.csv" --rows $TRAIN_ROWS --steps $STEPS $BATCH --suite-name gpu-train \
    2>&1 | tee "$OUT/train-bert-base.log"
  keep
}

embedded_stage() {
  "$PYTHON" -m benchmarks.gpu embedded --model "$ASSETS/minilm" --data "$ASSETS/ag_news" \
    --out "$WORK/embedded" ${QUICK:+--quick} 2>&1 | tee "$OUT/embedded.log"
  cp "$WORK/embedded/gpu_embedded.json" "$OUT/"
}

case $stage in
  runtime) runtime ;;
  assets) assets ;;
  export) needs_runtime; needs_assets; export_stage ;;
  classify) needs_runtime; needs_assets; classify_stage ;;
  train) needs_assets; train_stage ;;
  embedded) needs_runtime; needs_assets; embedded_stage ;;
  all) assets; export_stage; embedded_stage; classify_stage; train_stage ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
