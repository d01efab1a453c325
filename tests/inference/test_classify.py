"""newsclf classify: order-preserving streaming, honest metrics, bad input, atomic output."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder
from newsclf.cli import app
from newsclf.errors import InputError, ModelError, ProviderError
from newsclf.inference import Classifier, ClassifierConfig, ClassifyConfig, classify_file
from tests.conftest import LABELS, labelled_input, read_csv, sample_rows, write_csv


@pytest.fixture(scope="module")
def classifier(tiny_export) -> Classifier:  # type: ignore[no-untyped-def]
    return Classifier(
        ExportFolder.load(tiny_export.output_dir),
        ClassifierConfig(device="cpu", variant="fp32", batch_size=3),
    )


def _input_file(tmp_path: Path, rows: int = 50) -> Path:
    return labelled_input(tmp_path / "in.csv", rows)


def run(cli_args: list[str], input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["classify", *cli_args], input=input, env={"COLUMNS": "200"})
    return result, re.sub(r"\s+", " ", result.output)


def test_output_keeps_every_row_in_order_across_chunks(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path)
    output = tmp_path / "out.csv"
    result = classify_file(source, classifier, ClassifyConfig(chunk_rows=7), output=output)
    rows_in, rows_out = read_csv(source), read_csv(output)
    assert result.rows == len(rows_out) == len(rows_in) == 50
    assert list(rows_out[0]) == [
        "id",
        "title",
        "description",
        "label",
        "predicted_label",
        "confidence",
    ]
    for before, after in zip(rows_in, rows_out, strict=True):
        assert {k: after[k] for k in before} == before  # every input column, unchanged, in order
    # Each prediction equals classifying that row alone (no batching, no sorting, no padding)
    # through the public API, which cleans raw texts as classify does.
    texts = [f"{r['title']} {r['description']}" for r in rows_in]
    alone = [classifier.predict_proba([t])[0] for t in texts]
    assert [r["predicted_label"] for r in rows_out] == [LABELS[int(np.argmax(p))] for p in alone]
    assert [float(r["confidence"]) for r in rows_out] == pytest.approx(
        [float(np.max(p)) for p in alone], abs=1e-5
    )
    assert result.padded_tokens >= result.tokens > 0


def test_report_metrics_equal_sklearn_on_the_output_file(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, output, report_path = (
        _input_file(tmp_path, 100),
        tmp_path / "out.csv",
        tmp_path / "r.json",
    )
    result, text = run(
        [
            str(source),
            "--model",
            str(classifier.folder.path),
            "--output",
            str(output),
            "--variant",
            "fp32",
            "--device",
            "cpu",
            "--report",
            str(report_path),
        ]
    )
    assert result.exit_code == 0, text
    report = json.loads(report_path.read_text())
    rows = read_csv(output)
    y_true = [r["label"] for r in rows]
    y_pred = [r["predicted_label"] for r in rows]
    assert report["rows"] == 100 and report["labels"] == LABELS
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    assert report["provider"] == "CPUExecutionProvider" and report["variant"] == "fp32"
    assert report["throughput_rows_per_s"] == pytest.approx(
        report["rows"] / report["wall_time_s"], rel=0.05
    )
    assert "CPUExecutionProvider" in text and "accuracy" in text and "Confusion matrix" in text


def test_jsonl_and_parquet_round_trip_with_probabilities(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"text": "oil prices climb", "label": "Business", "n": 1},
        {"text": "team wins", "label": "Sports", "n": 2},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = classify_file(source, classifier, ClassifyConfig(probabilities=True))
    out = [json.loads(line) for line in Path(result.output).read_text().splitlines()]
    assert Path(result.output).name == "in.predictions.jsonl"
    assert [r["n"] for r in out] == [1, 2]
    expected = classifier.predict_proba([r["text"] for r in rows])
    got = np.array([[r[f"prob_{n}"] for n in LABELS] for r in out])
    np.testing.assert_allclose(got, expected, atol=1e-6)  # rounded to 6 places
    assert [r["predicted_label"] for r in out] == classifier.predict(
        [r["text"] for r in rows]
    ).labels

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    result = classify_file(tmp_path / "in.parquet", classifier, ClassifyConfig())
    table = pq.read_table(result.output)
    assert table.column_names == ["text", "label", "n", "predicted_label", "confidence"]
    assert table.column("n").to_pylist() == [1, 2]


def test_missing_text_column_lists_the_columns(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "in.csv", ["headline", "label"], [["a", "World"]])
    with pytest.raises(InputError, match="columns found: headline, label"):
        classify_file(source, classifier, ClassifyConfig())
    assert not (tmp_path / "in.predictions.csv").exists()


def test_empty_texts_are_classified_and_counted(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(
        tmp_path / "in.csv", ["text"], [["stocks rise"], [""], ["   "], ["team wins"]]
    )
    result = classify_file(source, classifier, ClassifyConfig())
    assert result.rows == 4 and result.empty_text_rows == 2
    written = [r["predicted_label"] for r in read_csv(Path(result.output))]
    assert written == classifier.predict(["stocks rise", "", "", "team wins"]).labels
    assert result.metrics is None  # no label column: no evaluation


def test_malformed_jsonl_line_is_an_error_or_skipped(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"in\.jsonl, line 2: not valid JSON"):
        classify_file(source, classifier, ClassifyConfig())
    assert not (tmp_path / "in.predictions.jsonl").exists()

    result = classify_file(source, classifier, ClassifyConfig(on_error="skip"))
    assert result.rows == 2 and [s.line for s in result.skipped_lines] == [2]
    out = [json.loads(line) for line in Path(result.output).read_text().splitlines()]
    assert [r["text"] for r in out] == ["a", "c"]  # no prediction written for line 2


def test_malformed_csv_row_via_cli(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.csv"
    source.write_text("text,label\nstocks,Business\na,b,c\nteam wins,Sports\n", encoding="utf-8")
    result, text = run([str(source), "--model", str(classifier.folder.path)])
    assert result.exit_code == 2 and "in.csv, line 3: expected 2 fields" in text
    result, text = run([str(source), "--model", str(classifier.folder.path), "--on-error", "skip"])
    assert result.exit_code == 0 and "1 malformed lines skipped" in text and ": 3" in text
    assert len(read_csv(tmp_path / "in.predictions.csv")) == 2


def test_unknown_and_missing_labels_are_excluded_and_counted(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(
        tmp_path / "in.csv",
        ["text", "label"],
        [
            ["stocks", "Business"],
            ["team", "Sports"],
            ["x", "Weather"],
            ["y", "Weather"],
            ["z", ""],
            ["w", "2"],
        ],  # an integer label is read as a class index (2 = Sports)
    )
    result = classify_file(source, classifier, ClassifyConfig())
    assert result.unknown_labels == {"Weather": 2}
    assert result.unlabelled_rows == 1 and result.labelled_rows == 3
    assert result.metrics is not None and result.metrics.rows == 3
    assert result.rows == 6  # every row still gets a prediction


def test_undecodable_bytes_report_the_position(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.csv"
    source.write_bytes(b"text\nok\nna\xefve\n")
    with pytest.raises(InputError, match=r"line 3, byte 3 of that line"):
        classify_file(source, classifier, ClassifyConfig())


def test_empty_file_and_header_only(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    result, text = run([str(empty), "--model", str(classifier.folder.path)])
    assert result.exit_code == 2 and "the file is empty" in text
    header = tmp_path / "header.csv"
    header.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(InputError, match="header but no rows"):
        classify_file(header, classifier, ClassifyConfig())
    assert not (tmp_path / "header.predictions.csv").exists()


def test_model_folder_problems(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, text = run(["x.csv", "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 3 and "no such export folder" in text
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "newsclf_export.json"):
        (broken / name).write_bytes((tiny_export.output_dir / name).read_bytes())
    with pytest.raises(
        ModelError, match=r"missing newsclf_preprocessing\.json, tokenizer_config\.json"
    ):
        ExportFolder.load(broken)


def test_interrupted_run_leaves_no_output(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path)

    def interrupt(rows: int, done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        classify_file(source, classifier, ClassifyConfig(chunk_rows=10), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_stdin_input_and_stdout_output(classifier) -> None:  # type: ignore[no-untyped-def]
    data = "text,label\nshares fell,Business\nthe rovers won,Sports\n"
    result = CliRunner().invoke(
        app,
        [
            "classify",
            "-",
            "--format",
            "csv",
            "--output",
            "-",
            "--model",
            str(classifier.folder.path),
        ],
        input=data,
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["text"] for r in rows] == ["shares fell", "the rovers won"]
    assert [r["predicted_label"] for r in rows] == classifier.predict(
        ["shares fell", "the rovers won"]
    ).labels


def test_cuda_request_without_cuda_is_an_error(tiny_export) -> None:  # type: ignore[no-untyped-def]
    folder = ExportFolder.load(tiny_export.output_dir)
    try:
        Classifier(folder, ClassifierConfig(device="cuda"))
    except ProviderError as error:
        assert "CUDA" in str(error)
    else:
        pytest.skip("CUDA really works on this machine")
    auto = Classifier(folder, ClassifierConfig(device="auto"))
    assert auto.provider == "CPUExecutionProvider" and auto.device == "cpu"
    assert auto.variant == "optimized"  # the fastest batch-invariant CPU variant it holds


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_output_is_the_same_whatever_the_preparing_workers(
    classifier, tmp_path: Path, fmt: str
) -> None:  # type: ignore[no-untyped-def]
    """In turn, in one or two threads, in two worker processes: the same bytes, rows in input
    order."""
    source = _input_file(tmp_path, 60)
    outputs = []
    runs = [(0, "auto", "in turn"), (1, "auto", "threads"), (2, "threads", "threads")]
    for workers, pool, expected in [*runs, (2, "auto", "processes")]:
        output = tmp_path / f"out-{workers}-{pool}.{fmt}"
        config = ClassifyConfig(
            chunk_rows=7, prepare_workers=workers, prepare_pool=pool, probabilities=True
        )  # type: ignore[arg-type]
        result = classify_file(source, classifier, config, output=output)
        assert (result.stages.prepare_pool, result.stages.prepare_workers) == (
            expected,
            max(workers, 1),
        )
        assert result.rows == 60 and result.stages.prepare_s > 0
        outputs.append(output.read_bytes())
    assert all(output == outputs[0] for output in outputs)


def test_the_pool_follows_the_device_and_the_work() -> None:
    from newsclf.environment import cpu_cores
    from newsclf.inference import pool_plan

    cores = cpu_cores()
    assert pool_plan("cuda", cores, True, None) == ("processes", max(1, cores - 2)) or cores < 4
    assert pool_plan("cpu", cores, True, None) == ("in turn", 1)  # inference has every core
    assert pool_plan("cpu", cores, True, 3) == ("processes", 3)  # cleaning holds the GIL
    assert pool_plan("cpu", cores, False, 3) == ("threads", 3)  # tokenizing releases it
    assert pool_plan("cuda", cores, True, 0) == ("in turn", 1)


def test_prediction_columns_already_in_the_input_are_refused(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "in.csv", ["text", "predicted_label"], [["stocks", "x"]])
    result, text = run([str(source), "--model", str(classifier.folder.path)])
    assert result.exit_code == 2
    assert "already has column(s) predicted_label" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_output_equal_to_the_input_is_refused(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path, 5)
    before = source.read_bytes()
    alias = tmp_path / "." / "in.csv"
    result, text = run(
        [str(source), "--model", str(classifier.folder.path), "--output", str(alias)]
    )
    assert result.exit_code == 2 and "is the input file" in text
    assert source.read_bytes() == before


def test_sigterm_stops_cleanly_and_leaves_no_output(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = sample_rows("test.csv")
    source = write_csv(
        tmp_path / "big.csv",
        ["title", "description", "label"],
        [[r["title"], r["description"], r["label"]] for r in rows] * 400,  # 40,000 rows
    )
    command = [
        sys.executable,
        "-m",
        "newsclf",
        "classify",
        str(source),
        "--model",
        str(classifier.folder.path),
        "--variant",
        "fp32",
        "--chunk-rows",
        "256",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    output = tmp_path / "big.predictions.csv"
    deadline = time.monotonic() + 120
    # Wait until the run is writing (its hidden partial file exists), then terminate it.
    while not list(tmp_path.glob(".big.predictions.csv.*.partial")):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "classify never started writing"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]


def test_plots_write_a_confusion_matrix_png(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _input_file(tmp_path, 30)
    plots = tmp_path / "plots"
    result, text = run([str(source), "--model", str(classifier.folder.path), "--plots", str(plots)])
    assert result.exit_code == 0, text
    png = plots / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] >= 400 and image.size[1] >= 400
    assert sorted(p.name for p in plots.iterdir()) == ["confusion_matrix.png"]
    assert "confusion matrix plot written" in text


def _integer_class_export(tiny_export, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The tiny export relabelled with integer class names 1..4 (as in the original AG News)."""
    folder = tmp_path / "int-export"
    shutil.copytree(tiny_export.output_dir, folder)
    names = ["1", "2", "3", "4"]
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((folder / "newsclf_export.json").read_text())
    manifest["label_names"] = names
    (folder / "newsclf_export.json").write_text(json.dumps(manifest))
    return folder


def test_integer_class_names_match_labels_by_name_not_position(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _integer_class_export(tiny_export, tmp_path)
    clf = Classifier(folder, ClassifierConfig(device="cpu", variant="fp32"))
    texts = ["stocks rise", "team wins the cup", "new chip released", "talks in the capital"]
    predicted = clf.predict(texts).labels
    assert set(predicted) <= {"1", "2", "3", "4"}
    # Labels written as integers equal to the predictions: every row counts as correct. Were
    # "1".."4" read as positions 0..3 instead, they would be off by one.
    source = write_csv(
        tmp_path / "in.csv",
        ["text", "label"],
        [[t, int(p)] for t, p in zip(texts, predicted, strict=True)],
    )
    result = classify_file(source, clf, ClassifyConfig())
    assert result.metrics is not None
    assert result.metrics.accuracy == 1.0 and result.labelled_rows == 4
    assert result.metrics.labels == ["1", "2", "3", "4"] and not result.unknown_labels
    # A label the model lacks (0) is counted apart, not mapped to a class.
    source = write_csv(tmp_path / "zero.csv", ["text", "label"], [["stocks rise", 0]])
    result = classify_file(source, clf, ClassifyConfig())
    assert result.unknown_labels == {"0": 1} and result.metrics is None


def test_stdin_format_is_sniffed(classifier) -> None:  # type: ignore[no-untyped-def]
    from newsclf.io import sniff_format

    assert sniff_format(b'{"text": "a"}\n') == "jsonl"
    assert sniff_format(b"\xef\xbb\xbftext,label\n") == "csv"
    assert sniff_format(b"text\tlabel\na\tb\n") == "tsv"
    assert sniff_format(b"PAR1....") == "parquet"
    data = '{"text": "shares fell", "label": "Business"}\n{"text": "the rovers won"}\n'
    result = CliRunner().invoke(
        app,
        ["classify", "-", "--output", "-", "--model", str(classifier.folder.path)],
        input=data,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["shares fell", "the rovers won"]
    assert [r["predicted_label"] for r in rows] == classifier.predict(
        ["shares fell", "the rovers won"]
    ).labels


def test_a_directory_as_input_says_so(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, text = run([str(tmp_path), "--model", str(classifier.folder.path)])
    assert result.exit_code == 2 and "is a directory" in text


def test_rendered_report_reads_as_expected() -> None:
    from rich.console import Console

    from newsclf.cli.render import classify_summary, evaluation_summary
    from newsclf.inference import ClassifierInfo, ClassifyResult, StageTimes
    from newsclf.io import SkippedLine
    from newsclf.metrics import Confusion, classification_metrics

    metrics = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], ["Business", "Sports"])
    result = ClassifyResult(
        input="news.csv",
        output="news.predictions.csv",
        rows=6,
        tokens=60,
        padded_tokens=66,
        wall_s=2.0,
        stages=StageTimes(0.1, 0.2, 1.5, 0.05),
        classifier=ClassifierInfo(
            "models/x/onnx",
            "int8",
            "model_int8.onnx",
            "cpu",
            "CPUExecutionProvider",
            32,
            None,
            2,
            None,
        ),
        empty_text_rows=0,
        skipped_lines=[SkippedLine(4, "malformed")],
        labelled_rows=5,
        unlabelled_rows=1,
        metrics=metrics,
        confusions=[
            Confusion("Business", "Sports", 1, "markets slide"),
            Confusion("Sports", "Business", 1, "team sold"),
        ],
    )
    console = Console(width=100, record=True, color_system=None, file=io.StringIO())
    console.print(classify_summary(result))
    console.print(evaluation_summary(result))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines())
    expected = """\
╭─────────────────────────────────── newsclf classify ───────────────────────────────────╮
│ input        news.csv  ->  news.predictions.csv                                        │
│ model        models/x/onnx                                                             │
│ variant      int8 on CPUExecutionProvider (device cpu)                                 │
│ batching     32 rows, 2 inference threads; preparing: in turn                          │
│ rows         6 in 2.00 s: 3.0 rows/s, 30 tokens/s, padding +10.0%                      │
│ stages busy  read 0.10 s 5%, prepare 0.20 s 10%, inference 1.50 s 75%, write 0.05 s 2% │
│ confidence   raw softmax (uncalibrated export, or --no-calibrate)                      │
│ 1 malformed lines skipped (no prediction written): 4                                   │
│ 1 rows without a label, excluded from the metrics                                      │
╰────────────────────────────────────────────────────────────────────────────────────────╯
accuracy 60.00%   macro-F1 58.33%   weighted-F1 60.00%   on 5 labelled rows
Per class
┏━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓
┃ class    ┃ precision ┃ recall ┃     F1 ┃ support ┃
┡━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩
│ Business │    50.00% │ 50.00% │ 50.00% │       2 │
│ Sports   │    66.67% │ 66.67% │ 66.67% │       3 │
└──────────┴───────────┴────────┴────────┴─────────┘
Confusion matrix
┏━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┓
┃ true \\ predicted ┃ Business ┃ Sports ┃
┡━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━┩
│ Business         │        1 │      1 │
│ Sports           │        1 │      2 │
└──────────────────┴──────────┴────────┘
Most frequent confusions
┏━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ true     ┃ predicted ┃ count ┃ example       ┃
┡━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━┩
│ Business │ Sports    │ 1     │ markets slide │
│ Sports   │ Business  │ 1     │ team sold     │
└──────────┴───────────┴───────┴───────────────┘"""
    assert text == expected
