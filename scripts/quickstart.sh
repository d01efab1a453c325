#!/usr/bin/env bash
# The main job, offline, on the embedded MiniLM and the sample data newsclf ships:
# train -> export (the default variants, each with its parity proof) -> classify with an evaluation
# report.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLE=src/newsclf/sample_data
RUN=${RUN:-models/quickstart}
rm -rf "$RUN"
newsclf train --model embedded --train-file "$SAMPLE/train.csv" --test-file "$SAMPLE/test.csv" \
  --output-dir "$RUN" --learning-rate 1e-4 --batch-size 16 --grad-accum 1 --epochs 3
newsclf export --onnx --checkpoint "$RUN"
newsclf classify "$SAMPLE/test.csv" --model "$RUN/onnx" --output "$RUN/test.predictions.csv" \
  --report "$RUN/classify_report.json"
