"""The preprocessing settings that travel with a model: saved beside its weights by `train`,
copied into the export folder, reused by `classify`, so that nobody re-types them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from newsclf.errors import InputError, ModelError
from newsclf.options import check_positive, config_from_dict, option

PREPROCESSING_FILE = "newsclf_preprocessing.json"
DATA_PANEL = "Data"


def _text_columns(value: str | list[str] | None) -> list[str]:
    from newsclf.io import parse_text_columns

    return parse_text_columns(value)


@dataclass
class PreprocessingConfig:
    """How raw rows become model inputs."""

    clean: bool = option(
        True,
        help="Clean text (HTML entities, backslashes, control characters, spaces).",
        panel=DATA_PANEL,
    )
    max_length: int = option(
        128, help="Max tokens per text (longer are truncated).", panel=DATA_PANEL
    )
    # Columns joined (with `text_separator`) into the model's text; empty means auto-detect.
    text_columns: list[str] = option(
        default_factory=list,
        help="Text column, or several joined by a space ('title,description'). "
        "Default: 'text', else 'title'+'description'.",
        flag="--text-column",
        panel=DATA_PANEL,
        cli_type=str | None,
        parse=_text_columns,
    )
    text_separator: str = option(" ", help="Joins several text columns.", cli=False)
    label_column: str = option(
        "label", help="Label column: class names or integers.", panel=DATA_PANEL
    )

    def __post_init__(self) -> None:
        check_positive("--max-length", self.max_length)
        self.text_columns = list(self.text_columns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> PreprocessingConfig:
        return config_from_dict(cls, raw, where)

    def save(self, directory: Path) -> Path:
        from newsclf.io import write_json_atomic

        return write_json_atomic(Path(directory) / PREPROCESSING_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: Path) -> PreprocessingConfig:
        """The settings saved in a model or export folder.

        Raises:
            ModelError: the file is missing or not valid.
        """
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            raise ModelError(
                f"{directory} has no {PREPROCESSING_FILE}: it was not written by newsclf "
                "(train or export), so its text cleaning and tokenization settings are unknown."
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from exc
        missing = [f.name for f in fields(cls) if not isinstance(raw, dict) or f.name not in raw]
        if missing:
            # A setting left out would silently take today's default, not the model's.
            raise ModelError(f"{path} lacks {', '.join(missing)}; export or train again.")
        try:
            return cls.from_dict(raw, str(path))
        except InputError as exc:
            raise ModelError(str(exc)) from None
