"""Batch invariance of each variant of an export: every row one at a time, then in batches of
32 in file order, then shuffled in batches of 7; the largest probability difference, the label
flips and whether the numbers are identical to the last bit.

    python -m benchmarks.invariance EXPORT_DIR TEST_CSV optimized,openvino-int8,int8 OUT.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rows import load_rows
from newsclf import Classifier, ClassifierConfig


def measure(export: Path, texts: list[str], variant: str) -> dict[str, Any]:
    def run(batch_size: int, rows: list[str]) -> np.ndarray:
        config = ClassifierConfig(device="cpu", variant=variant, batch_size=batch_size)  # type: ignore[arg-type]
        return Classifier(export, config).predict_proba(rows)

    started = time.perf_counter()
    alone = run(1, texts)
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)
    shuffled = np.empty_like(alone)
    shuffled[order] = run(7, [texts[i] for i in order])
    record: dict[str, Any] = {"variant": variant, "rows": len(texts)}
    for name, probabilities in (("batch32", run(32, texts)), ("shuffled_batch7", shuffled)):
        record[name] = {
            "max_abs_diff": float(np.abs(probabilities - alone).max()),
            "label_flips": int((probabilities.argmax(1) != alone.argmax(1)).sum()),
            "bit_identical": bool(np.array_equal(probabilities, alone)),
        }
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("variants")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    probe = Classifier(args.export, ClassifierConfig(device="cpu"))
    texts = load_rows(args.data, None, probe.preprocessing).texts
    records = []
    for variant in args.variants.split(","):
        records.append(measure(args.export, texts, variant))
        print(json.dumps(records[-1]), flush=True)
    args.output.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
