"""Token-level credit: a sequence score spread over the tokens that earned it (dense rewards).

A token-level reward model gives a score ŝ_t to every token; it is trained from sequence labels
only, by asking its per-token scores to add up to the sequence score R (the SENSEI idea:
the token scores are the terms of the sequence score). Two ways to turn its output into per-token
rewards that add up to R exactly, so that the return of every sequence is unchanged and only
its distribution over time moves:

    residual:  r_t = ŝ_t + (R − Σ_u ŝ_u) / n          (n = the sequence's tokens)
    weighted:  r_t = w_t · R,  w = softmax over the sequence's tokens of the learned logits

Shapes: B sequences, T tokens; masks (B, T) float with 1 on the tokens that get credit.
"""

from __future__ import annotations

import torch


def sum_matching_loss(token_scores: torch.Tensor, mask: torch.Tensor, sequence_scores: torch.Tensor) -> torch.Tensor:
    """mean over sequences of (Σ_t m_t·ŝ_t − R)²: the token scores must add up to the sequence score."""
    totals = (token_scores * mask).sum(1)
    return ((totals - sequence_scores.to(totals.dtype)) ** 2).mean()


def residual_redistribution(token_scores: torch.Tensor, mask: torch.Tensor, sequence_scores: torch.Tensor) -> torch.Tensor:
    """r_t = ŝ_t + (R − Σ_u ŝ_u)/n on the masked tokens (0 elsewhere): Σ_t r_t = R exactly. A
    sequence with no tokens gets nothing."""
    n = mask.sum(1).clamp(min=1)
    residual = (sequence_scores.to(token_scores.dtype) - (token_scores * mask).sum(1)) / n  # (B,)
    return (token_scores + residual[:, None]) * mask


def weighted_redistribution(weight_logits: torch.Tensor, mask: torch.Tensor, sequence_scores: torch.Tensor) -> torch.Tensor:
    """r_t = softmax_t(logits over the masked tokens) · R: Σ_t r_t = R exactly, every r_t of R's sign."""
    logits = weight_logits.masked_fill(mask <= 0, float("-inf"))
    weights = torch.softmax(logits, dim=1).nan_to_num(0.0) * mask  # an empty row: all 0
    return weights * sequence_scores.to(weights.dtype)[:, None]


def dense_token_rewards(dense: torch.Tensor, scores: torch.Tensor, raw_scores: torch.Tensor, kl: torch.Tensor,
                        kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards from dense scores: r_t = −β·kl_t + d_t, plus (shaped − raw score) on the
    last masked token, so the return is the shaped score minus the KL as with a terminal reward.
    dense: (B, T) adding up to raw_scores (B,) in each row; scores: (B,) shaped."""
    rewards = (-kl_coef * kl + dense) * mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * (mask > 0)).amax(dim=1)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += (scores - raw_scores).to(rewards.dtype)
    return rewards * mask
