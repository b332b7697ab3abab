"""Bootstrap confidence intervals (percentile method)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_mean_ci(values: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile-bootstrap CI."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95,
                        seed: int = 0) -> tuple[float, float, float]:
    """(mean of a − b, low, high) for paired samples (the same prompts under two policies):
    resampling pairs keeps the per-prompt difficulty out of the interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have equal length, got {a.size} and {b.size}")
    return bootstrap_mean_ci(a - b, n_resamples, confidence, seed)


def mean_ci(values: Sequence[float], seed: int = 0) -> dict[str, float]:
    """`bootstrap_mean_ci` as {"mean", "ci_low", "ci_high"} (how run summaries store it)."""
    return dict(zip(("mean", "ci_low", "ci_high"), bootstrap_mean_ci(values, seed=seed)))


def paired_mean_ci(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, float]:
    """`paired_bootstrap_ci` (mean of a − b) as {"mean", "ci_low", "ci_high"}."""
    return dict(zip(("mean", "ci_low", "ci_high"), paired_bootstrap_ci(a, b, seed=seed)))
