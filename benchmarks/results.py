"""The one results writer: JSON and Markdown named by date, suite and machine."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from newsclf.environment import machine_summary
from newsclf.io import write_json_atomic, write_text_atomic

# NEWSCLF_RESULTS redirects a rehearsal's results away from the committed folder.
RESULTS_DIR = Path(os.environ.get("NEWSCLF_RESULTS", Path(__file__).resolve().parent / "results"))


def machine_slug(summary: dict[str, Any]) -> str:
    """'nvidia-h100-80gb-hbm3' or 'intel-xeon-amx-2c' / 'amd-epyc-2c'."""
    if summary.get("gpu"):
        return re.sub(r"[^a-z0-9]+", "-", summary["gpu"].lower()).strip("-")
    cpu = summary["cpu"].lower()
    vendor = "intel-xeon" if "intel" in cpu else "amd-epyc" if "amd" in cpu else "cpu"
    amx = "-amx" if "amx" in summary.get("cpu_flags", []) else ""
    return f"{vendor}{amx}-{summary['cores']}c"


def cpu_flags() -> list[str]:
    wanted = ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return [f for f in wanted if f in text.split()] + (["amx"] if "amx_int8" in text else [])


def write_results(
    suite: str,
    records: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    meta: dict[str, Any],
    directory: Path = RESULTS_DIR,
    merge_on: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """`<date>-<suite>-<machine>.json` (every figure) and `.md` (the table of `columns`:
    (key, heading) pairs). With `merge_on`, records of an earlier run of the same suite that
    day (another model, say) are kept unless a new record has the same key; the last run's
    settings go under `runs`."""
    machine = machine_summary() | {"cpu_flags": cpu_flags()}
    stem = f"{date.today().isoformat()}-{suite}-{machine_slug(machine)}"
    records = list(records)
    directory.mkdir(parents=True, exist_ok=True)
    runs = [meta]
    earlier = directory / f"{stem}.json"
    if merge_on and earlier.is_file():
        old = json.loads(earlier.read_text())

        def key(record: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(record.get(k) for k in merge_on)

        replaced = {key(r) for r in records}
        records = [r for r in old["records"] if key(r) not in replaced] + records
        runs = [*old.get("runs", []), meta]
    data = {"suite": suite, "machine": machine, **meta, "runs": runs, "records": records}
    json_path = write_json_atomic(directory / f"{stem}.json", data)
    lines = [
        f"# {suite}: {machine['gpu'] or machine['cpu']} ({machine['cores']} cores)",
        "",
        *(f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))),
        "",
        "| " + " | ".join(h for _, h in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for record in records:
        lines.append("| " + " | ".join(_cell(record.get(k)) for k, _ in columns) + " |")
    md_path = write_text_atomic(directory / f"{stem}.md", "\n".join(lines) + "\n")
    return json_path, md_path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)
