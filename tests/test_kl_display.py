"""Issue 16: KL shown with its estimator's name, and the never-negative k3 beside a negative k1."""

import math

import torch

from rlhfkit.evaluation.policy_eval import sequence_kl, sequence_kl_estimates
from rlhfkit.evaluation.tables import compare_table, format_kl, format_kl_ci
from rlhfkit.generation.sampling import SamplingParams, generate_batched
from rlhfkit.models.lora import add_lora


def test_format_kl_names_the_estimator():
    assert format_kl(0.52, 0.49) == "k1 0.52"
    assert format_kl(-0.08, 0.01) == "k1 -0.08 (k3 0.01)"  # compare's DPO row of issue 16
    assert format_kl(-0.08) == "k1 -0.08"
    assert format_kl(math.log(4) - 0.75, bound=True) == "≤ 0.64 (bound)"  # best-of-4: log 4 − 3/4
    ci = {"mean": -0.05, "ci_low": -0.2, "ci_high": 0.1}
    assert format_kl_ci(ci, {"mean": 0.02, "ci_low": 0.01, "ci_high": 0.03}) == "k1 -0.05 [-0.20, 0.10] (k3 0.02)"
    assert format_kl_ci({"mean": 1.5, "ci_low": 1.2, "ci_high": 1.8}) == "k1 1.50 [1.20, 1.80]"


def test_compare_table_shows_k3_beside_a_negative_k1():
    ci = {"mean": 0.1, "ci_low": 0.0, "ci_high": 0.2}
    rows = [{"method": "dpo", "gold": ci, "kl_to_reference": -0.08, "kl_k3_to_reference": 0.01, "distinct_2": 0.5,
             "train_samples": 384, "seconds": 10},
            {"method": "best_of_4", "gold": ci, "kl_to_reference": math.log(4) - 0.75, "kl_is_bound": True,
             "distinct_2": 0.5, "train_samples": 0, "inference_samples_per_query": 4, "seconds": 3}]
    table = compare_table(rows)
    assert "| dpo | +0.100 [+0.000, +0.200] | k1 -0.08 (k3 0.01) |" in table
    assert "| best_of_4 | +0.100 [+0.000, +0.200] | ≤ 0.64 (bound) |" in table


def test_sequence_kl_estimates_k3_never_negative_k1_can_be(tiny_llama, tiny_tok):
    """k1 = Σ(log π − log π_ref) is negative on some samples of a perturbed policy; k3 = Σ(r − 1 − log r),
    r = π_ref/π, is ≥ 0 on every one; both are 0 while the LoRA adapter is the identity (B = 0)."""
    policy = add_lora(tiny_llama, r=4, alpha=8)
    prompts = [f"the movie was {w}" for w in ("good", "bad", "long", "fun", "slow", "dull", "great", "awful")] * 2
    gen = torch.Generator().manual_seed(0)
    rollouts = generate_batched(policy, tiny_tok, prompts, SamplingParams(strategy="sample", max_new_tokens=6),
                                generator=gen)
    at_init = sequence_kl_estimates(policy, rollouts)
    assert max(map(abs, at_init["k1"] + at_init["k3"])) < 1e-6
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    moved = sequence_kl_estimates(policy, rollouts)
    assert len(moved["k1"]) == len(moved["k3"]) == len(prompts)
    assert all(k3 >= 0 for k3 in moved["k3"]) and max(moved["k3"]) > 1e-3
    assert min(moved["k1"]) < 0  # a sampled k1 of one sequence is not a KL
    assert sequence_kl(policy, rollouts) == moved["k1"]
