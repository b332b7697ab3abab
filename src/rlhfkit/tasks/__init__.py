"""Built-in tasks (GRUE-style): prompts + a gold scorer + defaults. `get_task(name)`."""

from rlhfkit.tasks.registry import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
