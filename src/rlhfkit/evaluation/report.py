"""report.html for any run folder, built from its files alone.

Reads config.yaml, metrics.jsonl, summary.json, samples.jsonl (and an eval run's samples/*.jsonl)
of a quickstart, rl, sft, dpo, rm, compare or eval run — finished or still running (a missing
summary or a half-written last log line is reported, not fatal) — and writes one self-contained
HTML file: the headline numbers with their CIs, win rates and leaderboards, training curves
(PNG plots embedded as base64 and also saved under plots/), samples base vs final side by side,
stage times and the config. Every text from a model or a file is HTML-escaped; the page has no
script and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from rlhfkit.evaluation.pareto import pareto_figure, pareto_rows
from rlhfkit.evaluation.tables import format_kl, format_kl_ci

PLOT_GROUPS: list[tuple[str, Any]] = [
    ("Reward: score (proxy) and gold per component", lambda k: k.startswith("reward/") and not k.endswith("_std")),
    ("KL to the reference by estimator (nats)", lambda k: (k.startswith("kl/") and k != "kl/coef") or k.startswith("kl_proxy/")),
    ("KL coefficient β", lambda k: k == "kl/coef"),
    ("Policy entropy (nats per token)", lambda k: k == "policy/entropy"),
    ("Response length (tokens)", lambda k: k == "response/length_mean"),
    ("Losses", lambda k: (k == "loss" or k.startswith("loss/") or k.endswith("_loss")) and "clipfrac" not in k),
    ("Clip fraction (policy, value)", lambda k: "clipfrac" in k),
    ("Value head", lambda k: k.startswith("value/")),
    ("Accuracy (reward model / implicit reward)", lambda k: k.endswith("accuracy")),
    ("DPO implicit rewards and log-probs", lambda k: (k.startswith("rewards/") or k.startswith("logps/")) and not k.endswith("accuracy")),
    ("Held-out evaluation", lambda k: k.startswith("eval/") and not k.endswith("accuracy") and "loss" not in k),
    ("Seconds per step", lambda k: k.startswith("time/")),
]
MAX_SAMPLE_PROMPTS = 12


class RunFiles:
    """What a run folder holds, read tolerantly (a run in progress has no summary yet)."""

    def __init__(self, path: Path):
        self.path = path
        self.notes: list[str] = []
        self.config_text = _read_text(path / "config.yaml")
        self.summary = self._json(path / "summary.json") or {}
        self.metrics = self._jsonl(path / "metrics.jsonl")
        self.samples = self._jsonl(path / "samples.jsonl")
        for extra in sorted((path / "samples").glob("*.jsonl")) if (path / "samples").is_dir() else []:
            self.samples += [{"method": extra.stem, **row} for row in self._jsonl(extra)]
        if not self.summary:
            self.notes.append("no summary.json yet: the run is still going (or stopped early); "
                              "this report shows what its logs hold so far")

    def _json(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            self.notes.append(f"{path.name} is not valid JSON (being rewritten?) and was left out")
            return None

    def _jsonl(self, path: Path) -> list[dict]:
        rows, bad = [], 0
        for line in _read_text(path).splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1
        if bad:
            self.notes.append(f"{path.name}: {bad} unreadable line(s) left out (a line still being written?)")
        return [r for r in rows if isinstance(r, dict)]

    @property
    def kind(self) -> str:
        s, cfg = self.summary, self.config_text
        loop = loop_kind(s, cfg)
        if loop:
            return loop
        if s.get("command") == "overopt" or "label_counts:" in cfg:
            return "overopt"
        if "reward_model" in s and "ppo" in s or "rm_prompts:" in cfg:
            return "quickstart"
        if "rows" in s or "sample_budget:" in cfg:
            return "compare"
        if s.get("command") in ("sft", "dpo", "eval"):
            return s["command"]
        if "algo" in s or "algo:" in cfg:
            return "rl"
        if "centering" in s or "center_on:" in cfg:
            return "rm"
        if "beta:" in cfg:
            return "dpo"
        return "sft" if "packing:" in cfg else "run"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = "{:+.3f}") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _esc(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt.format(value) if isinstance(value, float) else str(value)


def _ci(d: dict, key: str = "mean", fmt: str = "{:+.3f}") -> str:
    """'m [low, high]' for a dict holding a point estimate and its 95% CI."""
    return f"{fmt.format(d[key])} [{fmt.format(d['ci_low'])}, {fmt.format(d['ci_high'])}]"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_ci(d: Any) -> bool:
    return isinstance(d, dict) and "ci_low" in d and "ci_high" in d and ("mean" in d or "win_rate" in d)


def _table(header: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (cells built from escaped parts)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    cell = (lambda c: c) if raw else _esc
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flatten(summary: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, text) for every number or string of the summary; CI dicts become 'm [l, h]'."""
    out: list[tuple[str, str]] = []
    if _is_ci(summary):
        return [(prefix, _ci(summary, "mean" if "mean" in summary else "win_rate"))]
    if isinstance(summary, dict):
        for key, value in summary.items():
            out += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(summary, list):
        if all(isinstance(v, (int, float, str)) for v in summary) and len(summary) <= 12:
            out.append((prefix, ", ".join(_num(v, "{:.4g}") for v in summary)))
        else:
            for i, value in enumerate(summary[:50]):
                out += flatten(value, f"{prefix}[{i}]")
    elif summary is not None:
        out.append((prefix, _num(summary, "{:.4g}")))
    return out


# ---------------------------------------------------------------------------------------------
# headline tables


def _headline_quickstart(s: dict) -> str:
    ev = s.get("evaluation") or {}
    rows = []
    for name, label in (("gold", "gold reward"), ("proxy", "proxy reward (RM)")):
        if name in ev:
            e = ev[name]
            rows.append([label, _ci(e["base"]), _ci(e["final"]), _ci(e["improvement"])])
    if _is_ci(ev.get("kl_to_reference")):
        k3 = ev.get("kl_k3_to_reference")
        rows.append(["KL to reference (nats)", "0", format_kl_ci(ev["kl_to_reference"], k3 if _is_ci(k3) else None), ""])
    if "response_length" in ev:
        rl = ev["response_length"]
        rows.append(["response tokens", f"{rl['base']:.1f}", f"{rl['final']:.1f}", f"{rl['final'] - rl['base']:+.1f}"])
    return _table(["", "base", "final", "final − base (95% CI)"], rows) if rows else ""


def _headline_rl(s: dict) -> str:
    before, after = s.get("before") or {}, s.get("after") or {}
    rows = []
    for key in ("reward", "gold"):
        if key in after:
            rows.append([key, _ci(before[key]) if key in before else "", _ci(after[key])])
    for key, fmt in (("distinct_2", "{:.3f}"), ("words_mean", "{:.1f}")):
        if key in after:
            rows.append([key.replace("_", " "), _num(before.get(key, ""), fmt), _num(after[key], fmt)])
    if _is_number(after.get("kl_to_reference")):
        k3 = after.get("kl_k3_to_reference")
        rows.append(["KL to reference (nats)", "", format_kl(after["kl_to_reference"], k3 if _is_number(k3) else None)])
    return _table(["", "before", "after"], rows) if rows else ""


def _headline_compare(s: dict) -> str:
    rows = []
    for r in s.get("rows", []):
        k1, k3 = r.get("kl_to_reference"), r.get("kl_k3_to_reference")
        kl = format_kl(k1, k3 if _is_number(k3) else None, bound=bool(r.get("kl_is_bound"))) if _is_number(k1) else ""
        rows.append([r["method"], _ci(r["gold"]) if _is_ci(r.get("gold")) else "", kl,
                     _num(r.get("distinct_2"), "{:.3f}"), str(r.get("train_samples", "")), _num(r.get("seconds"), "{:.0f}")])
    return _table(["method", "gold reward (95% CI)", "KL to ref (nats)", "distinct-2", "train samples", "seconds"], rows)


def _headline_eval(s: dict) -> str:
    policies = s.get("policies") or {}
    rows = [[name, str(p.get("spec", "")), str(p.get("rows", "")), _ci(p["gold"]) if _is_ci(p.get("gold")) else "-"]
            for name, p in policies.items()]
    out = _table(["policy", "spec", "samples", "gold score (95% CI)"], rows) if rows else ""
    metrics = s.get("metrics") or {}
    keys = [k for k in ("bleu", "rouge1", "rouge2", "rougeL", "meteor", "distinct_1", "distinct_2", "distinct_3", "self_bleu",
                        "words_mean", "unigram_entropy_bits", "perplexity", "token_entropy_nats")
            if any(k in m for m in metrics.values())]
    if metrics and keys:
        out += "<h3>Text metrics</h3>" + _table(
            ["samples", *keys, "gold (95% CI)"],
            [[name, *[_num(m.get(k, "-"), "{:.3f}") for k in keys], _ci(m["gold"]) if _is_ci(m.get("gold")) else "-"]
             for name, m in metrics.items()])
    return out


def _headline(run: RunFiles) -> str:
    builders = {"quickstart": _headline_quickstart, "rl": _headline_rl, "compare": _headline_compare,
                "eval": _headline_eval}
    table = builders[run.kind](run.summary) if run.kind in builders and run.summary else ""
    return f"<h2>Headline</h2>{table}" if table else ""


def _win_rates(s: dict) -> str:
    """Win rates ({a, b, judge, win_rate, ci_low, ci_high, wins, ties, losses, lc_win_rate})."""
    items = ([s["win_rate"]] if isinstance(s.get("win_rate"), dict) else []) + list(s.get("win_rates") or [])
    rows = []
    for w in items:
        lc = f"{w['lc_win_rate']:.1%}" if w.get("lc_win_rate") is not None else "-"
        rows.append([f"{w.get('a', 'A')} vs {w.get('b', 'B')}", str(w.get("judge", "")), _ci(w, "win_rate", "{:.1%}"),
                     f"{w['wins']} / {w['ties']} / {w['losses']}", lc, str(w.get("n", ""))])
    if not rows:
        return ""
    return ("<h2>Win rates</h2><p>Ties count ½; 95% CI by paired bootstrap over prompts; LC = length-controlled "
            "(AlpacaEval 2: logistic fit with a length term, read at zero).</p>"
            + _table(["comparison", "judge", "win rate (95% CI)", "wins / ties / losses", "LC win rate", "pairs"], rows))


def _leaderboard(s: dict, plots: "Plots") -> str:
    board = s.get("leaderboard")
    if not isinstance(board, dict) or not board.get("ratings"):
        return ""
    baseline = board.get("baseline")
    rows = [[str(rank), name, f"{r['rating']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}]",
             f"{board['elo'].get(name, float('nan')):.0f}", str(r["battles"])]
            + ([_ci(r["win_rate_over_baseline"], "win_rate", "{:.1%}") if _is_ci(r.get("win_rate_over_baseline")) else "-"]
               if baseline else [])
            for rank, (name, r) in enumerate(board["ratings"].items(), start=1)]
    judge = f" judged by {_esc(board['judge'])}" if board.get("judge") else ""
    return (f"<h2>Leaderboard</h2><p>Bradley–Terry maximum-likelihood ratings on the Elo scale (mean 1000), "
            f"95% CI from {board.get('bootstrap_resamples', '?')} bootstrap refits; online Elo (K = 4) beside it; "
            f"{board.get('battles', '?')} battles{judge}.</p>"
            + _table(["rank", "policy", "BT rating (95% CI)", "online Elo", "battles"]
                     + ([f"win rate over {baseline} (95% CI)"] if baseline else []), rows)
            + plots.leaderboard(board))


def _overopt(s: dict, plots: "Plots") -> str:
    """An `rlhfkit overopt run`: gold and proxy against sqrt(KL) with the fits, and the checks."""
    if s.get("command") != "overopt" or not isinstance(s.get("bon"), dict):
        return ""
    # function-local: evaluation.overopt imports algorithms/, hence torch (`rlhfkit report --help` stays light)
    from rlhfkit.evaluation.overopt import FIT_HEADER, fit_rows, overopt_figure

    checks = s.get("checks") or {}
    small = checks.get("bon_smallest_proxy") or {}
    facts = [["best-of-n gold fits R² ≥ 0.9", _esc(checks.get("bon_r2_at_least_0.9"))],
             ["more labels → higher or later gold peak", _esc(checks.get("more_labels_higher_or_later_peak"))],
             [f"smallest proxy ({_esc(small.get('labels'))} labels): gold flattens or falls", _esc(small.get("gold_flattens_or_falls"))],
             ["… while its proxy rises to the largest n", _esc(small.get("proxy_rises_to_the_end"))]]
    facts += [[f"RL β={r['kl_coef']:g}, smallest proxy: gold peak before the end, proxy rising",
               f"{_esc(r['inside'])}, {_esc(r['proxy_rises_to_the_end'])}"] for r in checks.get("rl_smallest_proxy", [])]
    return ("<h2>Reward over-optimization</h2><p>Gold (the task's scorer) and proxy (reward models trained on "
            "gold-labelled pairs) against d = sqrt(KL); best-of-n from one pool per prompt with the unbiased "
            "estimator, d = sqrt(log n − (n−1)/n); fits R(d) = d(α − βd) (best-of-n) and d(α − β log d) (RL) on "
            "scores recentred at the initial policy (Gao et al. 2023).</p>"
            + plots._img(overopt_figure(s), "overopt", "gold and proxy reward against sqrt KL with fitted curves")
            + _table(FIT_HEADER, fit_rows(s)) + _table(["check", "result"], facts, raw=True))


# ---------------------------------------------------------------------------------------------
# plots


class Plots:
    """matplotlib figures (Agg canvas, no pyplot state) → PNGs in plots/ and <img> tags with base64 data."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: list[Path] = []

    def _img(self, fig, slug: str, alt: str) -> str:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        data = buffer.getvalue()
        self.folder.mkdir(exist_ok=True)
        path = self.folder / f"{slug}.png"
        path.write_bytes(data)
        self.files.append(path)
        return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    def curves(self, title: str, series: dict[str, tuple[list[float], list[float]]]) -> str:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.add_subplot()
        for label, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o" if len(xs) < 3 else None, markersize=3, linewidth=1.4, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, ncol=2 if len(series) > 5 else 1)
        return self._img(fig, re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"), title)

    def leaderboard(self, board: dict) -> str:
        from matplotlib.figure import Figure

        names = list(board["ratings"])
        r = board["ratings"]
        fig = Figure(figsize=(6.4, 0.5 + 0.4 * len(names)))
        ax = fig.add_subplot()
        y = list(range(len(names)))[::-1]
        ax.errorbar([r[n]["rating"] for n in names], y, fmt="o",
                    xerr=[[r[n]["rating"] - r[n]["ci_low"] for n in names], [r[n]["ci_high"] - r[n]["rating"] for n in names]])
        ax.set_yticks(y, names)
        ax.axvline(1000, color="grey", linewidth=0.8)
        ax.set_title("Bradley–Terry rating with 95% bootstrap CI", fontsize=10)
        ax.grid(alpha=0.3)
        return self._img(fig, "leaderboard", "leaderboard ratings with confidence intervals")


def training_curves(metrics: list[dict], plots: Plots) -> str:
    """One figure per group of PLOT_GROUPS; a series per (stage or method, metric)."""
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    counters: dict[str, int] = {}
    for row in metrics:
        source = str(row.get("method") or row.get("stage") or "train")
        if row.get("stage") == "compare":
            continue  # compare's per-method result rows, not a curve
        step = row.get("step")
        counters[source] = counters.get(source, 0) + 1
        x = float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else float(counters[source])
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            for title, wanted in PLOT_GROUPS:
                if wanted(key):
                    xs, ys = series.setdefault(title, {}).setdefault(f"{source}: {key}", ([], []))
                    xs.append(x)
                    ys.append(float(value))
                    break
    figures = [plots.curves(title, series[title]) for title, _ in PLOT_GROUPS if title in series]
    return f"<h2>Training curves</h2><div class=plots>{''.join(figures)}</div>" if figures else ""


# ---------------------------------------------------------------------------------------------
# samples, times, config, page


def _sample_columns(rows: list[dict]) -> tuple[list[str], dict[str, dict[str, tuple[str, Any]]]]:
    """(columns, {prompt: {column: (text, gold or None)}}): base vs final, one column per method/policy,
    or one column of responses."""
    table: dict[str, dict[str, tuple[str, Any]]] = {}
    columns: list[str] = []
    for row in rows:
        prompt = str(row.get("prompt", ""))
        if "final" in row:
            cells = {"base": (row.get("base", ""), row.get("gold_base")), "final": (row["final"], row.get("gold_final"))}
        elif "method" in row or "policy" in row:
            name = str(row.get("method") or row.get("policy"))
            cells = {name: (row.get("response", ""), row.get("gold"))}
        else:
            cells = {k: (row[k], None) for k in ("base", "response") if k in row}
        slot = table.setdefault(prompt, {})
        for column, cell in cells.items():
            if column not in columns:
                columns.append(column)
            slot.setdefault(column, cell)  # the first sample of each prompt and column
    return columns, table


def _samples(rows: list[dict]) -> str:
    if not rows:
        return ""
    columns, table = _sample_columns(rows)
    if "base" in columns:
        columns = ["base"] + [c for c in columns if c != "base"]
    body = []
    for prompt, cells in list(table.items())[:MAX_SAMPLE_PROMPTS]:
        tds = []
        for c in columns:
            text, gold = cells.get(c, ("", None))
            score = f'<span class=score>gold {gold:+.2f}</span> ' if isinstance(gold, (int, float)) else ""
            tds.append(f"<td>{score}{_esc(text)}</td>")
        body.append(f"<tr><td class=prompt>{_esc(prompt)}</td>{''.join(tds)}</tr>")
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["prompt", *columns])
    return (f"<h2>Samples</h2><p>First sample of the first {min(len(table), MAX_SAMPLE_PROMPTS)} of {len(table)} "
            f"prompts, side by side.</p><table class=samples><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _stage_times(s: dict) -> str:
    if isinstance(s.get("stage_seconds"), dict):
        rows = [[k, f"{v:.1f}"] for k, v in s["stage_seconds"].items()]
    elif s.get("rows"):
        rows = [[r["method"], f"{r.get('seconds', 0):.1f}"] for r in s["rows"]]
    elif isinstance(s.get("policies"), dict):
        rows = [[f"sample {name}", f"{p.get('seconds', 0):.1f}"] for name, p in s["policies"].items()]
        rows += [[k, f"{v:.1f}"] for k, v in _seconds(s)]
    else:
        rows = [[k, f"{v:.1f}"] for k, v in _seconds(s)]
    return f"<h2>Stage times</h2>{_table(['stage', 'seconds'], rows)}" if rows else ""


def _seconds(s: dict) -> list[tuple[str, float]]:
    return [(k, float(v)) for k, v in s.items() if k.endswith("seconds") and isinstance(v, (int, float))]


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#1d2430;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #d8dee8;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #d8dee8;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#f1f4f8} .samples td{max-width:28em;white-space:pre-wrap} .prompt{color:#4a5568;font-style:italic}
.score{display:inline-block;background:#eef3ff;border-radius:3px;padding:0 .3em;font-size:.8em;color:#334}
.plots{display:flex;flex-wrap:wrap;gap:.8em} .plots img{max-width:100%;width:580px;border:1px solid #e3e7ee}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em} pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}
.meta{color:#5a6475}
"""


def render(run: RunFiles, plots: Plots) -> str:
    s = run.summary
    notes = "".join(f"<p class=note>{_esc(n)}</p>" for n in run.notes)
    parts = [_headline(run), _overopt(s, plots), loops_section(s, plots), _win_rates(s), _leaderboard(s, plots), training_curves(run.metrics, plots),
             _samples(run.samples), _episodes(run.samples), _stage_times(s)]
    numbers = flatten(s)
    if numbers:
        parts.append("<h2>All summary numbers</h2><details><summary>summary.json, flattened "
                     f"({len(numbers)} values)</summary>{_table(['key', 'value'], [list(n) for n in numbers])}</details>")
    if run.config_text:
        parts.append(f"<h2>Config</h2><pre>{_esc(run.config_text)}</pre>")
    title = f"rlhfkit {run.kind} run: {run.path.name}"
    meta = f"{_esc(run.path)} · report built {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>"
            f"<body><h1>{_esc(title)}</h1><p class=meta>{meta}</p>{notes}{''.join(p for p in parts if p)}</body></html>")


def build_report(run_dir: str | Path) -> Path:
    """Write `run_dir`/report.html (atomically) and the plots it embeds under `run_dir`/plots/."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist")
    run = RunFiles(path)
    if not (run.config_text or run.summary or run.metrics or run.samples):
        raise FileNotFoundError(f"{path} holds no run files (config.yaml, metrics.jsonl, summary.json, samples.jsonl)")
    page = render(run, Plots(path / "plots"))
    out = path / "report.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def write_report(run_dir: str | Path, echo: Callable[[str], None] | None = None) -> Path | None:
    """`build_report` at the end of a run: a report that cannot be built is a warning, not a failed
    run. `echo` gets the one status line (default: stderr, so that a command's --json stdout stays JSON)."""
    say = echo or (lambda line: print(line, file=sys.stderr))
    try:
        out = build_report(run_dir)
    except Exception as err:  # noqa: BLE001 - the run itself succeeded; say why the report did not
        say(f"[rlhfkit] warning: report.html not written: {type(err).__name__}: {err}")
        return None
    say(f"[rlhfkit] report: {out}")
    return out


# ---------------------------------------------------------------------------------------------
# the closed loops: rft, iterate, pareto (issue 14)


def loop_kind(s: dict, cfg: str) -> str:
    """'rft', 'iterate' or 'pareto' for a run of those commands (by its summary, or while it runs
    by an option only its config has), else ''."""
    if s.get("command") in ("rft", "iterate", "pareto"):
        return s["command"]
    for option, kind in (("prompts_per_round:", "rft"), ("labeler:", "iterate"), ("weight_steps:", "pareto")):
        if option in cfg:
            return kind
    return ""


def _round_figure(plots: "Plots", title: str, slug: str, series: dict[str, list[dict]]) -> str:
    """Per-round means with their 95% CIs as error bars, one line per series (round 0 = the base)."""
    from matplotlib.figure import Figure

    series = {label: points for label, points in series.items() if points}
    if not series:
        return ""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    for label, points in series.items():
        xs = [p["round"] for p in points]
        ys = [p["mean"] for p in points]
        err = [[p["mean"] - p.get("ci_low", p["mean"]) for p in points], [p.get("ci_high", p["mean"]) - p["mean"] for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", markersize=4, capsize=3, linewidth=1.3, label=label)
    ax.set_xlabel("round (0: the initial policy)")
    ax.set_xticks(sorted({p["round"] for pts in series.values() for p in pts}))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return plots._img(fig, slug, title)


def _rft_section(s: dict, plots: "Plots") -> str:
    rows, series = [], {"held-out reward": [], "held-out gold": []}
    base = s.get("base") or {}
    if _is_ci(base.get("reward")):
        rows.append(["base", "", _ci(base["reward"]), _ci(base["gold"]), "0"])
        series["held-out reward"].append({"round": 0, **base["reward"]})
        series["held-out gold"].append({"round": 0, **base["gold"]})
    for r in s.get("rounds", []):
        ev = r["evaluation"]
        rows.append([f"round {r['round']}", _num(r["winner_reward_mean"]), _ci(ev["reward"]["final"]), _ci(ev["gold"]["final"]),
                     format_kl(ev["kl_to_reference"]["mean"])])
        series["held-out reward"].append({"round": r["round"], **ev["reward"]["final"]})
        series["held-out gold"].append({"round": r["round"], **ev["gold"]["final"]})
    return ("<h2>Rejection-sampling fine-tuning</h2><p>Each round: best-of-" + _esc(s.get("n")) + " against "
            + _esc(s.get("reward")) + " on new training prompts, SFT on the winners, then the held-out prompts "
            "(95% bootstrap CIs; KL to the base policy in nats).</p>"
            + _table(["", "winners' reward (train)", "held-out reward (95% CI)", "gold (95% CI)", "KL to base"], rows)
            + _round_figure(plots, "RFT: held-out reward and gold per round", "rft-rounds", series))


def _iterate_section(s: dict, plots: "Plots") -> str:
    rows = []
    series: dict[str, list[dict]] = {"gold": [], "proxy (that round's RM)": []}
    kl, acc = {"KL to the initial policy (nats)": []}, {"previous RM on the fresh pairs": [], "new RM held-out": []}
    base = s.get("base") or {}
    if "gold_mean" in base:
        series["gold"].append({"round": 0, "mean": base["gold_mean"]})
        kl["KL to the initial policy (nats)"].append({"round": 0, "mean": 0.0})
    for r in s.get("rounds", []):
        old = (r.get("previous_rm_on_fresh") or {}).get("accuracy_vs_labels")
        new = (r.get("reward_model") or {}).get("eval_accuracy_vs_labels")
        rows.append([f"round {r['round']}", _ci(r["gold"]["final"]), _ci(r["proxy"]["final"]),
                     format_kl_ci(r["kl_to_initial"], r.get("kl_k3_to_initial")),
                     f"{old:.1%}" if _is_number(old) else "-", f"{new:.1%}" if _is_number(new) else "-",
                     str(r["labels_used"])])
        series["gold"].append({"round": r["round"], **r["gold"]["final"]})
        series["proxy (that round's RM)"].append({"round": r["round"], **r["proxy"]["final"]})
        kl["KL to the initial policy (nats)"].append({"round": r["round"], **r["kl_to_initial"]})
        for name, value in (("previous RM on the fresh pairs", old), ("new RM held-out", new)):
            if _is_number(value):
                acc[name].append({"round": r["round"], "mean": value})
    return ("<h2>Iterated online RLHF</h2><p>Labels by " + _esc(s.get("labeler")) + ", KL anchor "
            + _esc(s.get("anchor")) + ". Gold and proxy on held-out prompts with 95% CIs; the previous round's reward "
            "model scored on this round's fresh pairs (how far the policy moved from what it knew).</p>"
            + _table(["", "gold (95% CI)", "proxy (95% CI)", "KL to initial (nats)", "previous RM on fresh pairs",
                      "new RM held-out", "labels used"], rows)
            + "<div class=plots>" + _round_figure(plots, "Iterate: gold and proxy per round", "iterate-rewards", series)
            + _round_figure(plots, "Iterate: KL to the initial policy", "iterate-kl", kl)
            + _round_figure(plots, "Iterate: reward-model accuracy (labels)", "iterate-rm-accuracy",
                            {k: v for k, v in acc.items() if v}) + "</div>")


def _pareto_section(s: dict, plots: "Plots") -> str:
    header, rows = pareto_rows(s)
    return ("<h2>Pareto front</h2><p>Every weight mix of " + _esc(", ".join(s["objectives"])) + " optimised by "
            + _esc(s.get("algo")) + " and measured on " + _esc(s.get("eval_prompts")) + " held-out prompts (95% CIs); "
            + _esc(s.get("front_size")) + " of " + _esc(len(s["points"])) + " mixes are non-dominated.</p>"
            + plots._img(pareto_figure(s), "pareto", "objectives of every weight mix, the non-dominated ones filled")
            + _table(header, rows))


def loops_section(s: dict, plots: "Plots") -> str:
    """The section of an rft, iterate or pareto run ('' for any other run or one without results yet)."""
    builders = {"rft": (_rft_section, "rounds"), "iterate": (_iterate_section, "rounds"), "pareto": (_pareto_section, "points")}
    if s.get("command") not in builders:
        return ""
    build, key = builders[s["command"]]
    return build(s, plots) if s.get(key) else ""
# multi-turn episodes (rlhfkit rl --env): a few transcripts, turn by turn

MAX_EPISODES = 4


def _episode_turns(episode: dict) -> str:
    rows = []
    for turn in episode.get("turns", []):
        role = str(turn.get("role", ""))
        if role == "system":
            continue
        extra = []
        if "reward" in turn:
            extra.append(f"reward {float(turn['reward']):+.2f}")
        for call in turn.get("tool_calls", []):
            outcome = call.get("result", f"error: {call.get('error', '')}")
            extra.append(f"calc({call.get('expression', '')}) = {outcome}")
        note = f'<span class=score>{_esc("; ".join(extra))}</span> ' if extra else ""
        rows.append(f"<tr><td class=prompt>{_esc(role)}</td><td>{note}{_esc(turn.get('content', ''))}</td></tr>")
    return "".join(rows)


def _episodes(rows: list[dict]) -> str:
    """The first episodes of the final policy (and the base policy's episode on the same row)."""
    shown = [r for r in rows if isinstance(r.get("episode"), dict)][:MAX_EPISODES]
    if not shown:
        return ""
    parts = []
    for r in shown:
        for label, key in (("final", "episode"), ("base", "base_episode")):
            e = r.get(key)
            if not isinstance(e, dict):
                continue
            head = (f"{label}: return {float(e.get('return', 0)):+.2f}, {e.get('policy_turns', '?')} policy turns, "
                    f"{e.get('tool_calls', 0)} tool calls, ended: {e.get('ended', '')}")
            parts.append(f"<h3>{_esc(head)}</h3><table class=samples><tbody>{_episode_turns(e)}</tbody></table>")
    return (f"<h2>Episodes</h2><p>The first {len(shown)} held-out episodes, turn by turn (system prompts "
            f"hidden), with each policy turn's reward and tool calls.</p>{''.join(parts)}")

