"""Pareto fronts of reward mixes: the weight grid over the simplex, non-dominated points, and the
plot of every pair of objectives (`rlhfkit pareto`). Plain Python; matplotlib only inside the plot.

Every objective is maximised (a reward to be minimised enters with a negative weight, e.g.
`length=-1`). Point q dominates point p when q is at least as good as p in every objective and
strictly better in one; the front is the set of points no other point dominates.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence


def dominates(q: Sequence[float], p: Sequence[float]) -> bool:
    """True when q is ≥ p in every objective and > p in at least one (all maximised)."""
    if len(q) != len(p):
        raise ValueError(f"points of different dimension: {len(q)} and {len(p)}")
    return all(a >= b for a, b in zip(q, p)) and any(a > b for a, b in zip(q, p))


def non_dominated(points: Sequence[Sequence[float]]) -> list[bool]:
    """For each point, True when no other point dominates it (equal points do not dominate each
    other, so duplicates on the front are all kept). O(N² · D), fine for a sweep's few dozen points."""
    return [not any(dominates(q, p) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def weight_grid(n_objectives: int, steps: int) -> list[tuple[float, ...]]:
    """Every weight vector with entries in {0, 1/(steps−1), …, 1} summing to 1: the simplex grid.
    Two objectives, steps 5: (0, 1), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1, 0); three, steps
    3: the 6 vectors with halves. Ordered by the first weight, then the second, …"""
    if n_objectives < 1 or steps < 2:
        raise ValueError("need at least one objective and two steps")
    m = steps - 1

    def compositions(k: int, total: int):
        if k == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in compositions(k - 1, total - first):
                yield (first, *rest)

    return [tuple(c / m for c in comp) for comp in compositions(n_objectives, m)]


def _label(point: dict) -> str:
    return "/".join(f"{w:g}" for w in point["weights"].values())


def pareto_figure(result: dict):
    """One panel per pair of objectives: every point with its 95% CIs (error bars), the
    non-dominated points filled and joined in order of the first objective, the base policy as a
    grey cross, each point labelled with its weights. `result` is pareto.json."""
    from matplotlib.figure import Figure

    names = result["objectives"]
    pairs = list(combinations(names, 2))
    fig = Figure(figsize=(5.2 * len(pairs), 4.2))
    for i, (x_name, y_name) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        for p in result["points"]:
            x, y = p["objectives"][x_name], p["objectives"][y_name]
            ax.errorbar(x["mean"], y["mean"], xerr=[[x["mean"] - x["ci_low"]], [x["ci_high"] - x["mean"]]],
                        yerr=[[y["mean"] - y["ci_low"]], [y["ci_high"] - y["mean"]]],
                        fmt="o", mfc="C0" if p["non_dominated"] else "white",
                        color="C0", markersize=5, elinewidth=0.7, capsize=2)
            ax.annotate(_label(p), (x["mean"], y["mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = sorted((p for p in result["points"] if p["non_dominated"]), key=lambda p: p["objectives"][x_name]["mean"])
        ax.plot([p["objectives"][x_name]["mean"] for p in front], [p["objectives"][y_name]["mean"] for p in front],
                "-", color="C0", linewidth=1, alpha=0.6, label="non-dominated (this pair: all objectives)")
        base = result.get("base") or {}
        if x_name in base and y_name in base:
            ax.plot(base[x_name]["mean"], base[y_name]["mean"], "x", color="grey", markersize=8, label="base policy")
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    weights = "/".join(names)
    fig.suptitle(f"{result['algo']} per weight mix ({weights}); filled = non-dominated, bars = 95% CI", fontsize=10)
    return fig


def save_pareto_figure(result: dict, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = pareto_figure(result)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return Path(path)


def pareto_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the sweep's table: weights, each objective's mean [95% CI], KL, front."""
    names = result["objectives"]

    def ci(d: dict) -> str:
        return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"

    header = ["weights (" + " / ".join(names) + ")", *names, "KL (nats)", "non-dominated"]
    rows = []
    base = result.get("base") or {}
    if base:
        rows.append(["base policy", *[ci(base[n]) if n in base else "" for n in names], "0", ""])
    for p in result["points"]:
        kl = p.get("kl")
        kl_text = "" if kl is None else (f"≤ {kl:.2f}" if p.get("kl_is_bound") else f"{kl:.2f}")
        rows.append([_label(p), *[ci(p["objectives"][n]) for n in names], kl_text, "yes" if p["non_dominated"] else ""])
    return header, rows
