#!/usr/bin/env bash
# A virtual environment of its own for Hugging Face Optimum (optimum-onnx with ONNX Runtime), in
# which tests/export/optimum_check.py checks that ORTModelForSequenceClassification loads a
# newsclf export folder and gives newsclf's logits. It cannot live beside newsclf: optimum-onnx
# 0.1.0 pins transformers<4.58 and newsclf needs transformers 5. Versions are pinned exactly in
# scripts/optimum-constraints.txt (transformers is the one optimum-onnx pins, not newsclf's).
#
# Usage: bash scripts/optimum_env.sh [PATH]    (PATH defaults to .optimum-venv at the repo root)
# then:  NEWSCLF_OPTIMUM_PYTHON=PATH/bin/python python -m pytest tests/export/test_optimum_interop.py
#
# Idempotent: an environment at PATH that already imports optimum.onnxruntime at the pinned
# versions is left as it is. PYTHON picks the interpreter that makes it (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.optimum-venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/scripts/optimum-constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# -qq: errors only (-q still prints each package index warning on some machines).
PIP=(-m pip install -qq -c "$CONSTRAINTS")

# Exit 0 when the environment imports ORTModelForSequenceClassification and every package named
# in the constraints file is installed at its pinned version (names compared normalised).
check_env() {
  "$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import re
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    from optimum.onnxruntime import ORTModelForSequenceClassification  # noqa: F401
except Exception as exc:
    sys.exit(f"optimum.onnxruntime does not import: {exc!r}")

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, pinned = line.split("==")
    try:
        found = version(re.sub(r"[-_.]+", "-", name))
    except PackageNotFoundError:
        sys.exit(f"{name} missing")
    if found.split("+")[0] != pinned:
        sys.exit(f"{name} {found} != {pinned}")
PY
}

print_versions() {
  "$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version

packages = ("optimum-onnx", "optimum", "transformers", "onnxruntime", "tokenizers", "torch")
print(f"optimum env {sys.prefix} (Python {sys.version.split()[0]}):")
print("  " + ", ".join(f"{name} {version(name)}" for name in packages))
PY
}

if [ -x "$VENV/bin/python" ] && check_env 2>/dev/null; then
  echo "optimum env at $VENV is already set up"
  print_versions
  exit 0
fi

if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV")" ]; then
  echo "error: $VENV exists and is not a virtual environment; pick another path" >&2
  exit 1
fi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "" 2>/dev/null; then
  echo "optimum env at $VENV: bringing it to the pinned versions"
else
  echo "optimum env: creating $VENV"
  "$PYTHON" -m venv --clear "$VENV"
fi
# torch first: the CPU build from the machine's disk (otherwise pip fetches the CUDA build).
"$VENV/bin/python" "${PIP[@]}" torch==2.13.0
"$VENV/bin/python" "${PIP[@]}" "optimum-onnx[onnxruntime]==0.1.0"
if ! check_env; then
  echo "error: the optimum env at $VENV does not match scripts/optimum-constraints.txt" >&2
  exit 1
fi
print_versions
