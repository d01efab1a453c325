"""Checks of the Hugging Face files a run's best/ folder and an export folder share: the label
map and the tokenizer. A folder that fails them would otherwise load and give wrong answers
(transformers falls back to a 5-token vocabulary when tokenizer.json is missing, and every
row gets the same class), so it is refused, naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsclf.errors import ModelError

TOKENIZER_FILE = "tokenizer.json"


def read_model_config(folder: Path) -> dict[str, Any]:
    """config.json of a model folder.

    Raises:
        ModelError: it is missing or not a JSON object.
    """
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(config).__name__}.")
    return config


def label_names_of(config: dict[str, Any], where: Path) -> list[str]:
    """The class names in class-index order, from config.json's id2label.

    Raises:
        ModelError: id2label is missing, or its keys are not the indices 0..n-1.
    """
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError(f"{where}/config.json has no id2label: the classes are unknown.")
    try:
        indices = sorted(int(k) for k in id2label)
    except (TypeError, ValueError):
        raise ModelError(
            f"{where}/config.json: id2label keys must be class indices, found "
            f"{', '.join(map(repr, list(id2label)[:5]))}."
        ) from None
    if indices != list(range(len(indices))):
        raise ModelError(f"{where}/config.json: id2label keys must be 0..{len(indices) - 1}.")
    return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in indices]


def load_checked_tokenizer(folder: Path, vocab_size: int | None) -> Any:
    """The folder's fast tokenizer, after checking it is the model's: tokenizer.json is there
    and loads, and its vocabulary fits the model's embeddings.

    Raises:
        ModelError: it is not.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / TOKENIZER_FILE).is_file():
        raise ModelError(
            f"{folder} has no {TOKENIZER_FILE}: without it the tokenizer would fall back to a "
            "tiny vocabulary and every text would become unknown tokens."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # tokenizers and transformers raise many kinds
        raise ModelError(f"{folder}: cannot load the tokenizer ({exc}).") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{folder}: the tokenizer is not a fast (tokenizer.json) tokenizer.")
    size = len(tokenizer)
    if vocab_size is not None and not vocab_size // 2 <= size <= vocab_size:
        raise ModelError(
            f"{folder}: the tokenizer knows {size:,} tokens but the model's embeddings have "
            f"{vocab_size:,}; the folder mixes files of different models."
        )
    return tokenizer
