"""Task registry: the built-in tasks by name, and tasks from a YAML file (`--task my_task.yaml`)."""

from __future__ import annotations

from rlhfkit.config import ConfigError
from rlhfkit.tasks.arithmetic import ARITHMETIC
from rlhfkit.tasks.base import Task
from rlhfkit.tasks.concepts import CONCEPTS
from rlhfkit.tasks.sentiment import SENTIMENT, sentiment_prompts
from rlhfkit.tasks.summarize import SUMMARIZE

TASKS: dict[str, Task] = {task.name: task for task in (SENTIMENT, SUMMARIZE, CONCEPTS, ARITHMETIC)}

__all__ = ["TASKS", "Task", "get_task", "sentiment_prompts", "task_gold_scorer"]


def is_task_file(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def get_task(name: str) -> Task:
    """A built-in task by name, or the task a YAML file describes (see tasks/from_file.py)."""
    if is_task_file(name):
        # not at the top: from_file imports this module (its rewards may name task:NAME)
        from rlhfkit.tasks.from_file import load_task_file

        return load_task_file(name)
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (built-in tasks: {', '.join(sorted(TASKS))}; "
                         "or a task file my_task.yaml)")
    return TASKS[name]


def task_gold_scorer(name: str):
    """The gold scorer of task `name` — the `task:NAME` reward of `rewards.spec`."""
    try:
        return get_task(name).gold
    except ValueError as err:
        raise ConfigError(str(err)) from None
