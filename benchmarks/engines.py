"""The registry of classify engines: what a user would run instead of newsclf, and newsclf.

Each engine is built once in its own process (`worker`), from a `Context`, into a function that
classifies `Rows` and returns predicted class names. Peers get the texts already cleaned as the
model was trained (the same input); newsclf engines read the rows' CSV, clean, tokenize,
classify and write an output file, end to end.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rows import Rows, write_csv

Classify = Callable[[Rows], list[str]]


@dataclass(frozen=True)
class Context:
    model_dir: Path  # the Hugging Face folder (RUN/best, or a bert-base-shaped model)
    export_dir: Path | None  # newsclf's export of it
    batch_size: int = 32
    max_length: int = 128
    calibration: Rows | None = None  # training rows for static quantization (never test rows)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nbench-")))


@dataclass(frozen=True)
class Engine:
    name: str
    description: str
    device: str  # cpu or cuda
    build: Callable[[Context], tuple[Classify, str]]  # (classify, provider actually used)
    requires: tuple[str, ...] = ()  # importable modules; missing -> skipped
    extra: str = ""  # the pip extra that brings them
    newsclf: bool = False
    baseline: bool = False

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


REGISTRY: dict[str, Engine] = {}


def register(engine: Engine) -> Engine:
    REGISTRY[engine.name] = engine
    return engine


# The suffix of a newsclf engine run with the code of another checkout (`classify --before`).
BEFORE = " (before)"


def engine_named(name: str) -> Engine:
    """A registered engine, or `ENGINE@LABEL`: a newsclf engine run on another model of the
    same run (`classify --students`: a distilled student's export), named by its label; either
    with `BEFORE` at the end: the same engine on the code of `classify --before`."""
    base, _, label = name.removesuffix(BEFORE).partition("@")
    engine = REGISTRY[base]
    if label or name.endswith(BEFORE):
        if not engine.newsclf:
            raise KeyError(f"{name}: only newsclf engines run on other models or code")
        description = engine.description + (f", {label}" if label else "")
        description += ", the code before" if name.endswith(BEFORE) else ""
        return dataclasses.replace(engine, name=name, description=description)
    return engine


# -- PyTorch: the pipeline and plain loops ------------------------------------------------------


def _torch_model(ctx: Context, device: str, dtype: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ctx.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(ctx.model_dir, dtype=dtype)
    return model.to(torch.device(device)).eval(), tokenizer


def _pipeline(device: str) -> Callable[[Context], tuple[Classify, str]]:
    def build(ctx: Context) -> tuple[Classify, str]:
        import torch
        from transformers import pipeline

        model, tokenizer = _torch_model(ctx, device, torch.float32)
        classifier = pipeline(
            "text-classification", model=model, tokenizer=tokenizer, device=model.device
        )
        kwargs = {"batch_size": ctx.batch_size, "truncation": True, "max_length": ctx.max_length}

        def classify(rows: Rows) -> list[str]:
            return [out["label"] for out in classifier(rows.texts, **kwargs)]

        return classify, f"torch-{device}"

    return build


def _torch_loop(
    device: str, dtype: str, sort: bool, compile_model: bool = False, batch_size: int = 0
) -> Callable[[Context], tuple[Classify, str]]:
    def build(ctx: Context) -> tuple[Classify, str]:
        import torch

        if device == "cuda":
            # cuDNN attention plans anew for every batch shape (benchmarks/NOTES.md).
            torch.backends.cuda.enable_cudnn_sdp(False)
        weights = torch.float16 if dtype == "fp16" else torch.float32
        model, tokenizer = _torch_model(ctx, device, weights)
        if compile_model:
            model = torch.compile(model, dynamic=True)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
        rows_per_batch = batch_size or ctx.batch_size
        names = model.config.id2label

        def classify(rows: Rows) -> list[str]:
            ids = tokenizer(rows.texts, truncation=True, max_length=ctx.max_length)["input_ids"]
            order = np.argsort([len(i) for i in ids], kind="stable") if sort else range(len(ids))
            order = list(order)
            predicted = np.empty(len(ids), dtype=np.int64)
            for start in range(0, len(order), rows_per_batch):
                batch_rows = order[start : start + rows_per_batch]
                batch = tokenizer.pad(
                    {"input_ids": [ids[i] for i in batch_rows]}, return_tensors="pt"
                )
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.inference_mode(), autocast:
                    logits = model(**batch).logits
                predicted[batch_rows] = logits.argmax(-1).cpu().numpy()
            return [names[int(i)] for i in predicted]

        return classify, f"torch-{device}"

    return build


# -- OpenVINO on newsclf's fp32 export ---------------------------------------------------------


def _openvino(precision: str, streams: bool = False) -> Callable[[Context], tuple[Classify, str]]:
    """OpenVINO as a user would run it: one synchronous request (latency hint), or with
    `streams` the throughput hint and an AsyncInferQueue keeping every stream busy."""

    def build(ctx: Context) -> tuple[Classify, str]:
        import openvino as ov
        from transformers import AutoTokenizer

        from newsclf.environment import cpu_cores

        assert ctx.export_dir is not None
        tokenizer = AutoTokenizer.from_pretrained(ctx.export_dir)
        core = ov.Core()
        model = core.read_model(str(ctx.export_dir / "model.onnx"))
        inputs = [i.get_any_name() for i in model.inputs]
        if precision == "int8":
            model = _nncf_int8(model, tokenizer, inputs, ctx)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": cpu_cores()}
        if precision == "bf16":
            config["INFERENCE_PRECISION_HINT"] = "bf16"
        if streams:
            config["PERFORMANCE_HINT"] = "THROUGHPUT"
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        queue = ov.AsyncInferQueue(
            compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        )
        names = _label_names(ctx)

        def classify(rows: Rows) -> list[str]:
            # Batches sorted by length, as newsclf does: fair to the peer.
            encoded = tokenizer(rows.texts, truncation=True, max_length=ctx.max_length)
            order = np.argsort([len(i) for i in encoded["input_ids"]], kind="stable")
            predicted = np.empty(len(order), dtype=np.int64)
            batches = [order[s : s + ctx.batch_size] for s in range(0, len(order), ctx.batch_size)]

            def feeds(batch_rows: np.ndarray) -> dict[str, np.ndarray]:
                batch = tokenizer.pad(
                    {k: [encoded[k][i] for i in batch_rows] for k in encoded}, return_tensors="np"
                )
                return {k: batch[k].astype(np.int64) for k in inputs}

            if streams:

                def done(req: Any, index: int) -> None:
                    predicted[batches[index]] = req.get_output_tensor(0).data.argmax(-1)

                queue.set_callback(done)
                for index, batch_rows in enumerate(batches):
                    queue.start_async(feeds(batch_rows), index)
                queue.wait_all()
            else:
                for batch_rows in batches:
                    logits = request.infer(feeds(batch_rows))[compiled.output(0)]
                    predicted[batch_rows] = logits.argmax(-1)
            return [names[int(i)] for i in predicted]

        return classify, f"openvino-CPU-{precision}" + ("-streams" if streams else "")

    return build


def _nncf_int8(model: Any, tokenizer: Any, inputs: list[str], ctx: Context) -> Any:
    import nncf

    if ctx.calibration is None:
        raise SystemExit("openvino-int8 needs --calibration-data (training rows)")
    texts = ctx.calibration.texts[:300]

    def feeds(text: str) -> dict[str, np.ndarray]:
        encoded = tokenizer([text], truncation=True, max_length=ctx.max_length, return_tensors="np")
        return {k: encoded[k].astype(np.int64) for k in inputs}

    dataset = nncf.Dataset(texts, feeds)
    return nncf.quantize(
        model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts)
    )


def _label_names(ctx: Context) -> list[str]:
    import json

    config = json.loads((ctx.model_dir / "config.json").read_text())
    return [config["id2label"][k] for k in sorted(config["id2label"], key=int)]


# -- candidates for newsclf's CPU path (experiments, recorded in NOTES.md) -----------------------


def _ort_static_int8(ctx: Context) -> tuple[Classify, str]:
    """ONNX Runtime static int8: newsclf's CPU-fused graph, QDQ, weights per channel,
    activations calibrated (MinMax) on training rows; sorted batches as newsclf runs them."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from transformers import AutoConfig, AutoTokenizer

    from newsclf.export import optimize_graph
    from newsclf.inference import create_session, run_logits

    assert ctx.export_dir is not None and ctx.calibration is not None
    tokenizer = AutoTokenizer.from_pretrained(ctx.export_dir)
    fused = optimize_graph(
        ctx.export_dir / "model.onnx",
        ctx.work_dir / "fused.onnx",
        AutoConfig.from_pretrained(ctx.export_dir),
    )
    inputs = [i.name for i in onnx.load(str(fused)).graph.input]

    def feeds(texts: list[str]) -> dict[str, np.ndarray]:
        encoded = tokenizer(
            texts, truncation=True, max_length=ctx.max_length, padding=True, return_tensors="np"
        )
        return {k: encoded[k].astype(np.int64) for k in inputs}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            texts = ctx.calibration.texts[:300]  # type: ignore[union-attr]
            self.batches = iter([feeds(texts[i : i + 16]) for i in range(0, len(texts), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    target = ctx.work_dir / "static_int8.onnx"
    quantize_static(
        str(fused),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    session = create_session(target, "cpu")
    names = _label_names(ctx)

    def classify(rows: Rows) -> list[str]:
        ids = tokenizer(rows.texts, truncation=True, max_length=ctx.max_length)["input_ids"]
        order = np.argsort([len(i) for i in ids], kind="stable")
        predicted = np.empty(len(ids), dtype=np.int64)
        for start in range(0, len(order), ctx.batch_size):
            batch_rows = order[start : start + ctx.batch_size]
            predicted[batch_rows] = run_logits(
                session, feeds([rows.texts[i] for i in batch_rows])
            ).argmax(-1)
        return [names[int(i)] for i in predicted]

    return classify, "CPUExecutionProvider"


# -- newsclf, end to end -----------------------------------------------------------------------


def _newsclf(
    device: str, variant: str, *, defaults: bool = False
) -> Callable[[Context], tuple[Classify, str]]:
    """newsclf classify_file end to end; with `defaults`, every runtime option at its default
    (what `newsclf classify` with no option runs: --device auto, --variant auto, the device's
    batch size), whatever the harness's --batch-size."""

    def build(ctx: Context) -> tuple[Classify, str]:
        import csv

        from newsclf import Classifier, ClassifierConfig, ClassifyConfig, classify_file

        assert ctx.export_dir is not None
        batch = ctx.batch_size if device == "cpu" else None  # the device's default on CUDA
        config = (
            ClassifierConfig()
            if defaults
            else ClassifierConfig(device=device, variant=variant, batch_size=batch)
        )
        classifier = Classifier(ctx.export_dir, config)
        if classifier.device != device:
            raise SystemExit(f"asked for {device}, got {classifier.device}")
        # The input file of each Rows, written once (`prepare`, outside the timing); the Rows
        # is kept with it, so that its id cannot be reused by another.
        sources: dict[int, tuple[Rows, Path]] = {}

        def prepare(rows: Rows) -> Path:
            if id(rows) not in sources:
                path = write_csv(rows, ctx.work_dir / f"rows-{len(sources)}.csv")
                sources[id(rows)] = (rows, path)
            return sources[id(rows)][1]

        def classify(rows: Rows) -> list[str]:
            output = ctx.work_dir / "predictions.csv"
            classify_file(prepare(rows), classifier, ClassifyConfig(), output=output)
            with open(output, newline="", encoding="utf-8") as handle:
                return [r["predicted_label"] for r in csv.DictReader(handle)]

        classify.prepare = prepare  # type: ignore[attr-defined]
        return classify, classifier.provider

    return build


# -- the registry ------------------------------------------------------------------------------

register(
    Engine(
        "pipeline",
        "Hugging Face pipeline, PyTorch fp32",
        "cpu",
        _pipeline("cpu"),
        baseline=True,
    )
)
register(
    Engine(
        "torch-bf16",
        "PyTorch loop, bf16 autocast, file order",
        "cpu",
        _torch_loop("cpu", "bf16", sort=False),
    )
)
register(
    Engine(
        "torch-bf16-sorted",
        "PyTorch loop, bf16 autocast, sorted by length",
        "cpu",
        _torch_loop("cpu", "bf16", sort=True),
    )
)
register(
    Engine(
        "torch-compile-bf16-sorted",
        "torch.compile, bf16 autocast, sorted",
        "cpu",
        _torch_loop("cpu", "bf16", sort=True, compile_model=True),
    )
)
register(
    Engine(
        "openvino-bf16",
        "OpenVINO on newsclf's fp32 export, bf16 hint, sorted",
        "cpu",
        _openvino("bf16"),
        ("openvino",),
        "bench",
    )
)
register(
    Engine(
        "openvino-bf16-streams",
        "OpenVINO, bf16, throughput hint, AsyncInferQueue (every stream busy), sorted",
        "cpu",
        _openvino("bf16", streams=True),
        ("openvino",),
        "bench",
    )
)
register(
    Engine(
        "openvino-int8",
        "OpenVINO, NNCF static int8 (300 training rows), sorted",
        "cpu",
        _openvino("int8"),
        ("openvino", "nncf"),
        "bench",
    )
)
register(
    Engine(
        "ort-int8-static",
        "experiment: ORT static int8 (QDQ, calibrated) of newsclf's graph",
        "cpu",
        _ort_static_int8,
        newsclf=True,
    )
)
register(
    Engine(
        "newsclf-openvino",
        "newsclf classify, openvino variant (file in, file out)",
        "cpu",
        _newsclf("cpu", "openvino"),
        ("openvino",),
        "openvino",
        newsclf=True,
    )
)
register(
    Engine(
        "newsclf-openvino-int8",
        "newsclf classify, openvino-int8 variant: NNCF static int8 IR made at export (file in, "
        "file out)",
        "cpu",
        _newsclf("cpu", "openvino-int8"),
        ("openvino",),
        "openvino",
        newsclf=True,
    )
)
for _variant in ("fp32", "optimized", "int8"):
    register(
        Engine(
            f"newsclf-{_variant}",
            f"newsclf classify, {_variant} (file in, file out)",
            "cpu",
            _newsclf("cpu", _variant),
            newsclf=True,
        )
    )
register(
    Engine(
        "newsclf-auto",
        "newsclf classify --variant auto: the fastest variant the export holds for the CPU "
        "(openvino-int8 where OpenVINO is installed and the export has it)",
        "cpu",
        _newsclf("cpu", "auto"),
        newsclf=True,
    )
)

register(
    Engine(
        "newsclf-default",
        "newsclf classify with no option (--device auto, --variant auto) on the export given "
        "(--export: what a plain newsclf export --onnx makes): the README's commands",
        "cpu",
        _newsclf("cpu", "auto", defaults=True),
        newsclf=True,
    )
)

register(
    Engine(
        "pipeline-cuda",
        "Hugging Face pipeline, PyTorch fp32, CUDA",
        "cuda",
        _pipeline("cuda"),
        baseline=True,
    )
)
for _rows in (64, 256, 1024):
    register(
        Engine(
            f"torch-fp16-cuda-b{_rows}",
            f"PyTorch fp16, cuDNN attention off, sorted, batch {_rows}",
            "cuda",
            _torch_loop("cuda", "fp16", sort=True, batch_size=_rows),
        )
    )
register(
    Engine(
        "newsclf-cuda",
        "newsclf classify --device cuda (auto variant: fp16)",
        "cuda",
        _newsclf("cuda", "auto"),
        newsclf=True,
    )
)
register(
    Engine(
        "newsclf-fp32-cuda",
        "newsclf classify --device cuda --variant fp32",
        "cuda",
        _newsclf("cuda", "fp32"),
        newsclf=True,
    )
)
