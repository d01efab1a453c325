"""Does newsclf classify keep its speed and memory on a file of a million rows?

For each size, the labelled rows of --data are repeated into a CSV of that many rows and
`newsclf classify` runs on it in a fresh process; rows/s comes from its report (classification
only, not the process start), peak memory from the operating system (the process's max RSS).

    python benchmarks/bench_scale.py --model models/RUN/onnx --data ../shared/data/ag_news/test.csv --sizes 1000,1000000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def repeated(source: Path, target: Path, rows: int) -> Path:
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header, data = next(reader), list(reader)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(rows):
            writer.writerow(data[i % len(data)])
    return target


def classify(model: Path, data: Path, work: Path) -> dict[str, Any]:
    report = work / f"{data.stem}.report.json"
    command = [
        sys.executable,
        "-m",
        "newsclf.cli",
        "classify",
        str(data),
        "--model",
        str(model),
        "--output",
        str(work / f"{data.stem}.predictions.csv"),
        "--report",
        str(report),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"newsclf classify failed on {data}:\n{stderr[-2000:]}")
    result = json.loads(report.read_text())
    return {
        "rows": result["rows"],
        "rows_per_s": result["throughput_rows_per_s"],
        "wall_time_s": result["wall_time_s"],
        "stage_seconds": result["stage_seconds"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "accuracy": result.get("accuracy"),
        "variant": result["variant"],
        "provider": result["provider"],
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="export folder")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (the shared AG News data is not on this machine?)")

    from newsclf.environment import machine_summary

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            data = repeated(args.data, work / f"rows_{size}.csv", size)
            result = classify(args.model, data, work)
            results.append(result)
            print(
                f"{size:>9,} rows: {result['rows_per_s']:.1f} rows/s, peak {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            for path in work.glob(f"rows_{size}*"):
                path.unlink()
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "command": " ".join(["python", "benchmarks/bench_scale.py", *sys.argv[1:]]),
    }
    base = results[0]["rows_per_s"]
    lines = [
        f"# classify at scale, {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores. Model: `{args.model}`.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| rows | rows/s | vs the smallest file | peak RSS MB | accuracy |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {r['rows']:,} | {r['rows_per_s']:.1f} | {r['rows_per_s'] / base - 1:+.1%} | {r['peak_rss_mb']:,.0f} | "
            f"{_percent(r['accuracy'])} |"
            for r in results
        ],
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    cpu = "".join(c if c.isalnum() else "-" for c in meta["machine"]["cpu"]).strip("-").lower()
    stem = f"{meta['date'][:10]}-scale-{cpu}-{meta['machine']['cores']}c"
    (args.output_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    (args.output_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
