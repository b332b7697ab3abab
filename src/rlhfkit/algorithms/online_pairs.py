"""Online DPO's pairs (Guo et al. 2024, "Direct language model alignment from online AI feedback"):
two responses sampled from the current policy for each prompt, the judge's scores deciding which
is chosen. Pure tensors in and out; the DPO loss itself is preference.dpo_loss."""

from __future__ import annotations

import torch


def preference_pairs(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scores (B,) of B = 2n responses, the two of a prompt adjacent (rows 2k, 2k+1). Returns
    (chosen rows (n,), rejected rows (n,), label μ (n,)): the higher-scored response is chosen
    with μ = 1; a tie keeps the sampled order with μ = ½ (the soft-label DPO loss then pulls the
    two log-ratios together instead of picking a side)."""
    pairs = scores.view(-1, 2)
    first_wins = pairs[:, 0] >= pairs[:, 1]
    base = torch.arange(0, scores.shape[0], 2, device=scores.device)
    chosen = torch.where(first_wins, base, base + 1)
    rejected = torch.where(first_wins, base + 1, base)
    label = torch.where(pairs[:, 0] == pairs[:, 1], 0.5, 1.0).to(scores.dtype)
    return chosen, rejected, label
