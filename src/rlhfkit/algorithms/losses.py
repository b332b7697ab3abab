"""Losses, one function per method. Each returns (scalar loss, stats dict of floats/tensors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhfkit.algorithms.stats import masked_mean


def clipped_surrogate(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, clip_coef: float = 0.2,
    clip_coef_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate loss max(−Â·ρ, −Â·clip(ρ, 1−ε, 1+ε)), ρ = exp(log π − log π_old).

    `clip_coef_high`: a different upper bound 1 + ε_high (DAPO's decoupled "clip-higher", ε_low =
    clip_coef); None: symmetric. All inputs (B, T). Returns (per-token loss (B, T), whether the
    clipped branch was taken (B, T)).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    high = clip_coef if clip_coef_high is None else clip_coef_high
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, mode: str, total_tokens: torch.Tensor | float,
                   total_sequences: int, max_len: int) -> torch.Tensor:
    """This micro-batch's share of a mini-batch loss, so that summing the shares over the
    micro-batches gives exactly the loss of the whole mini-batch (accumulation == full batch).

    mode "token_mean": Σ loss / (tokens in the mini-batch)                    — PPO, REINFORCE++
         "sequence_mean": Σ_seq (Σ_t loss / len_seq) / (sequences)             — GRPO
         "constant": Σ loss / (sequences · max_len)                            — Dr. GRPO
    per_token, mask: (B, T) for this micro-batch.
    """
    summed = per_token * mask
    if mode == "token_mean":
        return summed.sum() / total_tokens
    if mode == "sequence_mean":
        return (summed.sum(1) / mask.sum(1).clamp(min=1)).sum() / total_sequences
    if mode == "constant":
        return summed.sum() / (total_sequences * max_len)
    raise ValueError(f"loss aggregation must be token_mean, sequence_mean or constant, got {mode!r}")


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """½·(V − R)², optionally the max with the clipped ½·(V_old + clip(V − V_old, ±c) − R)².

    All inputs (B, T). `returns` R = Â + V_old (REFERENCES.md, PPO for LMs).
    """
    loss_unclipped = (values - returns) ** 2
    if clip_range is None:
        per_token = loss_unclipped
        clipfrac = torch.zeros(())
    else:
        values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        loss_clipped = (values_clipped - returns) ** 2
        per_token = torch.maximum(loss_unclipped, loss_clipped)
        clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask).detach()
    loss = 0.5 * masked_mean(per_token, mask)
    return loss, {"value_clipfrac": clipfrac}


def bradley_terry_loss(
    reward_a: torch.Tensor,
    reward_b: torch.Tensor,
    label: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pairwise Bradley–Terry loss (Christiano et al. 2017; Stiennon et al. 2020).

    L = −[μ·log σ(r_a − r_b − m) + (1 − μ)·log σ(r_b − r_a − m)], averaged over the batch.
    reward_a, reward_b: (B,); label μ: (B,) probability that a is preferred (1 hard, ½ tie,
    soft in between; default 1); margin m: (B,) ≥ 0, default 0.
    Stats: accuracy = fraction where the preferred side (μ > ½) scores higher (ties skipped).
    """
    diff = reward_a - reward_b
    if label is None:
        label = torch.ones_like(diff)
    m = torch.zeros_like(diff) if margin is None else margin.to(diff.dtype)
    loss = -(label * F.logsigmoid(diff - m) + (1 - label) * F.logsigmoid(-diff - m)).mean()
    with torch.no_grad():
        decided = label != 0.5
        correct = ((diff > 0) == (label > 0.5)) & decided
        accuracy = correct.float().sum() / decided.float().sum().clamp(min=1)
    return loss, {"accuracy": accuracy, "reward_margin": diff.mean().detach()}
