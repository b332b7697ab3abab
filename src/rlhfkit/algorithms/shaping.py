"""Reward shaping: sequence scores made fit for training (clip, normalise, penalise a missing
EOS), then turned with the per-token KL into per-token rewards.

Scores are (B,) floats, one per response; masks (B, T) right-padded.
"""

from __future__ import annotations

import math

import torch

from rlhfkit.algorithms.stats import RunningMoments

SCORE_NORMS = ("none", "batch", "running")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a right-padded (B, T) mask (0 for an empty row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).amax(dim=1)


def kl_penalized_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor
) -> torch.Tensor:
    """Per-token rewards r_t = −β·kl_t (β = kl_coef), plus the sequence score on the last real token.

    scores: (B,); kl: (B, T) per-token KL estimate (k1 in the PPO of Stiennon et al. 2020);
    mask: (B, T). Returns (B, T), zero on padding.
    """
    rewards = -kl_coef * kl * mask
    last = last_token_index(mask)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards * mask


def clip_scores(scores: torch.Tensor, limit: float) -> torch.Tensor:
    """Scores clipped to [−limit, limit]. (B,) -> (B,)."""
    return scores.clamp(-limit, limit)


def batch_normalize_scores(scores: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(s − mean) / (std + eps) over this batch, std Bessel-corrected; a single score is
    returned as it is (its spread is undefined). (B,) -> (B,)."""
    if len(scores) < 2:
        return scores
    return (scores - scores.mean()) / (scores.std() + eps)


def standardize_scores(scores: torch.Tensor, mean: float, var: float, eps: float = 1e-8) -> torch.Tensor:
    """(s − mean) / sqrt(var + eps) with moments given from outside (e.g. running ones). (B,) -> (B,)."""
    return (scores - mean) / math.sqrt(var + eps)


def penalize_missing_eos(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract `penalty` from the score of every response that did not end with EOS.

    scores: (B,); finished: (B,) bool, True when the response ended with EOS."""
    return scores - penalty * (~finished).float()


def shape_scores(
    scores: torch.Tensor,
    finished: torch.Tensor | None = None,
    *,
    clip: float | None = None,
    norm: str = "none",
    moments: RunningMoments | None = None,
    missing_eos_penalty: float | None = None,
) -> torch.Tensor:
    """The configured score shaping, in order: clip → normalise → missing-EOS penalty.

    norm "none": unchanged; "batch": `batch_normalize_scores`; "running": this batch is merged
    into `moments` first (updated in place), then the scores are standardised by the running
    mean and variance. The penalty applies only when `finished` (B,) bool is known.
    scores: (B,) -> (B,).
    """
    if norm not in SCORE_NORMS:
        raise ValueError(f"score normalisation must be one of {', '.join(SCORE_NORMS)}, got {norm!r}")
    if clip is not None:
        scores = clip_scores(scores, clip)
    if norm == "batch":
        scores = batch_normalize_scores(scores)
    elif norm == "running":
        if moments is None:
            raise ValueError("running score normalisation needs the RunningMoments to update")
        moments.update(scores)
        scores = standardize_scores(scores, moments.mean, moments.var)
    if missing_eos_penalty is not None and finished is not None:
        scores = penalize_missing_eos(scores, finished, missing_eos_penalty)
    return scores
