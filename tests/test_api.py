"""The public Python API: names, docstrings, light import, one way to configure."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import newsclf
from newsclf.errors import InputError, ModelError
from newsclf.inference import Classifier, ClassifierConfig


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
    code = (
        "import sys, newsclf; "
        "print(*(m in sys.modules for m in ('torch', 'onnxruntime', 'openvino', 'nncf')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"]


def test_classifier_predict_cleans_texts_as_the_model_was_trained(tiny_export) -> None:  # type: ignore[no-untyped-def]
    clf = Classifier(tiny_export.output_dir, ClassifierConfig(device="cpu", variant="fp32"))
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
    clf = Classifier(str(tiny_export.output_dir), ClassifierConfig(device="cpu"))
    info = clf.info()
    # auto: the fastest variant whose labels do not depend on the batch (never dynamic int8).
    assert (info.variant, info.file, info.device) == ("optimized", "model_optimized.onnx", "cpu")
    assert info.provider == "CPUExecutionProvider" and info.fallback_reason is None
    assert (info.batch_size, info.max_batch_tokens) == ClassifierConfig.CPU_BATCH
    with pytest.raises(InputError, match="--variant must be one of"):
        Classifier(tiny_export.output_dir, ClassifierConfig(variant="fp8"))  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"no fp16 variant.*--variants \+fp16"):
        Classifier(tiny_export.output_dir, ClassifierConfig(device="cpu", variant="fp16"))
