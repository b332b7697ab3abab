"""Reward-model evaluation against a gold scorer."""

from __future__ import annotations

import torch

from rlhfkit.algorithms import concordance


def gold_order_accuracy(rm, pairs_with_gold) -> float:
    """How often the RM ranks the higher-gold response of a pair first (equal-gold pairs are no
    comparison): `algorithms.concordance` with one group per pair."""
    prompts = [p.prompt for p, _ in pairs_with_gold] * 2
    texts = [p.chosen for p, _ in pairs_with_gold] + [p.rejected for p, _ in pairs_with_gold]
    gold = torch.tensor([g[0] for _, g in pairs_with_gold] + [g[1] for _, g in pairs_with_gold])
    groups = torch.arange(len(pairs_with_gold)).repeat(2)
    accuracy, _ = concordance(rm.score(prompts, texts), gold, groups)
    return float(accuracy)
