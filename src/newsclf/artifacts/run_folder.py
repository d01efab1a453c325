"""The run folder: what `train` and `soup` write, `tune` searches in, and `export` reads.

RUN/best/                 a standard Hugging Face folder + newsclf_preprocessing.json
RUN/metrics.json          what the run did: data, validation history, test metrics, speed,
                          device, versions, the full configuration ("kind": train or soup)
RUN/train_config.json     the training configuration, for --resume and soup
RUN/distill_config.json   a distilled student's settings (newsclf distill), for --resume, in place
                          of train_config.json
RUN/teacher_logits.safetensors  a student's cache of its teacher's logits on the training rows,
                          transfer texts and validation rows (computed once, reused on --resume)
RUN/parity_sample.jsonl   labelled rows that export checks parity on (validation rows; training
                          rows when the run had none)
RUN/calibration_sample.jsonl  training texts that export calibrates static int8 scales on
RUN/validation.jsonl      every validation row (text, label): what export fits the confidence
                          calibration on (absent when the run had no validation split)
RUN/README.md             the model card
RUN/checkpoints/          Trainer checkpoints while training (removed at the end)
RUN/ensemble.json         an ensemble (soup --ensemble): its members, in place of best/
RUN/members/N/            each member: a Hugging Face folder + newsclf_preprocessing.json
RUN/tune/                 a search (newsclf tune): study.db (Optuna, SQLite), tune_config.json,
                          best.json, trials.csv, trials/NNN/ (each trial's run folder)
RUN/onnx/                 the default export folder (see export_folder)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsclf.errors import InputError, ModelError

BEST_DIR = "best"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_config.json"
DISTILL_CONFIG_FILE = "distill_config.json"
TEACHER_LOGITS_FILE = "teacher_logits.safetensors"
PARITY_SAMPLE_FILE = "parity_sample.jsonl"
CALIBRATION_SAMPLE_FILE = "calibration_sample.jsonl"
VALIDATION_FILE = "validation.jsonl"
MODEL_CARD_FILE = "README.md"
CHECKPOINTS_DIR = "checkpoints"
ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"
TUNE_DIR = "tune"
EXPORT_DIR = "onnx"
# Validation rows a run keeps in its parity sample; training texts in its calibration sample.
PARITY_ROWS = 256
CALIBRATION_ROWS = 300


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def best_dir(self) -> Path:
        return self.path / BEST_DIR

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def distill_config_file(self) -> Path:
        return self.path / DISTILL_CONFIG_FILE

    @property
    def teacher_logits_file(self) -> Path:
        return self.path / TEACHER_LOGITS_FILE

    @property
    def parity_sample(self) -> Path:
        return self.path / PARITY_SAMPLE_FILE

    @property
    def validation_rows(self) -> Path:
        return self.path / VALIDATION_FILE

    @property
    def calibration_sample(self) -> Path:
        return self.path / CALIBRATION_SAMPLE_FILE

    @property
    def model_card(self) -> Path:
        return self.path / MODEL_CARD_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def ensemble_file(self) -> Path:
        return self.path / ENSEMBLE_FILE

    @property
    def members_dir(self) -> Path:
        return self.path / MEMBERS_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    @property
    def is_finished(self) -> bool:
        """Whether the run holds a finished model (best/ or an ensemble)."""
        return (self.best_dir / "config.json").is_file() or self.ensemble_file.is_file()

    @property
    def is_ensemble(self) -> bool:
        return self.ensemble_file.is_file()

    def member_dirs(self) -> list[Path]:
        """The member folders an ensemble names, in order.

        Raises:
            ModelError: ensemble.json is unreadable or names a member that is not there.
        """
        try:
            names = json.loads(self.ensemble_file.read_text(encoding="utf-8"))["members"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{self.ensemble_file} is not a newsclf ensemble description ({exc})."
            ) from None
        folders = [self.members_dir / str(name) for name in names]
        missing = [str(f) for f in folders if not (f / "config.json").is_file()]
        if not folders or missing:
            raise ModelError(
                f"{self.ensemble_file}: members missing: {', '.join(missing) or 'none listed'}."
            )
        return folders

    # -- tune/ -------------------------------------------------------------------------------

    @property
    def tune_dir(self) -> Path:
        return self.path / TUNE_DIR

    @property
    def study_file(self) -> Path:
        return self.tune_dir / "study.db"

    @property
    def tune_config_file(self) -> Path:
        return self.tune_dir / "tune_config.json"

    @property
    def tune_best_file(self) -> Path:
        return self.tune_dir / "best.json"

    @property
    def trials_file(self) -> Path:
        return self.tune_dir / "trials.csv"

    def trial_dir(self, number: int) -> Path:
        return self.tune_dir / "trials" / f"{number:03d}"

    def trial_dirs(self) -> list[Path]:
        folder = self.tune_dir / "trials"
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def write_ensemble_description(folder: Path, members: Sequence[str], runs: Sequence[Path]) -> Path:
    from newsclf.io import write_json_atomic

    description = {"members": list(members), "runs": [str(Path(r).absolute()) for r in runs]}
    return write_json_atomic(Path(folder) / ENSEMBLE_FILE, description)


def latest_run(models_dir: Path = Path("models")) -> Path:
    """The newest finished run folder under `models_dir`.

    Raises:
        ModelError: there is none.
    """
    # Each run's marker file: best/config.json, or ensemble.json.
    markers = [*Path(models_dir).glob(f"*/{BEST_DIR}/config.json")]
    markers += Path(models_dir).glob(f"*/{ENSEMBLE_FILE}")
    if not markers:
        raise ModelError(
            f"No trained run under {models_dir}/; pass --checkpoint or run newsclf train."
        )
    newest = max(markers, key=lambda p: p.stat().st_mtime)
    return newest.parent.parent if newest.name == "config.json" else newest.parent


def resolve_checkpoint(checkpoint: Path) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) from a run folder, its best/ folder, or any
    Hugging Face model folder.

    Raises:
        ModelError: `checkpoint` is none of these.
    """
    checkpoint = Path(checkpoint)
    if (checkpoint / BEST_DIR / "config.json").is_file():
        return checkpoint / BEST_DIR, checkpoint
    if (checkpoint / "config.json").is_file():
        parent = checkpoint.parent
        return checkpoint, parent if (parent / METRICS_FILE).is_file() else None
    raise ModelError(
        f"{checkpoint} is neither a newsclf run folder (with {BEST_DIR}/) nor a model folder "
        "(with config.json)."
    )


def write_parity_sample(
    run_dir: Path, texts: Sequence[str], labels: Sequence[int], rows: int = PARITY_ROWS
) -> Path:
    return _write_labelled(Path(run_dir) / PARITY_SAMPLE_FILE, texts[:rows], labels[:rows])


def write_validation_rows(run_dir: Path, texts: Sequence[str], labels: Sequence[int]) -> Path:
    return _write_labelled(Path(run_dir) / VALIDATION_FILE, texts, labels)


def read_validation_rows(run_dir: Path) -> tuple[list[str], list[int]]:
    """Every validation row the run kept (text, class index).

    Raises:
        InputError: a line is not a labelled row.
    """
    return _read_labelled(Path(run_dir) / VALIDATION_FILE, None)


def _write_labelled(path: Path, texts: Sequence[str], labels: Sequence[int]) -> Path:
    from newsclf.io import write_text_atomic

    lines = [
        json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n"
        for text, label in zip(texts, labels, strict=True)
    ]
    return write_text_atomic(path, "".join(lines))


def write_calibration_sample(
    run_dir: Path, texts: Sequence[str], rows: int = CALIBRATION_ROWS, seed: int = 0
) -> Path:
    """A seeded random sample of training texts (a file sorted by class would otherwise give
    one class only)."""
    import random

    from newsclf.io import write_text_atomic

    chosen = random.Random(seed).sample(list(texts), min(rows, len(texts)))
    lines = [json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in chosen]
    return write_text_atomic(Path(run_dir) / CALIBRATION_SAMPLE_FILE, "".join(lines))


def read_calibration_sample(run_dir: Path) -> list[str]:
    """The run's calibration texts (empty ones left out).

    Raises:
        InputError: a line is not a calibration row.
    """
    path = Path(run_dir) / CALIBRATION_SAMPLE_FILE
    texts = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = str(json.loads(line)["text"])
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}, line {number}: not a calibration row ({exc}).") from None
            if text:
                texts.append(text)
    return texts


def read_parity_sample(run_dir: Path, limit: int = PARITY_ROWS) -> tuple[list[str], list[int]]:
    """The run's non-empty parity texts and their labels, at most `limit`.

    Raises:
        InputError: a line is not a parity row.
    """
    return _read_labelled(Path(run_dir) / PARITY_SAMPLE_FILE, limit)


def _read_labelled(path: Path, limit: int | None) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = str(row["text"]), int(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}, line {number}: not a labelled row ({exc}).") from None
            if text:
                texts.append(text)
                labels.append(label)
            if limit is not None and len(texts) >= limit:
                break
    return texts, labels
