"""Every file newsclf writes appears whole or not at all.

Content goes to a hidden temporary entry beside the target, `.<name>.<pid>.<random>.partial`,
renamed into place only when it is complete: an interrupted run never leaves an output that
looks finished. The temporary entries of processes that no longer run (killed with -9, say)
are removed the next time the same target is written. A target that cannot be written (a
folder where a file should go, a read-only folder) is an `InputError` before any work, naming
the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from newsclf.errors import InputError


def default_permissions(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; a finished output gets the usual
    permissions (0666/0777 less the umask), like any file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def check_target(path: str | Path, *, directory: bool = False) -> Path:
    """The target as a Path, after checking it can be written: not a folder where a file goes
    (or a file where a folder goes), and its parent folder can be created and written.

    Raises:
        InputError: it cannot, with the path and the reason.
    """
    target = Path(path)
    if not directory and target.is_dir():
        raise InputError(f"{target} is a folder; give a file path to write to.")
    if directory and target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file; give a folder path to write to.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the folder {target.parent}: {exc.strerror}.") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise InputError(f"Cannot write to {target.parent}: permission denied.")
    return target


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary entries that earlier, dead processes left for `target` (and a
    folder retired by an interrupted swap); returns what was removed."""
    removed = []
    for entry in target.parent.glob(f".{target.name}.*"):
        parts = entry.name[len(target.name) + 2 :].split(".")
        stale = entry.name == f".{target.name}.old" or (
            entry.name.endswith(".partial")
            and len(parts) == 3
            and parts[0].isdigit()
            and not _process_alive(int(parts[0]))
        )
        if stale:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[tuple[int, Path]]:
    """(file descriptor, temporary path) of a file that becomes `path` if the block succeeds
    and disappears if it raises. The caller writes through (and closes) the descriptor.

    Raises:
        InputError: the target cannot be written (checked before the block runs).
    """
    target = check_target(path)
    remove_stale_partials(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_prefix(target), suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise InputError(f"Cannot write {target}: {exc.strerror}.") from None
    tmp_path = Path(tmp)
    default_permissions(tmp_path)
    try:
        yield fd, tmp_path
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise InputError(f"Cannot write {target}: {exc.strerror}.") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_file(path) as (fd, _), os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A staging folder that replaces `path` if the block succeeds (an earlier folder there is
    retired only then) and is removed if it raises.

    Raises:
        InputError: the target cannot be written (checked before the block runs).
    """
    path = check_target(path, directory=True)
    remove_stale_partials(path)
    try:
        staging = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".partial", dir=path.parent))
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror}.") from None
    default_permissions(staging, directory=True)
    try:
        yield staging
        if path.exists():
            retired = path.with_name(f".{path.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            path.rename(retired)
            staging.rename(path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
