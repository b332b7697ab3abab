"""The pieces by which DAPO, GSPO and Dr. GRPO differ from GRPO, each a pure function.

- DAPO (Yu et al. 2025, "DAPO: an open-source LLM RL system at scale"): decoupled clip
  ε_low = 0.2, ε_high = 0.28 ("clip-higher", eq. 10); dynamic sampling drops the groups whose
  rewards are all equal (their group-normalised advantages are all 0: no gradient) and refills the
  batch (`zero_variance_groups`); token-level loss (the token mean over the whole batch); the soft
  overlong punishment (eq. 13, `overlong_penalty`).
- GSPO (Zheng et al. 2025, "Group sequence policy optimization"): one importance ratio per
  sequence, length-normalised, s_i = (π(y_i|x)/π_old(y_i|x))^(1/|y_i|), clipped to
  [1 − 3e-4, 1 + 4e-4] (paper v2, §5.1) (`sequence_clipped_surrogate`).
- Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"): advantages r − mean(r) with
  no division by the group's std (`group_centered_advantages`) and the loss summed over tokens
  and divided by a constant (the `constant` aggregation of losses.aggregate_loss).

Shapes: B sequences (a prompt's G samples adjacent), T response tokens.
"""

from __future__ import annotations

import torch


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(n,) bool: True for each group of G adjacent rewards (B = n·G) that are all equal."""
    grouped = rewards.view(-1, group_size)
    return grouped.max(1).values == grouped.min(1).values


def group_centered_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO: A_i = r_i − mean of its group (no std division). rewards (B,) -> (B,)."""
    if group_size < 2:
        raise ValueError("group-centred advantages need at least 2 samples per prompt")
    grouped = rewards.view(-1, group_size)
    return (grouped - grouped.mean(1, keepdim=True)).view(-1)


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (eq. 13), to add to the reward: 0 for |y| ≤ L_max − L_cache,
    then falling linearly to −factor at |y| = L_max (L_cache = `buffer`), −factor beyond.
    lengths (B,) in tokens -> (B,) ≤ 0. buffer 0: no penalty."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_length - buffer)) / buffer
    return -factor * over.clamp(min=0.0, max=1.0)


def sequence_importance_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's s_i = exp(Σ_t (log π − log π_old)·mask / |y_i|): the geometric mean of the token
    ratios. Inputs (B, T); returns (B,)."""
    lengths = mask.sum(1).clamp(min=1)
    return torch.exp(((logprobs - old_logprobs) * mask).sum(1) / lengths)


def sequence_clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                               mask: torch.Tensor, clip_low: float = 3e-4,
                               clip_high: float = 4e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """GSPO's clipped objective with the sequence ratio s_i in the place of every token's ratio:
    per token max(−Â_t·s_i, −Â_t·clip(s_i, 1 − ε_low, 1 + ε_high)). Inputs (B, T) (advantages are
    a sequence's one value broadcast over its tokens for the group estimators). Returns (per-token
    loss (B, T), whether the clipped branch was taken (B, T))."""
    ratio = sequence_importance_ratio(logprobs, old_logprobs, mask)[:, None]  # (B, 1)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)
