"""Built-in tasks (GRUE-style): prompts + references + a gold scorer + metrics + defaults, and
tasks from a YAML file. `get_task(name_or_file)`."""

from rlhfkit.tasks.base import Task
from rlhfkit.tasks.registry import TASKS, get_task

__all__ = ["TASKS", "Task", "get_task"]
