"""Hugging Face Optimum's ORTModelForSequenceClassification loads an export folder and gives
newsclf's logits.

optimum-onnx pins transformers<4.58, which cannot be installed beside newsclf's transformers 5,
so Optimum runs in an environment of its own (scripts/optimum_env.sh) named by
NEWSCLF_OPTIMUM_PYTHON: this process computes the reference logits with ONNX Runtime on the
fp32 model.onnx and tests/export/optimum_check.py, run by that interpreter, compares Optimum's
against them for model.onnx and model_optimized.onnx.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ENV_VAR = "NEWSCLF_OPTIMUM_PYTHON"
ROOT = Path(__file__).resolve().parents[2]
CHECK_SCRIPT = Path(__file__).resolve().parent / "optimum_check.py"

pytestmark = pytest.mark.skipif(
    not os.environ.get(ENV_VAR),
    reason=(
        f"{ENV_VAR} is unset: Optimum needs an environment of its own. To run this, "
        f"`bash scripts/optimum_env.sh` then {ENV_VAR}=.optimum-venv/bin/python"
    ),
)

LONG_TEXT = (
    "Central banks in Europe and Asia held interest rates steady on Thursday as policymakers "
    "weighed signs of slowing growth against stubborn inflation, while stock markets rose in "
    "early trading and the dollar slipped against the euro. Analysts said the decisions were "
    "widely expected, but investors will watch closely for hints about the timing of the next "
    "cut, with oil prices, company earnings, the budget talks in Washington and a strike at "
    "the ports all adding to the uncertainty facing the world economy in the coming months."
)
TEXTS = [
    "Space probe sends back images of comet. A space probe has sent back the first close-up "
    "images of a comet, scientists said at a briefing.",
    "Sara Lind wins marathon in record time, pulling away from the field over the final five "
    "kilometres.",
    "India holds snap election after the governing coalition collapses over a budget dispute.",
    "Cyberdyne patches browser security hole that could let attackers take control of a computer.",
    "Oil prices climb as supply worries grow; shares of energy companies rose 3% on Monday.",
    "Quarterly profit at the retailer falls short of forecasts, sending its stock lower.",
    "The home team won the cup final 2-1 after a late goal in extra time.",
    "Tennis champion withdraws from the open with a knee injury.",
    "UN envoy calls for ceasefire talks as fighting spreads near the border.",
    "New smartphone chip promises longer battery life, the company said at its developer "
    "conference.",
    "Scientists sequence the genome of a rare frog species found in the rainforest.",
    "Prime minister survives a confidence vote in parliament by a narrow margin.",
    "Merger talks between two airlines collapse over pension costs & job cuts.",
    LONG_TEXT,
]


@pytest.fixture(scope="module")
def optimum_python() -> str:
    """The Optimum environment's interpreter: as given when it exists from the working
    directory, otherwise relative to the repository root (not resolved: a venv's python is a
    symlink out of the venv)."""
    value = Path(os.environ[ENV_VAR])
    for candidate in (value, ROOT / value):
        if candidate.is_file():
            return str(candidate.absolute())
    pytest.fail(f"{ENV_VAR}={value} is not a file: run `bash scripts/optimum_env.sh` first")


@pytest.fixture(scope="module")
def reference(tiny_export) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Reference logits from ONNX Runtime on the fp32 model.onnx, computed in this process,
    tokenized as optimum_check.py tokenizes: one padded batch, truncated at the tokenizer's
    max length."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    folder = tiny_export.output_dir
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = tokenizer.model_max_length
    encoded = tokenizer(
        TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    # The long text really is cut: untruncated it is longer than the limit.
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > max_length
    assert int(encoded["attention_mask"][-1].sum()) == max_length
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
    (logits,) = session.run(["logits"], feed)
    num_labels = len(json.loads((folder / "config.json").read_text())["id2label"])
    assert logits.shape == (len(TEXTS), num_labels)
    return {
        "texts": TEXTS,
        "logits": logits.astype(float).tolist(),
        "max_length": max_length,
        "input_ids": encoded["input_ids"].tolist(),
        "files": {"model.onnx": 1e-4, "model_optimized.onnx": 1e-4},
    }


def run_check(python: str, folder: Path, reference: dict[str, object], tmp_path: Path):  # type: ignore[no-untyped-def]
    reference_file = tmp_path / "reference.json"
    reference_file.write_text(json.dumps(reference), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [python, str(CHECK_SCRIPT), str(folder), str(reference_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_optimum_gives_newsclf_logits(optimum_python, tiny_export, reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_export.output_dir
    assert (folder / "model_optimized.onnx").is_file()
    result = run_check(optimum_python, folder, reference, tmp_path)
    output = result.stdout + result.stderr
    print(output)  # the figures, shown with -s or -rA
    assert result.returncode == 0, output
    assert "PASS model.onnx:" in output and "PASS model_optimized.onnx:" in output
    assert "token ids identical to the reference's: True" in output


def test_optimum_check_fails_on_perturbed_logits(  # type: ignore[no-untyped-def]
    optimum_python, tiny_export, reference, tmp_path
) -> None:
    """The check can fail: 0.01 off on one logit (100 times its tolerance) is a mismatch."""
    logits = [list(row) for row in reference["logits"]]  # type: ignore[union-attr]
    logits[3][1] += 0.01
    perturbed = {**reference, "logits": logits}
    result = run_check(optimum_python, tiny_export.output_dir, perturbed, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAIL model.onnx:" in output and "FAIL model_optimized.onnx:" in output
    assert "optimum check: MISMATCH" in output
