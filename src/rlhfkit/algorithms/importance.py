"""Truncated importance sampling between the sampler's and the trainer's log-probs.

When rollouts come from another engine (vLLM, an OpenAI-compatible server), the tokens were drawn
from π_sampler, whose log-probs differ from the trainer's own π_old (other kernels, precision,
batching; or weights one push behind). TRL's GRPO trainer corrects for it per token with the
ratio w_t = exp(log π_old(a_t) − log π_sampler(a_t)), truncated at a constant C
(`vllm_importance_sampling_cap`) and detached, multiplied into the per-token policy loss before the
KL term is added (truncated importance sampling, Yao et al. 2025, "Your efficient RL framework
secretly brings you off-policy RL training").

Pure math: torch only.
"""

from __future__ import annotations

import torch


def truncated_importance_weights(
    trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, cap: float = 2.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """w_t = min(exp(log π_old(a_t) − log π_sampler(a_t)), cap), 0 on padding, no gradient.

    trainer_logprobs: (B, T) log π_old from the trainer's own pass (nats); sampler_logprobs: (B, T)
    what the sampler reported for the same tokens; mask: (B, T), 1 on real response tokens.
    cap: C > 0. Returns (weights (B, T), stats): the mean ratio before the cap, the fraction of
    tokens the cap cut, and the largest |log-prob difference| (all over real tokens).
    """
    if cap <= 0:
        raise ValueError(f"the importance-weight cap must be > 0, got {cap}")
    mask = mask.to(torch.float32)
    log_ratio = (trainer_logprobs.detach().float() - sampler_logprobs.detach().float()) * mask  # (B, T)
    ratio = torch.exp(log_ratio)
    weights = torch.clamp(ratio, max=cap) * mask
    tokens = mask.sum().clamp(min=1)
    stats = {
        "ratio_mean": float((ratio * mask).sum() / tokens),
        "capped_fraction": float(((ratio > cap).float() * mask).sum() / tokens),
        "abs_logprob_diff_max": float(log_ratio.abs().max()) if mask.any() else 0.0,
    }
    return weights, stats
