"""The layout's rules, checked: subpackages import only each other's public names (from the
subpackage itself, never from its modules or its underscore names), and the benchmarks use
no underscore names of newsclf."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "newsclf"
SUBPACKAGES = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
    return found


def _owner(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "newsclf" or len(parts) < 2:
        return None
    if parts[1] == "integrations" and len(parts) > 2:
        return "integrations." + parts[2]
    return parts[1] if parts[1] in SUBPACKAGES else None


def test_subpackages_import_only_each_others_public_names() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        own = _owner("newsclf." + ".".join(relative.with_suffix("").parts))
        for module, names, line in _imports(path):
            other = _owner(module)
            if other is None or other == own:
                continue
            where = f"{relative}:{line}"
            if module != f"newsclf.{other}":
                problems.append(f"{where} imports {module}, a module inside newsclf.{other}")
            problems += [f"{where} imports {other}.{n}" for n in names if n.startswith("_")]
    assert problems == []


def test_the_benchmarks_use_no_private_names_of_newsclf() -> None:
    problems = [
        f"{path.name}:{line} imports {module}.{name}"
        for path in (ROOT / "benchmarks").glob("*.py")
        for module, names, line in _imports(path)
        if module.startswith("newsclf")
        for name in names
        if name.startswith("_") or any(part.startswith("_") for part in module.split("."))
    ]
    assert problems == []
