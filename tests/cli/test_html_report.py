"""classify --html: one self-contained, valid HTML file that escapes the user's texts, shows
what applies with and without labels, fails before the work when it cannot be written, and
renders in a headless browser (where Chromium is installed)."""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsclf.artifacts import ExportFolder
from newsclf.cli import app
from newsclf.inference import Classifier, ClassifierConfig
from tests.conftest import LABELS, sample_rows, write_csv

SCRIPT = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")
# Elements that have no end tag.
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class _Checker(HTMLParser):
    """Tags opened and closed in order, and every src / href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.problems == [] and checker.stack == []
    return checker


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["classify", *args], env={"COLUMNS": "200"})
    return result.exit_code, re.sub(r"\s+", " ", result.output)


@pytest.fixture(scope="module")
def classifier(tiny_export, tmp_path_factory: pytest.TempPathFactory) -> Classifier:  # type: ignore[no-untyped-def]
    """The tiny export, its texts left uncleaned: a text's markup reaches the report as it is
    (cleaning would drop the tags before the report sees them)."""
    folder = tmp_path_factory.mktemp("raw") / "export"
    shutil.copytree(tiny_export.output_dir, folder)
    settings = folder / "newsclf_preprocessing.json"
    settings.write_text(settings.read_text().replace('"clean": true', '"clean": false'))
    loaded = ExportFolder.load(folder)
    assert loaded.preprocessing.clean is False
    return Classifier(loaded, ClassifierConfig(device="cpu", variant="fp32"))


def _hostile_input(classifier: Classifier, folder: Path) -> Path:
    """Sample rows, their label set to the prediction (right), except a few made wrong: the
    first of them holds a script tag, and one label is an unknown one holding markup."""
    rows = sample_rows("test.csv")[:40]
    texts = [f"{r['title']} {r['description']}" for r in rows]
    texts[0] = f"{SCRIPT} markets & <b>bold</b> claims"
    predicted = classifier.predict(texts).labels
    labels = list(predicted)
    for i in (0, 5, 9):  # wrong: the next class
        labels[i] = LABELS[(LABELS.index(predicted[i]) + 1) % len(LABELS)]
    labels[7] = "<img src=x onerror=alert(2)>"
    folder.mkdir(exist_ok=True)
    return write_csv(
        folder / "in<b>.csv",  # a file name is user data too
        ["text", "label"],
        [[t, label] for t, label in zip(texts, labels, strict=True)],
    )


def test_the_html_report_is_valid_self_contained_and_escaped(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _hostile_input(classifier, tmp_path / "data")
    html_path = tmp_path / "report.html"
    code, output = _run(
        str(source), "--model", str(classifier.folder.path), "--variant", "fp32",
        "--output", str(tmp_path / "out.csv"), "--min-confidence", "0.6",
        "--html", str(html_path),
    )  # fmt: skip
    assert code == 0, output
    assert f"HTML report written to {html_path}" in output
    html = html_path.read_text(encoding="utf-8")
    checker = _parsed(html)
    # Self-contained: no URL to fetch, images inline.
    assert "http://" not in html and "https://" not in html
    assert checker.links and all(
        link.startswith("data:image/png;base64,") for link in checker.links
    )
    assert "script" not in checker.tags and "link" not in checker.tags
    # Escaped: the user's text, label and file name are shown as text, never as markup.
    assert SCRIPT not in html and "<b>bold" not in html and "<img src=x" not in html
    text = "".join(checker.text)
    assert SCRIPT in text and "<img src=x onerror=alert(2)>" in text and "in<b>.csv" in text
    # What a labelled run shows.
    for heading in (
        "Run",
        "Stages",
        "Confidence",
        "Per class",
        "Confusion matrix",
        "Confidence histogram",
        "Reliability diagram",
        "Coverage / accuracy",
        "Most confused pairs",
        "Predicted classes",
    ):
        assert f">{heading}<" in html, heading
    assert checker.tags.count("img") == 5  # heat map, histogram, reliability, coverage, counts
    assert "accuracy" in text and "macro-F1" in text and "CPUExecutionProvider" in text
    assert "&ge; 0.6 (P)" in html and 'class="chosen"' in html
    # The same run lines as the terminal's summary, and each stage's busy share.
    assert "stages busy" in text and "preparing: in turn" in text
    assert all(f"<td>{stage}</td>" in html for stage in ("read", "prepare", "inference", "write"))


def test_without_labels_it_shows_what_applies(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"], ["team wins"], ["chip"]])
    html_path = tmp_path / "report.html"
    code, output = _run(
        str(source), "--model", str(classifier.folder.path), "--html", str(html_path)
    )
    assert code == 0, output
    html = html_path.read_text(encoding="utf-8")
    checker = _parsed(html)
    assert ">Predicted classes<" in html and ">Confidence histogram<" in html
    assert ">No labels<" in html
    for heading in ("Per class", "Confusion matrix", "Reliability diagram", "Coverage / accuracy"):
        assert f">{heading}<" not in html
    assert checker.tags.count("img") == 2


def test_html_without_matplotlib_fails_before_the_work(
    tiny_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    data = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"]])
    out = tmp_path / "out.csv"
    code, output = _run(str(data), "--model", str(tiny_export.output_dir), "--output", str(out),
                        "--html", str(tmp_path / "r.html"))  # fmt: skip
    assert code == 2 and "--html needs matplotlib" in output and not out.exists()


def test_an_html_target_that_cannot_be_written_fails_before_the_work(
    tiny_export, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = write_csv(tmp_path / "in.csv", ["text"], [["stocks rally"]])
    (tmp_path / "taken").mkdir()
    out = tmp_path / "out.csv"
    code, output = _run(str(data), "--model", str(tiny_export.output_dir), "--output", str(out),
                        "--html", str(tmp_path / "taken"))  # fmt: skip
    assert code == 2 and "is a folder" in output and not out.exists()


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Chromium is not installed (/usr/bin/chromium)")
def test_the_report_renders_in_headless_chromium(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    source = _hostile_input(classifier, tmp_path / "data")
    html_path, png = tmp_path / "report.html", tmp_path / "report.png"
    code, output = _run(str(source), "--model", str(classifier.folder.path),
                        "--output", str(tmp_path / "out.csv"), "--min-confidence", "0.6",
                        "--html", str(html_path))  # fmt: skip
    assert code == 0, output
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1200,2000",
        html_path.resolve().as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert png.is_file(), "Chromium wrote no screenshot"
    with Image.open(png) as image:
        assert image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    assert colours is not None and len(colours) > 500  # text, tables and charts, not a blank page
    # Most of the page is not one colour: something was drawn.
    assert max(count for count, _ in colours) < 0.9 * 1200 * 2000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_the_json_report_and_the_html_agree(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    source = _hostile_input(classifier, tmp_path / "data")
    report, html_path = tmp_path / "r.json", tmp_path / "r.html"
    code, output = _run(str(source), "--model", str(classifier.folder.path),
                        "--output", str(tmp_path / "out.csv"), "--min-confidence", "0.6",
                        "--report", str(report), "--html", str(html_path))  # fmt: skip
    assert code == 0, output
    data = json.loads(report.read_text())
    html = html_path.read_text(encoding="utf-8")
    chosen = next(p for p in data["coverage"] if p["chosen"])
    assert f"{100 * chosen['coverage']:.1f}%" in html
    for pair in data["top_confusions"]:
        for example in pair["examples"]:
            assert f"row {example['row']:,}" in html
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == data["rows"] == 40
