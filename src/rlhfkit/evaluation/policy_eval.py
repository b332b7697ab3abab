"""Sample a policy on held-out prompts and measure it: rewards, KL to the reference, diversity."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.kl import kl_k1, kl_k3
from rlhfkit.evaluation.metrics import distinct_n
from rlhfkit.evaluation.stats import mean_ci, paired_mean_ci
from rlhfkit.generation.sampling import SamplingParams, generate_batched
from rlhfkit.models.forward import response_forward
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import reference_forward
from rlhfkit.types import Rollout


@torch.no_grad()
def sequence_kl_estimates(policy, rollouts: Sequence[Rollout], compute_dtype=torch.float32, reference=None) -> dict[str, list[float]]:
    """Per-sequence KL(π‖π_ref) estimates in nats over sampled responses, by estimator
    (REFERENCES.md, Schulman's k1/k3): "k1" = Σ_t (log π − log π_ref), unbiased but negative on
    many samples; "k3" = Σ_t (r − 1 − log r) with r = π_ref/π, unbiased per token given the prefix
    and never negative. π_ref is `reference`, or the LoRA policy with its adapter disabled."""
    out: dict[str, list[float]] = {"k1": [], "k3": []}
    device = next(policy.parameters()).device
    for ro in rollouts:
        args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        with autocast_context(device, compute_dtype):
            lp = response_forward(policy, *args).logprobs  # (B, T)
            with reference_forward(policy, reference) as ref_model:
                ref = response_forward(ref_model, *args).logprobs  # (B, T)
        lp, ref, mask = lp.float(), ref.float(), ro.response_mask
        out["k1"].extend((kl_k1(lp, ref) * mask).sum(1).tolist())
        out["k3"].extend((kl_k3(lp, ref) * mask).sum(1).tolist())
    return out


def sequence_kl(policy, rollouts: Sequence[Rollout], compute_dtype=torch.float32, reference=None) -> list[float]:
    """Per-sequence k1 estimate Σ_t (log π − log π_ref) of KL(π‖π_ref) in nats (see
    `sequence_kl_estimates`, which also gives the never-negative k3)."""
    return sequence_kl_estimates(policy, rollouts, compute_dtype, reference)["k1"]


def evaluate_samples(prompts: Sequence[str], responses: Sequence[str], scorers: dict[str, Callable], seed: int = 0) -> dict:
    """Mean ± 95% bootstrap CI of each scorer, distinct-1/2 and mean length in words."""
    result = {name: mean_ci(fn(list(prompts), list(responses)), seed) for name, fn in scorers.items()}
    result["distinct_1"] = distinct_n(responses, 1)
    result["distinct_2"] = distinct_n(responses, 2)
    result["words_mean"] = sum(len(r.split()) for r in responses) / max(len(responses), 1)
    return result


def sample_policy(policy, tokenizer, prompts: Sequence[str], max_new_tokens: int, progress: str | None = None,
                  **gen_kwargs) -> tuple[list[str], list[Rollout]]:
    """One sample per prompt at temperature 1 (the policy itself). Returns (texts, rollouts)."""
    rollouts = generate_batched(policy, tokenizer, list(prompts), SamplingParams(strategy="sample", max_new_tokens=max_new_tokens),
                                progress=progress, **gen_kwargs)
    return [r for ro in rollouts for r in ro.responses], rollouts


def per_prompt_means(values: Sequence[float], samples_per_prompt: int) -> list[float]:
    """Average each prompt's k consecutive samples: the unit the bootstrap resamples."""
    k = samples_per_prompt
    return [sum(values[i:i + k]) / k for i in range(0, len(values), k)]


def base_vs_final(scores: dict[str, tuple[Sequence[float], Sequence[float]]], kl_final: Sequence[float],
                  lengths: tuple[float, float], samples_per_prompt: int, seed: int = 0,
                  kl_k3_final: Sequence[float] | None = None) -> dict:
    """The evaluation block of a run that trained a policy from a base: for each scorer, the
    base and final means with 95% bootstrap CIs and the final − base difference paired by prompt;
    KL(final ‖ reference) with its CI (k1 as kl_to_reference; k3, given, as kl_k3_to_reference);
    mean response tokens of each."""
    evaluation: dict = {}
    for name, (base_values, final_values) in scores.items():
        b, f = per_prompt_means(base_values, samples_per_prompt), per_prompt_means(final_values, samples_per_prompt)
        evaluation[name] = {"base": mean_ci(b, seed), "final": mean_ci(f, seed), "improvement": paired_mean_ci(f, b, seed)}
    evaluation["kl_to_reference"] = mean_ci(kl_final, seed)
    if kl_k3_final is not None:
        evaluation["kl_k3_to_reference"] = mean_ci(kl_k3_final, seed)
    evaluation["response_length"] = {"base": lengths[0], "final": lengths[1]}
    return evaluation


def mean_response_tokens(rollouts: Sequence[Rollout]) -> float:
    """Mean number of response tokens (EOS included) over every row of `rollouts`."""
    total = sum(float(ro.response_mask.sum()) for ro in rollouts)
    return total / max(sum(ro.response_mask.shape[0] for ro in rollouts), 1)
