"""Check that Hugging Face Optimum's ORTModelForSequenceClassification loads a newsclf export
folder and gives the reference logits.

Runs inside the Optimum environment (scripts/optimum_env.sh): stdlib, numpy, optimum and
transformers only, never newsclf, whose transformers 5 cannot be installed beside optimum-onnx.

    python tests/export/optimum_check.py EXPORT_DIR REFERENCE.json

REFERENCE.json (written by tests/export/test_optimum_interop.py):

    {"texts": [...],                   the texts, tokenized here as one padded batch
     "logits": [[...], ...],           the reference logits, one row per text
     "max_length": 64,                 optional: the truncation length the reference used
     "input_ids": [[...], ...],        optional: the reference's token ids (padded batch)
     "files": {"model.onnx": 1e-4}}    optional: the files to load, each with its tolerance on
                                       the max abs logit difference; default model.onnx and,
                                       where present, model_optimized.onnx, both at 1e-4

Each file must give logits within its tolerance and the same argmax labels as the reference.
Prints one line per file; exits 0 when all pass, 1 otherwise (2 on bad arguments).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_FILES = {"model.onnx": 1e-4, "model_optimized.onnx": 1e-4}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder, reference_path = Path(argv[0]), Path(argv[1])
    reference = json.loads(reference_path.read_text(encoding="utf-8"))
    texts: list[str] = reference["texts"]
    expected = np.asarray(reference["logits"], dtype=np.float64)
    if expected.shape[0] != len(texts):
        print(f"error: {len(texts)} texts but {expected.shape[0]} rows of logits", file=sys.stderr)
        return 2
    files = reference.get("files") or {
        name: tol
        for name, tol in DEFAULT_FILES.items()
        if name == "model.onnx" or (folder / name).is_file()
    }

    # Local folder only: no hub look-ups.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    print(
        f"optimum {_version('optimum')} (optimum-onnx {_version('optimum-onnx')}), "
        f"transformers {transformers.__version__}, onnxruntime {_version('onnxruntime')}"
    )

    ok = True
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = tokenizer.model_max_length
    if reference.get("max_length") not in (None, max_length):
        print(f"FAIL tokenizer: model_max_length {max_length}, reference {reference['max_length']}")
        ok = False
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    lengths = encoded["attention_mask"].sum(axis=1)
    truncated = int((lengths == max_length).sum())
    print(
        f"tokenizer {type(tokenizer).__name__}: {len(texts)} texts, max_length {max_length}, "
        f"{truncated} at the limit, batch shape {tuple(encoded['input_ids'].shape)}"
    )
    if "input_ids" in reference:
        ids = np.asarray(reference["input_ids"])
        same = ids.shape == encoded["input_ids"].shape and bool((ids == encoded["input_ids"]).all())
        print(f"{'ok  ' if same else 'FAIL'} token ids identical to the reference's: {same}")
        ok = ok and same

    expected_labels = expected.argmax(axis=1)
    for name, tolerance in files.items():
        if not (folder / name).is_file():
            print(f"FAIL {name}: not in {folder}")
            ok = False
            continue
        try:
            model = ORTModelForSequenceClassification.from_pretrained(
                folder, file_name=name, provider="CPUExecutionProvider", use_io_binding=False
            )
            inputs = {k: v for k, v in encoded.items() if k in model.input_names}
            logits = np.asarray(model(**inputs).logits, dtype=np.float64)
        except Exception as exc:  # a loader failure is a finding to report, not a crash
            print(f"FAIL {name}: optimum could not load or run it: {type(exc).__name__}: {exc}")
            ok = False
            continue
        if logits.shape != expected.shape:
            print(f"FAIL {name}: logits of shape {logits.shape}, reference {expected.shape}")
            ok = False
            continue
        diff = float(np.abs(logits - expected).max())
        same_labels = int((logits.argmax(axis=1) == expected_labels).sum())
        passed = diff <= tolerance and same_labels == len(texts)
        ok = ok and passed
        print(
            f"{'PASS' if passed else 'FAIL'} {name}: max abs diff {diff:.3g} "
            f"(tolerance {tolerance:g}), labels {same_labels}/{len(texts)} identical, "
            f"inputs {sorted(inputs)}"
        )
    print("optimum check: " + ("all files pass" if ok else "MISMATCH"))
    return 0 if ok else 1


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
