"""Token-budget batching, order restored whatever the batching, and the device rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from newsclf.artifacts import ExportFolder
from newsclf.errors import ProviderError
from newsclf.inference import Classifier, ClassifierConfig, token_budget_batches

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
            Classifier(
                folder, ClassifierConfig(device="cpu", variant="fp32", batch_size=1)
            ).predict_proba([t])[0]
            for t in texts
        ]
    )
    for batch_size, tokens in ((None, 200), (7, None), (64, 64)):
        clf = Classifier(
            folder,
            ClassifierConfig(
                device="cpu", variant="fp32", batch_size=batch_size, max_batch_tokens=tokens
            ),
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
    import newsclf.inference.sessions as sessions

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
    import newsclf.inference.sessions as sessions

    monkeypatch.setattr(sessions, "cuda_driver_present", lambda: True)
    folder = ExportFolder.load(tiny_export.output_dir)
    clf = Classifier(folder, ClassifierConfig(device="auto"))
    assert clf.device == "cpu" and clf.provider == "CPUExecutionProvider"
    assert clf.fallback_reason and clf.fallback_reason.startswith("--device auto chose the CPU")
    assert clf.variant == "optimized"  # the CPU's variant, not the CUDA one
    with pytest.raises(ProviderError):
        Classifier(folder, ClassifierConfig(device="cuda"))
