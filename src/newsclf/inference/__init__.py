"""Inference: ONNX Runtime (or OpenVINO) sessions whose provider is checked, the `Classifier`,
and the classify pipeline (`classify_file`): preparing (`prepare`), the output and the writer
stage (`output`), the evaluation (`evaluation`) and the run's result (`result`), shared with
the Ray engine; and the environment report of `newsclf env`."""

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
        "Encoded": "prepare",
        "TextEncoder": "prepare",
        "Preparer": "prepare",
        "PreparedChunk": "prepare",
        "PreparePool": "prepare",
        "pool_plan": "prepare",
        "token_budget_batches": "classifier",
        "softmax": "classifier",
        "calibrated_softmax": "classifier",
        "classify_file": "classify",
        "ClassifyResult": "result",
        "ChunkFigures": "result",
        "ProgressCallback": "result",
        "RunCounts": "result",
        "StageTimes": "result",
        "STAGES": "result",
        "peak_rss_mb": "result",
        "histogram_edges": "result",
        "Evaluation": "evaluation",
        "COVERAGE_THRESHOLDS": "evaluation",
        "HISTOGRAM_BINS": "evaluation",
        "CoveragePoint": "evaluation",
        "ReliabilityBin": "evaluation",
        "OutputPlan": "output",
        "ResultWriter": "output",
        "RowPredictions": "output",
        "output_target": "output",
        "review_target": "output",
        "PREDICTED_COLUMN": "output",
        "CONFIDENCE_COLUMN": "output",
        "NEEDS_REVIEW_COLUMN": "output",
        "CUDA": "sessions",
        "CUDA_PROVIDER_OPTIONS": "sessions",
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
    from newsclf.inference.evaluation import (
        COVERAGE_THRESHOLDS,
        HISTOGRAM_BINS,
        CoveragePoint,
        Evaluation,
        ReliabilityBin,
    )
    from newsclf.inference.output import (
        CONFIDENCE_COLUMN,
        NEEDS_REVIEW_COLUMN,
        PREDICTED_COLUMN,
        OutputPlan,
        ResultWriter,
        RowPredictions,
        output_target,
        review_target,
    )
    from newsclf.inference.prepare import (
        Encoded,
        PreparedChunk,
        PreparePool,
        Preparer,
        TextEncoder,
        pool_plan,
    )
    from newsclf.inference.result import (
        STAGES,
        ChunkFigures,
        ClassifyResult,
        ProgressCallback,
        RunCounts,
        StageTimes,
        histogram_edges,
        peak_rss_mb,
    )
    from newsclf.inference.sessions import (
        CPU,
        CUDA,
        CUDA_PROVIDER_OPTIONS,
        CudaProbe,
        create_session,
        cuda_driver_present,
        missing_cuda_libraries,
        open_session,
        probe_cuda,
        quiet_onnxruntime,
        run_logits,
    )
