"""Tasks from a YAML file: `--task my_task.yaml` wherever a task is taken.

    name: capitals                 # optional (default: the file's name)
    description: name a country's capital
    prompts: capitals.jsonl        # any loader format (JSONL/JSON/CSV/Parquet/saved dataset), column 'prompt'
    references: capital            # optional: the column holding each prompt's reference text
    reward: check.py:exact=1,length=-0.1   # the task's gold scorer: any --reward spec
    metrics: [rouge, diversity]    # optional: rouge, bleu, meteor (need references), diversity, perplexity
    chat: true                     # optional generation defaults
    max_new_tokens: 16
    test_fraction: 0.2             # optional; rows with an 'id' column are split by a hash of it

Relative paths (the prompts file, a `file.py:function` reward, a reward-model folder) are read
from the YAML file's folder. The reward's functions get every other column of the prompts file
by name (TRL's convention, see rewards/python.py)."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from rlhfkit.config import ConfigError, load_yaml
from rlhfkit.data.loaders import load_records
from rlhfkit.rewards.python import is_python_spec
from rlhfkit.rewards.spec import build_reward
from rlhfkit.tasks.base import Task
from rlhfkit.tasks.registry import task_gold_scorer  # task:NAME in a task file's reward: another task's gold

METRICS = ("rouge", "bleu", "meteor", "diversity", "perplexity")
NEED_REFERENCES = ("rouge", "bleu", "meteor")
FIELDS = {"name", "description", "prompts", "references", "reward", "metrics", "chat", "max_new_tokens", "test_fraction"}


def _field_error(path: Path, name: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: field '{name}': {message}")


def _relative_reward(spec: str, folder: Path) -> str:
    """`spec` with its relative file.py and reward-model paths read from `folder`."""
    parts = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, eq, weight = part.rpartition("=") if "=" in part else (part, "", "")
        if is_python_spec(name) and name.rpartition(":")[0].endswith(".py"):
            module, _, function = name.rpartition(":")
            if not Path(module).is_absolute():
                name = f"{folder / module}:{function}"
        elif not Path(name).is_absolute() and (folder / name).is_dir():
            name = str(folder / name)
        parts.append(f"{name}{eq}{weight}")
    return ",".join(parts)


def _check(path: Path, data: dict) -> None:
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(FIELDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(sorted(FIELDS))})"
        raise _field_error(path, unknown[0], f"unknown field{hint}")
    for name in ("prompts", "reward"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise _field_error(path, name, "required: " + ("a prompts file" if name == "prompts" else "a reward spec"))
    metrics = data.get("metrics", [])
    if not isinstance(metrics, list) or any(m not in METRICS for m in metrics):
        raise _field_error(path, "metrics", f"expected a list of {', '.join(METRICS)}, got {metrics!r}")
    if any(m in NEED_REFERENCES for m in metrics) and not data.get("references"):
        raise _field_error(path, "metrics", "rouge, bleu and meteor need a 'references' column")
    fraction = data.get("test_fraction", 0.2)
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise _field_error(path, "test_fraction", f"expected a number between 0 and 1, got {fraction!r}")
    if not isinstance(data.get("max_new_tokens", 1), int) or data.get("max_new_tokens", 1) < 1:
        raise _field_error(path, "max_new_tokens", "expected a whole number of at least 1")
    if not isinstance(data.get("chat", False), bool):
        raise _field_error(path, "chat", "expected true or false")


def _rows(path: Path, data: dict) -> list[dict]:
    records = load_records(path.parent / data["prompts"], "prompt").records
    rows = [{"prompt": r.prompt, **r.meta} for r in records]
    column = data.get("references")
    if column:
        bad = next((i for i, r in enumerate(rows, start=1) if not isinstance(r.get(column), (str, list))), None)
        if bad is not None:
            raise ConfigError(f"{path.parent / data['prompts']}: row {bad}: field '{column}': missing "
                              f"(the task's references column, named in {path})")
    return rows


@lru_cache(maxsize=16)
def _load(path: Path, mtime: float) -> Task:
    data = load_yaml(path)
    _check(path, data)
    rows = _rows(path, data)
    try:
        reward, _ = build_reward(_relative_reward(data["reward"], path.parent), named={"task": task_gold_scorer})
    except ConfigError as err:
        if "needs a task" in str(err):
            raise _field_error(path, "reward", "'gold' would be this task's own scorer: name a reward instead") from None
        raise _field_error(path, "reward", str(err)) from None
    return Task(
        name=str(data.get("name") or path.stem), description=str(data.get("description") or f"prompts of {data['prompts']}"),
        make_rows=lambda: rows, scorer=reward, chat=bool(data.get("chat", False)),
        max_new_tokens=int(data.get("max_new_tokens", 24)), eval_fraction=float(data.get("test_fraction", 0.2)),
        reference_column=data.get("references") or None, metrics=tuple(data.get("metrics", [])),
        source=f"{path} (prompts: {data['prompts']})",
    )


def load_task_file(path: str | Path) -> Task:
    """The task `path` describes (read once per file version)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"task file {path} does not exist")
    return _load(path, path.stat().st_mtime)
