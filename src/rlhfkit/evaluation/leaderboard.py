"""Leaderboards: battles between policies → Bradley–Terry ratings with bootstrap CIs + online Elo.

REFERENCES.md "Ratings of models (Chatbot Arena)". A battle is {"model_a", "model_b", "winner":
"a" | "b" | "tie"} (optionally with "prompt"). Ratings are on the Elo scale (400, base 10, mean
1000); the 95% CI of each rating comes from refitting on battles resampled with replacement
(percentiles 2.5 / 97.5). Online Elo (K = 4) over the battles in file order sits beside it.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Sequence

import numpy as np

from rlhfkit.algorithms.ratings import bradley_terry, online_elo, predicted_win_matrix
from rlhfkit.data.loaders import iter_rows
from rlhfkit.data.schemas import DataError, RowError
from rlhfkit.evaluation.winrate import preference_from_scores, score_win_rate

WINNER_SCORE = {"a": 1.0, "tie": 0.5, "b": 0.0}


def battles_from_preferences(model_a: str, model_b: str, prompts: Sequence[str], preferences: Sequence[float]) -> list[dict]:
    """One battle per judged pair: A wins when P(A ≻ B) > ½, B when < ½, a tie at ½."""
    winner = {1: "a", 0: "tie", -1: "b"}
    return [{"model_a": model_a, "model_b": model_b, "prompt": p,
             "winner": winner[(q > 0.5 + 1e-9) - (q < 0.5 - 1e-9)]} for p, q in zip(prompts, preferences)]


def schedule_pairs(names: Sequence[str], schedule: str = "round_robin", pairs_per_prompt: int = 1,
                   n_prompts: int = 0, seed: int = 0) -> list[tuple[int, str, str]]:
    """(prompt index, a, b) to judge. round_robin: every pair of policies on every prompt;
    sampled: `pairs_per_prompt` random pairs per prompt (Chatbot Arena's sampled battles)."""
    pairs = list(itertools.combinations(names, 2))
    if schedule == "round_robin":
        return [(i, a, b) for i in range(n_prompts) for a, b in pairs]
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        for a, b in rng.sample(pairs, min(pairs_per_prompt, len(pairs))):
            out.append((i, a, b) if rng.random() < 0.5 else (i, b, a))
    return out


def load_battles(path: str | Path) -> list[dict]:
    """Battles from a JSONL/JSON/CSV/Parquet file; a bad row stops with file, row and field."""
    battles = []
    for rowno, row in iter_rows(path):
        where = f"{path}: row {rowno}"
        if isinstance(row, RowError):
            raise DataError(f"{where}: field '{row.field}': {row.reason}")
        if not isinstance(row, dict):
            raise DataError(f"{where}: field '(row)': expected an object with model_a, model_b, winner")
        for key in ("model_a", "model_b"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"{where}: field '{key}': expected a model name, got {row.get(key)!r:.60}")
        if row.get("winner") not in WINNER_SCORE:
            raise DataError(f"{where}: field 'winner': expected \"a\", \"b\" or \"tie\", got {row.get('winner')!r:.60}")
        if row["model_a"] == row["model_b"]:
            raise DataError(f"{where}: field 'model_b': a model cannot battle itself ({row['model_a']!r})")
        battles.append(row)
    if not battles:
        raise DataError(f"{path}: no battles")
    return battles


def _index(battles: Sequence[dict]) -> tuple[list[str], list[tuple[int, int, float]]]:
    names = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    at = {n: i for i, n in enumerate(names)}
    return names, [(at[b["model_a"]], at[b["model_b"]], WINNER_SCORE[b["winner"]]) for b in battles]


def bootstrap_ratings(indexed: Sequence[tuple[int, int, float]], n_players: int, n_resamples: int, seed: int,
                      l2: float) -> np.ndarray:
    """(n_resamples, n_players) BT ratings refitted on battles drawn with replacement. Identical
    battles are fitted once with their count as weight, so a refit costs the number of distinct
    (a, b, outcome) triples, not the number of battles."""
    distinct = sorted(set(indexed))
    at = {t: k for k, t in enumerate(distinct)}
    codes = np.array([at[t] for t in indexed])
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, n_players))
    for r in range(n_resamples):
        counts = np.bincount(codes[rng.integers(0, len(codes), len(codes))], minlength=len(distinct))
        out[r] = bradley_terry(distinct, n_players, l2=l2, weights=counts.tolist())
    return out


def leaderboard(battles: Sequence[dict], n_resamples: int = 1000, seed: int = 0, l2: float = 1e-4,
                elo_k: float = 4.0) -> dict:
    """{"ratings": {name: {"rating", "ci_low", "ci_high", "battles", "win_rate"}}, "elo": {name: rating},
    "win_matrix": {a: {b: P(a beats b)}}, "battles": N}, players sorted by rating."""
    if not battles:
        raise DataError("a leaderboard needs at least one battle")
    names, indexed = _index(battles)
    ratings = bradley_terry(indexed, len(names), l2=l2)
    boot = bootstrap_ratings(indexed, len(names), n_resamples, seed, l2) if n_resamples else np.array([ratings])
    low, high = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    elo = online_elo(indexed, len(names), k=elo_k)
    played = [0] * len(names)
    scored = [0.0] * len(names)
    for i, j, s in indexed:
        played[i] += 1
        played[j] += 1
        scored[i] += s
        scored[j] += 1 - s
    order = sorted(range(len(names)), key=lambda k: -ratings[k])
    matrix = predicted_win_matrix(ratings)
    return {
        "ratings": {names[k]: {"rating": ratings[k], "ci_low": float(low[k]), "ci_high": float(high[k]),
                               "battles": played[k], "win_rate": scored[k] / played[k] if played[k] else None}
                    for k in order},
        "elo": {names[k]: elo[k] for k in order},
        "win_matrix": {names[a]: {names[b]: matrix[a][b] for b in order} for a in order},
        "battles": len(indexed),
        "bootstrap_resamples": n_resamples,
    }


def format_leaderboard(board: dict) -> str:
    """The markdown table of a leaderboard; with a `baseline`, a column of each policy's win
    rate over it (95% CI)."""
    baseline = board.get("baseline")
    extra = f" win rate over {baseline} (95% CI) |" if baseline else ""
    lines = ["| rank | policy | BT rating (95% CI) | online Elo | battles | score rate |" + extra,
             "|---|---|---|---|---|---|" + ("---|" if baseline else "")]
    for rank, (name, r) in enumerate(board["ratings"].items(), start=1):
        rate = f"{r['win_rate']:.1%}" if r["win_rate"] is not None else "-"
        line = (f"| {rank} | {name} | {r['rating']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}] | "
                f"{board['elo'][name]:.0f} | {r['battles']} | {rate} |")
        if baseline:
            over = r.get("win_rate_over_baseline")
            line += f" {over['win_rate']:.1%} [{over['ci_low']:.1%}, {over['ci_high']:.1%}] |" if over else " - |"
        lines.append(line)
    return "\n".join(lines)


def battles_from_scores(prompts: Sequence[str], scores: dict[str, Sequence[float]], tie_margin: float = 0.0) -> list[dict]:
    """Round-robin battles on every prompt from per-policy scores aligned on `prompts` (the higher
    score wins, within `tie_margin` a tie)."""
    battles = []
    for a, b in itertools.combinations(list(scores), 2):
        prefs = [preference_from_scores(x, y, tie_margin) for x, y in zip(scores[a], scores[b])]
        battles += battles_from_preferences(a, b, prompts, prefs)
    return battles


def gold_rankings(prompts: Sequence[str], texts: dict[str, list[str]], gold_fn, seed: int = 0,
                  baseline: str = "base") -> dict:
    """For a comparison of policies on the same prompts (one response each): the gold-judged
    win rate of each policy over `baseline` and the leaderboard of all of them, each rating
    carrying that policy's `win_rate_over_baseline` ({win_rate, ci_low, ci_high}; None for the
    baseline itself). Returns {"win_rates": [...], "leaderboard": {...}}."""
    scores = {name: [float(g) for g in gold_fn(list(prompts), list(t))] for name, t in texts.items()}
    rates = [score_win_rate(prompts, texts[name], texts[baseline], scores[name], scores[baseline], name, baseline,
                            "gold", seed=seed) for name in texts if name != baseline and baseline in texts]
    board = leaderboard(battles_from_scores(prompts, scores), seed=seed) if len(texts) >= 2 else {}
    if board:
        board["judge"] = "gold"
        if baseline in texts:
            board["baseline"] = baseline
            over = {r["a"]: {k: r[k] for k in ("win_rate", "ci_low", "ci_high")} for r in rates}
            for name, rating in board["ratings"].items():
                rating["win_rate_over_baseline"] = over.get(name)
    return {"win_rates": rates, "leaderboard": board}
