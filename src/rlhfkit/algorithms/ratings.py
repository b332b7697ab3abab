"""Ratings of models from pairwise battles, and the length-controlled win rate.

REFERENCES.md "Ratings of models (Chatbot Arena)": online Elo (K = 4, scale 400, base 10,
initial 1000, tie = ½; order-dependent) and Bradley–Terry by maximum likelihood on all battles
at once (P(A beats B) = 1/(1 + 10^((R_B − R_A)/400)), order-independent, mean rating 1000); the
AlpacaEval 2 length-controlled win rate (a logistic model with a length term, read with that
term at zero). Pure math: torch, math and stdlib only. Bootstrap CIs live in evaluation/.

Battles are (i, j, s) with player indices i, j and s = A's score: 1 (i won), ½ (tie), 0 (j won).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_INITIAL = 1000.0


def elo_expected(rating_a: float, rating_b: float, scale: float = ELO_SCALE, base: float = ELO_BASE) -> float:
    """P(A beats B) = 1 / (1 + base^((R_B − R_A)/scale))."""
    return 1.0 / (1.0 + base ** ((rating_b - rating_a) / scale))


def online_elo(battles: Sequence[tuple[int, int, float]], n_players: int, k: float = 4.0, scale: float = ELO_SCALE,
               base: float = ELO_BASE, initial: float = ELO_INITIAL) -> list[float]:
    """Sequential Elo: after each battle R_A += K·(s − E_A), R_B −= K·(s − E_A), E_A = elo_expected.
    The result depends on the order of `battles`."""
    ratings = [float(initial)] * n_players
    for i, j, score in battles:
        delta = k * (score - elo_expected(ratings[i], ratings[j], scale, base))
        ratings[i] += delta
        ratings[j] -= delta
    return ratings


def logistic_newton(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                    l2: float = 0.0, max_iter: int = 100, tol: float = 1e-10) -> torch.Tensor:
    """Maximum-likelihood logistic regression with soft targets, by Newton's method.

    features (N, D), targets (N,) in [0, 1], weights (N,) ≥ 0. Maximises
    Σ_n w_n [y_n log σ(x_n·θ) + (1 − y_n) log σ(−x_n·θ)] − ½·l2·|θ|². Returns θ (D,) in float64.
    Each Newton step is halved until the objective does not decrease (the objective is concave,
    so plain Newton converges once near the optimum)."""
    x = features.to(torch.float64)
    y = targets.to(torch.float64)
    w = torch.ones_like(y) if weights is None else weights.to(torch.float64)
    theta = torch.zeros(x.shape[1], dtype=torch.float64)

    def objective(t: torch.Tensor) -> float:
        z = x @ t
        ll = w * (y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z))
        return float(ll.sum() - 0.5 * l2 * (t * t).sum())

    current = objective(theta)
    for _ in range(max_iter):
        p = torch.sigmoid(x @ theta)
        grad = x.T @ (w * (y - p)) - l2 * theta  # (D,)
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + l2 * torch.eye(x.shape[1], dtype=torch.float64)
        step = torch.linalg.lstsq(hessian, grad[:, None]).solution[:, 0]
        scale = 1.0
        while (value := objective(theta + scale * step)) < current - 1e-12:
            scale /= 2
            if scale < 1e-6:  # no ascent left along the Newton direction: at the optimum
                return theta
        theta, current = theta + scale * step, value
        if float((scale * step).abs().max()) < tol:
            break
    return theta


def bradley_terry(battles: Sequence[tuple[int, int, float]], n_players: int, l2: float = 0.0,
                  weights: Sequence[float] | None = None, scale: float = ELO_SCALE, base: float = ELO_BASE,
                  mean: float = ELO_INITIAL) -> list[float]:
    """Bradley–Terry ratings on the Elo scale by maximum likelihood over all battles at once.

    log-odds(i beats j) = θ_i − θ_j; a tie counts as half a win for each side (target ½). The
    ratings are R = mean + scale/ln(base)·(θ − mean(θ)): only differences are identified, so
    the ratings are shifted to average `mean`. `l2` > 0 adds a Gaussian prior on θ (needed when
    a player won or lost every battle, where the MLE is infinite). `weights`: a count per battle
    (a battle of weight 2 counts as two identical battles)."""
    if not battles:
        return [float(mean)] * n_players
    x = torch.zeros(len(battles), n_players, dtype=torch.float64)
    rows = torch.arange(len(battles))
    x[rows, torch.tensor([b[0] for b in battles])] += 1.0
    x[rows, torch.tensor([b[1] for b in battles])] -= 1.0
    y = torch.tensor([float(b[2]) for b in battles], dtype=torch.float64)
    w = None if weights is None else torch.tensor([float(v) for v in weights], dtype=torch.float64)
    theta = logistic_newton(x, y, w, l2=l2)  # lstsq gives the minimum-norm step: θ stays centred
    theta = theta - theta.mean()
    return (mean + scale / math.log(base) * theta).tolist()


def predicted_win_matrix(ratings: Sequence[float], scale: float = ELO_SCALE, base: float = ELO_BASE) -> list[list[float]]:
    """M[i][j] = P(i beats j) under the ratings (½ on the diagonal)."""
    return [[elo_expected(a, b, scale, base) for b in ratings] for a in ratings]


def length_controlled_win_rate(preferences: Sequence[float], length_features: Sequence[float],
                               l2: float = 0.0) -> dict[str, float]:
    """AlpacaEval 2's length-controlled win rate, for one model against one baseline.

    Fits P(A ≻ B | pair n) = σ(θ + φ·z_n) to the judge's preferences (soft targets in [0, 1]),
    with z_n a length feature of the pair (AlpacaEval uses tanh(length difference / its std)),
    and reports the win rate with the length term at zero: σ(θ). Returns {"lc_win_rate", "theta",
    "phi"}. With z ≡ 0 the fit gives σ(θ) = the plain mean preference."""
    y = torch.tensor([float(p) for p in preferences], dtype=torch.float64)
    z = torch.tensor([float(v) for v in length_features], dtype=torch.float64)
    x = torch.stack([torch.ones_like(z), z], dim=1)  # (N, 2)
    theta, phi = logistic_newton(x, y, l2=l2).tolist()
    return {"lc_win_rate": 1.0 / (1.0 + math.exp(-theta)), "theta": theta, "phi": phi}
