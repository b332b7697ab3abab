"""Reward over-optimization (Gao, Schulman, Hilton 2023; REFERENCES.md, "Overoptimization").

- `best_of_n_kl(n)`: KL(π_BoN ‖ π_init) = log n − (n−1)/n nats (exact without ties).
- `best_of_n_expectation(proxy, gold, n)`: the unbiased estimate, from one pool of m ≥ n samples
  of a prompt, of the gold (and proxy) score of the sample that best-of-n by proxy would pick
  (Nakano et al. 2021, App. I): sort the pool by proxy ascending; the i-th (1-based) is the
  best of a random n-subset with probability C(i−1, n−1)/C(m, n).
- `fit_overoptimization(d, score, form)`: least squares of the paper's functional forms in
  d = sqrt(KL), on scores recentred so the initial policy scores 0 —
      bon: R(d) = d(α − βd),        peak d* = α/(2β),        R* = α²/(4β)
      rl:  R(d) = d(α − β·log d),   peak d* = exp(α/β − 1),  R* = β·d*
  Both are linear in (α, β), so the fit is the 2×2 normal equations (no intercept: R(0) = 0).
- `extrapolation_check`: fit on the points with d ≤ a cut, predict those beyond (the paper's
  check that the forms extrapolate).

Pure Python math; no tensors needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

FORMS = ("bon", "rl")


def best_of_n_kl(n: int) -> float:
    """log n − (n−1)/n nats: the KL of best-of-n sampling to the sampler (an upper bound with ties)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return math.log(n) - (n - 1) / n


def best_of_n_weights(m: int, n: int) -> list[float]:
    """P(the i-th lowest of m samples is the best of a uniformly random n-subset), i = 1..m:
    C(i−1, n−1)/C(m, n) (zero for i < n); the weights sum to 1."""
    if not 1 <= n <= m:
        raise ValueError(f"best-of-{n} needs a pool of at least {n} samples, got {m}")
    total = math.comb(m, n)
    return [math.comb(i - 1, n - 1) / total for i in range(1, m + 1)]


def best_of_n_expectation(proxy: Sequence[float], gold: Sequence[float], n: int) -> tuple[float, float]:
    """(expected proxy, expected gold) of the sample best-of-n by proxy picks, from one prompt's
    pool of m ≥ n samples, without resampling. Samples tied on proxy are ordered as given."""
    if len(proxy) != len(gold):
        raise ValueError(f"{len(proxy)} proxy scores but {len(gold)} gold scores")
    order = sorted(range(len(proxy)), key=lambda i: proxy[i])
    weights = best_of_n_weights(len(proxy), n)
    return (sum(w * proxy[i] for w, i in zip(weights, order)), sum(w * gold[i] for w, i in zip(weights, order)))


def best_of_n_curve(pools: Sequence[tuple[Sequence[float], Sequence[float]]], ns: Sequence[int]) -> list[dict]:
    """For each n: {"n", "kl", "d", "proxy", "gold"}, the scores averaged over prompts; `pools`
    holds (proxy scores, gold scores) of each prompt's samples."""
    rows = []
    for n in ns:
        picks = [best_of_n_expectation(proxy, gold, n) for proxy, gold in pools]
        kl = best_of_n_kl(n)
        rows.append({"n": n, "kl": kl, "d": math.sqrt(kl), "proxy": sum(p for p, _ in picks) / len(picks),
                     "gold": sum(g for _, g in picks) / len(picks)})
    return rows


def _feature(form: str, d: float) -> float:
    """The term β multiplies (with a minus sign): d² for bon, d·log d for rl (0 at d = 0)."""
    if form == "bon":
        return d * d
    if form == "rl":
        return d * math.log(d) if d > 0 else 0.0
    raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")


@dataclass(frozen=True)
class OveroptFit:
    """A fitted functional form: score(d) = d·(α − β·g(d)), g = d (bon) or log d (rl)."""

    form: str
    alpha: float
    beta: float
    r2: float
    n_points: int

    def predict(self, d: float) -> float:
        return self.alpha * d - self.beta * _feature(self.form, d)

    @property
    def d_peak(self) -> float | None:
        """d at the top of the curve; None when β ≤ 0 (the fitted score never turns down)."""
        if self.beta <= 0:
            return None
        if self.form == "bon":
            return self.alpha / (2 * self.beta)
        exponent = self.alpha / self.beta - 1
        return math.exp(exponent) if exponent < 700 else math.inf

    @property
    def score_peak(self) -> float | None:
        d = self.d_peak
        if d is None:
            return None
        if self.form == "bon":
            return self.alpha ** 2 / (4 * self.beta)
        return self.beta * d  # d*(α − β·log d*) with log d* = α/β − 1

    def as_dict(self) -> dict:
        return {"form": self.form, "alpha": self.alpha, "beta": self.beta, "r2": self.r2, "d_peak": self.d_peak,
                "score_peak": self.score_peak, "n_points": self.n_points}


def fit_overoptimization(d: Sequence[float], score: Sequence[float], form: str) -> OveroptFit:
    """Least-squares α, β of `form` ("bon" or "rl") through the points (d, score), d = sqrt(KL) in
    sqrt-nats, score recentred so that the initial policy (d = 0) scores 0. R² = 1 − SS_res/SS_tot
    with SS_tot about the mean score."""
    if len(d) != len(score):
        raise ValueError(f"{len(d)} d values but {len(score)} scores")
    if any(x < 0 for x in d):
        raise ValueError("d = sqrt(KL) cannot be negative")
    x1 = list(d)
    x2 = [-_feature(form, x) for x in d]  # score = α·x1 + β·x2
    a, b, c = sum(u * u for u in x1), sum(u * v for u, v in zip(x1, x2)), sum(v * v for v in x2)
    y1, y2 = sum(u * y for u, y in zip(x1, score)), sum(v * y for v, y in zip(x2, score))
    det = a * c - b * b
    if len([x for x in d if x > 0]) < 2 or abs(det) <= 1e-12 * max(a * c, 1e-300):
        raise ValueError("the fit needs at least two points at distinct d > 0 (and d ≠ 1 for every point of the rl form)")
    alpha, beta = (c * y1 - b * y2) / det, (a * y2 - b * y1) / det
    mean = sum(score) / len(score)
    ss_tot = sum((y - mean) ** 2 for y in score)
    ss_res = sum((y - alpha * u - beta * v) ** 2 for u, v, y in zip(x1, x2, score))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return OveroptFit(form, alpha, beta, r2, len(d))


def extrapolation_check(d: Sequence[float], score: Sequence[float], form: str, fit_upto: float) -> dict:
    """Fit on the points with d ≤ fit_upto, predict the points beyond. Returns the fit and the
    mean / max absolute error of the predictions (score units), and the errors per point."""
    inside = [(x, y) for x, y in zip(d, score) if x <= fit_upto]
    beyond = [(x, y) for x, y in zip(d, score) if x > fit_upto]
    if not beyond:
        raise ValueError(f"no point lies beyond d = {fit_upto}: nothing to extrapolate to")
    fit = fit_overoptimization([x for x, _ in inside], [y for _, y in inside], form)
    errors = [fit.predict(x) - y for x, y in beyond]
    return {"fit_upto_d": fit_upto, "fit": fit.as_dict(), "n_fit": len(inside), "n_predicted": len(beyond),
            "predicted": [{"d": x, "score": y, "prediction": fit.predict(x)} for x, y in beyond],
            "mean_abs_error": sum(abs(e) for e in errors) / len(errors), "max_abs_error": max(abs(e) for e in errors)}
