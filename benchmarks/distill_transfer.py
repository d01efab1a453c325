"""python -m benchmarks.distill_transfer TEACHER_RUN OUT.csv [--per-row N] [--seed S]

Unlabelled transfer texts for `newsclf distill --transfer-file`, made from the teacher's own
training split only (the rows `train` trained on: never its validation or test rows), as
task-specific distillation augments its data (TinyBERT, Jiao et al. 2020): for each training
row, N new texts, each one of

- a mix: the first half of the row's words followed by the second half of another random
  training row's (two topics at once: the teacher's soft targets say how much of each);
- a word dropout: the row with 20% of its words left out at random;
- a crop: a random contiguous 60% of the row's words.

The file has one column, `text`, holding texts already cleaned as the teacher reads them; it
belongs outside the repository (it is made of the shared data).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from newsclf.distillation import find_teacher
from newsclf.training import load_training_data


def augment(texts: list[str], per_row: int, seed: int) -> list[str]:
    """`per_row` new texts for each of `texts` (mix, dropout or crop, in turn)."""
    rng = random.Random(seed)
    words = [text.split() for text in texts]
    made: list[str] = []
    for i, row in enumerate(words):
        for k in range(per_row):
            kind = (i + k) % 3
            if kind == 0 and len(words) > 1:
                other = words[rng.randrange(len(words))]
                new = row[: max(1, len(row) // 2)] + other[len(other) // 2 :]
            elif kind == 1:
                new = [w for w in row if rng.random() >= 0.2] or row[:1]
            else:
                size = max(1, round(len(row) * 0.6))
                start = rng.randrange(len(row) - size + 1)
                new = row[start : start + size]
            made.append(" ".join(new))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teacher", type=Path, help="the teacher's run folder")
    parser.add_argument("output", type=Path, help="the transfer CSV to write")
    parser.add_argument("--per-row", type=int, default=1, help="new texts per training row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    teacher = find_teacher(args.teacher)
    data = load_training_data(teacher.training)
    texts = augment(data.train.texts, args.per_row, args.seed)
    held_out = set(data.validation.texts) | set(data.test.texts if data.test else [])
    texts = [t for t in texts if t and t not in held_out]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    print(f"{args.output}: {len(texts):,} texts from {len(data.train):,} training rows")


if __name__ == "__main__":
    main()
