"""Evaluation: statistics with confidence intervals, policy comparisons, reports.

May import models, generation, rewards; never trainers or cli.
"""

from rlhfkit.evaluation.stats import (
    bootstrap_mean_ci,
    mean_ci,
    paired_bootstrap_ci,
    paired_mean_ci,
)

__all__ = ["bootstrap_mean_ci", "mean_ci", "paired_bootstrap_ci", "paired_mean_ci"]
