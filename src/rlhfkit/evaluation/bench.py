"""The GRUE-style benchmark table (Ramamurthy et al. 2022, RL4LMs): tasks × methods, each cell the
task's gold score ± its 95% CI and the task's metrics; as Markdown and as a self-contained page.

Metrics come from this room's text_metrics: diversity for every task; BLEU, ROUGE and METEOR
against the task's references where it has them. Every text is HTML-escaped; the page loads
nothing from the network.
"""

from __future__ import annotations

import html
from typing import Sequence

from rlhfkit.evaluation.text_metrics import diversity, lexical

REFERENCE_METRICS = ("bleu", "rouge", "meteor")
SHOWN = ("rougeL", "bleu", "meteor", "distinct_2", "self_bleu", "words_mean")


def task_metrics(task, prompts: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """The task's metrics of one method's samples: diversity, and the lexical metrics against
    the task's references when the task names one of them and has references."""
    result = dict(diversity(texts))
    wanted = set(task.metrics)
    references = task.references(prompts) if wanted & set(REFERENCE_METRICS) else None
    if references is not None and all(references):
        result.update(lexical(texts, references))
    return result


def _half_width(gold: dict) -> float:
    return (gold["ci_high"] - gold["ci_low"]) / 2


def cell(row: dict) -> str:
    """"+0.123 ± 0.045" (mean ± half the 95% CI)."""
    return f"{row['gold']['mean']:+.3f} ± {_half_width(row['gold']):.3f}"


def bench_table(results: dict) -> str:
    """Markdown: one row per method, one column per task (gold ± 95% CI)."""
    tasks = list(results["tasks"])
    methods = _methods(results)
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method in methods:
        cells = [cell(results["tasks"][t]["rows"][method]) if method in results["tasks"][t]["rows"] else "—"
                 for t in tasks]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _methods(results: dict) -> list[str]:
    seen: list[str] = []
    for task in results["tasks"].values():
        seen += [m for m in task["rows"] if m not in seen]
    return seen


def _metric_table(name: str, task: dict) -> str:
    shown = [k for k in SHOWN if any(k in row.get("metrics", {}) for row in task["rows"].values())]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["method", "gold (95% CI)", "KL (nats)", *shown, "seconds"])
    body = []
    for method, row in task["rows"].items():
        metrics = row.get("metrics", {})
        values = [html.escape(method), html.escape(f"{row['gold']['mean']:+.3f} [{row['gold']['ci_low']:+.3f}, "
                                                   f"{row['gold']['ci_high']:+.3f}]"),
                  f"{row.get('kl_to_reference', 0.0):.3f}" + (" (bound)" if row.get("kl_is_bound") else ""),
                  *(f"{metrics[k]:.3f}" if k in metrics else "" for k in shown), f"{row.get('seconds', 0):.0f}"]
        body.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    source = html.escape(task.get("source", ""))
    return (f"<h2>{html.escape(name)}</h2><p class=note>{html.escape(task.get('description', ''))}<br>"
            f"source: {source}</p><table><tr>{head}</tr>{''.join(body)}</table>")


def bench_html(results: dict) -> str:
    """A self-contained page: the headline table, then each task's metrics."""
    tasks = list(results["tasks"])
    methods = _methods(results)
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ["method", *tasks])
    rows = []
    for method in methods:
        cells = [html.escape(cell(results["tasks"][t]["rows"][method])) if method in results["tasks"][t]["rows"] else "—"
                 for t in tasks]
        rows.append(f"<tr><td>{html.escape(method)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    setup = html.escape(f"preset {results.get('preset')}, policy {results.get('policy')}, sample budget "
                        f"{results.get('sample_budget')} per training method, {results.get('eval_prompts')} held-out "
                        f"prompts per task, device {results.get('device')}, wall time {results.get('wall_seconds', 0):.0f} s")
    per_task = "".join(_metric_table(name, task) for name, task in results["tasks"].items())
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child{text-align:left}"
             ".note{color:#555}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>rlhfkit bench</title><style>{style}</style></head>"
            f"<body><h1>rlhfkit bench</h1><p class=note>{setup}</p><p>Gold score ± half its 95% bootstrap CI, "
            f"per task (higher is better).</p><table><tr>{head}</tr>{''.join(rows)}</table>{per_task}</body></html>")
