#!/usr/bin/env bash
# The GPU run of issue 22: ONNX Runtime 1.31.1 on CUDA, classify and train at GPU speed, in
# three calls of the device tool that fit 10 minutes of GPU time (15 with start-up and one
# retry). The plan -- calls, stages, sizes, per-stage GPU estimates, the budget check -- is
# benchmarks/gpu_plan.py (`python -m benchmarks.gpu_plan` prints it); this script runs it.
#
# Here first (.carry/ is ignored by git):
#   python -m benchmarks gpu-assets                 # .carry/ort, .carry/lite, .carry/minilm
#   python -m benchmarks.gpu_plan show --measured   # what really travels; must end "fits"
# Then the three calls, back to back (the machine keeps /tmp only while warm, 30 s), and
# give_back straight after the third:
# BEGIN run calls (python -m benchmarks.gpu_plan header)
#   run(carry=[".carry/ort", ".carry/lite"], command="bash benchmarks/gpu_session.sh call1", timeout_s=280)
#   run(carry=[".carry/minilm", ".carry/lite"], command="bash benchmarks/gpu_session.sh call2", timeout_s=200)
#   run(carry=[".carry/lite"], command="bash benchmarks/gpu_session.sh call3", timeout_s=190)
# END run calls
# Each call writes into $OUT (at most 8 files): session.log, stages.json (every stage's status,
# wall time and GPU estimates) and each result as soon as it exists: gpu_probe.json,
# export_report-*.json, classify-auto-report.json, <date>-gpu-classify-<gpu>.json/.md,
# <date>-gpu-train-<gpu>.json/.md (merged across calls on the machine). A call cut short by its
# time limit still returns what it wrote. Afterwards, here:
#   python -m benchmarks.gpu collect /work/.device/...   # the results into benchmarks/results/
# A call given less time than planned (after a retry): put CALL_TIMEOUT=<its timeout_s> before
# `bash`, so that the optional stage is skipped rather than cut. If the machine was replaced
# between calls, /tmp is gone: call 2 then needs call 1 again (the CUDA runtime), call 3 runs.
# Without a GPU: `QUICK=1 OUT=/tmp/gpu-rehearsal bash benchmarks/gpu_session.sh all` rehearses
# the three calls on the CPU at toy sizes (results under $OUT/callN only).
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: gpu_session.sh call1|call2|call3|all|plan}
QUICK=${QUICK:-}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=true
plan() { "$PYTHON" -m benchmarks.gpu_plan "$@"; }
if [ "$what" = plan ]; then plan show; exit; fi
settings=$(plan env ${QUICK:+--quick}) || { echo "benchmarks/gpu_plan.py failed"; exit 2; }
eval "$settings"

OUT_ROOT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/newsclf-gpu${QUICK:+-quick}}
ASSETS=$WORK/assets
RESULTS=$WORK/results # merged across the calls while the machine stays warm
if [ -n "$QUICK" ]; then ORTSITE=${ORTSITE:-$WORK/ortsite}; else ORTSITE=${ORTSITE:-/tmp/ortsite}; fi
TEST_FILE=$ASSETS/ag_news/test.csv
[ -n "$TEST_ROWS" ] && TEST_FILE=$ASSETS/ag_news/test-head.csv
if nvidia-smi -L >/dev/null 2>&1; then
  DEVICE=cuda
elif [ -n "$QUICK" ]; then
  DEVICE=cpu
else
  echo "no GPU here: rehearse with QUICK=1"
  exit 2
fi

log() { echo "[$(date +%H:%M:%S)] $*"; }
ms() { echo $(($(date +%s%N) / 1000000)); }
seconds_since() { local d=$(($(ms) - $1)); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }

use_ortsite() {
  # ONNX Runtime 1.31.1 (CUDA) ahead of the machine's CPU-only 1.30, and the CUDA 13 / cuDNN 9
  # libraries of torch's nvidia-* wheels where its CUDA provider looks for them.
  [ -d "$ORTSITE/onnxruntime" ] || return 0
  plan ort-usable "$ORTSITE" || return 0 # a rehearsal's Python: it keeps its own onnxruntime
  case ":$PYTHONPATH:" in *":$ORTSITE:"*) ;; *) export PYTHONPATH="$ORTSITE:$PYTHONPATH" ;; esac
  if [ "$DEVICE" = cuda ]; then
    local libs
    libs=$(plan cuda-libs)
    case ":${LD_LIBRARY_PATH:-}:" in *":$libs:"*) ;; *) [ -n "$libs" ] && export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  fi
}

ort_device() {
  # ONNX Runtime's device: CUDA once the runtime stage has unpacked it here and its probe saw
  # a CUDA session; else the CPU, so that the PyTorch figures are still measured.
  if [ "$DEVICE" = cuda ] && plan ort-usable "$ORTSITE" >/dev/null &&
    grep -qs '"cuda_works": true' "$WORK/gpu_probe.json"; then echo cuda; else echo cpu; fi
}

unpack() { "$PYTHON" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" "$1" "$2"; }

# -- stages (names as in benchmarks/gpu_plan.py) -------------------------------------------------

stage_runtime() {
  if [ ! -d "$ORTSITE/onnxruntime" ]; then
    local archive=.carry/ort/$ORT_ARCHIVE
    [ -f "$archive" ] || { echo "no $archive: carry .carry/ort (python -m benchmarks gpu-assets)"; return 3; }
    plan check-file "$archive" || return 3
    mkdir -p "$ORTSITE" && unpack "$archive" "$ORTSITE" || return 3
  fi
  use_ortsite
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  # torch first: its nvidia-* wheels bring the CUDA 13 / cuDNN 9 libraries ORT's provider needs.
  "$PYTHON" -c "import sys, torch; from pathlib import Path; import benchmarks.gpu as g
info = g.probe(Path(sys.argv[1])); sys.exit(0 if info['cuda_works'] or sys.argv[2] == 'cpu' else 1)" "$OUT" "$DEVICE"
  local rc=$?
  cp "$OUT/gpu_probe.json" "$WORK/" 2>/dev/null # for ort_device in the later calls
  return $rc
}

stage_assets() {
  mkdir -p "$ASSETS"
  if [ ! -f "$ASSETS/ag_news/train.csv" ] || [ ! -f "$ASSETS/tokenizer/tokenizer.json" ]; then
    [ -f .carry/lite/lite.tar.xz ] || { echo "no .carry/lite/lite.tar.xz: carry .carry/lite"; return 3; }
    unpack .carry/lite/lite.tar.xz "$ASSETS" || return 3
  fi
  if [ -f .carry/minilm/model.safetensors ] && [ ! -f "$ASSETS/minilm/model.safetensors" ]; then
    cp -r .carry/minilm "$ASSETS/" || return 3
  fi
  if [ -n "$TEST_ROWS" ] && [ ! -f "$TEST_FILE" ]; then
    plan head-csv "$ASSETS/ag_news/test.csv" "$TEST_FILE" "$TEST_ROWS" || return 3
  fi
  du -sh "$ASSETS"/*
}

stage_export() {
  # bert-base shape (BertConfig(), random weights, the embedded tokenizer), exported here with
  # parity on CUDA: fp32 and optimized within 1e-4 and the same labels (TF32 off), fp16 >= 99%.
  "$PYTHON" -m benchmarks make-model --target "$WORK/$MODEL_LABEL" --size "$MODEL_SIZE" \
    --tokenizer "$ASSETS/tokenizer" --export-device "$(ort_device)" --data "$TEST_FILE" \
    --report "$OUT/export_report-bert-base.json"
}

stage_classify_auto() {
  # newsclf classify --device auto must pick CUDA and fp16 by itself, end to end.
  local rc=0
  "$PYTHON" -m newsclf classify "$TEST_FILE" --model "$WORK/$MODEL_LABEL-onnx" --device auto \
    --output "$WORK/auto.csv" --report "$OUT/classify-auto-report.json" || rc=$?
  "$PYTHON" -m benchmarks.gpu auto-check --report "$OUT/classify-auto-report.json" \
    --probe "$OUT/gpu_probe.json" --export-report "$OUT/export_report-bert-base.json" \
    --model-label "$MODEL_LABEL" --expect "$DEVICE" --results "$RESULTS" --mirror "$OUT" \
    --export "$WORK/$MODEL_LABEL-onnx" --data "$TEST_FILE" || rc=$?
  return $rc
}

classify_model() { # LABEL MODEL EXPORT: newsclf on every row, the baselines time-boxed
  local engines=$ENGINES_CUDA timebox=$TIMEBOX_CUDA
  [ "$DEVICE" = cpu ] && engines=$ENGINES_CPU timebox=$TIMEBOX_CPU
  "$PYTHON" -m benchmarks classify --model "$2" --export "$3" --model-label "$1" \
    --data "$TEST_FILE" --rows "$ROWS" --rounds "$ROUNDS" --warmup-rows "$WARM_ROWS" \
    --warmup-box "$WARM_BOX" --slice-rows "$SLICE_ROWS" --timebox "$timebox" \
    --engines "$engines" --device "$DEVICE" --parallel-start --log-dir "$WORK/logs-$1" \
    --suite-name gpu-classify --out "$RESULTS" --mirror "$OUT"
}

stage_classify_bert_base() { classify_model "$MODEL_LABEL" "$WORK/$MODEL_LABEL" "$WORK/$MODEL_LABEL-onnx"; }

stage_embedded_model() {
  [ -f "$ASSETS/minilm/model.safetensors" ] || { echo "no MiniLM: carry .carry/minilm"; return 3; }
  "$PYTHON" -m benchmarks.gpu embedded-model --model "$ASSETS/minilm" --data "$ASSETS/ag_news" \
    --test "$TEST_FILE" --work "$WORK" --device "$(ort_device)" --results "$RESULTS" \
    --mirror "$OUT" ${QUICK:+--quick}
}

stage_classify_embedded() {
  [ -d "$WORK/embedded-onnx" ] || { echo "no $WORK/embedded-onnx: embedded-model did not finish"; return 3; }
  classify_model embedded "$WORK/embedded-run" "$WORK/embedded-onnx"
}

stage_train_bert_base() {
  "$PYTHON" -m benchmarks train --model bert-base-shape --model-label "$MODEL_LABEL" \
    --model-size "$MODEL_SIZE" --tokenizer "$ASSETS/tokenizer" --data "$ASSETS/ag_news/train.csv" \
    --rows "$TRAIN_ROWS" --steps "$TRAIN_STEPS" --batch-size "$TRAIN_BATCH" \
    --grad-accum "$TRAIN_ACCUM" --suite-name gpu-train --out "$RESULTS" --mirror "$OUT"
}

stage_finetune_embedded() {
  [ -f "$ASSETS/minilm/model.safetensors" ] || { echo "no MiniLM (machine replaced after call 2?)"; return 3; }
  "$PYTHON" -m benchmarks.gpu finetune --model "$ASSETS/minilm" --data "$ASSETS/ag_news" \
    --test "$TEST_FILE" --work "$WORK" --results "$RESULTS" --mirror "$OUT" ${QUICK:+--quick}
}

# -- calls ---------------------------------------------------------------------------------------

run_stage() { # NAME: start it if the plan lets it, record its status and wall time
  local name=$1 started rc wall elapsed
  elapsed=$(seconds_since "$CALL_START")
  if ! plan fits "$name" --call "$CALL" --elapsed "$elapsed" --timeout "$CALL_LIMIT"; then
    plan record "$OUT/stages.json" "$name" --call "$CALL" --status skipped --device "$DEVICE" \
      --note "not enough time left in the call" ${QUICK:+--quick}
    return 0
  fi
  log "stage $name (call $CALL, ${elapsed} s into it)"
  started=$(ms)
  "stage_${name//-/_}"
  rc=$?
  wall=$(seconds_since "$started")
  plan record "$OUT/stages.json" "$name" --call "$CALL" --rc "$rc" --wall-s "$wall" \
    --status "$([ "$rc" = 0 ] && echo ok || echo failed)" --device "$DEVICE" ${QUICK:+--quick}
  log "stage $name: rc $rc, $wall s"
  return "$rc"
}

run_call() { # N
  CALL=$1
  local stages_var=CALL${CALL}_STAGES timeout_var=CALL${CALL}_TIMEOUT
  if [ "$what" = all ]; then OUT=$OUT_ROOT/call$CALL; else OUT=$OUT_ROOT; fi
  mkdir -p "$OUT" "$WORK" "$RESULTS"
  if [ -n "$QUICK" ]; then CALL_LIMIT=${CALL_TIMEOUT:-0}; else CALL_LIMIT=${CALL_TIMEOUT:-${!timeout_var}}; fi
  CALL_START=$(ms)
  {
    log "call $CALL on $DEVICE${QUICK:+ (QUICK rehearsal, toy sizes)}: ${!stages_var}; limit ${CALL_LIMIT} s"
    plan show --call "$CALL"
    use_ortsite
    local failed=0 name
    for name in ${!stages_var}; do
      run_stage "$name" || failed=$((failed + 1))
    done
    log "call $CALL: $failed stage(s) failed, $(seconds_since "$CALL_START") s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    [ "$(ls "$OUT" | wc -l)" -le 8 ] || log "WARNING: more than 8 files in $OUT: some will not come back"
    exit "$failed"
  } 2>&1 | tee -a "$OUT/session.log"
}

case $what in
  call1 | call2 | call3) run_call "${what#call}" ;;
  all)
    plan show
    rc=0
    for n in 1 2 3; do run_call "$n" || rc=1; done
    plan summary "$OUT_ROOT"/call*/stages.json
    exit "$rc"
    ;;
  *) echo "unknown: $what (call1, call2, call3, all or plan)"; exit 2 ;;
esac
