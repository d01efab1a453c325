"""Build `.carry/` (ignored by git) for the GPU check: what the device machine lacks.

The device has no internet and no model hub, and the carry limit is 64 MiB: the embedded
MiniLM goes as an fp16 safetensors copy (~45 MB), with the AG News rows from ../shared.

    python benchmarks/prepare_gpu_assets.py [--data ../shared/data/ag_news]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ag_news")
    parser.add_argument("--target", type=Path, default=ROOT / ".carry")
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file, save_file

    from newsclf.hub import embedded_model_dir

    source = embedded_model_dir()
    model_dir = args.target / "minilm"
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        shutil.copy(source / name, model_dir / name)
    weights = {
        k: v.to(torch.float16) if v.is_floating_point() else v
        for k, v in load_file(source / "model.safetensors").items()
    }
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    data_dir = args.target / "ag_news"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "test.csv"):
        shutil.copy(args.data / name, data_dir / name)
    total = sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file())
    print(f"{args.target}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
