"""Fast WordPiece tokenizers against `tokenizers` (issue 28): the same ids on every shared row
(cleaned and raw) and on hostile texts; then speed on one core and on all cores: (a) raw
tokenizing, (b) texts -> flat numpy ids + per-row lengths. Candidates not installed are skipped.

  python -m benchmarks.tokenizers_compare --data ../shared/data/ag_news --model-dir DIR [--out r.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    from newsclf.io import clean_text
except ImportError:  # a venv without newsclf: the checkout's own source
    sys.path.insert(0, str(ROOT / "src"))
    from newsclf.io import clean_text

MAX_LEN, CLS, SEP = 128, 101, 102
Fn = Callable[[list[str]], Any]
Flat = tuple[np.ndarray, np.ndarray]
STEPS = ("raw", "flat")
SINGLE = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def from_lists(ids: list[list[int]]) -> Flat:
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    return np.fromiter(chain.from_iterable(ids), np.int32, int(lengths.sum())), lengths


def from_encodings(encodings: list[Any]) -> Flat:
    return from_lists([e.ids for e in encodings])


def wrap(ids: list[list[int]]) -> list[list[int]]:  # for those that add no [CLS]/[SEP]
    return [[CLS, *row[: MAX_LEN - 2], SEP] for row in ids]


def pair(raw: Fn, to_flat: Callable[[Any], Flat]) -> tuple[Fn, Fn]:
    return raw, lambda texts: to_flat(raw(texts))


def candidates(model: Path, single: bool) -> tuple[dict[str, tuple[Fn, Fn]], list[str]]:
    """name -> (raw tokenize, texts -> flat ids + lengths), and the names not installed."""
    spec = json.loads((model / "tokenizer.json").read_text())
    spec["padding"] = None  # as newsclf: no padding, truncation at 128
    text, path = json.dumps(spec), Path(tempfile.mkdtemp()) / "tokenizer.json"
    path.write_text(text)
    lower = json.loads((model / "tokenizer_config.json").read_text()).get("do_lower_case", True)
    threads = 1 if single else os.cpu_count() or 1

    def flash() -> tuple[Fn, Fn]:
        from flash_tokenizer._core import FlashBertTokenizer

        tok = FlashBertTokenizer(str(model / "vocab.txt"), lower, MAX_LEN, True)
        return pair(lambda t: tok.batch_encode(t, "longest", MAX_LEN, not single), from_lists)

    def nano() -> tuple[Fn, Fn]:
        from nanotoken import WordPieceTokenizer

        tok = WordPieceTokenizer.from_json(text)
        raw = lambda t: tok.encode_batch(t, max_length=MAX_LEN, parallel=not single)  # noqa: E731
        return pair(raw, lambda r: (r[0], np.diff(r[1])))

    def tokie() -> tuple[Fn, Fn]:
        from tokie import Tokenizer

        tok = Tokenizer.from_json(str(path))
        tok.enable_truncation(MAX_LEN)
        return pair(tok.encode_batch, from_encodings)

    def bud() -> tuple[Fn, Fn]:
        from budtiktok import Tokenizer

        tok = Tokenizer.from_str(text)  # truncation only when asked for
        raw = lambda t: tok.batch_encode_plus(t, truncation=True, max_length=MAX_LEN)  # noqa: E731
        return pair(raw, lambda r: from_lists(r["input_ids"]))

    def arrow() -> tuple[Fn, Fn]:
        import pyarrow as pa
        from arrow_tokenize import ArrowTokenizer

        tok = ArrowTokenizer(text)
        raw = lambda t: tok.tokenize(pa.array(t, pa.string()), add_special_tokens=True)  # noqa: E731
        return pair(raw, lambda a: (a.values.to_numpy(), np.diff(a.offsets)))

    def laghu() -> tuple[Fn, Fn]:
        from laghu_rs import WordPiece

        tok = WordPiece(text)
        return pair(lambda t: tok.batch(t, max_len=MAX_LEN - 2, threads=threads), lambda r: from_lists(wrap(r)))  # fmt: skip

    def bling() -> tuple[Fn, Fn]:
        import blingfire  # blingfire and blingfire2 both install it; bert_base_tok is uncased

        h = blingfire.load_model(os.path.join(blingfire.__path__[0], "bert_base_tok.bin"))
        raw = lambda t: [blingfire.text_to_ids(h, s, MAX_LEN - 2, 100, True) for s in t]  # noqa: E731
        return pair(raw, lambda r: from_lists(wrap([ids.tolist() for ids in r])))

    def module(name: str, make: Callable[[Any], tuple[Fn, Fn]]) -> Callable[[], tuple[Fn, Fn]]:
        return lambda: make(import_module(name))

    makers = {
        "tokenizers": module("tokenizers", lambda m: pair(m.Tokenizer.from_str(text).encode_batch, from_encodings)),
        "tokenizers.encode_batch_fast": module("tokenizers", lambda m: pair(m.Tokenizer.from_str(text).encode_batch_fast, from_encodings)),
        "flash-tokenizer": flash, "nanotoken": nano,
        "kitoken": module("kitoken", lambda m: pair(m.Kitoken.from_tokenizers(text.encode()).encode_all, lambda r: from_lists(wrap(r)))),
        "tokie": tokie,
        "morpheme": module("morpheme", lambda m: pair(m.Tokenizer.from_str(text).encode_batch, from_encodings)),
        "budtiktok": bud, "arrow-tokenize": arrow, "laghu-rs": laghu, "blingfire": bling,
    }  # fmt: skip
    found, missing = {}, []
    for name, make in makers.items():
        try:
            found[name] = make()
        except ImportError:
            missing.append(name)
    return found, missing


def shared_rows(data: Path) -> list[str]:
    with open(data / "test.csv", newline="", encoding="utf-8") as f:
        rows = [r["title"] + " " + r["description"] for r in csv.DictReader(f)]
    with open(data / "train.csv", newline="", encoding="utf-8") as f:
        return rows + [r["text"] for r in csv.DictReader(f)]


def hostile(words: list[str], n: int = 20_000, seed: int = 28) -> list[str]:
    """The project tests' hostile texts, then `n` random ones: any code point but surrogates,
    weighted to the classes that BERT's normalizer and pre-tokenizer treat specially."""
    fixed = ["[/b] closing tag first", "[bold red]alarm[/] $ [link=x]y[/link]", "a [/] b",
             "tab\there\x00nul\x1besc", "\u202eright-to-left override", "markets " * 200_000,
             "", "ok", "It#39;s over", "quot;Hello quot; he said", "&amp;lt;b&amp;gt;bold",
             "pay \\$457.5 million", "a\x00b\x07c", "zero\u200bwidth", "  runs   of\t\nspaces  ",
             "[CLS] a [SEP] b [PAD] [MASK] [UNK] [cls] x[SEP]y", "İSTANBUL ẞ ß ΣΑΣ ﬁ K Ω Å ǅ",
             "stocks rally as the central bank holds rates " * 20]  # fmt: skip
    spans = [(0x20, 0x7E), (0x0, 0x1F), (0x7F, 0x9F), (0xA0, 0x24F), (0x300, 0x36F),
             (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F),
             (0x3000, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
             (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFE00, 0xFE0F), (0xFF00, 0xFFFF),
             (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F),
             (0x0, 0x10FFFF)]  # fmt: skip
    odd = "\u1680\u180e\u00ad\u034f\u061c\u3164\ufeff\ufffd\uffff\u2028\u0085\x1c\u200d\u3000ǅİ"
    rng = random.Random(seed)

    def char() -> str:
        if rng.random() < 0.1:
            return rng.choice(odd)
        lo, hi = spans[0] if rng.random() < 0.3 else rng.choice(spans)
        c = rng.randint(lo, hi)
        return " " if 0xD800 <= c <= 0xDFFF else chr(c)

    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:  # as hypothesis's st.text(max_size=80) in test_batch_invariance
            out.append("".join(char() for _ in range(rng.randint(0, 80))))
        elif kind < 0.75:  # words with odd characters in and between them
            out.append(" ".join(w + char() * (rng.random() < 0.3) for w in rng.sample(words, 20)))
        elif kind < 0.9:  # words around max_input_chars_per_word (100)
            piece = rng.choice(["a", "é", "e\u0301", "ab", "x1", "ß", "İ", "\U0001d400", char()])
            out.append(f"the {piece * rng.randint(45, 105)} end")
        else:  # around the truncation at 128 tokens
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(110, 140))))
    return fixed + out


def compare(flat: Fn, want: list[list[int]], texts: list[str]) -> dict[str, Any]:
    try:
        ids, lengths = flat(texts)
        ends = np.cumsum(lengths)
        got = [ids[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]
    except Exception:  # one text at a time, to find those that fail
        got = []
        for t in texts:
            try:
                got.append(flat([t])[0].tolist())
            except Exception as error:
                got.append([f"{type(error).__name__}: {error}"[:100]])
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    examples = []
    for i in bad[:3]:  # the ids from a little before the first difference
        at = next((k for k, (g, w) in enumerate(zip(got[i], want[i], strict=False)) if g != w), min(len(got[i]), len(want[i])))  # fmt: skip
        examples.append({"text": texts[i][:90], "at": at, "want": want[i][max(at - 3, 0) : at + 7], "got": got[i][max(at - 3, 0) : at + 7]})  # fmt: skip
    return {"mismatching": len(bad), "examples": examples}


def timing(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Best of `reps` interleaved rounds (the order rotating), each round on rows not seen
    before (some candidates cache), after a warm-up on others: µs per row of wall and of CPU
    time (all threads: per core where wall time is not)."""
    rows = [clean_text(t) for t in shared_rows(args.data)]
    random.Random(0).shuffle(rows)
    size = (len(rows) - 3000) // (2 * args.reps)
    warm, chunks = rows[:3000], [rows[3000 + i * size :][:size] for i in range(2 * args.reps)]
    cands, _ = candidates(args.model_dir, args.timing == "single")
    fns = {f"{name} {step}": fn for name, c in cands.items() for step, fn in zip(STEPS, c, strict=True)}  # fmt: skip
    if args.timing == "single":  # tokenizers: from encode_batch's output to flat numpy ids
        from tokenizers import Encoding, Tokenizer

        padded = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
        padded.enable_padding()  # to the longest row, not to 128
        done = {id(t): cands["tokenizers"][0](t) for t in [warm, *chunks]}
        fns |= {
            "out: [e.ids for e in enc] + np.fromiter(chain)": lambda t: from_encodings(done[id(t)]),
            "out: map(attrgetter('ids')) + np.fromiter(chain)": lambda t: from_lists(list(map(attrgetter("ids"), done[id(t)]))),
            "out: lengths by len(e), ids by np.fromiter(chain(map(attrgetter)))": lambda t: (np.fromiter(map(len, done[id(t)]), np.int64, len(t)), np.fromiter(chain.from_iterable(map(attrgetter("ids"), done[id(t)])), np.int32)),
            "out: Encoding.merge(the chunk's rows not truncated).ids": lambda t: np.array(Encoding.merge([e for e in done[id(t)] if not e.overflowing], False).ids, np.int32),
            "all: encode_batch padded to longest + np.array (no lengths)": lambda t: np.array([e.ids for e in padded.encode_batch(t)], np.int32),
        }  # fmt: skip
    for fn in fns.values():
        fn(warm)
    best: dict[str, dict[str, float]] = {}
    for rep in range(args.reps):
        for name in list(fns)[rep % len(fns) :] + list(fns)[: rep % len(fns)]:
            texts = chunks[rep + args.reps * name.endswith("flat")]
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name](texts)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if wall * 1e6 / size < best.get(name, {}).get("wall_us_per_row", float("inf")):
                best[name] = {"wall_us_per_row": wall * 1e6 / size, "cpu_us_per_row": cpu * 1e6 / size}  # fmt: skip
    return best


def dist_version(name: str) -> str:
    for dist in (name.split(".")[0] + "2", name.split(".")[0]):  # blingfire2 installs blingfire
        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder with test.csv and train.csv")
    p.add_argument("--model-dir", type=Path, required=True, help="tokenizer.json, vocab.txt")
    p.add_argument("--out", type=Path)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--timing", choices=["single", "all"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.timing:  # a child run: one thread setting for the whole process
        print(json.dumps(timing(args)))
        return
    raw = shared_rows(args.data)
    sets = {"cleaned": [clean_text(t) for t in raw], "raw": raw}
    sets["hostile"] = hostile(sorted({w for t in sets["cleaned"] for w in t.split()}))
    cands, missing = candidates(args.model_dir, False)
    want = {k: [e.ids for e in cands["tokenizers"][0](v)] for k, v in sets.items()}
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")  # fmt: skip
    result: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "not_installed": missing,
                              "texts": {k: len(v) for k, v in sets.items()}, "versions": {}, "ids": {}}  # fmt: skip
    print(f"{cpu}, {os.cpu_count()} cores; not installed: {', '.join(missing) or 'none'}")
    for name, (_, flat) in cands.items():
        result["versions"][name] = v = dist_version(name)
        result["ids"][name] = found = {k: compare(flat, want[k], t) for k, t in sets.items()}
        print(f"{name} {v}: mismatching texts " + ", ".join(f"{k} {f['mismatching']}/{len(sets[k])}" for k, f in found.items()))  # fmt: skip
        for ex in chain.from_iterable(f["examples"] for f in found.values()):
            print(f"    {ex['text']!r}, from id {ex['at']}:\n      tokenizers {ex['want']}\n      {name} {ex['got']}")  # fmt: skip
    rest = {k: v for k, v in os.environ.items() if k not in SINGLE}
    for mode, env in (("single", rest | SINGLE), ("all", rest | {"TOKENIZERS_PARALLELISM": "true"})):  # fmt: skip
        cmd = [sys.executable, "-m", "benchmarks.tokenizers_compare", "--timing", mode, "--reps", str(args.reps),
               "--data", str(args.data.resolve()), "--model-dir", str(args.model_dir.resolve())]  # fmt: skip
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        result[mode] = t = json.loads(out.stdout)
        clock = "cpu_us_per_row" if mode == "single" else "wall_us_per_row"  # per core: CPU time
        result[f"{mode}_x_faster"] = x = {n: {s: t[f"tokenizers {s}"][clock] / t[f"{n} {s}"][clock] for s in STEPS} for n in cands}  # fmt: skip
        print(f"\n{mode}: {clock} (x faster than tokenizers) [cores used]: raw | to flat numpy")
        for n in cands:
            cells = [f"{t[f'{n} {s}'][clock]:7.2f} ({x[n][s]:5.2f}x) [{t[f'{n} {s}']['cpu_us_per_row'] / t[f'{n} {s}']['wall_us_per_row']:.1f}]" for s in STEPS]  # fmt: skip
            print(f"  {n:28} " + " | ".join(cells))
    print("\ntokenizers, one core, cpu_us_per_row: from encode_batch's output (out:) or all (all:)")
    for name, v in result["single"].items():
        if name.startswith(("out: ", "all: ")):
            print(f"  {v['cpu_us_per_row']:7.2f}  {name}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
