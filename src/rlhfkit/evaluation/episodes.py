"""Measure a policy on multi-turn episodes: return, success, tool use, KL on its own tokens."""

from __future__ import annotations

from typing import Sequence

import torch

from rlhfkit.algorithms.kl import kl_k1, kl_k3
from rlhfkit.evaluation.metrics import distinct_n
from rlhfkit.evaluation.stats import mean_ci
from rlhfkit.generation.episodes import run_episodes
from rlhfkit.generation.sampling import SamplingParams
from rlhfkit.models.forward import response_forward
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import reference_forward
from rlhfkit.types import Rollout


def success(episode: dict) -> float:
    """1.0 when the episode's last assistant turn earned a positive reward (the calculator: the
    exact answer; the dialogue: the goal reached), else 0.0."""
    last = next((t for t in reversed(episode["turns"]) if t["role"] == "assistant"), None)
    return 1.0 if last is not None and last.get("reward", 0.0) > 0 and episode["ended"] == "done" else 0.0


def play(model, tokenizer, env_class, rows: Sequence[dict], max_new_tokens: int, episode: tuple[int, int],
         batch_size: int = 32, **kwargs) -> list[Rollout]:
    """One sampled episode (temperature 1) per row, in batches."""
    params = SamplingParams(strategy="sample", max_new_tokens=max_new_tokens)
    return [run_episodes(model, tokenizer, [env_class() for _ in rows[i : i + batch_size]], list(rows[i : i + batch_size]),
                         params, episode[0], episode[1], **kwargs) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def episode_kl(policy, rollouts: Sequence[Rollout], compute_dtype=torch.float32, reference=None) -> dict[str, list[float]]:
    """Per-episode KL(π‖π_ref) estimates (k1, k3; nats) summed over the policy's own tokens only."""
    out: dict[str, list[float]] = {"k1": [], "k3": []}
    device = next(policy.parameters()).device
    for ro in rollouts:
        args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        with autocast_context(device, compute_dtype):
            lp = response_forward(policy, *args).logprobs.float()
            with reference_forward(policy, reference) as ref_model:
                ref = response_forward(ref_model, *args).logprobs.float()
        out["k1"].extend((kl_k1(lp, ref) * ro.policy_mask).sum(1).tolist())
        out["k3"].extend((kl_k3(lp, ref) * ro.policy_mask).sum(1).tolist())
    return out


def evaluate_episodes(rollouts: Sequence[Rollout], seed: int = 0) -> dict:
    """Mean ± 95% bootstrap CI of the return and of success; tool calls; distinct-2 of the last turns."""
    episodes = [e for ro in rollouts for e in ro.episodes]
    last = [r for ro in rollouts for r in ro.responses]
    n = max(len(episodes), 1)
    return {
        "reward": mean_ci([e["return"] for e in episodes], seed),
        "success": mean_ci([success(e) for e in episodes], seed),
        "tool_call_rate": sum(e["tool_calls"] > 0 for e in episodes) / n,
        "tool_success_rate": sum(e["tool_successes"] > 0 for e in episodes) / n,
        "turns_mean": sum(e["policy_turns"] for e in episodes) / n,
        "distinct_2": distinct_n(last, 2),
    }


def episode_sample_rows(base: Sequence[Rollout] | None, final: Sequence[Rollout]) -> list[dict]:
    """samples.jsonl rows: the prompt, the final policy's transcript (turns with roles, tool calls,
    per-turn rewards), its return and success, and the base policy's transcript beside it."""
    base_eps = [e for ro in base for e in ro.episodes] if base else []
    rows = []
    for i, (prompt, e) in enumerate((p, e) for ro in final for p, e in zip(ro.prompts, ro.episodes)):
        row = {"prompt": prompt, "response": next((t["content"] for t in reversed(e["turns"]) if t["role"] == "assistant"), ""),
               "episode": e, "return": e["return"], "success": success(e)}
        if i < len(base_eps):
            row["base_episode"] = base_eps[i]
        rows.append(row)
    return rows


def episodes_table(summary: dict, path) -> str:
    """`rlhfkit rl --env`'s closing block: before/after return, success, tool use, KL."""
    before, after = summary.get("before") or {}, summary.get("after") or {}

    def ci(block, key):
        v = block.get(key)
        return f"{v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v else ""

    lines = [f"\n{'':16s} {'before':>24s} {'after':>24s}"]
    for key in ("reward", "success"):
        lines.append(f"{key:16s} {ci(before, key):>24s} {ci(after, key):>24s}")
    for key in ("tool_call_rate", "tool_success_rate", "turns_mean"):
        if key in after:
            lines.append(f"{key:16s} {before.get(key, float('nan')):>24.3f} {after[key]:>24.3f}")
    if "kl_to_reference" in after:
        lines.append(f"{'KL to reference':16s} {'0':>24s} {after['kl_to_reference']:>18.3f} nats")
    lines.append(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f}s; run folder {path}")
    return "\n".join(lines)
