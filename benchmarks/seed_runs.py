"""Test accuracy of training runs one by one, of their ensemble and of their uniform soup.

A post-hoc view: it reads the test file for every run, so it can describe a procedure but
must not choose one. Each group is runs of one recipe that differ in seed; the ensemble is
the mean of their fp32 probabilities, the soup the mean of their weights.

    python -m benchmarks.seed_runs ../shared/data/ag_news/test.csv \
        A=models/exp/base-s1,models/exp/base-s2 B=models/exp/refit-rdrop1-s1,...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from benchmarks.rows import load_rows
from newsclf.artifacts import PreprocessingConfig, RunFolder
from newsclf.combine import average_weights
from newsclf.training import predict_logits

BATCH_SIZE = 64


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(-1) == labels).mean())


def evaluate_group(runs: list[Path], test_file: Path) -> dict[str, float]:
    first = RunFolder(runs[0]).best_dir
    pre = PreprocessingConfig.load(first)
    tokenizer = AutoTokenizer.from_pretrained(str(first))
    rows = load_rows(test_file, None, pre)
    models = [
        AutoModelForSequenceClassification.from_pretrained(str(RunFolder(r).best_dir)) for r in runs
    ]
    label_ids = {name: i for i, name in models[0].config.id2label.items()}
    labels = np.array([label_ids[name] for name in rows.labels])

    def probabilities(model: torch.nn.Module) -> np.ndarray:
        logits = predict_logits(model, tokenizer, rows.texts, BATCH_SIZE, pre.max_length)
        return torch.from_numpy(logits).softmax(-1).numpy()

    per_run = [probabilities(m) for m in models]
    scores = {str(run): _accuracy(p, labels) for run, p in zip(runs, per_run, strict=True)}
    scores["mean of runs"] = float(np.mean(list(scores.values())))
    scores["ensemble"] = _accuracy(np.mean(per_run, axis=0), labels)
    souped = models[0]
    souped.load_state_dict(average_weights([m.state_dict() for m in models]))
    scores["uniform soup"] = _accuracy(probabilities(souped), labels)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_file", type=Path)
    parser.add_argument("groups", nargs="+", help="NAME=RUN,RUN,...")
    parser.add_argument("--output", type=Path, help="write every figure as JSON")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for group in args.groups:
        name, _, runs = group.partition("=")
        results[name] = evaluate_group([Path(r) for r in runs.split(",")], args.test_file)
        for key, value in results[name].items():
            print(f"{name}  {key:40s} {100 * value:6.2f}%", flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
