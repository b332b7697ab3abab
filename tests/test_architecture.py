"""The rooms of src/rlhfkit and which may import which (DESIGN.md §4).

Dependencies point one way: cli → pipelines → trainers / evaluation / feedback →
generation / rewards / tasks / models / data → algorithms → types. `config` and `types` are
leaves every room may use; `tabular` stands alone. Every import of ours is checked — at module
level and inside functions — and a function-local import must say on its line or the line
above why it is not at the top of the file (import time: `rlhfkit --help` must not load torch).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rlhfkit

ROOT = Path(rlhfkit.__file__).parent

LEAVES = {"types", "config"}
# room -> the rooms (besides itself and LEAVES) it may import
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "config": set(),
    "algorithms": set(),
    "data": set(),
    "models": {"algorithms", "data"},
    "generation": {"algorithms", "data", "models"},
    "rewards": {"algorithms", "data", "models"},
    "tasks": {"algorithms", "data", "models", "generation", "rewards"},
    "feedback": {"algorithms", "data", "models", "generation", "rewards", "tasks"},
    "trainers": {"algorithms", "data", "models", "generation", "rewards", "tasks"},
    # multi-turn environments (issue 15): the episode protocol and its built-ins; the calculator
    # reads the arithmetic task. Trainers and generation play them duck-typed, without importing envs.
    "envs": {"algorithms", "data", "tasks"},
    "evaluation": {"algorithms", "data", "models", "generation", "rewards", "tasks", "feedback"},
    "pipelines": {"algorithms", "data", "models", "generation", "rewards", "tasks", "feedback", "trainers", "evaluation",
                  "envs"},
    "cli": {"algorithms", "data", "models", "generation", "rewards", "tasks", "feedback", "trainers", "evaluation",
            "pipelines", "tabular", "envs"},
    "tabular": set(),
}
# Third-party packages `algorithms/` may use: pure math on tensors.
ALGORITHMS_THIRD_PARTY = {"torch", "math", "dataclasses", "typing", "__future__", "collections", "functools"}


def _room(path: Path) -> str:
    first = path.relative_to(ROOT).parts[0]
    return "package" if first in ("__init__.py", "__main__.py") else first.removesuffix(".py")


def _imports(path: Path):
    """(line, imported module, is inside a function, has a reason comment) for every import."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    in_function.add(id(inner))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                package = ".".join(("rlhfkit",) + path.relative_to(ROOT).parent.parts)
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names = [f"{base}.{node.module}" if node.module else base]
            else:
                names = [node.module] if node.module else []
        else:
            continue
        reason = "#" in lines[node.lineno - 1] or _comment_above_import_block(lines, node.lineno - 1)
        for name in names:
            yield node.lineno, name, id(node) in in_function, reason


def _comment_above_import_block(lines: list[str], index: int) -> bool:
    """True when the run of import lines holding line `index` has a comment line right above it."""
    j = index - 1
    while j >= 0 and (lines[j].strip().startswith(("from ", "import ", ")")) or lines[j].rstrip().endswith(",")):
        j -= 1
    return j >= 0 and lines[j].strip().startswith("#")


def _violations():
    layering, unexplained = [], []
    for path in sorted(ROOT.rglob("*.py")):
        room = _room(path)
        for lineno, name, local, reason in _imports(path):
            where = f"{path.relative_to(ROOT)}:{lineno}"
            parts = name.split(".")
            if parts[0] != "rlhfkit":
                if room == "algorithms" and parts[0] not in ALGORITHMS_THIRD_PARTY:
                    layering.append(f"{where}: algorithms/ imports {name} (pure math: torch only)")
                continue
            target = parts[1] if len(parts) > 1 else "package"
            if room == "package" or target == room or target in LEAVES and room not in ("types", "config"):
                pass
            elif target not in ALLOWED.get(room, set()):
                layering.append(f"{where}: {room}/ imports {name}")
            if local and not reason:
                unexplained.append(f"{where}: function-local import of {name} without a reason comment")
    return layering, unexplained


def test_every_room_imports_only_what_the_table_allows():
    layering, _ = _violations()
    assert not layering, "\n".join(layering)


def test_function_local_imports_say_why():
    _, unexplained = _violations()
    assert not unexplained, "\n".join(unexplained)


def test_the_table_covers_every_room():
    rooms = {_room(p) for p in ROOT.rglob("*.py")} - {"package"}
    assert rooms <= set(ALLOWED), f"rooms missing from the layering table: {sorted(rooms - set(ALLOWED))}"


def test_the_checker_catches_a_backwards_import(tmp_path, monkeypatch):
    """The checker itself must be able to fail: a data/ module importing trainers/ is flagged."""
    fake = tmp_path / "rlhfkit"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("def f():\n    from rlhfkit.trainers import online\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    layering, unexplained = _violations()
    assert layering == ["data/bad.py:2: data/ imports rlhfkit.trainers"]
    assert unexplained == ["data/bad.py:2: function-local import of rlhfkit.trainers without a reason comment"]


def test_cli_help_imports_no_torch():
    code = "import sys, rlhfkit.cli; rlhfkit.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
