"""The conversions of an export, each from the fp32 graph: `export_fp32` (torch's dynamo
exporter), `optimize_graph` (ONNX Runtime's transformer fusions), `convert_fp16`,
`quantize_int8` and `quantize_openvino_int8`. Checking them against PyTorch is
`newsclf.export.parity`'s job.

The variant registry (`newsclf.artifacts.VARIANTS`) names each variant's converter, one of the
`make_*` generators below: given a `ConversionJob`, it writes the variant's file and yields it
with the name of the recipe used, once per recipe it tries; the exporter checks each attempt
and keeps the first that passes.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from newsclf.errors import InputError, ModelError
from newsclf.inference import quiet_onnxruntime


def model_input_names(model: Any, tokenizer: Any) -> list[str]:
    """Inputs both the tokenizer produces and the model's forward takes (no token_type_ids for
    models without them)."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    return [n for n in names if n in tokenizer.model_input_names or n == "attention_mask"]


def export_fp32(model: Any, tokenizer: Any, input_names: list[str], path: Path, opset: int) -> Path:
    """torch.onnx.export with dynamic batch and sequence axes and one output, `logits`.

    Raises:
        InputError: the graph could not be written at `opset`.
    """
    sample = tokenizer(
        ["newsclf export sample", "a second, somewhat longer sample text for the exporter"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(sample[name] for name in input_names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
    # The exporter logs, as warnings, every torchvision operator it cannot register, and the
    # version converter a traceback when it cannot reach the opset (checked below).
    for name in ("torch.onnx", "onnxscript"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
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
        except Exception as exc:  # the exporter raises many kinds
            raise ModelError(f"torch.onnx.export cannot export this model: {exc}") from None
    written = graph_opset(path)
    if written != opset:
        raise InputError(
            f"--opset {opset}: the exporter cannot write this model at opset {opset} (it wrote "
            f"{written}); use --opset {written} or newer."
        )
    return path


def graph_opset(path: Path) -> int:
    """The ONNX (default domain) opset a graph declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


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


def quantize_openvino_int8(
    source: Path,
    target: Path,
    tokenizer: Any,
    input_names: list[str],
    texts: list[str],
    max_length: int,
) -> Path:
    """Static int8 for OpenVINO on the CPU: NNCF inserts int8 quantization with activation
    scales calibrated once, on `texts` (training rows), so that every batch of every run uses
    the same scales: a row's label does not depend on which rows share its batch (dynamic
    int8 scales each batch by its own range). Written as OpenVINO IR (`target` .xml + .bin).

    Raises:
        InputError: OpenVINO or NNCF is not installed, or there are no calibration texts.
    """
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise InputError(
            "The openvino-int8 variant needs OpenVINO and NNCF: pip install 'newsclf[openvino]'."
        ) from None
    if not texts:
        raise InputError("No calibration texts for the openvino-int8 variant.")

    def feeds(text: str) -> dict[str, Any]:
        encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")
        return {name: encoded[name].astype("int64") for name in input_names}

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = ov.Core().read_model(str(source))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(texts, feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(texts),
    )
    ov.save_model(quantized, str(target))
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


# -- the registry's converters ------------------------------------------------------------------

# What a converter yields: the file it wrote and the recipe it used (None: its only one).
Attempt = tuple[Path, str | None]


@dataclass
class ConversionJob:
    """What a variant's converter works from: the checked fp32 graph, where the registry says
    the variant's file goes, and what the model and its text settings are."""

    variant: str
    fp32: Path
    target: Path
    model_config: Any
    tokenizer: Any
    input_names: list[str]
    max_length: int
    # Training texts to calibrate static quantization on, read on first use (only the
    # variants that calibrate need them, and a run may lack them).
    calibration_texts: Callable[[], list[str]]


def make_optimized(job: ConversionJob) -> Iterator[Attempt]:
    yield optimize_graph(job.fp32, job.target, job.model_config), None


def make_fp16(job: ConversionJob) -> Iterator[Attempt]:
    yield convert_fp16(job.fp32, job.target, job.model_config), None


def make_int8(job: ConversionJob) -> Iterator[Attempt]:
    """Every MatMul in int8 first; if that flips too many labels, the FFN output MatMuls kept
    in fp32."""
    for recipe in INT8_RECIPES:
        yield quantize_int8(job.fp32, job.target, job.model_config, recipe), recipe


def make_openvino(job: ConversionJob) -> Iterator[Attempt]:
    """Nothing to convert: OpenVINO runs the fp32 graph itself (its file is the fp32 file)."""
    yield job.target, None


def make_openvino_int8(job: ConversionJob) -> Iterator[Attempt]:
    texts = job.calibration_texts()
    yield (
        quantize_openvino_int8(
            job.fp32, job.target, job.tokenizer, job.input_names, texts, job.max_length
        ),
        None,
    )


def converter_of(reference: str) -> Callable[[ConversionJob], Iterator[Attempt]]:
    """The converter a registry entry names as "module:function".

    Raises:
        ModelError: the name does not resolve to a function.
    """
    import importlib

    module_name, _, function = reference.partition(":")
    try:
        converter = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"The variant converter {reference!r} cannot be loaded: {exc}") from None
    return converter  # type: ignore[no-any-return]
