"""Fixtures: tiny random BERT/DistilBERT models built on the spot (seconds, no downloads), a
tiny training run on the project's sample data, and its ONNX export."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "newsclf" / "sample_data"
SHARED_AG_NEWS = Path(
    os.environ.get(
        "NEWSCLF_AG_NEWS", Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news"
    )
)
LABELS = ["Business", "Sci/Tech", "Sports", "World"]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def sample_rows(name: str) -> list[dict[str, str]]:
    return read_csv(SAMPLE_DIR / name)


def labelled_input(path: Path, rows: int) -> Path:
    """The first `rows` sample test rows as a CSV with an id, the two text columns and a label."""
    data = sample_rows("test.csv")[:rows]
    return write_csv(
        path,
        ["id", "title", "description", "label"],
        [[f"row-{i}", r["title"], r["description"], r["label"]] for i, r in enumerate(data)],
    )


def sample_training_data(best_dir: Path, with_test: bool = True):  # type: ignore[no-untyped-def]
    """The sample data split as the tiny runs split it (10% validation, seed 42), read with
    the preprocessing saved in `best_dir`."""
    from newsclf.artifacts import PreprocessingConfig
    from newsclf.training import load_local_data

    pre = PreprocessingConfig.load(best_dir)
    return load_local_data(
        SAMPLE_DIR / "train.csv",
        None,
        SAMPLE_DIR / "test.csv" if with_test else None,
        text_columns=pre.text_columns,
        label_column="label",
        clean=pre.clean,
        separator=" ",
        validation_fraction=0.1,
        seed=42,
    )


def _vocabulary() -> list[str]:
    words: set[str] = set()
    for name in ("train.csv", "test.csv"):
        for row in sample_rows(name):
            words.update(
                re.findall(r"[a-z]+|\d", (row["title"] + " " + row["description"]).lower())
            )
    punctuation = list(".,;:'\"!?$%&()-/\\#<>*+=@[]_")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *punctuation, *sorted(words)]


def _tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import BertTokenizerFast

    (folder / "vocab.txt").write_text("\n".join(_vocabulary()) + "\n", encoding="utf-8")
    # from_pretrained on a folder holding only vocab.txt works across transformers 4 and 5.
    return BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)


def _save_tiny_model(
    folder: Path, model_class: type, config: object, **tokenizer_settings: object
) -> Path:
    import torch

    tokenizer = _tokenizer(folder)
    for key, value in tokenizer_settings.items():
        setattr(tokenizer, key, value)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path, layers: int) -> Path:
    """A randomly initialised BERT base model of `layers` layers (width 64) with a WordPiece
    tokenizer, saved in `folder`."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(_vocabulary()),
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    return _save_tiny_model(folder, BertModel, config)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT base model with a WordPiece tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), layers=2)


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DistilBERT: a model without token_type_ids."""
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=len(_vocabulary()),
        dim=64,
        n_layers=2,
        n_heads=4,
        hidden_dim=128,
        max_position_embeddings=256,
    )
    return _save_tiny_model(
        tmp_path_factory.mktemp("tiny-distilbert"),
        DistilBertModel,
        config,
        model_input_names=["input_ids", "attention_mask"],
    )


def tiny_training_config(model_dir: Path, output_dir: Path, **overrides: object):  # type: ignore[no-untyped-def]
    from newsclf.artifacts import PreprocessingConfig
    from newsclf.training import TrainingConfig

    settings: dict[str, object] = {
        "model": str(model_dir),
        "train_file": SAMPLE_DIR / "train.csv",
        "test_file": SAMPLE_DIR / "test.csv",
        "output_dir": output_dir,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "batch_size": 16,
        "grad_accum": 1,
        "epochs": 4,
        "validation_fraction": 0.1,
        # bf16 autocast, as newsclf trains on capable CPUs: the saved-model recomputation test
        # then checks that reported test metrics are fp32, not the autocast forward.
        "precision": "bf16",
        "preprocessing": PreprocessingConfig(max_length=64),
    }
    settings.update(overrides)
    return TrainingConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_run(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A finished training run of the tiny BERT on the sample data."""
    from newsclf.training import NewsTrainer

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = tiny_training_config(tiny_bert_dir, run_dir)
    return NewsTrainer(config).train()


@pytest.fixture(scope="session")
def tiny_export(tiny_run):  # type: ignore[no-untyped-def]
    """The tiny run exported with the ONNX Runtime CPU variants (optimized and dynamic int8)."""
    from newsclf.export import ExportConfig, export_onnx

    return export_onnx(tiny_run.run_dir, None, ExportConfig(variants=["optimized", "int8"]))
