"""`newsclf export --onnx`: a checkpoint becomes a self-contained ONNX folder, proven equal.

Export and validation are separate steps (as in optimum's exporters): `export_fp32` writes the
graph, `optimize_graph` / `convert_fp16` / `quantize_int8` derive the variants, and
`parity.check_variant` compares each with PyTorch. Everything is written to a hidden staging
folder that is renamed into place only when every check passed, so a failed export leaves
nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from newsclf.config import PARITY_SAMPLE_FILE, ExportConfig, PreprocessingConfig
from newsclf.environment import machine_summary
from newsclf.errors import InputError, ModelError, ParityError, ProviderError
from newsclf.parity import Reference, VariantParity, check_variant, parity_cases
from newsclf.runtime import (
    CPU,
    CUDA,
    MANIFEST_FILE,
    VARIANT_FILES,
    create_session,
    file_sha256,
    quiet_onnxruntime,
)
from newsclf.tables import default_permissions

REPORT_FILE = "export_report.json"


@dataclass
class ExportOptions:
    optimize: bool = False
    fp16: bool = False
    quantize: str | None = None
    opset: int = ExportConfig.opset
    parity_file: Path | None = None
    device: str = "cpu"
    settings: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class ExportResult:
    output_dir: Path
    variants: list[VariantParity]
    report: dict[str, Any]


def resolve_checkpoint(checkpoint: Path) -> tuple[Path, Path | None]:
    """(best model folder, run folder or None) from a run folder or its best/ folder."""
    checkpoint = Path(checkpoint)
    if (checkpoint / "best" / "config.json").is_file():
        return checkpoint / "best", checkpoint
    if (checkpoint / "config.json").is_file():
        run_dir = checkpoint.parent if (checkpoint.parent / "metrics.json").is_file() else None
        return checkpoint, run_dir
    raise ModelError(
        f"{checkpoint} is neither a newsclf run folder (with best/) nor a model folder "
        "(with config.json)."
    )


def latest_run(models_dir: Path = Path("models")) -> Path:
    runs = sorted(p.parent for p in models_dir.glob("*/best/config.json"))
    if not runs:
        raise ModelError(
            f"No trained run under {models_dir}/; pass --checkpoint or run newsclf train."
        )
    return max(runs, key=lambda p: (p / "best").stat().st_mtime)


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


def load_parity_texts(
    run_dir: Path | None, parity_file: Path | None, pre: PreprocessingConfig, limit: int
) -> tuple[list[str], list[int] | None, str]:
    """Real texts for the parity check: --parity-file, else the run's validation sample."""
    if parity_file is not None:
        from newsclf.data import resolve_text_columns
        from newsclf.tables import read_table
        from newsclf.text import prepare_texts

        columns, chunk = read_table(parity_file)
        text_columns = resolve_text_columns(columns, pre.text_columns, str(parity_file))
        texts = prepare_texts(
            ([row.get(c) for c in text_columns] for row in chunk.rows[:limit]),
            clean=pre.clean,
            separator=pre.text_separator,
        )
        kept = [t for t in texts if t]
        if not kept:
            raise InputError(f"{parity_file}: no non-empty texts for the parity check.")
        return kept, None, str(parity_file)
    sample = run_dir / PARITY_SAMPLE_FILE if run_dir else None
    if sample is None or not sample.is_file():
        raise InputError(
            "No texts for the parity check: the checkpoint has no run folder with "
            f"{PARITY_SAMPLE_FILE}; pass --parity-file with real texts."
        )
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line]
    rows = [r for r in rows if r["text"]][:limit]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows], f"{sample} (validation rows)"


def export_onnx(checkpoint: Path, output_dir: Path | None, options: ExportOptions) -> ExportResult:
    best_dir, run_dir = resolve_checkpoint(checkpoint)
    if output_dir is None:
        output_dir = (run_dir or best_dir.parent) / "onnx"
    if options.quantize not in (None, "int8"):
        raise InputError(f"--quantize supports int8 only, not {options.quantize!r}.")
    pre = PreprocessingConfig.load(best_dir)
    texts, labels, parity_source = load_parity_texts(
        run_dir, options.parity_file, pre, options.settings.parity_rows
    )
    model, tokenizer = load_checkpoint(best_dir)
    input_names = model_input_names(model, tokenizer)

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".partial", dir=output_dir.parent)
    )
    default_permissions(staging, directory=True)
    try:
        files = {
            "fp32": export_fp32(
                model, tokenizer, input_names, staging / VARIANT_FILES["fp32"], options.opset
            )
        }
        if options.optimize:
            files["optimized"] = optimize_graph(
                files["fp32"], staging / VARIANT_FILES["optimized"], model.config
            )
        if options.fp16:
            files["fp16"] = convert_fp16(
                files["fp32"], staging / VARIANT_FILES["fp16"], model.config
            )

        checker = ParityChecker(model, tokenizer, pre, input_names, texts, labels, options)
        results = [checker.check(variant, path) for variant, path in files.items()]
        int8_recipe = None
        if options.quantize == "int8":
            files["int8"] = staging / VARIANT_FILES["int8"]
            int8_result, int8_recipe = quantize_checked(
                files["fp32"], files["int8"], model.config, checker
            )
            results.append(int8_result)
        failed = [r for r in results if not r.passed]

        tokenizer.save_pretrained(str(staging))
        model.config.save_pretrained(str(staging))
        pre.save(staging)
        report = _report(best_dir, parity_source, input_names, results, options)
        report["int8_recipe"] = int8_recipe
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if failed:
            lines = "; ".join(f"{r.variant}: {r.failure}" for r in failed)
            raise ParityError(f"The export does not match PyTorch, so nothing was written. {lines}")
        manifest = {
            "label_names": [model.config.id2label[i] for i in range(model.config.num_labels)],
            "input_names": input_names,
            "source_checkpoint": str(best_dir.resolve()),
            "variants": {
                name: {"file": path.name, "sha256": file_sha256(path)}
                for name, path in files.items()
            },
        }
        (staging / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
        )
        _swap_into_place(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(output_dir, results, report)


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


class ParityChecker:
    """PyTorch's outputs on the parity cases, computed once; `check` compares one variant."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        pre: PreprocessingConfig,
        input_names: list[str],
        texts: list[str],
        labels: list[int] | None,
        options: ExportOptions,
    ) -> None:
        self.options = options
        self.labels = labels
        odd = max(b for b in options.settings.parity_batch_sizes if b > 1)
        self.cases = parity_cases(texts, pre.max_length, odd_batch=odd)
        self.reference = Reference.compute(
            model, tokenizer, self.cases, input_names, pre.max_length, labels
        )

    def check(self, variant: str, path: Path) -> VariantParity:
        options = self.options
        wants_cuda = options.device == "cuda" or (variant == "fp16" and options.device == "auto")
        try:
            session = create_session(path, "cuda" if wants_cuda else "cpu")
            provider = CUDA if wants_cuda else CPU
        except ProviderError:
            if options.device == "cuda":
                raise
            # fp16 is meant for CUDA; without it, the CPU provider checks it (slowly).
            session, provider = create_session(path, "cpu"), CPU
        return check_variant(
            variant,
            session,
            path,
            provider,
            self.reference,
            accuracy_case=self.cases[1].name,
            labels=self.labels,
            tolerance=options.settings.fp32_tolerance,
            min_label_agreement=options.settings.min_label_agreement,
        )


def _report(
    best_dir: Path,
    parity_source: str,
    input_names: list[str],
    results: list[VariantParity],
    options: ExportOptions,
) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(best_dir),
        "opset": options.opset,
        "input_names": input_names,
        "parity_texts": parity_source,
        "fp32_tolerance": options.settings.fp32_tolerance,
        "min_label_agreement": options.settings.min_label_agreement,
        "variants": [r.to_dict() for r in results],
        "passed": all(r.passed for r in results),
        "environment": machine_summary(),
    }


def _swap_into_place(staging: Path, output_dir: Path) -> None:
    """Replace an earlier export only once the new one is complete."""
    if output_dir.exists():
        if not (output_dir / MANIFEST_FILE).is_file() and any(output_dir.iterdir()):
            raise InputError(
                f"{output_dir} exists and is not a newsclf export; choose another --output."
            )
        retired = output_dir.with_name(f".{output_dir.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        output_dir.rename(retired)
        staging.rename(output_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(output_dir)


def latest_export(models_dir: Path = Path("models")) -> Path:
    """The newest models/*/onnx export folder."""

    exports = [p.parent for p in models_dir.glob(f"*/onnx/{MANIFEST_FILE}")]
    if not exports:
        raise ModelError(
            f"No export under {models_dir}/*/onnx; pass --model or run: newsclf export --onnx"
        )
    return max(exports, key=lambda p: (p / MANIFEST_FILE).stat().st_mtime)
