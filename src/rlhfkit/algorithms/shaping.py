"""Reward shaping: turning a sequence score and per-token KL into per-token rewards."""

from __future__ import annotations

import torch


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a right-padded (B, T) mask (0 for an empty row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).amax(dim=1)


def kl_penalized_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, beta: float, mask: torch.Tensor
) -> torch.Tensor:
    """Per-token rewards r_t = −β·kl_t, plus the sequence score on the last real token.

    scores: (B,); kl: (B, T) per-token KL estimate (k1 in the PPO of Stiennon et al. 2020);
    mask: (B, T). Returns (B, T), zero on padding.
    """
    rewards = -beta * kl * mask
    last = last_token_index(mask)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards * mask
