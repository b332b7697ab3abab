"""`rlhfkit tasks`: list the built-in tasks, one line each (or a task file's details)."""

from __future__ import annotations

import json

from rlhfkit.config import ConfigError


def _cmd_tasks(args) -> int:
    from rlhfkit.tasks.registry import TASKS, get_task  # the tasks' modules, read only when listing

    try:
        tasks = [get_task(name) for name in args.names] if args.names else list(TASKS.values())
    except ValueError as err:  # an unknown task name
        raise ConfigError(str(err)) from None
    if args.json:
        rows = []
        for task in tasks:
            rows.append({"name": task.name, "description": task.description, "source": task.source,
                         "chat": task.chat, "max_new_tokens": task.max_new_tokens, "metrics": list(task.metrics),
                         "references": task.reference_column, "train_prompts": len(task.split_rows("train")),
                         "test_prompts": len(task.split_rows("test")), "example": task.prompts("test")[0]})
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for task in tasks:
        print(task.summary_line())
    if not args.names:
        print("(use one with --task NAME, or --prompts task:NAME; --json for sizes, sources and licences)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tasks", help="list the built-in tasks (prompts + references + gold scorer + metrics)",
        description="One line per built-in task. With names (or task files, my_task.yaml) and --json: each "
        "task's source and licence, split sizes, generation defaults, metrics and an example prompt.")
    p.add_argument("names", nargs="*", help="tasks to describe (built-in names or task .yaml files; default: all)")
    p.add_argument("--json", action="store_true", help="print details as JSON")
    p.set_defaults(func=_cmd_tasks)
