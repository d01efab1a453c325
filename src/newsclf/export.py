"""`newsclf export --onnx`: a checkpoint becomes a self-contained ONNX folder, proven equal.

Export and validation are separate steps (as in optimum's exporters): `export_fp32` writes the
graph, `optimize_graph` / `convert_fp16` / `quantize_int8` derive the variants, and
`parity.ParityChecker` compares each with PyTorch. Everything is written to a hidden staging
folder that replaces the output only when every check passed, so a failed export leaves nothing
that looks finished (and an earlier export stays as it was).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from newsclf.atomic import atomic_directory, write_json_atomic
from newsclf.config import ExportConfig, PreprocessingConfig
from newsclf.ensemble import PredictionEnsemble, is_ensemble, member_dirs
from newsclf.environment import machine_summary
from newsclf.errors import InputError, ModelError, ParityError
from newsclf.export_folder import REPORT_FILE, VARIANT_FILES, is_export, write_manifest
from newsclf.parity import ParityChecker, VariantParity, load_parity_texts
from newsclf.runs import resolve_checkpoint
from newsclf.sessions import quiet_onnxruntime


@dataclass
class ExportResult:
    """What an export wrote and how each variant compared with PyTorch."""

    output_dir: Path
    variants: list[VariantParity]
    parity_source: str
    int8_recipe: str | None
    report: dict[str, Any]


def load_checkpoint(best_dir: Path) -> tuple[Any, Any]:
    """The model in fp32 with eager attention (the graph ONNX Runtime knows how to fuse)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(best_dir), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(best_dir),
            local_files_only=True,
            dtype=torch.float32,
            attn_implementation="eager",
            use_safetensors=True,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load the checkpoint {best_dir}: {exc}") from exc
    return model.eval(), tokenizer


def load_for_export(checkpoint: Path) -> tuple[Any, Any, PreprocessingConfig, Path, Path | None]:
    """(model, tokenizer, preprocessing, model source, run folder or None) of a run folder, a
    model folder or an ensemble run folder (`newsclf soup --ensemble`), whose members become
    one `PredictionEnsemble`.

    Raises:
        ModelError: the checkpoint cannot be loaded, or ensemble members differ in their
            preprocessing.
    """
    if is_ensemble(checkpoint):
        members = member_dirs(checkpoint)
        pre = PreprocessingConfig.load(members[0])
        if any(PreprocessingConfig.load(m) != pre for m in members[1:]):
            raise ModelError(f"{checkpoint}: the ensemble's members preprocess text differently.")
        loaded = [load_checkpoint(m) for m in members]
        ensemble = PredictionEnsemble([model for model, _ in loaded]).eval()
        return ensemble, loaded[0][1], pre, checkpoint, checkpoint
    best_dir, run_dir = resolve_checkpoint(checkpoint)
    model, tokenizer = load_checkpoint(best_dir)
    return model, tokenizer, PreprocessingConfig.load(best_dir), best_dir, run_dir


def model_input_names(model: Any, tokenizer: Any) -> list[str]:
    """Inputs both the tokenizer produces and the model's forward takes (no token_type_ids for
    models without them)."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    return [n for n in names if n in tokenizer.model_input_names or n == "attention_mask"]


def export_fp32(model: Any, tokenizer: Any, input_names: list[str], path: Path, opset: int) -> Path:
    """torch.onnx.export with dynamic batch and sequence axes and one output, `logits`."""
    sample = tokenizer(
        ["newsclf export sample", "a second, somewhat longer sample text for the exporter"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(sample[name] for name in input_names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
    # The exporter logs, as warnings, every torchvision operator it cannot register.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=input_names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes={name: {0: batch, 1: sequence} for name in input_names},
            verbose=False,
        )
    return path


def optimize_graph(source: Path, target: Path, config: Any, *, for_gpu: bool = False) -> Path:
    """ONNX Runtime's transformer fusions (attention, LayerNorm, GELU) for BERT-like graphs.

    On the CPU, SkipLayerNormalization is left unfused: its CPU kernel took 17% of int8 run time
    where LayerNormalization plus Add take 8% (benchmarks/NOTES.md). GELU stays exact: its tanh
    form (FastGelu) was no faster in a repeated run and cost int8 label agreement.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = for_gpu
    with quiet_onnxruntime():
        optimized = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=getattr(config, "num_attention_heads", 0),
            hidden_size=getattr(config, "hidden_size", 0),
            optimization_options=options,
            use_gpu=for_gpu,
        )
    optimized.save_model_to_file(str(target))
    return target


def convert_fp16(source: Path, target: Path, config: Any) -> Path:
    """fp16 for CUDA: the graph fused as for a GPU, weights and compute in fp16; inputs and
    logits keep their types."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    fused = target.with_name(target.stem + ".fused.tmp.onnx")
    optimize_graph(source, fused, config, for_gpu=True)
    model = OnnxModel(onnx.load(str(fused)))
    fused.unlink()
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))
    return target


# int8 recipes, tried in order until one keeps the labels (see `export_onnx`).
INT8_RECIPES = ("all MatMuls int8", "FFN output MatMuls kept in fp32")
_GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")


def quantize_int8(source: Path, target: Path, config: Any, recipe: str = INT8_RECIPES[0]) -> Path:
    """Dynamic int8 quantization for the CPU: the fp32 graph fused for the CPU, then the weights
    of its MatMuls, per channel. Embeddings (Gather) stay fp32: quantizing them cost agreement
    and bought no speed. The second recipe keeps the MatMuls that read GELU outputs (the FFN
    output projections, whose inputs have BERT's activation outliers) in fp32: a third of the
    GEMM work, 32% slower, about half the logit error."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = target.with_name(target.stem + ".fused.tmp.onnx")
    optimize_graph(source, fused, config)
    model = onnx.load(str(fused))
    fused.unlink()
    # Stale shape annotations left by the fusions make onnx's shape inference fail
    # ("Inferred shape and existing shape differ"); the quantizer infers them afresh.
    del model.graph.value_info[:]
    keep_fp32 = _matmuls_after_gelu(model) if recipe == INT8_RECIPES[1] else []
    with _quiet_root_logger():  # the quantizer warns on the root logger about what it skips
        quantize_dynamic(
            model,
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=keep_fp32,
            # The fused graph lacks some shape information; without this, quantization stops at
            # "Unable to find data type for weight_name".
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return target


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _matmuls_after_gelu(model: Any) -> list[str]:
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and producers.get(node.input[0]) in _GELU_OPS
    ]


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
    """
    config = config or ExportConfig()
    model, tokenizer, pre, source_dir, run_dir = load_for_export(Path(checkpoint))
    output_dir = Path(output_dir) if output_dir else (run_dir or source_dir.parent) / "onnx"
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
        report = _report(source_dir, parity_source, input_names, results, config, int8_recipe)
        failed = [r for r in results if not r.passed]
        if failed:
            lines = "; ".join(f"{r.variant}: {r.failure}" for r in failed)
            raise ParityError(f"The export does not match PyTorch, so nothing was written. {lines}")
        save_model_files(staging, model, tokenizer, pre)
        write_json_atomic(staging / REPORT_FILE, report)
        label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        write_manifest(staging, label_names, input_names, source_dir, files)
    return ExportResult(output_dir, results, parity_source, int8_recipe, report)


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
