"""Over-optimization sweeps read as curves: points (d = sqrt(KL), score) fitted with Gao et al.'s
forms (algorithms/overopt.py), a user's points file for `rlhfkit overopt fit`, and the plot and
report section of an `rlhfkit overopt run`. Plain Python over the fits (torch comes in only as the
import of the algorithms package).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from rlhfkit.algorithms.overopt import FORMS, extrapolation_check, fit_overoptimization
from rlhfkit.data.loaders import iter_rows
from rlhfkit.data.schemas import DataError, RowError


def _number(row: dict, name: str) -> float:
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowError(name, f"expected a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise RowError(name, f"expected a finite number, got {value}")
    return float(value)


def _point(row) -> tuple[float, float]:
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict):
        raise RowError("(row)", "expected an object with `d` or `kl`, and `score`")
    if "d" in row and row["d"] is not None:
        d = _number(row, "d")
        if d < 0:
            raise RowError("d", f"d = sqrt(KL) cannot be negative, got {d}")
    elif "kl" in row and row["kl"] is not None:
        kl = _number(row, "kl")
        if kl < 0:
            raise RowError("kl", f"a KL cannot be negative, got {kl}")
        d = math.sqrt(kl)
    else:
        raise RowError("d", "missing (give `d` = sqrt(KL), or `kl` in nats)")
    if "score" not in row or row["score"] is None:
        raise RowError("score", "missing")
    return d, _number(row, "score")


def load_points(path: str | Path) -> tuple[list[float], list[float]]:
    """(d, score) of every row of a JSONL/JSON/CSV/Parquet file: `d` (= sqrt(KL)) or `kl`
    (nats), and `score`. A bad row stops with one DataError naming the file, row and field."""
    d, score = [], []
    for rowno, row in iter_rows(path):
        try:
            x, y = _point(row)
        except RowError as err:
            raise DataError(f"{path}: row {rowno}: {err}") from None
        d.append(x)
        score.append(y)
    if len(d) < 2:
        raise DataError(f"{path}: {len(d)} point(s); a fit needs at least two")
    return d, score


def recentred(d: Sequence[float], score: Sequence[float]) -> tuple[list[float], float]:
    """Scores minus the mean score at d = 0 (the initial policy), so the fitted R(0) = 0 holds;
    unchanged when no point sits at d = 0. Returns (scores, the offset subtracted)."""
    at_zero = [y for x, y in zip(d, score) if x == 0]
    offset = sum(at_zero) / len(at_zero) if at_zero else 0.0
    return [y - offset for y in score], offset


def fit_points(d: Sequence[float], score: Sequence[float], form: str) -> dict:
    """`rlhfkit overopt fit`'s answer: alpha, beta, r2, d_peak, score_peak of `form` on the
    recentred scores, with the offset and the number of points."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}")
    scores, offset = recentred(d, score)
    fit = fit_overoptimization(d, scores, form)
    return {**fit.as_dict(), "recentred_by": offset}


def curve_fits(points: Sequence[dict], form: str, extrapolate_from: float | None = None) -> dict:
    """Fits of gold and proxy (each recentred on its d = 0 point) of one curve's points
    [{"d", "gold", "proxy"}, ...], and, with `extrapolate_from`, the extrapolation check of the
    gold fit (fit on d ≤ extrapolate_from, predict beyond). A fit that cannot be made (too few
    points) is reported as {"error": ...}."""
    d = [p["d"] for p in points]
    out: dict = {}
    for key in ("gold", "proxy"):
        scores, offset = recentred(d, [p[key] for p in points])
        try:
            out[key] = {**fit_overoptimization(d, scores, form).as_dict(), "recentred_by": offset}
        except ValueError as err:
            out[key] = {"error": str(err)}
        if key == "gold" and extrapolate_from is not None:
            try:
                out["extrapolation"] = extrapolation_check(d, scores, form, extrapolate_from)
            except ValueError as err:
                out["extrapolation"] = {"error": str(err)}
    return out


def _fitted(fit: dict, form: str, d_max: float, offset: float) -> tuple[list[float], list[float]]:
    xs = [d_max * i / 60 for i in range(61)]
    g = (lambda x: x) if form == "bon" else (lambda x: math.log(x) if x > 0 else 0.0)
    return xs, [offset + x * (fit["alpha"] - fit["beta"] * g(x)) for x in xs]


def overopt_figure(result: dict):
    """Gold (solid) and proxy (dashed) against d = sqrt(KL) for best-of-n and each RL run, with
    the fitted curves (dotted); one colour per proxy. `result` is overopt.json."""
    from matplotlib.figure import Figure

    panels = [("best-of-n", "bon", result.get("bon", {}).get("curves", []))]
    panels += [(f"RL ({run['algo']}, β = {run['kl_coef']:g})", "rl", [run]) for run in result.get("rl", [])]
    fig = Figure(figsize=(5.0 * len(panels), 3.8))
    labels = sorted({c["proxy_labels"] for _, _, curves in panels for c in curves})
    colours = {n: f"C{i}" for i, n in enumerate(labels)}
    for i, (title, form, curves) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for c in curves:
            colour, pts = colours[c["proxy_labels"]], c["points"]
            d = [p["d"] for p in pts]
            ax.plot(d, [p["gold"] for p in pts], "o-", color=colour, markersize=3, label=f"gold, {c['proxy_labels']} labels")
            ax.plot(d, [p["proxy"] for p in pts], "s--", color=colour, markersize=3, alpha=0.6, label="proxy")
            for key, style in (("gold", ":"), ("proxy", ":")):
                fit = c.get("fits", {}).get(key, {})
                if "alpha" in fit and d:
                    xs, ys = _fitted(fit, form, max(d) * 1.15, fit["recentred_by"])
                    ax.plot(xs, ys, style, color=colour, linewidth=1.0, alpha=0.9 if key == "gold" else 0.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("d = sqrt(KL) (sqrt nats)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_ylabel("score (gold: task scorer; proxy: RM)")
            ax.legend(fontsize=7)
    fig.suptitle("Reward over-optimization: gold (solid) and proxy (dashed) with fits (dotted)", fontsize=10)
    return fig


def save_overopt_figure(result: dict, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = overopt_figure(result)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return Path(path)


def fit_rows(result: dict) -> list[list[str]]:
    """Rows of the fits table: curve, proxy labels, score, α, β, R², d*, R*."""
    def fmt(x, spec="{:.3f}"):
        if x is None or isinstance(x, str):  # None: no peak; a string: inf/nan as summary.json writes them
            return "—" if x is None else x
        return spec.format(x) if math.isfinite(x) else "∞"

    curves = [("best-of-n", c) for c in result.get("bon", {}).get("curves", [])]
    curves += [(f"RL {r['algo']} β={r['kl_coef']:g}", r) for r in result.get("rl", [])]
    rows = []
    for name, c in curves:
        for key in ("gold", "proxy"):
            f = c.get("fits", {}).get(key, {})
            if "alpha" in f:
                rows.append([name, str(c["proxy_labels"]), key, fmt(f["alpha"]), fmt(f["beta"]), fmt(f["r2"]),
                             fmt(f["d_peak"], "{:.2f}"), fmt(f["score_peak"])])
            else:
                rows.append([name, str(c["proxy_labels"]), key, f.get("error", "no fit"), "", "", "", ""])
    return rows


FIT_HEADER = ["curve", "proxy labels", "score", "α", "β", "R²", "d* (peak)", "R* (peak)"]
