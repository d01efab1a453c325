"""Inference: ONNX Runtime (or OpenVINO) sessions whose provider is checked, the `Classifier`,
the classify pipeline (`classify_file`, shared with the Ray engine), and the environment report
of `newsclf env`."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ClassifierConfig": "config",
        "ClassifyConfig": "config",
        "Device": "config",
        "Variant": "config",
        "OnError": "config",
        "REVIEW": "config",
        "Classifier": "classifier",
        "ClassifierInfo": "classifier",
        "Predictions": "classifier",
        "BatchStats": "classifier",
        "token_budget_batches": "classifier",
        "softmax": "classifier",
        "calibrated_softmax": "classifier",
        "classify_file": "classify",
        "ClassifyResult": "pipeline",
        "Evaluation": "pipeline",
        "OutputPlan": "pipeline",
        "ProgressCallback": "pipeline",
        "RunCounts": "pipeline",
        "StageTimes": "pipeline",
        "output_target": "pipeline",
        "peak_rss_mb": "pipeline",
        "PREDICTED_COLUMN": "pipeline",
        "CONFIDENCE_COLUMN": "pipeline",
        "NEEDS_REVIEW_COLUMN": "pipeline",
        "COVERAGE_THRESHOLDS": "pipeline",
        "HISTOGRAM_BINS": "pipeline",
        "CoveragePoint": "pipeline",
        "ReliabilityBin": "pipeline",
        "RowPredictions": "pipeline",
        "review_target": "pipeline",
        "histogram_edges": "pipeline",
        "CUDA": "sessions",
        "CPU": "sessions",
        "open_session": "sessions",
        "create_session": "sessions",
        "run_logits": "sessions",
        "quiet_onnxruntime": "sessions",
        "cuda_driver_present": "sessions",
        "CudaProbe": "sessions",
        "probe_cuda": "sessions",
        "missing_cuda_libraries": "sessions",
        "EnvironmentReport": "environment_report",
        "ModelReport": "environment_report",
        "describe_environment": "environment_report",
    },
)

if TYPE_CHECKING:
    from newsclf.inference.classifier import (
        BatchStats,
        Classifier,
        ClassifierInfo,
        Predictions,
        calibrated_softmax,
        softmax,
        token_budget_batches,
    )
    from newsclf.inference.classify import classify_file
    from newsclf.inference.config import (
        REVIEW,
        ClassifierConfig,
        ClassifyConfig,
        Device,
        OnError,
        Variant,
    )
    from newsclf.inference.environment_report import (
        EnvironmentReport,
        ModelReport,
        describe_environment,
    )
    from newsclf.inference.pipeline import (
        CONFIDENCE_COLUMN,
        COVERAGE_THRESHOLDS,
        HISTOGRAM_BINS,
        NEEDS_REVIEW_COLUMN,
        PREDICTED_COLUMN,
        ClassifyResult,
        CoveragePoint,
        Evaluation,
        OutputPlan,
        ProgressCallback,
        ReliabilityBin,
        RowPredictions,
        RunCounts,
        StageTimes,
        histogram_edges,
        output_target,
        peak_rss_mb,
        review_target,
    )
    from newsclf.inference.sessions import (
        CPU,
        CUDA,
        CudaProbe,
        create_session,
        cuda_driver_present,
        missing_cuda_libraries,
        open_session,
        probe_cuda,
        quiet_onnxruntime,
        run_logits,
    )
