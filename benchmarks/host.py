"""The host's ceiling: `newsclf classify` with a model so small that inference costs almost
nothing (BERT, 1 layer, 32 wide, the real uncased vocabulary), against `Tokenizer.encode_batch`
of the same rows' texts alone, in one run.

Each command runs in its own process, in interleaved rounds, on N and 2N rows (the shared test
rows repeated). Rows/s is the N-row run's, file in to file out (classify's own clock, without
start-up); host CPU per row is the marginal one, (CPU of the 2N run - CPU of the N run) / N
over the process and its workers, so start-up and model loading cancel out. "Beyond
tokenizing and inference" is classify's CPU per row less that of its own tokenizer and
inference run alone on the texts already cleaned (what is left: reading, cleaning, the
stages' hand-offs, writing, the evaluation).

  python -m benchmarks host --data ../shared/data/ag_news/test.csv --rows 100000 \\
      --before ../old-checkout/src --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.runner import ROOT

COLUMNS = [
    ("command", "command"),
    ("rows_per_s", "rows/s (N rows)"),
    ("vs_tokenizing", "x tokenizing alone"),
    ("cpu_us_per_row", "host CPU us/row (marginal)"),
    ("outside_tokenizer_us", "CPU us/row beyond tokenizing and inference"),
]
TOKENIZING = "tokenizers encode_batch alone"
TOKENIZE_AND_INFER = "classify's tokenizer and inference alone"
# A model whose inference costs almost nothing: what is left is the host's work. (On 2 CPU
# cores a 32-wide layer still costs about 42 us a row at 64 tokens, as much as tokenizing.)
HOST_MODEL = {
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "intermediate_size": 16,
}


def make_host_model(folder: Path, parity_texts: Path) -> Path:
    """The tiny BERT with the embedded model's tokenizer, exported (fp32): its export folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from newsclf.artifacts import PreprocessingConfig
    from newsclf.export import ExportConfig, export_onnx
    from newsclf.training import embedded_model_dir

    labels = ["World", "Sports", "Business", "Sci/Tech"]
    names = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    BertForSequenceClassification(BertConfig(**names, **HOST_MODEL)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(folder)
    PreprocessingConfig(text_columns=["title", "description"]).save(folder)
    config = ExportConfig(variants=["optimized"], parity_file=parity_texts)
    return export_onnx(folder, folder.parent / "host-onnx", config).output_dir


def _run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """CPU seconds the command (and every process it waited for) used, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def tokenize_and_infer(texts_file: Path, export: Path, chunk: int) -> None:
    """(In its own process.) What classify does beyond reading, cleaning and writing: the
    export's tokenizer (nanotoken where classify uses it) and inference as classify batches
    it, on the texts already cleaned: prints rows/s."""
    from newsclf.inference import Classifier, ClassifierConfig

    classifier = Classifier(export, ClassifierConfig(device="cpu", variant="fp32"))
    texts = texts_file.read_text(encoding="utf-8").split("\n")
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        classifier.probabilities(classifier.encode(texts[start : start + chunk]))
    print(json.dumps({"rows_per_s": len(texts) / (time.perf_counter() - started)}))


def tokenize_alone(texts_file: Path, tokenizer_json: Path, chunk: int) -> None:
    """(In its own process.) encode_batch over the texts, a chunk at a time: prints rows/s."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    texts = texts_file.read_text(encoding="utf-8").split("\n")
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        tokenizer.encode_batch(texts[start : start + chunk])
    print(json.dumps({"rows_per_s": len(texts) / (time.perf_counter() - started)}))


def host_suite(args: argparse.Namespace) -> None:
    from benchmarks.rows import load_rows, write_csv
    from newsclf.artifacts import PreprocessingConfig

    work = Path(tempfile.mkdtemp(prefix="nbench-host-"))
    export = args.model or make_host_model(work / "host", args.data)
    pre = PreprocessingConfig.load(export)
    files = {}
    for rows in (args.rows, 2 * args.rows):
        data = load_rows(args.data, rows, pre)
        files[rows] = (write_csv(data, work / f"rows-{rows}.csv"), work / f"texts-{rows}.txt")
        files[rows][1].write_text("\n".join(data.texts), encoding="utf-8")
    tokenizer_json = export / "tokenizer.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    commands: dict[str, tuple[list[str], str]] = {}
    classify = ["-m", "newsclf", "classify", "{data}", "--model", str(export), "--variant",
                "fp32", "--device", "cpu", "--output", str(work / "out.csv"), "--report",
                str(work / "report.json")]  # fmt: skip
    current = f"{ROOT / 'src'}:{ROOT}"
    commands[TOKENIZING] = (
        ["-m", "benchmarks.host", "--tokenize", "{texts}", str(tokenizer_json)],
        current,
    )
    commands[TOKENIZE_AND_INFER] = (
        ["-m", "benchmarks.host", "--tokenize-and-infer", "{texts}", str(export)],
        current,
    )
    if args.before:
        commands["newsclf classify (before)"] = (classify, f"{args.before}:{ROOT}")
    commands["newsclf classify"] = (classify, current)
    for workers in args.workers:  # N, or N:KIND for --prepare-pool KIND
        count, _, kind = workers.partition(":")
        extra = ["--prepare-workers", count] + (["--prepare-pool", kind] if kind else [])
        commands[f"newsclf classify {' '.join(extra)}"] = ([*classify, *extra], current)
    speed: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.rounds):
        for name, (arguments, path) in commands.items():
            seconds = {}
            for rows, (data, texts) in files.items():
                command = [sys.executable, *(a.format(data=data, texts=texts) for a in arguments)]
                seconds[rows], printed = _run(command, {**env, "PYTHONPATH": path})
                if name in (TOKENIZING, TOKENIZE_AND_INFER):
                    rate = json.loads(printed.splitlines()[-1])["rows_per_s"]
                else:
                    rate = json.loads((work / "report.json").read_text())["throughput_rows_per_s"]
                if rows == args.rows:
                    speed[name].append(rate)
            cpu[name].append((seconds[2 * args.rows] - seconds[args.rows]) / args.rows)
            print(f"round {round_ + 1} {name}: {speed[name][-1]:,.0f} rows/s, "
                  f"{1e6 * cpu[name][-1]:.1f} us/row", flush=True)  # fmt: skip
    base_speed = statistics.median(speed[TOKENIZING])
    base_cpu = statistics.median(cpu[TOKENIZE_AND_INFER])
    records = []
    for name in commands:
        rate, per_row = statistics.median(speed[name]), statistics.median(cpu[name])
        records.append(
            {
                "command": name,
                "rows_per_s": round(rate, 1),
                "vs_tokenizing": round(rate / base_speed, 3),
                "cpu_us_per_row": round(1e6 * per_row, 2),
                # (Not for the code before: it tokenized with another tokenizer.)
                "outside_tokenizer_us": None
                if "before" in name or name in (TOKENIZING, TOKENIZE_AND_INFER)
                else round(1e6 * (per_row - base_cpu), 2),
                "rounds_rows_per_s": [round(r, 1) for r in speed[name]],
                "rounds_cpu_us": [round(1e6 * c, 2) for c in cpu[name]],
            }
        )
    meta = {"command": " ".join(sys.argv), "rows": args.rows, "model": HOST_MODEL}
    paths = write_results(args.suite_name, records, COLUMNS, meta, args.out)
    print(Path(paths[1]).read_text())


def add_parser(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("host", help="the host's ceiling: classify vs tokenizing alone")
    h.add_argument("--data", type=Path, required=True, help="labelled rows, repeated to --rows")
    h.add_argument("--model", type=Path, help="an export of the host model (default: made here)")
    h.add_argument("--rows", type=int, default=100_000)
    h.add_argument("--rounds", type=int, default=3)
    h.add_argument("--before", type=Path, help="src folder of the code to compare with")
    h.add_argument(
        "--workers",
        nargs="*",
        default=["2", "2:threads"],
        help="runs with --prepare-workers N (N:KIND: and --prepare-pool KIND)",
    )
    h.add_argument("--suite-name", default="host")
    h.add_argument("--out", type=Path, default=RESULTS_DIR)
    h.set_defaults(run=host_suite)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tokenize"]:
        tokenize_alone(Path(sys.argv[2]), Path(sys.argv[3]), 4096)
    elif sys.argv[1:2] == ["--tokenize-and-infer"]:
        tokenize_and_infer(Path(sys.argv[2]), Path(sys.argv[3]), 4096)
