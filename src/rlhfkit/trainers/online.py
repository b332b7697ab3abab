"""Online RL for language models: one readable loop for the whole policy-gradient family.

    generate → score → shape → advantages → loss → step → log → checkpoint

The algorithm (PPO, REINFORCE, RLOO, GRPO, REINFORCE++, ReMax, NLPO) only decides a few pieces,
chosen once when the trainer is built (`ADVANTAGES`, the value head, the KL placement, NLPO's
masker); the loop itself has no per-algorithm branches. Formulas: ../shared/REFERENCES.md.

Shapes: B responses per iteration (= prompts × G samples each, a prompt's G samples adjacent),
T response tokens, V vocabulary.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms import (
    aggregate_loss,
    clipped_surrogate,
    gae,
    group_normalized_advantages,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalized_token_rewards,
    make_kl_controller,
    masked_mean,
    ppo_value_loss,
    reward_to_go,
    rloo_advantages,
    whiten,
)
from rlhfkit.data.chat import pad_token_id
from rlhfkit.generation.sampling import NucleusMasker, SamplingParams, generate
from rlhfkit.models.forward import response_forward, trim_padding
from rlhfkit.models.heads import ValueHead
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import is_lora, reference_forward
from rlhfkit.trainers.common import check_finite
from rlhfkit.trainers.config import RLConfig
from rlhfkit.types import Rollout

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


@dataclass
class Batch:
    """What the advantage estimators see for one rollout."""

    scores: torch.Tensor  # (B,) sequence scores after clipping / normalisation / penalties
    token_rewards: torch.Tensor  # (B, T) −β·kl per token (if KL is in the reward) + score at the end
    mask: torch.Tensor  # (B, T)
    values: torch.Tensor | None  # (B, T) V_old(s_t)
    baseline_scores: torch.Tensor | None  # (B,) ReMax: score of the greedy response to the same prompt


@dataclass
class State:
    """Running quantities some estimators keep across iterations."""

    moving_baseline: float | None = None
    score_mean: float = 0.0
    score_var: float = 1.0
    score_count: int = 0


# --------------------------------------------------------------------------------------------
# Advantage estimators: (batch, cfg, state) -> (advantages (B, T), value targets (B, T) or None)


def _adv_gae(b: Batch, cfg: RLConfig, state: State):
    return gae(b.token_rewards, b.values, b.mask, cfg.gamma, cfg.lam)


def _adv_reinforce(b: Batch, cfg: RLConfig, state: State):
    """REINFORCE with baseline: Â_t = G_t − b, G_t the reward-to-go (= R for every t when the only
    reward is terminal and γ = 1); b a moving average of returns or the learned V(s_t)."""
    returns = reward_to_go(b.token_rewards, b.mask, cfg.gamma)
    if cfg.baseline == "value":
        return (returns - b.values) * b.mask, returns
    episode_return = float(b.token_rewards.sum(1).mean())
    baseline = episode_return if state.moving_baseline is None else state.moving_baseline
    state.moving_baseline = cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * episode_return
    return (returns - baseline) * b.mask, None


def _adv_rloo(b: Batch, cfg: RLConfig, state: State):
    """RLOO: sequence reward R_i (score − β·KL) minus the mean of the other G−1 samples' R."""
    advantages = rloo_advantages(b.token_rewards.sum(1), cfg.group_size)
    return advantages[:, None] * b.mask, None


def _adv_grpo(b: Batch, cfg: RLConfig, state: State):
    """GRPO: score standardised within its group, broadcast to every token (KL goes in the loss)."""
    advantages = group_normalized_advantages(b.token_rewards.sum(1), cfg.group_size)
    return advantages[:, None] * b.mask, None


def _adv_remax(b: Batch, cfg: RLConfig, state: State):
    """ReMax: R_i minus the score of the greedy response to the same prompt."""
    return (b.token_rewards.sum(1) - b.baseline_scores)[:, None] * b.mask, None


def _adv_reinforce_pp(b: Batch, cfg: RLConfig, state: State):
    """REINFORCE++: reward-to-go of the KL-shaped rewards, normalised over the whole batch."""
    return whiten(reward_to_go(b.token_rewards, b.mask, cfg.gamma), b.mask), None


ADVANTAGES = {
    "ppo": _adv_gae,
    "nlpo": _adv_gae,
    "reinforce": _adv_reinforce,
    "rloo": _adv_rloo,
    "grpo": _adv_grpo,
    "remax": _adv_remax,
    "reinforce_pp": _adv_reinforce_pp,
}


class OnlineTrainer:
    """Train `policy` against `reward_fn` with the algorithm named in `config.algo`.

    policy: a causal LM (usually a LoRA peft model, whose adapter-disabled base is the
    reference). reference: a frozen model for the KL anchor when the policy has no adapter.
    gold_fn: optional second reward that is only logged (e.g. the gold scorer of a task).
    """

    def __init__(
        self,
        policy,
        tokenizer,
        reward_fn: RewardFn,
        config: RLConfig,
        reference=None,
        compute_dtype: torch.dtype = torch.float32,
        chat: bool | None = None,
        gold_fn: RewardFn | None = None,
        logger: Callable[[dict], None] | None = None,
        ptx_examples: Sequence | None = None,
    ):
        if reference is None and not is_lora(policy):
            raise ValueError("a full (non-LoRA) policy needs a reference model: pass reference=frozen_copy(policy)")
        self.policy, self.tokenizer, self.reward_fn, self.gold_fn = policy, tokenizer, reward_fn, gold_fn
        self.cfg = cfg = config
        self.reference = reference
        self.compute_dtype, self.chat, self.logger = compute_dtype, chat, logger
        self.device = next(policy.parameters()).device
        hidden = getattr(policy.config, "hidden_size", None) or policy.config.n_embd
        # pieces chosen once
        self.advantage_fn = ADVANTAGES[cfg.algo]
        self.kl_fn = KL_ESTIMATORS[cfg.kl_estimator]
        self.value_head = ValueHead(hidden).to(self.device) if cfg.uses_value_head else None
        self.anchor = None  # a frozen snapshot of the policy when the KL is anchored to the previous policy
        if cfg.kl_anchor == "previous":
            self.anchor = self._snapshot()
        self.masker = None
        if cfg.algo == "nlpo":
            keep = sorted({i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None})
            self.masker = NucleusMasker(self._snapshot(), cfg.nlpo_top_p, cfg.nlpo_min_tokens, keep)
        self.ptx = _PtxBatches(ptx_examples, tokenizer, cfg, self.device, chat) if cfg.ptx_coef > 0 else None
        self.trainable = [p for p in policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            self.trainable += list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.learning_rate, weight_decay=0.0)
        self.kl_ctl = make_kl_controller(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
        self.sampling = SamplingParams(strategy="sample", temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.state = State()
        self.step_count = 0
        self.last_rollout: Rollout | None = None

    # ------------------------------------------------------------------------------------------
    def _snapshot(self):
        snap = copy.deepcopy(self.policy)
        snap.eval()
        for p in snap.parameters():
            p.requires_grad_(False)
        return snap

    def _autocast(self):
        return autocast_context(self.device, self.compute_dtype)

    def _reward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        scores = torch.tensor([float(s) for s in self.reward_fn(prompts, responses)], device=self.device)
        if scores.shape[0] != len(responses):
            raise ValueError(f"reward function returned {scores.shape[0]} scores for {len(responses)} responses")
        check_finite("reward", scores, self.step_count)
        return scores

    def _shape_scores(self, scores: torch.Tensor, finished: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.score_clip is not None:
            scores = scores.clamp(-cfg.score_clip, cfg.score_clip)
        if cfg.score_norm == "batch" and len(scores) > 1:
            scores = (scores - scores.mean()) / (scores.std() + 1e-8)
        elif cfg.score_norm == "running":
            s = self.state  # Welford-style merge of this batch into the running moments
            n, m = len(scores), float(scores.mean())
            var = float(scores.var(unbiased=False)) if n > 1 else 0.0
            total = s.score_count + n
            delta = m - s.score_mean
            s.score_var = (s.score_var * s.score_count + var * n + delta**2 * s.score_count * n / total) / total if s.score_count else var
            s.score_mean += delta * n / total
            s.score_count = total
            scores = (scores - s.score_mean) / math.sqrt(s.score_var + 1e-8)
        if cfg.missing_eos_penalty is not None and finished is not None:
            scores = scores - cfg.missing_eos_penalty * (~finished).float()
        return scores

    @torch.no_grad()
    def _old_and_anchor(self, ro: Rollout) -> dict[str, torch.Tensor]:
        """Policy pass (old log-probs, values, entropy) and anchor pass (reference or previous policy)."""
        args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        with self._autocast():
            out = response_forward(self.policy, *args, value_head=self.value_head, with_entropy=True,
                                   action_mask=ro.action_mask)
            # the previous-policy snapshot, else the frozen reference / adapter-disabled base
            with reference_forward(self.policy, self.anchor if self.anchor is not None else self.reference) as anchor:
                out["anchor_logprobs"] = response_forward(anchor, *args)["logprobs"]
        # the KL penalty uses the policy's own (unmasked) log-probs, also under NLPO
        out.setdefault("unmasked_logprobs", out["logprobs"])
        return out

    def _greedy_scores(self, prompts: list[str]) -> torch.Tensor:
        """ReMax's baseline: the score of the greedy response to each prompt."""
        unique = prompts[:: self.cfg.group_size]
        greedy = generate(self.policy, self.tokenizer, unique, SamplingParams(strategy="greedy", max_new_tokens=self.cfg.max_new_tokens),
                          chat=self.chat, compute_dtype=self.compute_dtype)
        scores = self._shape_scores(self._reward(unique, greedy.responses), greedy.finished)
        return scores.repeat_interleave(self.cfg.group_size)

    def _update(self, ro: Rollout, advantages: torch.Tensor, returns: torch.Tensor | None) -> dict[str, float]:
        """Epochs of mini-batch steps; micro-batches accumulate so that each step's loss is exactly
        that of the whole mini-batch (tests/test_online.py checks accumulation == full batch)."""
        cfg = self.cfg
        B = ro.response_ids.shape[0]
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        ptx_losses: list[float] = []
        n_micro = 0
        # Dropout stays off (eval mode): with it π and π_old would differ before any update.
        self.policy.eval()
        beta = self.kl_ctl.value
        kl_in_loss = cfg.kl_in == "loss"
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.generator, device=self.device)
            for start in range(0, B, cfg.mini_batch_size):
                mini = order[start : start + cfg.mini_batch_size]
                mini_tokens = ro.response_mask[mini].sum().clamp(min=1)
                self.optimizer.zero_grad(set_to_none=True)
                for m0 in range(0, len(mini), cfg.micro_batch_size):
                    idx = mini[m0 : m0 + cfg.micro_batch_size]
                    p_ids, p_mask, r_ids, r_mask = trim_padding(ro.prompt_ids[idx], ro.prompt_mask[idx],
                                                                ro.response_ids[idx], ro.response_mask[idx])
                    T = r_ids.shape[1]
                    action_mask = ro.action_mask[idx, :T] if ro.action_mask is not None else None
                    with self._autocast():
                        out = response_forward(self.policy, p_ids, p_mask, r_ids, r_mask, value_head=self.value_head,
                                               action_mask=action_mask)
                    per_token, clipped = clipped_surrogate(out["logprobs"], ro.logprobs[idx, :T], advantages[idx, :T], cfg.clip_coef)
                    if kl_in_loss:  # GRPO: + β·kl(π‖π_anchor) per token, on the policy's own log-probs
                        kl_live = self.kl_fn(out.get("unmasked_logprobs", out["logprobs"]), ro.ref_logprobs[idx, :T])
                        per_token = per_token + beta * kl_live
                    loss = aggregate_loss(per_token, r_mask, cfg.loss_aggregation, mini_tokens, len(mini), cfg.max_new_tokens)
                    if self.value_head is not None:
                        vf_loss, vf_stats = ppo_value_loss(out["values"], ro.values[idx, :T], returns[idx, :T], r_mask,
                                                           cfg.cliprange_value if cfg.cliprange_value > 0 else None)
                        loss = loss + cfg.vf_coef * vf_loss * (r_mask.sum() / mini_tokens)
                        sums["loss/value"] = sums.get("loss/value", 0.0) + float(vf_loss.detach())
                        sums["loss/value_clipfrac"] = sums.get("loss/value_clipfrac", 0.0) + float(vf_stats["value_clipfrac"])
                    check_finite("loss", loss.detach(), self.step_count)
                    loss.backward()
                    with torch.no_grad():
                        log_ratio = out["logprobs"] - ro.logprobs[idx, :T]
                        micro_stats = {
                            "loss/policy": float(masked_mean(per_token, r_mask)),
                            "policy/clipfrac": float(masked_mean(clipped.float(), r_mask)),
                            "policy/approx_kl": float(masked_mean(torch.expm1(-log_ratio) + log_ratio, r_mask)),
                        }
                    for name, value in micro_stats.items():
                        sums[name] = sums.get(name, 0.0) + value
                    n_micro += 1
                if self.ptx is not None:
                    ptx_loss = self.ptx.loss(self.policy, self._autocast)
                    check_finite("ptx loss", ptx_loss.detach(), self.step_count)
                    (cfg.ptx_coef * ptx_loss).backward()
                    ptx_losses.append(float(ptx_loss.detach()))
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                check_finite("gradient norm", grad_norm.detach(), self.step_count)
                self.optimizer.step()
                grad_norms.append(float(grad_norm))
        self.optimizer.zero_grad(set_to_none=True)
        stats = {k: v / max(n_micro, 1) for k, v in sums.items()}
        stats["policy/grad_norm"] = sum(grad_norms) / max(len(grad_norms), 1)
        if ptx_losses:
            stats["loss/ptx"] = sum(ptx_losses) / len(ptx_losses)
        return stats

    # ------------------------------------------------------------------------------------------
    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        """One iteration on `prompts` (each is sampled group_size times). Returns the logged stats."""
        cfg = self.cfg
        prompts = [p for p in prompts for _ in range(cfg.group_size)]
        t0 = time.perf_counter()
        # generate
        self.policy.eval()
        ro = generate(self.policy, self.tokenizer, prompts, self.sampling, chat=self.chat, generator=self.generator,
                      compute_dtype=self.compute_dtype, masker=self.masker)
        t_gen = time.perf_counter()
        # score
        raw_scores = self._reward(ro.prompts, ro.responses)
        scores = self._shape_scores(raw_scores, ro.finished)
        baseline_scores = self._greedy_scores(ro.prompts) if cfg.algo == "remax" else None
        t_score = time.perf_counter()
        passes = self._old_and_anchor(ro)
        ro.logprobs, ro.values, ro.ref_logprobs, ro.scores = passes["logprobs"], passes.get("values"), passes["anchor_logprobs"], scores
        mask = ro.response_mask
        t_fwd = time.perf_counter()
        # shape: per-token KL of the policy's own distribution to the anchor
        kl = self.kl_fn(passes["unmasked_logprobs"], ro.ref_logprobs) * mask  # (B, T)
        beta = self.kl_ctl.value
        token_rewards = kl_penalized_token_rewards(scores, kl, beta if cfg.kl_in == "reward" else 0.0, mask)
        # advantages
        batch = Batch(scores, token_rewards, mask, ro.values, baseline_scores)
        advantages, returns = self.advantage_fn(batch, cfg, self.state)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        check_finite("advantages", advantages, self.step_count)
        # loss + step
        update_stats = self._update(ro, advantages, returns)
        t_update = time.perf_counter()
        # log
        seq_kl = kl.sum(1)
        self.kl_ctl.update(float(seq_kl.mean()), len(prompts))
        k1 = kl_k1(passes["unmasked_logprobs"], ro.ref_logprobs) * mask
        k3 = kl_k3(passes["unmasked_logprobs"], ro.ref_logprobs) * mask
        stats = {
            "step": self.step_count,
            "algo": cfg.algo,
            "reward/score_mean": float(raw_scores.mean()),
            "reward/score_std": float(raw_scores.std()) if len(raw_scores) > 1 else 0.0,
            "reward/shaped_return_mean": float(token_rewards.sum(1).mean()),
            "kl/k1_seq_mean": float(k1.sum(1).mean()),
            "kl/k3_seq_mean": float(k3.sum(1).mean()),
            "kl/coef": beta,
            "policy/entropy": float(masked_mean(passes["entropy"], mask)),
            "response/length_mean": float(mask.sum(1).mean()),
            "response/eos_fraction": float(ro.finished.float().mean()) if ro.finished is not None else math.nan,
            "advantages/mean": float(masked_mean(advantages, mask)),
            "advantages/std": float(masked_mean((advantages - masked_mean(advantages, mask)) ** 2, mask).sqrt()),
            **update_stats,
            "time/generate": t_gen - t0,
            "time/score": t_score - t_gen,
            "time/forward": t_fwd - t_score,
            "time/update": t_update - t_fwd,
        }
        if ro.values is not None:
            stats["value/mean"] = float(masked_mean(ro.values, mask))
        if ro.action_mask is not None:
            stats["nlpo/mask_size_mean"] = float(ro.action_mask.sum(-1).float()[mask > 0].mean())
        if self.gold_fn is not None:
            gold = self.gold_fn(ro.prompts, ro.responses)
            stats["reward/gold_mean"] = float(sum(gold) / len(gold))
        stats["time/step"] = time.perf_counter() - t0
        self.last_rollout = ro
        self.step_count += 1
        # refresh the masking policy (NLPO, every μ iterations) and the 'previous' KL anchor
        if self.masker is not None and self.step_count % cfg.nlpo_refresh == 0:
            self.masker.model.load_state_dict(self.policy.state_dict())
        if self.anchor is not None and self.step_count % cfg.anchor_refresh == 0:
            self.anchor.load_state_dict(self.policy.state_dict())
        if self.logger is not None:
            self.logger(stats)
        return stats

    def train(self, prompts: Sequence[str], progress: bool = True, checkpoint_dir: str | Path | None = None,
              checkpoint_every: int = 0) -> list[dict[str, float]]:
        """Run `cfg.steps` iterations, cycling through `prompts`."""
        from tqdm.auto import tqdm

        history = []
        n = self.cfg.prompts_per_step
        bar = tqdm(range(self.step_count, self.cfg.steps), desc=self.cfg.algo.upper(), disable=not progress,
                   unit="step", dynamic_ncols=True, initial=self.step_count, total=self.cfg.steps)
        for i in bar:
            start = (i * n) % len(prompts)
            stats = self.step([prompts[(start + j) % len(prompts)] for j in range(n)])
            history.append(stats)
            postfix = {"score": f"{stats['reward/score_mean']:.3f}", "kl": f"{stats['kl/k1_seq_mean']:.2f}"}
            if "reward/gold_mean" in stats:
                postfix["gold"] = f"{stats['reward/gold_mean']:.3f}"
            bar.set_postfix(postfix)
            if checkpoint_dir and checkpoint_every and self.step_count % checkpoint_every == 0:
                self.save_checkpoint(Path(checkpoint_dir) / "last")
        return history

    # ------------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """The LoRA adapter (or full model), tokenizer and value head, loadable for inference."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if self.value_head is not None:
            torch.save(self.value_head.state_dict(), path / "value_head.pt")

    def _trainer_state(self) -> dict:
        state = {
            "step": self.step_count,
            "trainable": [p.detach().cpu() for p in self.trainable],
            "optimizer": self.optimizer.state_dict(),
            "kl_coef": self.kl_ctl.value,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": self.state,
        }
        if self.masker is not None:
            state["masker"] = [p.detach().cpu() for p in self.masker.model.parameters()]
        if self.anchor is not None:
            state["anchor"] = [p.detach().cpu() for p in self.anchor.parameters()]
        return state

    def save_checkpoint(self, path) -> None:
        """Everything needed to resume exactly: trainable weights, optimiser, KL coefficient,
        RNG states, running baselines. Written to a temporary file, then renamed (atomic)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "trainer_state.pt.tmp"
        torch.save(self._trainer_state(), tmp)
        tmp.replace(path / "trainer_state.pt")

    def load_checkpoint(self, path) -> None:
        state = torch.load(Path(path) / "trainer_state.pt", map_location=self.device, weights_only=False)
        with torch.no_grad():
            for p, saved in zip(self.trainable, state["trainable"]):
                p.copy_(saved)
            for key, model in (("masker", self.masker.model if self.masker else None), ("anchor", self.anchor)):
                if model is not None:
                    for p, saved in zip(model.parameters(), state[key]):
                        p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.value = state["kl_coef"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.state = state["state"]
        self.step_count = state["step"]


class _PtxBatches:
    """PPO-ptx (InstructGPT): the SFT loss (token-mean NLL of the completions, `algorithms.sft_loss`)
    on batches of SFT/pretraining records, added to the RL loss with weight ptx_coef. The records
    are tokenised once, with the same collator as `rlhfkit sft` (chat rows included)."""

    def __init__(self, records, tokenizer, cfg: RLConfig, device, chat: bool | None):
        from rlhfkit.data.collators import tokenize_sft

        if not records:
            raise ValueError("PPO-ptx needs ptx examples (SFT records)")
        self.examples = [tokenize_sft(tokenizer, r, chat=chat) for r in records]
        self.pad_id = pad_token_id(tokenizer)
        self.batch_size, self.device = cfg.ptx_batch_size, device
        self.position = 0

    def loss(self, policy, autocast) -> torch.Tensor:
        from rlhfkit.algorithms.preference import sft_loss
        from rlhfkit.data.collators import collate_sft

        batch = [self.examples[(self.position + i) % len(self.examples)] for i in range(self.batch_size)]
        self.position += self.batch_size
        tensors = collate_sft(batch, self.pad_id, self.device)
        with autocast():
            logits = policy(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                            position_ids=tensors["position_ids"], use_cache=False).logits
        return sft_loss(logits, tensors["input_ids"], tensors["loss_mask"])[0]
