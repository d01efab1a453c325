"""The public Python API, the configuration dataclasses, batching and device rules."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import newsclf
from newsclf.classifier import Classifier, token_budget_batches
from newsclf.config import (
    ClassifierConfig,
    ClassifyConfig,
    ExportConfig,
    PreprocessingConfig,
    TrainingConfig,
)
from newsclf.errors import InputError, ModelError, ProviderError
from newsclf.export_folder import ExportFolder

# -- the public API --------------------------------------------------------------------------


def test_public_names_import_from_the_package_and_are_documented() -> None:
    from newsclf import Classifier as PublicClassifier
    from newsclf import export_onnx, train

    assert PublicClassifier is Classifier
    for name in newsclf.__all__:
        value = getattr(newsclf, name)
        assert value.__doc__, f"{name} has no docstring"
    for function in (train, export_onnx, newsclf.classify_file, Classifier.predict):
        assert "Returns:" in (function.__doc__ or ""), function.__name__
    with pytest.raises(AttributeError):
        _ = newsclf.no_such_name


def test_importing_newsclf_loads_neither_torch_nor_onnxruntime() -> None:
    code = "import sys, newsclf; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_classifier_predict_cleans_texts_as_the_model_was_trained(tiny_export) -> None:  # type: ignore[no-untyped-def]
    clf = Classifier(tiny_export.output_dir, device="cpu", variant="fp32")
    raw = ["Oil prices climb quot;again quot; as markets\\slide", "the Rovers won   the cup"]
    cleaned = ['Oil prices climb "again " as markets slide', "the Rovers won the cup"]
    predictions = clf.predict(raw)
    # The same numbers as the cleaned texts: cleaning happened inside.
    np.testing.assert_allclose(predictions.probabilities, clf.predict_proba(cleaned), atol=1e-6)
    assert len(predictions) == 2 and predictions.label_names == clf.label_names
    best = predictions.probabilities.argmax(axis=1)
    assert predictions.labels == [clf.label_names[i] for i in best]
    np.testing.assert_allclose(predictions.confidences, predictions.probabilities.max(axis=1))
    empty = clf.predict([])
    assert empty.labels == [] and empty.probabilities.shape == (0, 4)


def test_classifier_accepts_a_path_and_reports_what_it_runs(tiny_export) -> None:  # type: ignore[no-untyped-def]
    clf = Classifier(str(tiny_export.output_dir), device="cpu")
    info = clf.info()
    assert (info.variant, info.file, info.device) == ("int8", "model_int8.onnx", "cpu")
    assert info.provider == "CPUExecutionProvider" and info.fallback_reason is None
    assert (info.batch_size, info.max_batch_tokens) == ClassifierConfig.CPU_BATCH
    with pytest.raises(InputError, match="--variant must be one of"):
        Classifier(tiny_export.output_dir, variant="fp8")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"no fp16 variant.*--fp16"):
        Classifier(tiny_export.output_dir, device="cpu", variant="fp16")


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingConfig(batch_size=0), "--batch-size must be positive"),
        (lambda: TrainingConfig(metric="auc"), "--metric must be one of accuracy"),  # type: ignore[arg-type]
        (lambda: TrainingConfig(precision="fp8"), "--precision must be one of auto"),  # type: ignore[arg-type]
        (lambda: TrainingConfig(warmup_ratio=1.5), "--warmup-ratio"),
        (lambda: TrainingConfig(validation_fraction=1.0), "--validation-fraction"),
        (lambda: PreprocessingConfig(max_length=0), "max_length must be positive"),
        (lambda: ExportConfig(quantize="int4"), "--quantize must be one of int8"),  # type: ignore[arg-type]
        (lambda: ExportConfig(device="tpu"), "--device must be one of"),  # type: ignore[arg-type]
        (lambda: ClassifierConfig(max_batch_tokens=-1), "--max-batch-tokens must be positive"),
        (lambda: ClassifyConfig(on_error="ignore"), "--on-error must be one of raise, skip"),  # type: ignore[arg-type]
    ],
)
def test_configs_validate_themselves(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        make()


def test_training_config_round_trips_and_refuses_unknown_keys(tmp_path: Path) -> None:
    config = TrainingConfig(
        model="embedded",
        train_file=Path("a.csv"),
        learning_rate=5e-5,
        preprocessing=PreprocessingConfig(max_length=64, text_columns=["title", "description"]),
    )
    path = config.save(tmp_path / "train_config.json")
    loaded = TrainingConfig.load(path)
    assert loaded == config and isinstance(loaded.train_file, Path)
    assert isinstance(loaded.preprocessing, PreprocessingConfig)
    with pytest.raises(InputError, match=r"unknown setting.*learning_rat"):
        TrainingConfig.from_dict({"learning_rat": 1e-3})


def test_defaults_are_held_once_and_the_cli_agrees() -> None:
    import inspect

    from newsclf import cli

    export = inspect.signature(cli.export).parameters
    assert export["device"].default == ExportConfig().device == "auto"
    assert export["opset"].default == ExportConfig().opset
    from newsclf.config import PARITY_ROWS

    assert ExportConfig().parity_rows == PARITY_ROWS


# -- batching (issue 9: token budget, order restored, every row once) ---------------------------


def test_token_budget_batches_cover_every_row_once_within_budget() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 128, size=1000)
    batches = token_budget_batches(lengths, max_rows=256, max_tokens=4096)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))  # every row exactly once
    for batch in batches:
        assert 1 <= len(batch) <= 256
        assert len(batch) * lengths[batch].max() <= 4096
    # Sorted by length: each batch is no longer than the next.
    maxima = [lengths[b].max() for b in batches]
    assert maxima == sorted(maxima)
    # Greedy: adding the next row would break the budget (else the batch would have taken it).
    for batch, following in itertools.pairwise(batches):
        assert (len(batch) + 1) * lengths[following[0]] > 4096 or len(batch) == 256


def test_token_budget_gives_an_overlong_row_a_batch_of_its_own() -> None:
    batches = token_budget_batches(np.array([3, 500, 4]), max_rows=8, max_tokens=100)
    assert [b.tolist() for b in batches] == [[0, 2], [1]]
    by_rows = token_budget_batches(np.array([5, 1, 3, 2, 4]), max_rows=2)
    assert [b.tolist() for b in by_rows] == [[1, 3], [2, 4], [0]]


def test_classifier_restores_order_whatever_the_batching(tiny_export) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import sample_rows

    texts = [f"{r['title']} {r['description']}" for r in sample_rows("test.csv")[:40]]
    texts += ["short", "x " * 200]  # a one-word text and one past max length
    folder = ExportFolder.load(tiny_export.output_dir)
    alone = np.stack(
        [
            Classifier(folder, device="cpu", variant="fp32", batch_size=1).predict_proba([t])[0]
            for t in texts
        ]
    )
    for batch_size, tokens in ((None, 200), (7, None), (64, 64)):
        clf = Classifier(
            folder, device="cpu", variant="fp32", batch_size=batch_size, max_batch_tokens=tokens
        )
        np.testing.assert_allclose(clf.predict_proba(texts), alone, atol=1e-5)


def test_batching_defaults_per_device() -> None:
    assert ClassifierConfig().batching_for("cpu") == ClassifierConfig.CPU_BATCH
    assert ClassifierConfig().batching_for("cuda") == ClassifierConfig.CUDA_BATCH
    assert ClassifierConfig(batch_size=8).batching_for("cuda") == (8, None)
    rows, _ = ClassifierConfig.CUDA_BATCH
    assert ClassifierConfig(max_batch_tokens=999).batching_for("cuda") == (rows, 999)


# -- providers on the CPU (issue 9) -------------------------------------------------------------


def test_auto_without_a_gpu_is_the_cpu_and_cuda_is_an_error(tiny_export, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import newsclf.sessions as sessions

    monkeypatch.setattr(sessions, "cuda_driver_present", lambda: False)
    path = tiny_export.output_dir / "model.onnx"
    opened = sessions.open_session(lambda device: path, "auto")
    assert (opened.device, opened.provider, opened.fallback_reason) == (
        "cpu",
        "CPUExecutionProvider",
        None,
    )
    assert opened.session.get_providers()[0] == "CPUExecutionProvider"
    with pytest.raises(ProviderError, match=r"CUDA|NVIDIA"):
        sessions.open_session(lambda device: path, "cuda")


def test_auto_with_a_broken_cuda_says_why_it_chose_the_cpu(tiny_export, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A GPU machine whose CUDA provider does not load (the real failure: onnxruntime lists the
    provider, the session comes up on the CPU): auto runs on the CPU and says so, with the CPU
    variant; cuda refuses."""
    import newsclf.sessions as sessions

    monkeypatch.setattr(sessions, "cuda_driver_present", lambda: True)
    folder = ExportFolder.load(tiny_export.output_dir)
    clf = Classifier(folder, device="auto")
    assert clf.device == "cpu" and clf.provider == "CPUExecutionProvider"
    assert clf.fallback_reason and clf.fallback_reason.startswith("--device auto chose the CPU")
    assert clf.variant == "int8"  # the CPU's variant, not the CUDA one
    with pytest.raises(ProviderError):
        Classifier(folder, device="cuda")


# -- training on CUDA (issue 10): only the device query is mocked --------------------------------


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_training_on_cuda_picks_precision_and_attention(
    monkeypatch, bf16: bool, expected: str
) -> None:  # type: ignore[no-untyped-def]
    from newsclf.training import hardware_setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    setup = hardware_setup("auto")
    assert setup.device.type == "cuda" and setup.precision == expected
    assert setup.disable_cudnn_attention and setup.pad_to_multiple_of == 8
    assert setup.optimizer == "adamw_torch_fused"
    assert hardware_setup("fp32").precision == "fp32"  # an explicit choice stands
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with setup.attention():
        assert torch.backends.cuda.cudnn_sdp_enabled() is False
    assert torch.backends.cuda.cudnn_sdp_enabled() is before


def test_training_on_the_cpu_keeps_cudnn_settings_and_refuses_fp16(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsclf.training import hardware_setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    setup = hardware_setup("auto")
    assert setup.device.type == "cpu" and not setup.disable_cudnn_attention
    assert setup.pad_to_multiple_of is None and setup.optimizer == "adamw_torch"
    assert setup.precision in ("bf16", "fp32")
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        hardware_setup("fp16")


def test_step_clock_leaves_out_the_first_fifth_and_evaluations(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    import newsclf.training as training

    clock = training.StepClock(samples_per_step=32)
    now = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: now[0])
    # Ten steps: the first two slow (10 s each), then 1 s each; a 5 s evaluation after step 6.
    for step in range(1, 11):
        now[0] += 10.0 if step <= 2 else 1.0
        clock.on_step_end(None, SimpleNamespace(global_step=step), None)  # type: ignore[arg-type]
        if step == 6:
            clock.on_evaluate(None, None, None, metrics={"eval_runtime": 5.0})  # type: ignore[arg-type]
            now[0] += 5.0
    # From the end of step 2 to step 10: 8 steps of 32 samples in 8 s once evaluation is out.
    assert clock.steady_samples_per_s == pytest.approx(32.0)
    assert clock.seconds == 5.0
    short = training.StepClock(samples_per_step=32)
    short.on_step_end(None, SimpleNamespace(global_step=1), None)  # type: ignore[arg-type]
    assert short.steady_samples_per_s is None  # too few steps to say
