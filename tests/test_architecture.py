"""algorithms/ stays pure math: it imports torch and rlhfkit.types only (DESIGN.md §4)."""

import ast
from pathlib import Path

import rlhfkit

ALLOWED_TOP = {"torch", "math", "dataclasses", "typing", "__future__", "collections", "functools"}


def test_algorithms_imports_only_torch_and_types():
    root = Path(rlhfkit.__file__).parent / "algorithms"
    offenders = []
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "rlhfkit":
                    if not (name.startswith("rlhfkit.algorithms") or name == "rlhfkit.types"):
                        offenders.append(f"{path.name}: {name}")
                elif top not in ALLOWED_TOP:
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders


def test_cli_help_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, rlhfkit.cli; rlhfkit.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
