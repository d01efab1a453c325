"""`newsclf export --onnx`: a checkpoint becomes a self-contained ONNX folder, proven equal.

Export and validation are separate steps (as in optimum's exporters): `export_fp32` writes the
graph, `optimize_graph` / `convert_fp16` / `quantize_int8` derive the variants, and
`parity.ParityChecker` compares each with PyTorch. Everything is written to a hidden staging
folder that replaces the output only when every check passed, so a failed export leaves nothing
that looks finished (and an earlier export stays as it was).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from newsclf.artifacts import (
    CALIBRATION_ROWS,
    REPORT_FILE,
    VARIANT_FILES,
    PreprocessingConfig,
    RunFolder,
    is_export,
    label_names_of,
    load_checked_tokenizer,
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
    INT8_RECIPES,
    convert_fp16,
    export_fp32,
    model_input_names,
    optimize_graph,
    quantize_int8,
    quantize_openvino_int8,
)
from newsclf.export.parity import (
    ParityChecker,
    VariantParity,
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
    int8_recipe: str | None
    report: dict[str, Any]
    calibration: Calibration


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
    model, tokenizer, pre, source_dir, run_dir = load_for_export(Path(checkpoint))
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
        files = export_variants(model, staging, input_names, tokenizer, config)
        checker = ParityChecker(model, tokenizer, pre, input_names, texts, labels, config)
        results = [checker.check(variant, path) for variant, path in files.items()]
        int8_recipe = None
        if config.quantize == "int8":
            files["int8"] = staging / VARIANT_FILES["int8"]
            int8_result, int8_recipe = quantize_checked(
                files["fp32"], files["int8"], model.config, checker
            )
            results.append(int8_result)
        if config.openvino:
            files["openvino"] = files["fp32"]
            results.append(checker.check("openvino", files["fp32"]))
        if config.openvino_int8:
            calibration, _ = load_calibration_texts(
                run_dir, config.calibration_file, pre, CALIBRATION_ROWS
            )
            files["openvino-int8"] = quantize_openvino_int8(
                files["fp32"],
                staging / VARIANT_FILES["openvino-int8"],
                tokenizer,
                input_names,
                calibration,
                pre.max_length,
            )
            results.append(checker.check("openvino-int8", files["openvino-int8"]))
        report = _report(source_dir, parity_source, input_names, results, config, int8_recipe)
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
    return ExportResult(output_dir, results, parity_source, int8_recipe, report, confidence)


def export_variants(
    model: Any, folder: Path, input_names: list[str], tokenizer: Any, config: ExportConfig
) -> dict[str, Path]:
    """The fp32 graph and the variants derived from it (int8 comes later: it is checked as it
    is made)."""
    fp32 = export_fp32(model, tokenizer, input_names, folder / VARIANT_FILES["fp32"], config.opset)
    files = {"fp32": fp32}
    if config.optimize:
        files["optimized"] = optimize_graph(fp32, folder / VARIANT_FILES["optimized"], model.config)
    if config.fp16:
        files["fp16"] = convert_fp16(fp32, folder / VARIANT_FILES["fp16"], model.config)
    return files


def save_model_files(folder: Path, model: Any, tokenizer: Any, pre: PreprocessingConfig) -> None:
    """config.json, the tokenizer (with the max length the model really uses, so that other
    runtimes truncate alike) and the preprocessing settings."""
    tokenizer.model_max_length = pre.max_length
    tokenizer.save_pretrained(str(folder))
    model.config.save_pretrained(str(folder))
    pre.save(folder)


def quantize_checked(
    source: Path, target: Path, config: Any, checker: ParityChecker
) -> tuple[VariantParity, str]:
    """The first int8 recipe whose labels agree with PyTorch (else the last one's result)."""
    for recipe in INT8_RECIPES:
        quantize_int8(source, target, config, recipe)
        result = checker.check("int8", target)
        if result.passed:
            break
    return result, recipe


def _report(
    best_dir: Path,
    parity_source: str,
    input_names: list[str],
    results: list[VariantParity],
    config: ExportConfig,
    int8_recipe: str | None,
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
        "int8_recipe": int8_recipe,
        "passed": all(r.passed for r in results),
        "environment": machine_summary(),
    }
