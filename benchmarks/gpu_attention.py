"""The attention table: ONNX Runtime's attention kernels on the bert-base shape in fp16, per
graph form and CUDA provider `sdpa_kernel`, at newsclf's CUDA batches, against PyTorch SDPA.

  newsclf      the export's fp16 variant: attention as MatMul + Softmax, no attention op
  onnx-mask    torch's SDPA export (opset 24): ONNX Attention with a boolean (B, 1, S, S) mask
  onnx-seqlen  the same with each row's length in place of the mask (`nonpad_kv_seqlen`)
  mha-seqlen   com.microsoft MultiHeadAttention with a 1D key-length mask
  packed       mha-seqlen through ONNX Runtime's convert_to_packing_mode (padding removed)

Each form gets the export's GPU fusions and fp16. The kernel lines ONNX Runtime prints (with
ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1, set by the caller) are counted per session; outputs
are compared with newsclf's fp32 graph on the CPU provider.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS = {"default": 0, "flash": 1, "efficient": 2, "cudnn": 8, "math": 16}  # sdpa_kernel
# Measured in this order until the time box is spent (newsclf's graph has no attention op).
FORMS = {"newsclf": ["default"], "onnx-seqlen": [*SETTINGS][:4], "mha-seqlen": [*SETTINGS]}
FORMS |= {"packed": ["default", "flash", "efficient"], "onnx-mask": ["default"]}
CHECK_ROWS = 16  # rows of each batch compared with the CPU provider
NAMES = ("graph", "sdpa_kernel", "seq", "batch", "kernels", "rows_per_s", "x_torch_sdpa")
COLUMNS = [(k, k) for k in (*NAMES, "max_abs_diff", "labels_agree", "error")]
PATTERN = r"SdpaKernel=(\w+)|ONNX Attention: using ([\w ]+)"  # ONNX Runtime's line per node


def build_graphs(model_dir: Path, newsclf_fp16: Path, work: Path) -> dict[str, Path | str]:
    """Every form: its file, or why it could not be made."""
    import onnx
    import torch
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.convert_to_packing_mode import PackingMode
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model import OnnxModel
    from transformers import AutoModelForSequenceClassification as Model
    from transformers import AutoTokenizer

    from newsclf.export import export_fp32, model_input_names
    from newsclf.inference import quiet_onnxruntime

    work.mkdir(parents=True, exist_ok=True)
    model = Model.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    names, heads = model_input_names(model, tokenizer), model.config.num_attention_heads
    sdpa = export_fp32(model.eval(), tokenizer, names, work / "sdpa.onnx", 24)
    # The export's GPU fusions and fp16, once; without shape inference, which stops at the
    # attention ops (and with it the fusions).
    options = FusionOptions("bert")
    options.enable_shape_inference = False
    with quiet_onnxruntime():
        width = model.config.hidden_size
        base = optimizer.optimize_model(str(sdpa), "bert", heads, width, options, use_gpu=True)
    base.convert_float_to_float16(keep_io_types=True)
    base.save_model_to_file(str(work / "onnx-mask.onnx"))
    graphs: dict[str, Path | str] = {"newsclf": newsclf_fp16, "onnx-mask": work / "onnx-mask.onnx"}
    for form, change in (("onnx-seqlen", _seqlen), ("mha-seqlen", _mha)):
        graph = onnx.load(str(work / "onnx-mask.onnx"))
        try:
            change(graph, heads)
            onnx.save(graph, str(work / f"{form}.onnx"))
            graphs[form] = work / f"{form}.onnx"
        except Exception as exc:  # a graph this torch exports otherwise: said, the rest go on
            graphs[form] = f"{type(exc).__name__}: {exc}"
    graphs["packed"] = "needs mha-seqlen"
    if isinstance(graphs["mha-seqlen"], Path):
        packed = OnnxModel(onnx.load(str(graphs["mha-seqlen"])))
        PackingMode(packed).convert(use_symbolic_shape_infer=False)
        graphs["packed"] = "convert_to_packing_mode changed nothing"
        if packed.get_nodes_by_op_type("PackedMultiHeadAttention"):
            packed.save_model_to_file(str(work / "packed.onnx"))
            graphs["packed"] = work / "packed.onnx"
    return graphs


def _lengths(graph: Any, dtype: int) -> tuple[str, list[Any]]:
    """Each row's length, ReduceSum(attention_mask) (newsclf pads on the right), and the ONNX
    Attention nodes."""
    from onnx import TensorProto, helper

    nodes = [n for n in graph.graph.node if n.op_type == "Attention" and n.domain == ""]
    if not nodes:
        raise ValueError("the SDPA export holds no ONNX Attention node")
    graph.graph.initializer.append(helper.make_tensor("row_axis", TensorProto.INT64, [1], [1]))
    graph.graph.node.insert(0, helper.make_node("Cast", ["row_sums"], ["row_lengths"], to=dtype))
    summed = helper.make_node("ReduceSum", ["attention_mask", "row_axis"], ["row_sums"], keepdims=0)
    graph.graph.node.insert(0, summed)
    return "row_lengths", nodes


def _seqlen(graph: Any, heads: int) -> None:
    lengths, nodes = _lengths(graph, 7)  # int64
    for node in nodes:
        inputs = [*node.input, *[""] * (7 - len(node.input))]
        inputs[3], inputs[6] = "", lengths  # attn_mask out, nonpad_kv_seqlen in
        del node.input[:]
        node.input.extend(inputs)


def _mha(graph: Any, heads: int) -> None:
    """Attention(Transpose(Reshape(MatMul + bias)) x 3) -> Transpose -> Reshape becomes
    MultiHeadAttention(the three MatMuls, their biases as one, the row lengths)."""
    from onnx import helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    model, (lengths, nodes) = OnnxModel(graph), _lengths(graph, 6)  # int32
    weights = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    for i, node in enumerate(nodes):
        path = ["Transpose", "Reshape", "Add", "MatMul"]
        found = [model.match_parent_path(node, path, [k, 0, 0, None]) for k in range(3)]
        after = model.find_first_child_by_type(node, "Transpose", recursive=False)
        reshape = after and model.find_first_child_by_type(after, "Reshape", recursive=False)
        if None in found or not reshape:
            raise ValueError(f"{node.name}: not the Transpose/Reshape/MatMul + bias expected")
        bias = np.concatenate([next(weights[x] for x in p[2].input if x in weights) for p in found])
        graph.graph.initializer.append(numpy_helper.from_array(bias, f"qkv_bias_{i}"))
        inputs = [p[3].output[0] for p in found] + [f"qkv_bias_{i}", lengths]
        scale = {a.name: a.f for a in node.attribute}.get("scale") or None
        mha = helper.make_node("MultiHeadAttention", inputs, [reshape.output[0]], f"mha_{i}")
        mha.domain = "com.microsoft"
        mha.attribute.extend([helper.make_attribute("num_heads", heads)])
        mha.attribute.extend([helper.make_attribute("scale", scale)] if scale else [])
        model.remove_nodes([node, after, reshape])
        model.add_node(mha)
    graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.prune_graph()
    model.topological_sort()


@contextlib.contextmanager
def native_output(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (ONNX Runtime's own prints) go to `path` meanwhile."""
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as target:
        for fd in (1, 2):
            os.dup2(target.fileno(), fd)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def padded_batch(rows: int, seq: int, vocab: int) -> dict[str, np.ndarray]:
    """Random tokens in rows of seq/2 to seq tokens, padded on the right."""
    rng = np.random.default_rng(0)
    mask = (np.arange(seq)[None, :] < rng.integers(seq // 2, seq + 1, rows)[:, None]).astype(int)
    ids = rng.integers(1000, vocab, (rows, seq)) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def rate(run: Callable[[], Any], rows: int, sync: Callable[[], Any] = lambda: None) -> float:
    for index in range(13):  # three to warm up, ten timed
        if index == 3:
            sync()
            started = time.perf_counter()
        run()
    sync()
    return rows * 10 / (time.perf_counter() - started)


def torch_sdpa(model_dir: Path, shapes: list[tuple[int, int]], device: str) -> dict[str, float]:
    """PyTorch SDPA (its default kernels; fp16 on CUDA, fp32 on the CPU) on the same batches."""
    import torch
    from transformers import AutoModelForSequenceClassification as Model

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = Model.from_pretrained(model_dir, attn_implementation="sdpa", dtype=dtype)
    model, rates = model.to(device).eval(), {}
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    for rows, seq in shapes:
        feeds = padded_batch(rows, seq, model.config.vocab_size)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in feeds.items()}
        with torch.inference_mode():
            rates[f"{rows}x{seq}"] = rate(lambda i=inputs: model(**i), rows, sync)
    return rates


def attention_table(
    graphs: dict[str, Path | str], reference: Path, torch: dict[str, float], device: str,
    vocab: int, deadline: float,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Records, one per form, setting and shape, as each is measured."""
    import onnxruntime as ort

    from newsclf.inference import CPU, CUDA, CUDA_PROVIDER_OPTIONS, create_session

    cpu = create_session(reference, "cpu")
    batches = {s: padded_batch(*map(int, s.split("x")), vocab) for s in torch}
    heads = {s: {k: v[:CHECK_ROWS] for k, v in f.items()} for s, f in batches.items()}
    expected = {s: cpu.run(["logits"], f)[0] for s, f in heads.items()}
    for form in FORMS:
        graph = graphs[form]
        for setting in FORMS[form] if device == "cuda" else ["default"]:
            record: dict[str, Any] = {"graph": form, "sdpa_kernel": setting}
            if time.time() > deadline or isinstance(graph, str):
                yield record | {"error": graph if isinstance(graph, str) else "time box spent"}
                break
            kernel = {"sdpa_kernel": str(SETTINGS[setting])} if SETTINGS[setting] else {}
            providers = [(CUDA, CUDA_PROVIDER_OPTIONS | kernel), CPU] if device == "cuda" else [CPU]
            log, options = Path(tempfile.mkstemp(suffix=".log")[1]), ort.SessionOptions()
            options.log_severity_level = 3  # the session's log quiet; the default one verbose:
            try:  # where a kernel may say its choice, while the first batches run
                with native_output(log):
                    ort.set_default_logger_severity(0)
                    session = ort.InferenceSession(str(graph), options, providers=providers)
                    for feeds in batches.values():
                        session.run(["logits"], feeds)
            except Exception as exc:  # e.g. RemovePadding, which has no CPU kernel
                yield record | {"error": f"{type(exc).__name__}: {exc}"[:300].replace("\n", " ")}
                continue
            finally:
                ort.set_default_logger_severity(3)
            found = re.findall(PATTERN, log.read_text(errors="replace"))
            counts = Counter((a or b).strip() for a, b in found).most_common()
            record["kernels"] = ", ".join(f"{name} x{n}" for name, n in counts) or "-"
            for shape, feeds in batches.items():
                got = session.run(["logits"], feeds)[0][:CHECK_ROWS].astype(np.float32)
                rows, seq = feeds["input_ids"].shape
                speed = rate(lambda s=session, f=feeds: s.run(["logits"], f), rows)
                record |= {"seq": seq, "batch": rows, "provider": session.get_providers()[0]}
                record |= {
                    "rows_per_s": round(speed),
                    "x_torch_sdpa": round(speed / torch[shape], 2),
                }
                record["max_abs_diff"] = float(np.abs(got - expected[shape]).max())
                record["labels_agree"] = float((got.argmax(1) == expected[shape].argmax(1)).mean())
                yield dict(record)
