"""A classify with preparing worker processes stops cleanly: Ctrl-C (SIGINT to the whole
process group, as a terminal sends it) and SIGTERM end it within seconds with exit 130, no
output and no `.partial` left, and no worker left behind; a worker killed with -9 (as the
out-of-memory killer does) ends the run with an error naming it, never a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import sample_rows, write_csv

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _big_input(folder: Path) -> Path:
    rows = sample_rows("test.csv")
    return write_csv(
        folder / "big.csv",
        ["label", "title", "description"],
        [[r["label"], r["title"], r["description"]] for _ in range(400) for r in rows],
    )


def _start(export: Path, data: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "newsclf", "classify", str(data), "--model", str(export),
               "--output", str(out), "--prepare-workers", "2", "--chunk-rows", "128",
               "--device", "cpu"]  # fmt: skip
    # A session of its own: a signal to its group reaches the workers too, as Ctrl-C does.
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _workers(parent: int) -> list[int]:
    """The worker processes of `parent` (multiprocessing's spawned children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def _wait_until_writing(process: subprocess.Popen[bytes], folder: Path) -> list[int]:
    """The workers, once the run has written its first chunks (fail if it ends first)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended first: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        workers = _workers(process.pid)
        if len(workers) == 2 and any(p.stat().st_size for p in _partials(folder)):
            return workers
        time.sleep(0.05)
    process.kill()
    pytest.fail("the run never started writing")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigterm-to-the-group"])
def test_an_interrupt_stops_the_run_its_workers_and_leaves_nothing(
    tiny_export, tmp_path: Path, how: str
) -> None:  # type: ignore[no-untyped-def]
    data, out = _big_input(tmp_path), tmp_path / "out.csv"
    process = _start(tiny_export.output_dir, data, out)
    workers = _wait_until_writing(process, tmp_path)
    sent = time.monotonic()
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    elif how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:  # the workers may die of it before the parent hears: still an interrupt
        os.killpg(process.pid, signal.SIGTERM)
    code = process.wait(timeout=30)
    stopped_in = time.monotonic() - sent
    stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    assert code == 130, stderr
    assert stopped_in < 10, f"took {stopped_in:.1f} s to stop"  # "within a few seconds"
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() and not _partials(tmp_path)
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_worker_killed_ends_the_run_with_an_error_naming_it(tiny_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, out = _big_input(tmp_path), tmp_path / "out.csv"
    process = _start(tiny_export.output_dir, data, out)
    victim = _wait_until_writing(process, tmp_path)[0]
    os.kill(victim, signal.SIGKILL)
    code = process.wait(timeout=30)  # never a hang
    stderr = " ".join(process.stderr.read().decode().split())  # type: ignore[union-attr]
    assert code == 1, stderr
    assert f"pid {victim}, killed by SIGKILL" in stderr and "Traceback" not in stderr
    assert not out.exists() and not _partials(tmp_path)
