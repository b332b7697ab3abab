"""Online RL for language models: one readable loop for the whole policy-gradient family.

    generate → score → shape → advantages → loss → step → log → checkpoint

The algorithm (PPO, REINFORCE, RLOO, GRPO, REINFORCE++, ReMax, NLPO) only decides a few pieces,
chosen once when the trainer is built (`ADVANTAGES`, the KL placement from `KL_PLACEMENTS`, the
value head, ReMax's greedy baseline, NLPO's masker); the loop itself has no per-algorithm
branches. Each iteration's data is typed: the sampler's `Rollout`, the `ForwardOutput` of each
pass, and the `ScoredRollout` the update reads. Formulas: ../shared/REFERENCES.md.

Shapes: B responses per iteration (= prompts × G samples each, a prompt's G samples adjacent),
T response tokens, V vocabulary.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms import (
    RunningMoments,
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
    shape_scores,
    whiten,
)
from rlhfkit.algorithms.importance import truncated_importance_weights
from rlhfkit.algorithms.grpo_variants import (
    group_centered_advantages,
    overlong_penalty,
    sequence_clipped_surrogate,
    zero_variance_groups,
)
from rlhfkit.algorithms.preference import sft_loss
from rlhfkit.algorithms.token_credit import dense_token_rewards
from rlhfkit.data.chat import pad_token_id
from rlhfkit.data.collators import collate_sft, tokenize_sft
from rlhfkit.generation.episodes import episode_stats, run_episodes
from rlhfkit.generation.sampling import NucleusMasker, SamplingParams, generate
from rlhfkit.models.forward import response_forward, trim_padding
from rlhfkit.models.heads import ValueHead
from rlhfkit.models.kernels import fuse_activations
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import is_lora, reference_forward
from rlhfkit.trainers.checkpoint import Checkpointer, copy_into, tensors_of
from rlhfkit.trainers.common import check_finite
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.dynamic_sampling import refill
from rlhfkit.trainers.token_credit import StepCredit, TokenRewardModel
from rlhfkit.trainers.distributed import DistributedError, current
from rlhfkit.types import ForwardOutput, Rollout, ScoredRollout

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


@dataclass
class State:
    """Running quantities some estimators keep across iterations."""

    moving_baseline: float | None = None
    score_moments: RunningMoments = field(default_factory=RunningMoments)  # score_norm = "running"


@dataclass(frozen=True)
class PolicyPasses:
    """The no-grad passes over a rollout before the update."""

    old: ForwardOutput  # π_old: logprobs, unmasked_logprobs, values, entropy, each (B, T)
    anchor_logprobs: torch.Tensor | None  # (B, T) log π_anchor: the reference or the previous policy


@dataclass(frozen=True)
class PassPlan:
    """Which forward passes an iteration makes, chosen once from the config.

    single_update_rows: > 0 when the update is one on-policy optimiser step (ppo_epochs 1, one
    mini-batch, one micro-batch, no value head, no NLPO mask): a batch of up to that many rows then
    skips the no-grad policy pass, since π_old = π at that step and the forward with grad gives
    log π_old (detached) for the KL, the advantages and the ratio (which is 1, its gradient ∇log π).
    anchor: False when β is 0 and fixed: nothing reads log π_anchor, so its pass is skipped (and no
    KL is logged)."""

    single_update_rows: int
    anchor: bool


def pass_plan(cfg: RLConfig, has_value_head: bool, has_masker: bool) -> PassPlan:
    single = cfg.ppo_epochs == 1 and not has_value_head and not has_masker
    rows = min(cfg.mini_batch_size, cfg.micro_batch_size) if single else 0
    return PassPlan(single_update_rows=rows, anchor=cfg.init_kl_coef != 0 or cfg.target_kl is not None)


# --------------------------------------------------------------------------------------------
# Advantage estimators: (scored rollout, cfg, state) -> (advantages (B, T), value targets (B, T) or None)


def _adv_gae(s: ScoredRollout, cfg: RLConfig, state: State):
    return gae(s.token_rewards, s.old_values, s.mask, cfg.gamma, cfg.lam)


def _adv_reinforce(s: ScoredRollout, cfg: RLConfig, state: State):
    """REINFORCE with baseline: Â_t = G_t − b, G_t the reward-to-go (= R for every t when the only
    reward is terminal and γ = 1); b a moving average of returns or the learned V(s_t)."""
    returns = reward_to_go(s.token_rewards, s.mask, cfg.gamma)
    if cfg.baseline == "value":
        return (returns - s.old_values) * s.mask, returns
    episode_return = float(s.token_rewards.sum(1).mean())
    baseline = episode_return if state.moving_baseline is None else state.moving_baseline
    state.moving_baseline = cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * episode_return
    return (returns - baseline) * s.mask, None


def _adv_rloo(s: ScoredRollout, cfg: RLConfig, state: State):
    """RLOO: sequence reward R_i (score − β·KL) minus the mean of the other G−1 samples' R."""
    advantages = rloo_advantages(s.token_rewards.sum(1), cfg.group_size)
    return advantages[:, None] * s.mask, None


def _adv_grpo(s: ScoredRollout, cfg: RLConfig, state: State):
    """GRPO: score standardised within its group, broadcast to every token (KL goes in the loss)."""
    advantages = group_normalized_advantages(s.token_rewards.sum(1), cfg.group_size)
    return advantages[:, None] * s.mask, None


def _adv_remax(s: ScoredRollout, cfg: RLConfig, state: State):
    """ReMax: R_i minus the score of the greedy response to the same prompt."""
    return (s.token_rewards.sum(1) - s.baseline_scores)[:, None] * s.mask, None


def _adv_reinforce_pp(s: ScoredRollout, cfg: RLConfig, state: State):
    """REINFORCE++: reward-to-go of the KL-shaped rewards, normalised over the whole batch."""
    return whiten(reward_to_go(s.token_rewards, s.mask, cfg.gamma), s.mask), None


def _adv_dr_grpo(s: ScoredRollout, cfg: RLConfig, state: State):
    """Dr. GRPO: score minus its group's mean, no std division, broadcast to every token."""
    advantages = group_centered_advantages(s.token_rewards.sum(1), cfg.group_size)
    return advantages[:, None] * s.mask, None


def _adv_pair_preference(s: ScoredRollout, cfg: RLConfig, state: State):
    """Online DPO (trainers/online_dpo.py) trains on pairs, not advantages; what is logged as its
    advantage is the pair's verdict: +1 on the winner's tokens, −1 on the loser's, 0 for a tie."""
    pairs = s.scores.view(-1, 2)
    sign = torch.sign(pairs[:, 0] - pairs[:, 1])
    return torch.stack([sign, -sign], dim=1).view(-1)[:, None] * s.mask, None


ADVANTAGES = {
    "online_dpo": _adv_pair_preference,
    "dapo": _adv_grpo,  # DAPO and GSPO keep GRPO's advantages; they change sampling, clipping, the ratio
    "gspo": _adv_grpo,
    "dr_grpo": _adv_dr_grpo,
    "ppo": _adv_gae,
    "nlpo": _adv_gae,
    "reinforce": _adv_reinforce,
    "rloo": _adv_rloo,
    "grpo": _adv_grpo,
    "remax": _adv_remax,
    "reinforce_pp": _adv_reinforce_pp,
}


# --------------------------------------------------------------------------------------------
# KL placement (REFERENCES.md, "Where KL goes"), chosen from cfg.kl_in when the trainer is built.


class KLInReward:
    """PPO, RLOO, REINFORCE: r_t = −β·kl_t in the per-token rewards; no KL term in the loss."""

    def reward_coef(self, kl_coef: float) -> float:
        return kl_coef

    def add_to_loss(self, per_token, kl_fn, logprobs, anchor_logprobs, kl_coef: float) -> torch.Tensor:
        return per_token


class KLInLoss:
    """GRPO: + β·kl(π‖π_anchor) per token in the loss, on the policy's own (unmasked) log-probs
    with grad; none in the rewards."""

    def reward_coef(self, kl_coef: float) -> float:
        return 0.0

    def add_to_loss(self, per_token, kl_fn, logprobs, anchor_logprobs, kl_coef: float) -> torch.Tensor:
        return per_token + kl_coef * kl_fn(logprobs, anchor_logprobs)  # (B, T)


KL_PLACEMENTS = {"reward": KLInReward(), "loss": KLInLoss()}


# --------------------------------------------------------------------------------------------
# Surrogates (the clipped policy loss), chosen from cfg.importance_ratio: (log π, log π_old,
# advantages, mask, cfg) -> (per-token loss (B, T), clipped (B, T)). The clip range is
# [1 − ε_low, 1 + ε_high], each clip_coef unless set (DAPO's clip-higher, GSPO's tight range).


def _clip_range(cfg: RLConfig) -> tuple[float, float]:
    low = cfg.clip_coef if cfg.clip_low is None else cfg.clip_low
    return low, cfg.clip_coef if cfg.clip_high is None else cfg.clip_high


def _token_surrogate(logprobs, old_logprobs, advantages, mask, cfg: RLConfig):
    low, high = _clip_range(cfg)
    return clipped_surrogate(logprobs, old_logprobs, advantages, low, high)


def _sequence_surrogate(logprobs, old_logprobs, advantages, mask, cfg: RLConfig):
    """GSPO: the length-normalised sequence ratio in the place of each token's."""
    low, high = _clip_range(cfg)
    return sequence_clipped_surrogate(logprobs, old_logprobs, advantages, mask, low, high)


SURROGATES = {"token": _token_surrogate, "sequence": _sequence_surrogate}


class OnlineTrainer:
    """Train `policy` against `reward_fn` with the algorithm named in `config.algo`.

    policy: a causal LM (usually a LoRA peft model, whose adapter-disabled base is the
    reference). reference: a frozen model for the KL anchor when the policy has no adapter.
    gold_fn: optional second reward that is only logged (e.g. the gold scorer of a task).
    rollout_backend: another engine to sample from (generation/backends.py: an OpenAI-compatible
    server, vLLM), given the policy's weights after every update; None: our own sampler. Its
    log-probs differ from the trainer's, so each token's policy loss is weighted by
    min(exp(log π_old − log π_sampler), importance_cap) (TRL's correction; cap 0: none).
    env: an environment class (envs/): each iteration then plays multi-turn episodes, one fresh
    instance per episode, on task rows (dicts) instead of prompts, scored by the environment's
    rewards (reward_fn unused); `episode` = (turn limit, token budget), None: the class's own.
    reward_granularity: "sequence" (the score on the last token) or "token" (dense rewards: with a
    process reward model in the reward, each step's reward on its last token, `StepCredit`;
    otherwise a token-level reward model trained on the scores, `TokenRewardModel`).
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
        rollout_backend=None,
        importance_cap: float = 2.0,
        env: type | None = None,
        episode: tuple[int, int] | None = None,
        reward_granularity: str = "sequence",
    ):
        if reference is None and not is_lora(policy):
            raise ValueError("a full (non-LoRA) policy needs a reference model: pass reference=frozen_copy(policy)")
        self.policy, self.tokenizer, self.reward_fn, self.gold_fn = policy, tokenizer, reward_fn, gold_fn
        self.cfg = cfg = config
        self.reference = reference
        for model in (policy, reference):  # same function, fused kernels (before any snapshot is copied)
            if model is not None:
                fuse_activations(model)
        self.compute_dtype, self.chat, self.logger = compute_dtype, chat, logger
        self.device = next(policy.parameters()).device
        hidden = getattr(policy.config, "hidden_size", None) or policy.config.n_embd
        # pieces chosen once
        self.advantage_fn = ADVANTAGES[cfg.algo]
        self.kl_fn = KL_ESTIMATORS[cfg.kl_estimator]
        self.kl_placement = KL_PLACEMENTS[cfg.kl_in]
        self.surrogate_fn = SURROGATES[cfg.importance_ratio]
        self.sampling_stats: dict[str, float] = {}  # zero-variance groups, DAPO's refills, overlong penalty
        self.prompt_pool: list[str] = []  # where DAPO's refills draw fresh prompts (set by `train`)
        self.last_rollout_prompts: list[str] = []  # without a pool (step called alone): this step's prompts
        self.baseline_fn = self._greedy_scores if cfg.algo == "remax" else None
        self.value_head = ValueHead(hidden).to(self.device) if cfg.uses_value_head else None
        # several processes: each samples its share of the prompts (trainers/distributed.py)
        self.dist = current()
        if cfg.prompts_per_step % self.dist.world:
            raise DistributedError(
                f"batch_size {cfg.batch_size} / group_size {cfg.group_size} = {cfg.prompts_per_step} prompts per step, "
                f"which do not split over {self.dist.world} processes (a prompt's samples stay in one); make "
                f"batch_size a multiple of {cfg.group_size * self.dist.world}")
        self.dist.broadcast_parameters([p for p in policy.parameters() if p.requires_grad]
                                       + (list(self.value_head.parameters()) if self.value_head is not None else []))
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
        self.kl_ctl = make_kl_controller(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon, cfg.kl_controller,
                                         cfg.kl_kp, cfg.kl_ki, cfg.kl_lookahead)
        self.sampling = SamplingParams(strategy="sample", temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
        self.generator = torch.Generator(device=self.device).manual_seed(self.dist.rank_seed(cfg.seed))
        self._order_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.state = State()
        self.backend, self.importance_cap = rollout_backend, importance_cap
        self._backend_synced = False
        self._choose_rollout(env, episode, reward_granularity, hidden)
        self.plan = pass_plan(cfg, self.value_head is not None, self.masker is not None)
        self.step_count = 0
        self.history: list[dict] = []
        self.last_rollout: Rollout | None = None
        self.last_scored: ScoredRollout | None = None

    @property
    def order_generator(self) -> torch.Generator:
        """What draws the mini-batch order: one process, the sampling generator (whichever object
        `generator` is now); several, a generator seeded alike on every process."""
        return self.generator if self.dist.world == 1 else self._order_generator

    # ------------------------------------------------------------------------------------------
    # Rollouts: single-turn (prompt -> response -> reward_fn) or multi-turn episodes with an
    # environment, chosen once here; dense token rewards likewise.

    def _choose_rollout(self, env, episode, reward_granularity: str, hidden: int) -> None:
        cfg = self.cfg
        self.env, self.token_credit = env, None
        if env is not None and cfg.algo in ("remax", "nlpo"):
            raise ValueError(f"multi-turn episodes work with ppo, reinforce, rloo, grpo, reinforce_pp; not {cfg.algo}")
        if env is not None and self.backend is not None:
            raise ValueError("multi-turn episodes are played by our own sampler; --rollout-backend openai/vllm "
                             "serve single-turn rollouts only")
        if reward_granularity not in ("sequence", "token"):
            raise ValueError(f"reward granularity must be sequence or token, got {reward_granularity!r}")
        if reward_granularity == "token":
            if cfg.algo not in ("ppo", "reinforce", "reinforce_pp"):
                raise ValueError(f"token-level rewards need a per-token estimator (ppo, reinforce, reinforce_pp); "
                                 f"{cfg.algo} sums each sequence's rewards")
            if env is None and getattr(self.reward_fn, "has_steps", False):  # a process reward model's steps
                self.token_credit = StepCredit(self.reward_fn, self.tokenizer)
            else:
                self.token_credit = TokenRewardModel(self.policy, self.reference, hidden, self.device)
        self.episode_limits = episode or (getattr(env, "max_turns", 4), getattr(env, "max_tokens", 192))
        self.rollout_fn = self._single_turn_rollout if env is None else self._episode_rollout
        self.score_fn = self._single_turn_scores if env is None else self._episode_scores
        if isinstance(self.token_credit, StepCredit):
            self.score_fn = self._step_scores

    def _single_turn_rollout(self, prompts: list[str]) -> Rollout:
        return self._generate(prompts)

    def _single_turn_scores(self, ro: Rollout) -> torch.Tensor:
        return self._reward(ro.prompts, ro.responses)

    def _step_scores(self, ro: Rollout) -> torch.Tensor:
        """(B,) the sums of the process reward's step rewards (StepCredit keeps the steps)."""
        scores = torch.tensor(self.token_credit.scores(ro), device=self.device, dtype=torch.float32)
        check_finite("reward", scores, self.step_count)
        return scores

    def _episode_rollout(self, rows: list[dict]) -> Rollout:
        max_turns, max_tokens = self.episode_limits
        return run_episodes(self.policy, self.tokenizer, [self.env() for _ in rows], rows, self.sampling, max_turns,
                            max_tokens, chat=self.chat, generator=self.generator, compute_dtype=self.compute_dtype)

    def _episode_scores(self, ro: Rollout) -> torch.Tensor:
        """(B,) each episode's return: the sum of its turns' rewards."""
        scores = torch.tensor([float(e["return"]) for e in ro.episodes], device=self.device)
        check_finite("reward", scores, self.step_count)
        return scores

    def _dense_scores(self, ro: Rollout, mask: torch.Tensor, raw_scores: torch.Tensor) -> torch.Tensor | None:
        """(B, T) per-token scores adding up to the raw scores, or None for a terminal score only."""
        if self.token_credit is not None:
            return self.token_credit.dense(ro, mask, raw_scores, self._autocast)
        return ro.token_scores  # an episode's per-turn rewards; None for a single turn

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
        # batch and running normalisation see the global batch's scores
        return self.dist.on_global_rows(
            lambda s, f: shape_scores(s, f, clip=cfg.score_clip, norm=cfg.score_norm, moments=self.state.score_moments,
                                      missing_eos_penalty=cfg.missing_eos_penalty), scores, finished)

    def _greedy_scores(self, prompts: list[str]) -> torch.Tensor:
        """ReMax's baseline: the score of the greedy response to each prompt."""
        unique = prompts[:: self.cfg.group_size]
        greedy = generate(self.policy, self.tokenizer, unique, SamplingParams(strategy="greedy", max_new_tokens=self.cfg.max_new_tokens),
                          chat=self.chat, compute_dtype=self.compute_dtype)
        scores = self._shape_scores(self._reward(unique, greedy.responses), greedy.finished)
        return scores.repeat_interleave(self.cfg.group_size)

    @torch.no_grad()
    def _frozen_logprobs(self, ro: Rollout, frozen) -> torch.Tensor:
        """(B, T) log-probs of the rollout's responses under a frozen model: a policy snapshot, the
        reference, or None (the adapter-disabled base of a LoRA policy)."""
        with self._autocast(), reference_forward(self.policy, frozen) as model:
            return response_forward(model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask).logprobs

    def _anchor_logprobs(self, ro: Rollout) -> torch.Tensor | None:
        """(B, T) log π_anchor of the rollout (the previous-policy snapshot, else the frozen
        reference / adapter-disabled base), or None when the plan skips that pass."""
        if not self.plan.anchor:
            return None
        return self._frozen_logprobs(ro, self.anchor if self.anchor is not None else self.reference)

    @torch.no_grad()
    def _old_and_anchor(self, ro: Rollout) -> PolicyPasses:
        """Policy pass (old log-probs, values, entropy) and anchor pass (reference or previous policy)."""
        with self._autocast():
            old = response_forward(self.policy, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask,
                                   value_head=self.value_head, with_entropy=True, action_mask=ro.action_mask)
        return PolicyPasses(old, self._anchor_logprobs(ro))

    def _scored_rollout(self, ro: Rollout, raw_scores: torch.Tensor, scores: torch.Tensor,
                        baseline_scores: torch.Tensor | None, passes: PolicyPasses) -> ScoredRollout:
        """The rollout with its old/anchor passes, per-token KL and KL-shaped token rewards."""
        mask = ro.policy_mask if ro.policy_mask is not None else ro.response_mask  # the policy's own tokens
        kl_coef = self.kl_ctl.value
        # the KL penalty uses the policy's own (unmasked) log-probs, also under NLPO
        if passes.anchor_logprobs is not None:
            kl = self.kl_fn(passes.old.unmasked_logprobs, passes.anchor_logprobs) * mask  # (B, T)
        else:
            kl = torch.zeros_like(mask)  # β = 0: not computed
        dense = self._dense_scores(ro, mask, raw_scores)
        if dense is None:
            token_rewards = kl_penalized_token_rewards(scores, kl, self.kl_placement.reward_coef(kl_coef), mask)
        else:
            token_rewards = dense_token_rewards(dense, scores, raw_scores, kl, self.kl_placement.reward_coef(kl_coef), mask)
        weights = None
        if self.backend is not None and self.importance_cap > 0:
            # the sampler's log-probs (ro.logprobs) against the trainer's own π_old
            weights, self._importance_stats = truncated_importance_weights(passes.old.logprobs, ro.logprobs, mask,
                                                                           self.importance_cap)
        return ScoredRollout(importance_weights=weights,
            rollout=ro, raw_scores=raw_scores, scores=scores, baseline_scores=baseline_scores,
            old_logprobs=passes.old.logprobs, unmasked_logprobs=passes.old.unmasked_logprobs,
            anchor_logprobs=passes.anchor_logprobs, old_values=passes.old.values, entropy=passes.old.entropy,
            kl=kl, kl_coef=kl_coef, token_rewards=token_rewards,
        )

    # -- GRPO variants: overlong penalty, zero-variance groups, DAPO's dynamic sampling ------------
    def _overlong(self, ro: Rollout, scores: torch.Tensor, log: bool = True) -> torch.Tensor:
        """DAPO's soft overlong punishment added to the shaped scores (off at fraction 0)."""
        buffer = int(round(self.cfg.overlong_buffer_fraction * self.cfg.max_new_tokens))
        if buffer <= 0:
            return scores
        penalty = overlong_penalty(ro.response_mask.sum(1), self.cfg.max_new_tokens, buffer, self.cfg.overlong_penalty)
        if log:
            self.sampling_stats["reward/overlong_penalty_mean"] = float(penalty.mean())
        return scores + penalty.to(scores.dtype)

    def _sample_more(self, n_prompts: int):
        """One more draw for dynamic sampling: G samples of n fresh prompts, scored and shaped."""
        pool = self.prompt_pool or self.last_rollout_prompts
        picks = torch.randint(len(pool), (n_prompts,), generator=self.generator, device=self.device).tolist()
        prompts = [pool[i] for i in picks for _ in range(self.cfg.group_size)]
        ro = generate(self.policy, self.tokenizer, prompts, self.sampling, chat=self.chat, generator=self.generator,
                      compute_dtype=self.compute_dtype, masker=self.masker)
        raw = self._reward(ro.prompts, ro.responses)
        return ro, raw, self._overlong(ro, self._shape_scores(raw, ro.finished), log=False)

    def _after_scoring(self, ro: Rollout, raw_scores: torch.Tensor, scores: torch.Tensor,
                       prompts: Sequence[str]) -> tuple[Rollout, torch.Tensor, torch.Tensor]:
        """The overlong penalty, the share of groups whose rewards are all equal (logged for every
        group algorithm) and, with dynamic_sampling, the batch refilled with groups that differ."""
        cfg = self.cfg
        self.sampling_stats = {}
        scores = self._overlong(ro, scores)
        if cfg.group_size < 2:
            return ro, raw_scores, scores
        zero = zero_variance_groups(raw_scores, cfg.group_size)
        (everyone,) = self.dist.gather_rows(raw_scores)  # the logged share is the global batch's
        self.sampling_stats["groups/zero_variance_fraction"] = float(zero_variance_groups(everyone, cfg.group_size).float().mean())
        if not cfg.dynamic_sampling or not bool(zero.any()):
            return ro, raw_scores, scores
        self.last_rollout_prompts = list(prompts[:: cfg.group_size])
        (ro, raw_scores, scores), stats = refill((ro, raw_scores, scores), cfg.group_size,
                                                 lambda: self._sample_more(len(zero)), cfg.dynamic_sampling_rounds,
                                                 pad_token_id(self.tokenizer))
        self.sampling_stats.update(stats)
        return ro, raw_scores, scores

    def _advantages(self, scored: ScoredRollout) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(advantages (B, T), value targets (B, T) or None) from the chosen estimator, on the global
        batch (whitening, REINFORCE's baseline and REINFORCE++'s normalisation are batch statistics)."""
        def estimate(token_rewards, old_values, mask, baseline_scores, scores):
            view = SimpleNamespace(token_rewards=token_rewards, old_values=old_values, mask=mask,
                                   baseline_scores=baseline_scores, scores=scores)
            advantages, returns = self.advantage_fn(view, self.cfg, self.state)
            if self.cfg.whiten_advantages:
                advantages = whiten(advantages, mask)
            return advantages, returns

        advantages, returns = self.dist.on_global_rows(estimate, scored.token_rewards, scored.old_values, scored.mask,
                                                       scored.baseline_scores, scored.scores, columns=scored.mask.shape[1])
        check_finite("advantages", advantages, self.step_count)
        return advantages, returns

    # ------------------------------------------------------------------------------------------
    def _mini_batches(self, mask: torch.Tensor):
        """Each optimiser step's (rows of this process, the mini-batch's size, its token count):
        ppo_epochs passes over a fresh permutation of the global batch's rows, cut into
        mini-batches. mask: this process's (B, T) response mask."""
        (full,) = self.dist.gather_rows(mask)  # (B_global, T') — the same mask in one process
        start, stop = self.dist.bounds(full.shape[0]) if self.dist.world > 1 else (0, full.shape[0])
        for _ in range(self.cfg.ppo_epochs):
            order = torch.randperm(full.shape[0], generator=self.order_generator, device=self.device)
            for m0 in range(0, full.shape[0], self.cfg.mini_batch_size):
                mini = order[m0 : m0 + self.cfg.mini_batch_size]
                mine = mini[(mini >= start) & (mini < stop)] - start if self.dist.world > 1 else mini
                yield mine, len(mini), full[mini].sum().clamp(min=1)

    def _grad_forward(self, ro: Rollout, idx: torch.Tensor, with_entropy: bool = False):
        """The rows `idx` of the rollout, padding trimmed, forwarded with grad: (ForwardOutput,
        loss mask (b, T')): the response mask, or an episode's policy-token mask."""
        p_ids, p_mask, r_ids, r_mask = trim_padding(ro.prompt_ids[idx], ro.prompt_mask[idx],
                                                    ro.response_ids[idx], ro.response_mask[idx])
        T = r_ids.shape[1]
        action_mask = ro.action_mask[idx, :T] if ro.action_mask is not None else None
        with self._autocast():
            out = response_forward(self.policy, p_ids, p_mask, r_ids, r_mask, value_head=self.value_head,
                                   with_entropy=with_entropy, action_mask=action_mask)
        if ro.policy_mask is not None:  # attention sees the whole episode; the loss the policy's tokens
            return out, ro.policy_mask[idx, :T]
        return out, r_mask

    def _micro_loss(self, scored: ScoredRollout, idx: torch.Tensor, advantages: torch.Tensor,
                    returns: torch.Tensor | None, mini_tokens: torch.Tensor, mini_size: int,
                    forward: tuple[ForwardOutput, torch.Tensor] | None = None) -> dict[str, float]:
        """Forward the rows `idx` with grad (or take `forward`, their forward already made),
        backpropagate their share of the mini-batch loss and return their stats."""
        cfg = self.cfg
        out, r_mask = forward if forward is not None else self._grad_forward(scored.rollout, idx)
        T = r_mask.shape[1]
        old_logprobs = scored.old_logprobs[idx, :T]
        per_token, clipped = self.surrogate_fn(out.logprobs, old_logprobs, advantages[idx, :T], r_mask, cfg)
        if scored.importance_weights is not None:  # before the KL term, as TRL
            per_token = per_token * scored.importance_weights[idx, :T]
        if scored.anchor_logprobs is not None:
            per_token = self.kl_placement.add_to_loss(per_token, self.kl_fn, out.unmasked_logprobs,
                                                      scored.anchor_logprobs[idx, :T], scored.kl_coef)
        loss = aggregate_loss(per_token, r_mask, cfg.loss_aggregation, mini_tokens, mini_size, cfg.max_new_tokens)
        stats: dict[str, float] = {}
        if self.value_head is not None:
            vf_loss, vf_stats = ppo_value_loss(out.values, scored.old_values[idx, :T], returns[idx, :T], r_mask,
                                               cfg.cliprange_value if cfg.cliprange_value > 0 else None)
            loss = loss + cfg.vf_coef * vf_loss * (r_mask.sum() / mini_tokens)
            stats["loss/value"] = float(vf_loss.detach())
            stats["loss/value_clipfrac"] = float(vf_stats["value_clipfrac"])
        check_finite("loss", loss.detach(), self.step_count)
        loss.backward()
        with torch.no_grad():
            stats["loss/policy"] = float(masked_mean(per_token, r_mask))
            stats["policy/clipfrac"] = float(masked_mean(clipped.float(), r_mask))
            # how far the update has moved: k3 with the updated π in the place of π and π_old in
            # that of the anchor (≈ KL(π‖π_old) while the two are close); 0 in the first epoch
            stats["policy/approx_kl_k3"] = float(masked_mean(kl_k3(out.logprobs, old_logprobs), r_mask))
        return stats

    def _optimizer_step(self) -> tuple[float, float | None]:
        """PPO-ptx's loss (when on), gradient clipping and the step. Returns (grad norm, ptx loss)."""
        ptx_loss = None
        if self.ptx is not None:
            ptx = self.ptx.loss(self.policy, self._autocast)
            check_finite("ptx loss", ptx.detach(), self.step_count)
            # every process computes the same ptx batch: each adds 1/N of its gradient
            (self.cfg.ptx_coef / self.dist.world * ptx).backward()
            ptx_loss = float(ptx.detach())
        self.dist.reduce_gradients(self.trainable)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
        check_finite("gradient norm", grad_norm.detach(), self.step_count)
        self.optimizer.step()
        return float(grad_norm), ptx_loss

    def _update(self, scored: ScoredRollout, advantages: torch.Tensor, returns: torch.Tensor | None) -> dict[str, float]:
        """Epochs of mini-batch steps; micro-batches accumulate so that each step's loss is exactly
        that of the whole mini-batch (tests/test_online.py checks accumulation == full batch)."""
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        ptx_losses: list[float] = []
        n_micro = 0
        # Dropout stays off (eval mode): with it π and π_old would differ before any update.
        self.policy.eval()
        for mini, mini_size, mini_tokens in self._mini_batches(scored.mask):
            self.optimizer.zero_grad(set_to_none=True)
            for m0 in range(0, len(mini), self.cfg.micro_batch_size):
                idx = mini[m0 : m0 + self.cfg.micro_batch_size]
                for name, value in self._micro_loss(scored, idx, advantages, returns, mini_tokens, mini_size).items():
                    sums[name] = sums.get(name, 0.0) + value
                n_micro += 1
            grad_norm, ptx_loss = self._optimizer_step()
            grad_norms.append(grad_norm)
            if ptx_loss is not None:
                ptx_losses.append(ptx_loss)
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.dist.mean_dict({k: v / max(n_micro, 1) for k, v in sums.items()})
        stats["policy/grad_norm"] = sum(grad_norms) / max(len(grad_norms), 1)
        if ptx_losses:
            stats["loss/ptx"] = sum(ptx_losses) / len(ptx_losses)
        return stats

    def _single_update(self, ro: Rollout, raw_scores: torch.Tensor, scores: torch.Tensor,
                       baseline_scores: torch.Tensor | None,
                       anchor_logprobs: torch.Tensor | None) -> tuple[ScoredRollout, torch.Tensor, dict[str, float]]:
        """shape + advantages + loss + step when the update is one on-policy step over the whole
        batch (`PassPlan`): the forward with grad stands in for the no-grad π_old pass. The same
        permutation is drawn as in `_update`, so the RNG streams match the general path's.
        Returns (scored rollout, advantages (B, T), update stats)."""
        B, T = ro.response_mask.shape
        ((idx, mini_size, mini_tokens),) = self._mini_batches(ro.response_mask)
        self.policy.eval()
        self.optimizer.zero_grad(set_to_none=True)
        out, r_mask = self._grad_forward(ro, idx, with_entropy=True)

        def detached(x: torch.Tensor) -> torch.Tensor:  # rows idx, T' ≤ T columns -> (B, T) in rollout order
            full = torch.zeros(B, T, device=self.device)
            full[idx, : x.shape[1]] = x.detach().float()
            return full

        old = ForwardOutput(logprobs=detached(out.logprobs), unmasked_logprobs=detached(out.unmasked_logprobs),
                            entropy=detached(out.entropy))
        scored = self._scored_rollout(ro, raw_scores, scores, baseline_scores, PolicyPasses(old, anchor_logprobs))
        advantages, returns = self._advantages(scored)
        stats = self.dist.mean_dict(self._micro_loss(scored, idx, advantages, returns, mini_tokens, mini_size,
                                                     forward=(out, r_mask)))
        grad_norm, ptx_loss = self._optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        stats["policy/grad_norm"] = grad_norm
        if ptx_loss is not None:
            stats["loss/ptx"] = ptx_loss
        return scored, advantages, stats

    # ------------------------------------------------------------------------------------------
    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        """One iteration on `prompts` (each is sampled group_size times; with an environment, task
        rows, each played group_size times). Returns the logged stats."""
        cfg = self.cfg
        # this process's share of the prompts (all of them in one process), each with its G samples
        prompts = [p for p in self.dist.shard(prompts) for _ in range(cfg.group_size)]
        times = [time.perf_counter()]
        # generate
        self.policy.eval()
        ro = self.rollout_fn(prompts)
        times.append(time.perf_counter())
        return self.learn(ro, times)

    def learn(self, ro: Rollout, times: list[float] | None = None) -> dict[str, float]:
        """The rest of an iteration on a sampled rollout (this process's rows, a prompt's G
        samples adjacent): score → shape → advantages → loss → step → log. times: perf_counter
        at the start and after generate (default: now, twice)."""
        times = times or [time.perf_counter()] * 2
        # score
        raw_scores = self.score_fn(ro)
        scores = self._shape_scores(raw_scores, ro.finished)
        ro, raw_scores, scores = self._after_scoring(ro, raw_scores, scores, ro.prompts)
        baseline_scores = self.baseline_fn(ro.prompts) if self.baseline_fn is not None else None
        times.append(time.perf_counter())
        if self._one_step(len(ro.prompts)):
            # one on-policy step: the anchor pass, then shape, advantages, loss and step, the
            # forward with grad giving π_old
            anchor_logprobs = self._anchor_logprobs(ro)
            times.append(time.perf_counter())
            scored, advantages, update_stats = self._single_update(ro, raw_scores, scores, baseline_scores, anchor_logprobs)
        else:
            # shape: old and anchor log-probs, per-token KL, KL-shaped token rewards
            scored = self._scored_rollout(ro, raw_scores, scores, baseline_scores, self._old_and_anchor(ro))
            times.append(time.perf_counter())
            # advantages, loss + step
            advantages, returns = self._advantages(scored)
            update_stats = self._update(scored, advantages, returns)
        times.append(time.perf_counter())
        # the KL controller's step on this (global) batch's mean sequence KL
        (kl_sums,) = self.dist.gather_rows(scored.kl.sum(1))
        self.kl_ctl.update(float(kl_sums.mean()), len(kl_sums))
        # log
        stats = self._stats(*self._global_view(scored, advantages), update_stats, times)
        self.last_rollout, self.last_scored = ro, scored
        self.step_count += 1
        self._refresh_frozen_copies()
        if self.backend is not None:  # the sampler gets the updated weights
            synced = time.perf_counter()
            self._sync_backend()
            stats["time/weight_sync"] = time.perf_counter() - synced
        if self.logger is not None:
            self.logger(stats)
        return stats

    def _generate(self, prompts: list[str]) -> Rollout:
        """The rollout: our sampler on the policy, or the backend (given the policy's weights first)."""
        if self.backend is None:
            return generate(self.policy, self.tokenizer, prompts, self.sampling, chat=self.chat, generator=self.generator,
                            compute_dtype=self.compute_dtype, masker=self.masker)
        if not self._backend_synced:  # the first step, or the first after a resume
            self._sync_backend()
        seed = self.cfg.seed * 1_000_003 + self.step_count  # a resumed run asks for the same samples
        return self.backend.rollout(self.tokenizer, prompts, self.sampling, self.chat, seed=seed)

    def _sync_backend(self) -> None:
        self.backend.sync_weights(self.policy, self.tokenizer)
        self._backend_synced = True

    def _one_step(self, rows: int) -> bool:
        """True when this iteration's update is one on-policy step (`PassPlan`): the global batch
        is one mini-batch and this process's `rows` one micro-batch."""
        return 0 < rows <= self.plan.single_update_rows and rows * self.dist.world <= self.cfg.mini_batch_size

    def _global_view(self, scored: ScoredRollout, advantages: torch.Tensor):
        """(scored, advantages) of the global batch for the logged statistics: the processes'
        rows gathered (one process: the arguments themselves). NLPO's action mask is carried as
        its per-token size (B, T, 1), which is all the statistics read of it."""
        if self.dist.world == 1:
            return scored, advantages
        ro = scored.rollout
        sizes = ro.action_mask.sum(-1, keepdim=True) if ro.action_mask is not None else None
        (mask, raw, rewards, entropy, unmasked, anchor, kl, values, finished, sizes,
         advantages) = self.dist.gather_rows(scored.mask, scored.raw_scores, scored.token_rewards, scored.entropy,
                                             scored.unmasked_logprobs, scored.anchor_logprobs, scored.kl,
                                             scored.old_values, ro.finished, sizes, advantages)
        texts = self.dist.gather_object((list(ro.prompts), list(ro.responses)))
        rollout = SimpleNamespace(finished=finished, action_mask=sizes, prompts=[p for part in texts for p in part[0]],
                                  responses=[r for part in texts for r in part[1]], episodes=None)
        view = SimpleNamespace(rollout=rollout, mask=mask, raw_scores=raw, token_rewards=rewards, kl_coef=scored.kl_coef,
                               entropy=entropy, unmasked_logprobs=unmasked, anchor_logprobs=anchor, kl=kl,
                               old_values=values, importance_weights=scored.importance_weights)
        return view, advantages

    def _stats(self, scored: ScoredRollout, advantages: torch.Tensor, update_stats: dict[str, float],
               times: list[float]) -> dict:
        """The logged stats of one iteration. times: perf_counter at the start and after generate,
        score, forward and update."""
        ro, mask, raw = scored.rollout, scored.mask, scored.raw_scores
        adv_mean = masked_mean(advantages, mask)
        stats = {
            "step": self.step_count,
            "algo": self.cfg.algo,
            "reward/score_mean": float(raw.mean()),
            "reward/score_std": float(raw.std()) if len(raw) > 1 else 0.0,
            "reward/shaped_return_mean": float(scored.token_rewards.sum(1).mean()),
            "kl/coef": scored.kl_coef,
            "policy/entropy": float(masked_mean(scored.entropy, mask)),
            "response/length_mean": float(mask.sum(1).mean()),
            "response/eos_fraction": float(ro.finished.float().mean()) if ro.finished is not None else math.nan,
            "advantages/mean": float(adv_mean),
            "advantages/std": float(masked_mean((advantages - adv_mean) ** 2, mask).sqrt()),
            **update_stats,
            **self.sampling_stats,
        }
        if scored.anchor_logprobs is not None:  # with β = 0 and fixed the anchor pass is skipped
            for name, kl_fn in (("k1", kl_k1), ("k3", kl_k3)):
                stats[f"kl/{name}_seq_mean"] = float((kl_fn(scored.unmasked_logprobs, scored.anchor_logprobs) * mask).sum(1).mean())
            # the KL the controller sees: the configured estimator, summed per sequence
            stats[f"kl/{self.cfg.kl_estimator}_seq_mean"] = float(scored.kl.sum(1).mean())
        for name, (t0, t1) in zip(("generate", "score", "forward", "update"), itertools.pairwise(times)):
            stats[f"time/{name}"] = t1 - t0
        if scored.old_values is not None:
            stats["value/mean"] = float(masked_mean(scored.old_values, mask))
        if scored.importance_weights is not None:
            stats.update({f"rollout/importance_{k}": v for k, v in self._importance_stats.items()})
        if ro.action_mask is not None:
            stats["nlpo/mask_size_mean"] = float(ro.action_mask.sum(-1).float()[mask > 0].mean())
        if ro.episodes is not None:
            stats.update(episode_stats(ro.episodes))
        if self.token_credit is not None:
            stats.update(self.token_credit.stats())
        if self.gold_fn is not None:
            gold = self.gold_fn(ro.prompts, ro.responses)
            stats["reward/gold_mean"] = float(sum(gold) / len(gold))
        stats["time/step"] = time.perf_counter() - times[0]
        return stats

    def _refresh_frozen_copies(self) -> None:
        """NLPO's masking policy every nlpo_refresh iterations, the 'previous' KL anchor every
        anchor_refresh iterations: both become copies of the current policy."""
        if self.masker is not None and self.step_count % self.cfg.nlpo_refresh == 0:
            self.masker.model.load_state_dict(self.policy.state_dict())
        if self.anchor is not None and self.step_count % self.cfg.anchor_refresh == 0:
            self.anchor.load_state_dict(self.policy.state_dict())

    def train(self, prompts: Sequence[str], progress: bool = True,
              checkpointer: Checkpointer | None = None) -> list[dict[str, float]]:
        """Run `cfg.steps` iterations, cycling through `prompts`; checkpoint every
        checkpointer.every steps and at the end. Returns the stats of every step (a resumed
        trainer's earlier steps included)."""
        from tqdm.auto import tqdm

        n = self.cfg.prompts_per_step
        self.prompt_pool = list(prompts)
        bar = tqdm(range(self.step_count, self.cfg.steps), desc=self.cfg.algo.upper(), disable=not progress,
                   unit="step", dynamic_ncols=True, initial=self.step_count, total=self.cfg.steps)
        for i in bar:
            start = (i * n) % len(prompts)
            stats = self.step([prompts[(start + j) % len(prompts)] for j in range(n)])
            self.history.append(stats)
            postfix = {"score": f"{stats['reward/score_mean']:.3f}"}
            if "kl/k1_seq_mean" in stats:
                postfix["kl_k1"] = f"{stats['kl/k1_seq_mean']:.2f}"
            if "reward/gold_mean" in stats:
                postfix["gold"] = f"{stats['reward/gold_mean']:.3f}"
            bar.set_postfix(postfix)
            if checkpointer is not None and (checkpointer.due(self.step_count) or self.step_count == self.cfg.steps):
                self.save_checkpoint(checkpointer)
        return self.history

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
            "trainable": tensors_of(self.trainable),
            "optimizer": self.optimizer.state_dict(),
            "kl_coef": self.kl_ctl.value,
            "kl_controller": dict(vars(self.kl_ctl)),  # β and, for PI, its integral
            "generator": self.generator.get_state(),
            "state": self.state,
            "history": self.history,
            "ptx_position": self.ptx.position if self.ptx is not None else 0,
        }
        if self.masker is not None:
            state["masker"] = tensors_of(self.masker.model.parameters())
        if self.anchor is not None:
            state["anchor"] = tensors_of(self.anchor.parameters())
        if self.dist.world > 1:  # each process samples with its own generator
            state["rank_generators"] = self.dist.gather_object(self.generator.get_state())
            state["order_generator"] = self.order_generator.get_state()
        return state

    def save_checkpoint(self, checkpointer: Checkpointer) -> None:
        """Everything needed to resume exactly: trainable weights, optimiser, KL coefficient,
        RNG states, running baselines, the stats so far (trainers/checkpoint.py: atomic)."""
        checkpointer.save(self.step_count, self._trainer_state())

    def load_checkpoint(self, checkpointer: Checkpointer) -> bool:
        """Continue from the latest checkpoint (False: there is none; the trainer is unchanged)."""
        state = checkpointer.load()
        if state is None:
            return False
        copy_into(self.trainable, state["trainable"])
        for key, model in (("masker", self.masker.model if self.masker else None), ("anchor", self.anchor)):
            if model is not None:
                copy_into(model.parameters(), state[key])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.value = state["kl_coef"]
        vars(self.kl_ctl).update(state.get("kl_controller", {}))
        self.generator.set_state(state["generator"])
        if "rank_generators" in state or self.dist.world > 1:
            written = len(state.get("rank_generators", [None]))
            if written != self.dist.world:
                raise DistributedError(f"the checkpoint was written by {written} process(es); resume with as many")
            self.generator.set_state(state["rank_generators"][self.dist.rank])
            self.order_generator.set_state(state["order_generator"])
        self.state = state["state"]
        self.history = state["history"]
        if self.ptx is not None:
            self.ptx.position = state["ptx_position"]
        self.step_count = state["step"]
        return True


def kl_control_summary(trainer: OnlineTrainer, history: Sequence[dict], held_out_kl: float | None = None) -> dict:
    """The `kl_control` block of a run's summary: the controller, its target and the KL it
    achieved. `achieved_train` is the mean per-sequence KL (the configured estimator, nats) of
    the last fifth of the steps (at least one), `achieved_held_out` the held-out KL when the run
    measured one; `achieved` is the held-out figure when there is one. `within_25pct`: |achieved
    / target − 1| ≤ 0.25 (None without a target)."""
    cfg = trainer.cfg
    key = f"kl/{cfg.kl_estimator}_seq_mean"
    tail = [h[key] for h in list(history)[-max(1, len(history) // 5):] if key in h]  # no KL logged when β = 0 skips the reference
    train_kl = sum(tail) / len(tail) if tail else None
    achieved = held_out_kl if held_out_kl is not None else train_kl
    target = cfg.target_kl
    return {
        "controller": cfg.kl_controller if target is not None else "fixed",
        **({"lookahead": cfg.kl_lookahead} if target is not None and cfg.kl_controller == "pi" else {}),
        "target": target, "estimator": cfg.kl_estimator,
        "initial_coef": cfg.init_kl_coef, "final_coef": trainer.kl_ctl.value,
        "achieved_train": train_kl, "achieved_train_steps": len(tail), "achieved_held_out": held_out_kl,
        "achieved": achieved,
        "within_25pct": None if target is None or achieved is None else abs(achieved / target - 1) <= 0.25,
    }


class _PtxBatches:
    """PPO-ptx (InstructGPT): the SFT loss (token-mean NLL of the completions, `algorithms.sft_loss`)
    on batches of SFT/pretraining records, added to the RL loss with weight ptx_coef. The records
    are tokenised once, with the same collator as `rlhfkit sft` (chat rows included)."""

    def __init__(self, records, tokenizer, cfg: RLConfig, device, chat: bool | None):
        if not records:
            raise ValueError("PPO-ptx needs ptx examples (SFT records)")
        self.examples = [tokenize_sft(tokenizer, r, chat=chat) for r in records]
        self.pad_id = pad_token_id(tokenizer)
        self.batch_size, self.device = cfg.ptx_batch_size, device
        self.position = 0

    def loss(self, policy, autocast) -> torch.Tensor:
        batch = [self.examples[(self.position + i) % len(self.examples)] for i in range(self.batch_size)]
        self.position += self.batch_size
        tensors = collate_sft(batch, self.pad_id, self.device)
        with autocast():
            logits = policy(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                            position_ids=tensors["position_ids"], use_cache=False).logits
        return sft_loss(logits, tensors["input_ids"], tensors["loss_mask"])[0]
