"""`rlhfkit bench`: the GRUE-style table. For each task, `compare` trains and samples every method
at the same sample budget (its run folder is <run>/<task>); then each method's held-out samples
get the task's metrics, and bench.json, report.html and a Markdown table sum it all up."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from rlhfkit.config import ConfigError, derive_config
from rlhfkit.evaluation.bench import bench_html, bench_table, task_metrics
from rlhfkit.models import resolve_device
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.pipelines.bench_config import BenchConfig
from rlhfkit.pipelines.compare import run_compare
from rlhfkit.pipelines.config import CompareConfig
from rlhfkit.pipelines.run_dir import RunDir, write_json_atomic
from rlhfkit.tasks import get_task


def _tasks(names: list[str]) -> list:
    try:
        return [get_task(name) for name in names]
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _task_result(cfg: BenchConfig, spec: str, task, folder: Path) -> dict:
    # --resume continues a compare the stopped bench had begun; one it had not reached starts anew
    compare = derive_config(CompareConfig, cfg, task=spec, output_dir=str(folder), run_name=task.name, overwrite=True,
                            resume=cfg.resume and (folder / task.name).is_dir(), max_new_tokens=cfg.max_new_tokens if cfg.preset == "custom" else None)  # None: the task's
    summary = run_compare(compare)
    samples = [json.loads(line) for line in (folder / task.name / "samples.jsonl").read_text().splitlines() if line]
    rows = {}
    for row in summary["rows"]:
        mine = [s for s in samples if s.get("method") == row["method"]]
        metrics = task_metrics(task, [s["prompt"] for s in mine], [s["response"] for s in mine]) if mine else {}
        rows[row["method"]] = {**row, "metrics": metrics}
    return {"description": task.description, "source": task.source, "metrics": list(task.metrics),
            "max_new_tokens": compare.max_new_tokens, "rows": rows}


_SAME_RUN = ("preset", "policy", "methods", "sample_budget", "eval_prompts", "best_of_n")


def _finished_tasks(run: RunDir, results: dict) -> dict:
    """--resume: the tasks a stopped bench finished (from its bench.json), when it ran the same
    table; a bench of other settings is refused rather than mixed into this one."""
    path = run.path / "bench.json"
    if not run.resume or not path.is_file():
        return {}
    before = json.loads(path.read_text())
    changed = [key for key in _SAME_RUN if before.get(key) != results[key]]
    if changed:
        raise ConfigError(f"cannot resume {run.path}: its bench.json was made with other {', '.join(changed)}; "
                          "pass --overwrite to start it anew")
    return before.get("tasks", {})


def run_bench(cfg: BenchConfig) -> dict:
    device = resolve_device(cfg.device)  # a missing device, model or task fails before a run folder is made
    resolve_policy_path(cfg.policy)
    tasks = _tasks(cfg.tasks)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    results: dict = {"preset": cfg.preset, "policy": cfg.policy, "methods": cfg.methods, "sample_budget": cfg.sample_budget,
                     "eval_prompts": cfg.eval_prompts, "best_of_n": cfg.best_of_n, "device": str(device),
                     "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "tasks": {}}
    finished = _finished_tasks(run, results)
    for spec, task in zip(cfg.tasks, tasks):
        if task.name in finished:
            print(f"[rlhfkit] bench: task {task.name} kept from the stopped run ({finished[task.name].get('wall_seconds', 0):.0f}s)")
            results["tasks"][task.name] = finished[task.name]
        else:
            print(f"[rlhfkit] bench: task {task.name}")
            start = time.perf_counter()
            results["tasks"][task.name] = _task_result(cfg, spec, task, run.path)
            results["tasks"][task.name]["wall_seconds"] = round(time.perf_counter() - start, 1)
        results["wall_seconds"] = round(sum(t.get("wall_seconds", 0) for t in results["tasks"].values()), 1)
        write_json_atomic(run.path / "bench.json", results)  # after each task: a stopped bench keeps what it finished
    (run.path / "report.html").write_text(bench_html(results))
    print()
    print(bench_table(results))
    print(f"\n{results['wall_seconds']:.0f}s; bench.json and report.html in {run.path}")
    return results
