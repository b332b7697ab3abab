"""Win rate of policy A over policy B from per-pair preferences P(A ≻ B), ties counted ½.

REFERENCES.md "Ratings of models": win rate with ties = ½; the length-controlled win rate of
AlpacaEval 2 (Dubois et al. 2024): a logistic model of the preference with a length term
tanh((len_A − len_B)/std), read with that term at zero (`algorithms.ratings`). The 95% CI is a
paired bootstrap over prompts: both policies answered the same prompts, so a prompt is resampled
with all its pairs and the prompts' difficulty stays out of the interval.
"""

from __future__ import annotations

import math
from typing import Sequence

from rlhfkit.algorithms.ratings import length_controlled_win_rate
from rlhfkit.data.schemas import DataError
from rlhfkit.evaluation.stats import bootstrap_mean_ci

TIE_TOLERANCE = 1e-9
"""|P(A ≻ B) − ½| at or below this counts as a tie."""


def preference_from_scores(score_a: float, score_b: float, tie_margin: float = 0.0) -> float:
    """1 if A scores more than `tie_margin` above B, 0 if below, ½ (a tie) otherwise."""
    if score_a - score_b > tie_margin:
        return 1.0
    if score_b - score_a > tie_margin:
        return 0.0
    return 0.5


def length_features(lengths_a: Sequence[float], lengths_b: Sequence[float]) -> list[float]:
    """AlpacaEval 2's length term per pair: tanh((len_A − len_B) / std of those differences);
    all zeros when every difference is the same (no length signal to control for)."""
    diffs = [float(a) - float(b) for a, b in zip(lengths_a, lengths_b)]
    mean = sum(diffs) / max(len(diffs), 1)
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1))
    if std == 0:
        return [0.0] * len(diffs)
    return [math.tanh(d / std) for d in diffs]


def win_rate(preferences: Sequence[float], prompts: Sequence[str] | None = None,
             lengths_a: Sequence[float] | None = None, lengths_b: Sequence[float] | None = None,
             n_resamples: int = 2000, seed: int = 0, l2: float = 1e-4) -> dict:
    """Win rate of A over B = mean over prompts of the mean P(A ≻ B) of their pairs.

    preferences (N,): P(A ≻ B) per pair, 1 / ½ / 0 from a scoring judge or soft from an AI
    judge. prompts (N,): the pairs' prompt, for the paired bootstrap (None: each pair its own).
    lengths (N,): response lengths (words) for the length-controlled win rate. Returns
    {"win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "n", "prompts", "lc_win_rate",
    "mean_length_a", "mean_length_b"}."""
    p = [float(v) for v in preferences]
    if not p:
        raise ValueError("win rate of no pairs")
    bad = [i for i, v in enumerate(p) if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"preference {p[bad[0]]!r} of pair {bad[0]} is not a probability in [0, 1]")
    keys = list(prompts) if prompts is not None else list(range(len(p)))
    per_prompt: dict = {}
    for key, value in zip(keys, p):
        per_prompt.setdefault(key, []).append(value)
    means = [sum(v) / len(v) for v in per_prompt.values()]
    rate, low, high = bootstrap_mean_ci(means, n_resamples=n_resamples, seed=seed)
    result = {
        "win_rate": rate, "ci_low": low, "ci_high": high,
        "wins": sum(v > 0.5 + TIE_TOLERANCE for v in p),
        "ties": sum(abs(v - 0.5) <= TIE_TOLERANCE for v in p),
        "losses": sum(v < 0.5 - TIE_TOLERANCE for v in p),
        "n": len(p), "prompts": len(means), "lc_win_rate": None,
    }
    if lengths_a is not None and lengths_b is not None:
        result["mean_length_a"] = sum(lengths_a) / len(lengths_a)
        result["mean_length_b"] = sum(lengths_b) / len(lengths_b)
        fit = length_controlled_win_rate(p, length_features(lengths_a, lengths_b), l2=l2)
        result["lc_win_rate"] = fit["lc_win_rate"]
        result["length_coefficient"] = fit["phi"]
    return result


def pair_by_prompt(rows_a: Sequence[dict], rows_b: Sequence[dict], where_a: str = "A", where_b: str = "B"):
    """Pair the responses of two sample files by prompt: the k-th response of A to a prompt with
    the k-th response of B to it. Returns (prompts, responses_a, responses_b, unpaired), where
    `unpaired` counts the rows of each side that found no partner (reported, never hidden)."""
    by_prompt_b: dict[str, list[str]] = {}
    for row in rows_b:
        by_prompt_b.setdefault(row["prompt"], []).append(row["response"])
    prompts, a_texts, b_texts = [], [], []
    used: dict[str, int] = {}
    for row in rows_a:
        pool = by_prompt_b.get(row["prompt"], [])
        k = used.get(row["prompt"], 0)
        if k < len(pool):
            prompts.append(row["prompt"])
            a_texts.append(row["response"])
            b_texts.append(pool[k])
            used[row["prompt"]] = k + 1
    if not prompts:
        raise DataError(f"{where_a} and {where_b} share no prompt: nothing to compare (rows are paired by 'prompt')")
    unpaired = {"a": len(rows_a) - len(prompts), "b": len(rows_b) - len(prompts)}
    return prompts, a_texts, b_texts, unpaired


def score_win_rate(prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str],
                   scores_a: Sequence[float], scores_b: Sequence[float], a: str = "A", b: str = "B",
                   judge: str = "gold", tie_margin: float = 0.0, seed: int = 0) -> dict:
    """`win_rate` of A over B from per-sample scores already computed (e.g. the gold scores a run
    evaluated with): the higher score wins each pair; lengths in words."""
    preferences = [preference_from_scores(x, y, tie_margin) for x, y in zip(scores_a, scores_b)]
    result = win_rate(preferences, prompts, [len(t.split()) for t in responses_a], [len(t.split()) for t in responses_b],
                      seed=seed)
    return {"a": a, "b": b, "judge": judge, **result}


def format_win_rate_line(r: dict) -> str:
    lc = f", length-controlled {r['lc_win_rate']:.1%}" if r.get("lc_win_rate") is not None else ""
    return (f"win rate of {r['a']} over {r['b']} ({r['judge']} judge): {r['win_rate']:.1%} "
            f"[{r['ci_low']:.1%}, {r['ci_high']:.1%}]; wins/ties/losses {r['wins']}/{r['ties']}/{r['losses']}{lc}")
