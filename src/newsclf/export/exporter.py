"""`newsclf export --onnx`: a checkpoint becomes a self-contained ONNX folder, proven equal.

Export and validation are separate steps (as in optimum's exporters): `export_fp32` writes the
graph, each variant's converter (named by the variant registry, `newsclf.artifacts.VARIANTS`)
derives its file from it, and `parity.ParityChecker` compares each with PyTorch. Everything is
written to a hidden staging folder that replaces the output only when every check passed, so a
failed export leaves nothing that looks finished (and an earlier export stays as it was).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from newsclf.artifacts import (
    CALIBRATION_ROWS,
    REPORT_FILE,
    VARIANTS,
    LeftOut,
    PreprocessingConfig,
    RunFolder,
    is_export,
    label_names_of,
    load_checked_tokenizer,
    plan_variants,
    read_model_config,
    resolve_checkpoint,
    write_manifest,
)
from newsclf.combine import PredictionEnsemble
from newsclf.environment import machine_summary
from newsclf.errors import InputError, ModelError, ParityError
from newsclf.export.calibration import Calibration, calibrate_on_validation
from newsclf.export.config import ExportConfig
from newsclf.export.convert import (
    ConversionJob,
    converter_of,
    export_fp32,
    model_input_names,
)
from newsclf.export.parity import (
    ParityChecker,
    VariantParity,
    has_calibration_texts,
    load_calibration_texts,
    load_parity_texts,
)
from newsclf.io import atomic_directory, write_json_atomic


@dataclass
class ExportResult:
    """What an export wrote, how each variant compared with PyTorch, and the confidence
    calibration it applies."""

    output_dir: Path
    variants: list[VariantParity]
    parity_source: str
    report: dict[str, Any]
    calibration: Calibration
    # Default variants not made because their packages are missing here.
    left_out: list[LeftOut] = field(default_factory=list)

    @property
    def int8_recipe(self) -> str | None:
        """The int8 recipe that passed (None without an int8 variant)."""
        return next((v.recipe for v in self.variants if v.variant == "int8"), None)


def load_checkpoint(best_dir: Path) -> tuple[Any, Any]:
    """The model in fp32 with eager attention (the graph ONNX Runtime knows how to fuse) and
    its tokenizer, both checked: weights from safetensors only, a label map of class indices,
    and the model's own tokenizer.

    Raises:
        ModelError: a file is missing, damaged or from another model.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    config = read_model_config(best_dir)
    label_names_of(config, best_dir)
    tokenizer = load_checked_tokenizer(best_dir, config.get("vocab_size"))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(best_dir),
            local_files_only=True,
            dtype=torch.float32,
            attn_implementation="eager",
            use_safetensors=True,
            trust_remote_code=False,
        )
    except Exception as exc:  # safetensors, torch and transformers raise many kinds
        raise ModelError(f"Cannot load the checkpoint {best_dir}: {exc}") from None
    return model.eval(), tokenizer


def load_for_export(checkpoint: Path) -> tuple[Any, Any, PreprocessingConfig, Path, Path | None]:
    """(model, tokenizer, preprocessing, model source, run folder or None) of a run folder, a
    model folder or an ensemble run folder (`newsclf soup --ensemble`), whose members become
    one `PredictionEnsemble`.

    Raises:
        ModelError: the checkpoint cannot be loaded, or ensemble members differ in their
            preprocessing.
    """
    run = RunFolder(checkpoint)
    if run.is_ensemble:
        members = run.member_dirs()
        pre = PreprocessingConfig.load(members[0])
        if any(PreprocessingConfig.load(m) != pre for m in members[1:]):
            raise ModelError(f"{checkpoint}: the ensemble's members preprocess text differently.")
        loaded = [load_checkpoint(m) for m in members]
        ensemble = PredictionEnsemble([model for model, _ in loaded]).eval()
        return ensemble, loaded[0][1], pre, checkpoint, checkpoint
    best_dir, run_dir = resolve_checkpoint(checkpoint)
    model, tokenizer = load_checkpoint(best_dir)
    return model, tokenizer, PreprocessingConfig.load(best_dir), best_dir, run_dir


def export_onnx(
    checkpoint: str | Path, output_dir: str | Path | None = None, config: ExportConfig | None = None
) -> ExportResult:
    """Export a checkpoint to ONNX and prove every variant matches PyTorch.

    Args:
        checkpoint: a `newsclf train` or `newsclf soup` run folder, its `best/` folder, or a
            Hugging Face model folder with newsclf_preprocessing.json (then
            `config.parity_file` is needed). An ensemble (`soup --ensemble`) becomes one graph
            that runs every member and outputs the log of their mean probabilities.
        output_dir: the export folder; default RUN/onnx. An earlier export there is replaced
            only when the new one passed.
        config: which variants, and the parity rules.

    Returns:
        `ExportResult` with each variant's parity figures.

    Raises:
        ModelError: the checkpoint cannot be loaded.
        InputError: no parity texts, or `output_dir` holds something other than an export.
        ParityError: a variant does not match PyTorch (nothing is written).

    The export is calibrated: a temperature is fitted on the PyTorch fp32 logits of every
    validation row the run kept (RUN/validation.jsonl) and recorded in the manifest, where
    classify applies it. Without those rows (no validation split, an older run, a bare model
    folder) the export is uncalibrated (T = 1) and `ExportResult.calibration` says why.
    """
    config = config or ExportConfig()
    plan_variants(config.variants)  # a variant asked for whose packages are missing: fail fast
    model, tokenizer, pre, source_dir, run_dir = load_for_export(Path(checkpoint))
    plan = plan_variants(config.variants, has_calibration_texts(run_dir, config.calibration_file))
    output_dir = (
        Path(output_dir) if output_dir else RunFolder(run_dir or source_dir.parent).export_dir
    )
    if output_dir.exists() and (
        not output_dir.is_dir() or (not is_export(output_dir) and any(output_dir.iterdir()))
    ):
        raise InputError(
            f"{output_dir} exists and is not a newsclf export; choose another --output."
        )
    texts, labels, parity_source = load_parity_texts(
        run_dir, config.parity_file, pre, config.parity_rows
    )
    input_names = model_input_names(model, tokenizer)
    # The confidence calibration (a temperature), not openvino-int8's calibration texts below.
    confidence = calibrate_on_validation(model, tokenizer, input_names, pre.max_length, run_dir)
    with atomic_directory(output_dir) as staging:
        fp32 = export_fp32(
            model, tokenizer, input_names, staging / VARIANTS["fp32"].file, config.opset
        )
        checker = ParityChecker(model, tokenizer, pre, input_names, texts, labels, config)
        files = {"fp32": fp32}
        results = [checker.check("fp32", fp32)]
        for variant in plan.variants:
            if variant == "fp32":
                continue
            job = ConversionJob(
                variant=variant,
                fp32=fp32,
                target=staging / VARIANTS[variant].file,
                model_config=model.config,
                tokenizer=tokenizer,
                input_names=input_names,
                max_length=pre.max_length,
                calibration_texts=lambda: load_calibration_texts(
                    run_dir, config.calibration_file, pre, CALIBRATION_ROWS
                )[0],
            )
            files[variant], result = convert_checked(job, checker)
            results.append(result)
        report = _report(source_dir, parity_source, input_names, results, config, plan.left_out)
        report["calibration"] = confidence.to_dict()
        failed = [r for r in results if not r.passed]
        if failed:
            lines = "; ".join(f"{r.variant}: {r.failure}" for r in failed)
            raise ParityError(f"The export does not match PyTorch, so nothing was written. {lines}")
        save_model_files(staging, model, tokenizer, pre)
        write_json_atomic(staging / REPORT_FILE, report)
        label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        manifest_calibration = (
            {k: v for k, v in confidence.to_dict().items() if k != "reason"}
            if confidence.calibrated
            else None
        )
        write_manifest(
            staging, label_names, input_names, source_dir, files, calibration=manifest_calibration
        )
    return ExportResult(output_dir, results, parity_source, report, confidence, list(plan.left_out))


def convert_checked(job: ConversionJob, checker: ParityChecker) -> tuple[Path, VariantParity]:
    """The variant's file and its parity: the converter's first attempt (recipe) that passes,
    else its last attempt's failed result."""
    converter = converter_of(VARIANTS[job.variant].converter or "")
    result: VariantParity | None = None
    path = job.target
    for path, recipe in converter(job):
        result = checker.check(job.variant, path, recipe)
        if result.passed:
            break
    if result is None:
        raise ModelError(f"The {job.variant} converter wrote nothing.")
    return path, result


def save_model_files(folder: Path, model: Any, tokenizer: Any, pre: PreprocessingConfig) -> None:
    """config.json, the tokenizer (with the max length the model really uses, so that other
    runtimes truncate alike) and the preprocessing settings."""
    tokenizer.model_max_length = pre.max_length
    tokenizer.save_pretrained(str(folder))
    model.config.save_pretrained(str(folder))
    pre.save(folder)


def _report(
    best_dir: Path,
    parity_source: str,
    input_names: list[str],
    results: list[VariantParity],
    config: ExportConfig,
    left_out: tuple[LeftOut, ...],
) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(best_dir),
        "opset": config.opset,
        "input_names": input_names,
        "parity_texts": parity_source,
        "fp32_tolerance": config.fp32_tolerance,
        # On CUDA, fp32 and optimized are checked with TF32 off (use_tf32=0).
        "cuda_tf32_for_fp32_checks": False,
        "min_label_agreement": config.min_label_agreement,
        "variants": [r.to_dict() for r in results],
        "int8_recipe": next((r.recipe for r in results if r.variant == "int8"), None),
        "left_out": [lo.message() for lo in left_out],
        "passed": all(r.passed for r in results),
        "environment": machine_summary(),
    }
