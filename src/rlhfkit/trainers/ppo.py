"""PPO for language models: one readable loop.

    generate → score → shape (−β·k1 per token, score on the last token) → advantages (GAE)
    → loss (clipped policy + clipped value) → step → log → checkpoint

The policy is usually a LoRA model whose adapter-disabled base is the reference; the value head
sits on the policy's last hidden state (shared backbone). Follows REFERENCES.md, "PPO for LMs".
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms import (
    gae,
    kl_k1,
    kl_k3,
    kl_penalized_token_rewards,
    make_kl_controller,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from rlhfkit.generation.sampling import SamplingParams, generate
from rlhfkit.models.forward import response_forward, trim_padding
from rlhfkit.models.heads import ValueHead
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import reference_forward
from rlhfkit.trainers.config import PPOConfig
from rlhfkit.types import Rollout

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


class NonFiniteError(FloatingPointError):
    """A reward, loss or gradient became NaN/inf; training stops before touching the weights."""


def _check_finite(name: str, tensor: torch.Tensor, step: int) -> None:
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise NonFiniteError(
            f"step {step}: {name} is not finite at index {bad} (value {tensor[tuple(bad)].item()}); "
            "stopping before the weights are updated — check the reward function / lower the learning rate"
        )


class PPOTrainer:
    def __init__(
        self,
        policy,
        tokenizer,
        reward_fn: RewardFn,
        config: PPOConfig,
        value_head: ValueHead | None = None,
        reference=None,
        compute_dtype: torch.dtype = torch.float32,
        chat: bool | None = None,
        gold_fn: RewardFn | None = None,
        logger: Callable[[dict], None] | None = None,
    ):
        self.policy = policy
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn
        self.gold_fn = gold_fn  # optional: logged for monitoring, never trained on
        self.cfg = config
        self.reference = reference
        self.compute_dtype = compute_dtype
        self.chat = chat
        self.logger = logger
        self.device = next(policy.parameters()).device
        hidden = policy.config.hidden_size if hasattr(policy.config, "hidden_size") else policy.config.n_embd
        self.value_head = (value_head or ValueHead(hidden)).to(self.device)
        trainable = [p for p in policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
        self.trainable = trainable
        self.kl_ctl = make_kl_controller(config.init_kl_coef, config.target_kl, config.kl_horizon)
        self.sampling = SamplingParams(strategy="sample", temperature=config.temperature, max_new_tokens=config.max_new_tokens)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.step_count = 0

    # ------------------------------------------------------------------------------------------
    def _autocast(self):
        return autocast_context(self.device, self.compute_dtype)

    def _score(self, rollout: Rollout) -> torch.Tensor:
        scores = torch.tensor([float(s) for s in self.reward_fn(rollout.prompts, rollout.responses)], device=self.device)
        if scores.shape[0] != len(rollout.responses):
            raise ValueError(f"reward function returned {scores.shape[0]} scores for {len(rollout.responses)} responses")
        _check_finite("reward", scores, self.step_count)
        if self.cfg.score_clip is not None:
            scores = scores.clamp(-self.cfg.score_clip, self.cfg.score_clip)
        if self.cfg.missing_eos_penalty is not None and rollout.finished is not None:
            scores = scores - self.cfg.missing_eos_penalty * (~rollout.finished).float()
        return scores

    @torch.no_grad()
    def _old_and_ref(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """Old log-probs, values and entropy (policy pass) and reference log-probs (base pass)."""
        args = (rollout.prompt_ids, rollout.prompt_mask, rollout.response_ids, rollout.response_mask)
        self.policy.eval()
        with self._autocast():
            policy_out = response_forward(self.policy, *args, value_head=self.value_head, with_entropy=True)
            with reference_forward(self.policy, self.reference) as ref_model:
                ref_out = response_forward(ref_model, *args)
        return {**policy_out, "ref_logprobs": ref_out["logprobs"]}

    def _update(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """ppo_epochs passes of mini-batch steps; each step accumulates micro-batches so that the
        loss equals the token mean over the whole mini-batch (accumulation == full batch)."""
        cfg = self.cfg
        B = rollout.response_ids.shape[0]
        sums: dict[str, float] = {}
        n_micro = 0
        grad_norms: list[float] = []
        # Dropout stays off (eval mode): with it, π and π_old would differ before any update and
        # the ratios would be noise. Gradients flow all the same.
        self.policy.eval()
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.generator, device=self.device)
            for start in range(0, B, cfg.mini_batch_size):
                mini = order[start : start + cfg.mini_batch_size]
                mini_tokens = rollout.response_mask[mini].sum().clamp(min=1)
                self.optimizer.zero_grad(set_to_none=True)
                for m0 in range(0, len(mini), cfg.micro_batch_size):
                    idx = mini[m0 : m0 + cfg.micro_batch_size]
                    p_ids, p_mask, r_ids, r_mask = trim_padding(
                        rollout.prompt_ids[idx], rollout.prompt_mask[idx], rollout.response_ids[idx], rollout.response_mask[idx]
                    )
                    T = r_ids.shape[1]
                    with self._autocast():
                        out = response_forward(self.policy, p_ids, p_mask, r_ids, r_mask, value_head=self.value_head)
                    pg_loss, pg_stats = ppo_policy_loss(
                        out["logprobs"], rollout.logprobs[idx, :T], advantages[idx, :T], r_mask, cfg.clip_coef
                    )
                    vf_loss, vf_stats = ppo_value_loss(
                        out["values"], rollout.values[idx, :T], returns[idx, :T], r_mask,
                        cfg.cliprange_value if cfg.cliprange_value > 0 else None,
                    )
                    loss = (pg_loss + cfg.vf_coef * vf_loss) * (r_mask.sum() / mini_tokens)
                    _check_finite("loss", loss.detach(), self.step_count)
                    loss.backward()
                    for name, value in {"loss/policy": pg_loss, "loss/value": vf_loss, "policy/clipfrac": pg_stats["clipfrac"],
                                        "policy/approx_kl": pg_stats["approx_kl"], "loss/value_clipfrac": vf_stats["value_clipfrac"]}.items():
                        sums[name] = sums.get(name, 0.0) + float(value.detach())
                    n_micro += 1
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                _check_finite("gradient norm", grad_norm.detach(), self.step_count)
                self.optimizer.step()
                grad_norms.append(float(grad_norm))
        self.optimizer.zero_grad(set_to_none=True)
        stats = {k: v / max(n_micro, 1) for k, v in sums.items()}
        stats["policy/grad_norm"] = sum(grad_norms) / max(len(grad_norms), 1)
        return stats

    # ------------------------------------------------------------------------------------------
    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        """One PPO iteration on a batch of prompts. Returns the logged stats."""
        cfg = self.cfg
        t0 = time.perf_counter()
        # generate
        self.policy.eval()
        rollout = generate(self.policy, self.tokenizer, list(prompts), self.sampling, chat=self.chat,
                           generator=self.generator, compute_dtype=self.compute_dtype)
        t_gen = time.perf_counter()
        # score
        scores = self._score(rollout)
        t_score = time.perf_counter()
        passes = self._old_and_ref(rollout)
        rollout.logprobs, rollout.values, rollout.ref_logprobs, rollout.scores = (
            passes["logprobs"], passes["values"], passes["ref_logprobs"], scores)
        mask = rollout.response_mask
        t_fwd = time.perf_counter()
        # shape: r_t = −β·k1_t, plus the score on the last real token
        kl = kl_k1(rollout.logprobs, rollout.ref_logprobs) * mask  # (B, T)
        beta = self.kl_ctl.value
        rewards = kl_penalized_token_rewards(scores, kl, beta, mask)
        # advantages
        advantages, returns = gae(rewards, rollout.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask, zero_mean=True)
        # loss + step
        update_stats = self._update(rollout, advantages, returns)
        t_update = time.perf_counter()
        # log
        seq_kl = kl.sum(1)  # (B,) nats per sequence
        self.kl_ctl.update(float(seq_kl.mean()), len(prompts))
        stats = {
            "step": self.step_count,
            "reward/score_mean": float(scores.mean()),
            "reward/score_std": float(scores.std()) if len(scores) > 1 else 0.0,
            "reward/shaped_return_mean": float(rewards.sum(1).mean()),
            "kl/k1_seq_mean": float(seq_kl.mean()),
            "kl/k3_seq_mean": float((kl_k3(rollout.logprobs, rollout.ref_logprobs) * mask).sum(1).mean()),
            "kl/coef": beta,
            "policy/entropy": float(masked_mean(passes["entropy"], mask)),
            "response/length_mean": float(mask.sum(1).mean()),
            "response/eos_fraction": float(rollout.finished.float().mean()) if rollout.finished is not None else math.nan,
            "advantages/mean": float(masked_mean(advantages, mask)),
            "value/mean": float(masked_mean(rollout.values, mask)),
            **update_stats,
            "time/generate": t_gen - t0,
            "time/score": t_score - t_gen,
            "time/forward": t_fwd - t_score,
            "time/update": t_update - t_fwd,
        }
        if self.gold_fn is not None:
            stats["reward/gold_mean"] = float(sum(self.gold_fn(rollout.prompts, rollout.responses)) / len(rollout.responses))
        stats["time/step"] = time.perf_counter() - t0
        self.last_rollout = rollout
        self.step_count += 1
        if self.logger is not None:
            self.logger(stats)
        return stats

    def train(self, prompts: Sequence[str], progress: bool = True) -> list[dict[str, float]]:
        """Run `cfg.steps` iterations, cycling through `prompts` in batches of `cfg.batch_size`."""
        from tqdm.auto import tqdm

        history = []
        bar = tqdm(range(self.cfg.steps), desc="PPO", disable=not progress, unit="step", dynamic_ncols=True)
        for i in bar:
            start = (i * self.cfg.batch_size) % len(prompts)
            batch = [prompts[(start + j) % len(prompts)] for j in range(self.cfg.batch_size)]
            stats = self.step(batch)
            history.append(stats)
            postfix = {"score": f"{stats['reward/score_mean']:.3f}", "kl": f"{stats['kl/k1_seq_mean']:.2f}"}
            if "reward/gold_mean" in stats:
                postfix["gold"] = f"{stats['reward/gold_mean']:.3f}"
            bar.set_postfix(postfix)
        return history

    def save(self, path) -> None:
        """The LoRA adapter (or full model) and the value head."""
        from pathlib import Path

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.value_head.state_dict(), path / "value_head.pt")
