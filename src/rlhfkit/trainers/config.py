"""Config dataclasses of the trainers, built from shared pieces (rlhfkit.config), and the pieces
that the run configs of pipelines/ share with them (RolloutOptions, KLControlOptions for quickstart
and compare; EpochOptions). Field docstrings become `--help` (see rlhfkit.config).

Kept free of torch imports so the CLI can build its parser instantly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlhfkit.config import (
    AdamWOptions,
    ChatOptions,
    ComputeOptions,
    ConfigError,
    DataFileOptions,
    DefaultsBy,
    LoRAOptions,
    ModelOptions,
    OptimizerOptions,
    ResumeOptions,
    RunOptions,
    SeedOptions,
)

ALGORITHMS = ("ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "remax", "nlpo")

# Each algorithm's published defaults (REFERENCES.md); a field left unset takes these.
ALGO_DEFAULTS: dict[str, dict] = {
    "ppo": dict(group_size=1, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=4,
                whiten_advantages=True, loss_aggregation="token_mean"),
    "nlpo": dict(group_size=1, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=4,
                 whiten_advantages=True, loss_aggregation="token_mean"),
    "reinforce": dict(group_size=1, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=1,
                      whiten_advantages=False, loss_aggregation="token_mean"),
    "rloo": dict(group_size=4, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=1,
                 whiten_advantages=False, loss_aggregation="token_mean"),
    "grpo": dict(group_size=4, kl_estimator="k3", kl_in="loss", init_kl_coef=0.04, ppo_epochs=1,
                 whiten_advantages=False, loss_aggregation="sequence_mean"),
    "reinforce_pp": dict(group_size=1, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=1,
                         whiten_advantages=False, loss_aggregation="token_mean"),
    "remax": dict(group_size=1, kl_estimator="k1", kl_in="reward", init_kl_coef=0.05, ppo_epochs=1,
                  whiten_advantages=False, loss_aggregation="token_mean"),
}

# --- GRPO variants (algorithms/grpo_variants.py) and the fields they bring to every row --------
# DAPO (Yu et al. 2025): clip ε_low 0.2 / ε_high 0.28, dynamic sampling, token-level loss, the
# soft overlong punishment with L_cache = 4096 of L_max = 20480 tokens (a fifth), no KL term.
# GSPO (Zheng et al. 2025 v2 §5.1; TRL's reproduction): sequence-level ratio clipped to
# [1 − 3e-4, 1 + 4e-4], no KL term. Dr. GRPO (Liu et al. 2025): GRPO's KL with r − mean(r)
# advantages and the constant aggregation. G = 4 here as for grpo (the papers sample 16 or more).
_VARIANT_FIELDS = dict(clip_low=None, clip_high=None, importance_ratio="token", dynamic_sampling=False,
                       overlong_buffer_fraction=0.0)
for _row in ALGO_DEFAULTS.values():
    _row.update(_VARIANT_FIELDS)
ALGO_DEFAULTS["dapo"] = {**ALGO_DEFAULTS["grpo"], "init_kl_coef": 0.0, "loss_aggregation": "token_mean",
                         "clip_low": 0.2, "clip_high": 0.28, "dynamic_sampling": True, "overlong_buffer_fraction": 0.2}
ALGO_DEFAULTS["gspo"] = {**ALGO_DEFAULTS["grpo"], "init_kl_coef": 0.0, "clip_low": 3e-4, "clip_high": 4e-4,
                         "importance_ratio": "sequence"}
ALGO_DEFAULTS["dr_grpo"] = {**ALGO_DEFAULTS["grpo"], "loss_aggregation": "constant"}
# Online DPO (Guo et al. 2024; TRL's OnlineDPOConfig β 0.1): 2 samples per prompt, the reward picks
# the winner, a DPO step with β = the KL coefficient against the reference (trainers/online_dpo.py).
ALGO_DEFAULTS["online_dpo"] = {**ALGO_DEFAULTS["grpo"], "group_size": 2, "kl_estimator": "k1", "init_kl_coef": 0.1}
ALGORITHMS = ALGORITHMS + ("dapo", "gspo", "dr_grpo", "online_dpo")
GROUP_ALGORITHMS = ("rloo", "grpo", "dapo", "gspo", "dr_grpo")  # compare samples of one prompt: G ≥ 2


@dataclass
class RolloutOptions:
    """How many responses an online iteration samples, and how its update splits and reuses them."""

    help_group: ClassVar[str] = "rollout batch"
    help_terms: ClassVar[dict[str, str]] = {"per_prompt": "prompts per iteration = batch_size / group_size"}
    help_defaults: ClassVar[dict[str, str]] = {"micro_batch_size": "the whole mini-batch"}
    limits: ClassVar[dict[str, str]] = {"batch_size": ">= 1", "mini_batch_size": ">= 1", "micro_batch_size": ">= 1",
                                        "ppo_epochs": ">= 1", "max_new_tokens": ">= 1"}

    batch_size: int = 32
    """responses sampled per iteration ({per_prompt})"""
    mini_batch_size: int = 16
    """responses per optimiser step inside an iteration"""
    micro_batch_size: int | None = None
    """responses per forward/backward; lower it to accumulate gradients"""
    ppo_epochs: int | None = None
    """passes over each rollout batch"""
    max_new_tokens: int = 24
    """longest response sampled"""


@dataclass
class KLControlOptions:
    """The KL coefficient β and its adaptive controller: proportional–integral on log β, or
    Ziegler et al. 2019 (algorithms/kl.py)."""

    help_group: ClassVar[str] = "KL control"
    limits: ClassVar[dict[str, str]] = {"init_kl_coef": ">= 0", "target_kl": "> 0", "kl_horizon": "> 0",
                                        "kl_lookahead": ">= 0"}

    init_kl_coef: float | None = None
    """initial KL coefficient β"""
    target_kl: float | None = None
    """target per-sequence KL (nats) of the adaptive controller; unset: β stays fixed"""
    kl_controller: Literal["pi", "ziegler"] = "pi"
    """adaptive controller: pi = proportional–integral on log β (holds the target within a short run); ziegler = β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)"""
    kl_kp: float = 2.0
    """pi: proportional gain (log β moves by kp·e, e = clip(KL/target − 1, ±1))"""
    kl_ki: float = 0.3
    """pi: integral gain (log β moves by ki·Σe)"""
    kl_lookahead: float = 2.0
    """pi: steps along the KL's trend the controller looks ahead (e is taken on KL + lookahead·trend: a batch's KL is the policy's before its update, and a β set now shows in the KL two batches later; 0: the batch KL itself)"""
    kl_horizon: float = 10000.0
    """ziegler: horizon of the controller (Ziegler et al. 2019 use 10000; a shorter one adapts β sooner)"""

    def check_kl_control(self) -> None:
        """Checks of these fields, once init_kl_coef has its default."""
        if self.init_kl_coef is not None and self.init_kl_coef < 0:
            raise ConfigError("init_kl_coef must be >= 0")
        if self.target_kl is not None and self.kl_controller == "pi" and not self.init_kl_coef:
            raise ConfigError("--kl-controller pi scales β multiplicatively: with --target-kl give --init-kl-coef > 0")
        if self.kl_kp < 0 or self.kl_ki < 0 or self.kl_horizon <= 0 or self.kl_lookahead < 0:
            raise ConfigError("kl_kp, kl_ki and kl_lookahead must be >= 0 and kl_horizon > 0")


@dataclass
class RLConfig(RolloutOptions, KLControlOptions, OptimizerOptions, SeedOptions):
    """Online RL against a reward with a KL anchor: PPO, REINFORCE, RLOO, GRPO, REINFORCE++,
    ReMax, NLPO, GRPO's variants DAPO, GSPO, Dr. GRPO, and online DPO. Options left unset take the chosen algorithm's published defaults (ALGO_DEFAULTS)."""

    defaults_by: ClassVar[DefaultsBy] = DefaultsBy("algo", ALGO_DEFAULTS)
    help_terms: ClassVar[dict[str, str]] = {"trained": "the policy's trained weights and the value head"}
    limits: ClassVar[dict[str, str]] = {
        "steps": ">= 1", "group_size": ">= 1", "clip_coef": "> 0", "vf_coef": ">= 0", "gamma": "[0, 1]", "lam": "[0, 1]",
        "baseline_decay": "[0, 1)", "anchor_refresh": ">= 1", "nlpo_top_p": "(0, 1]", "nlpo_min_tokens": ">= 1",
        "nlpo_refresh": ">= 1", "score_clip": "> 0", "missing_eos_penalty": ">= 0", "ptx_coef": ">= 0",
        "ptx_batch_size": ">= 1", "temperature": "> 0",
        "clip_low": "> 0", "clip_high": "> 0", "dynamic_sampling_rounds": ">= 0", "overlong_buffer_fraction": "[0, 1]",
        "overlong_penalty": ">= 0", "dpo_rounds": ">= 0", "pairs_per_round": ">= 1",
    }

    algo: Literal["ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "remax", "nlpo", "dapo", "gspo", "dr_grpo",
                  "online_dpo"] = "ppo"
    """the policy-gradient algorithm"""
    steps: int = 30
    """number of rollout → update iterations"""
    group_size: int | None = None
    """samples per prompt"""
    clip_coef: float = 0.2
    """ratio clip ε of the surrogate objective (matters only with several optimiser steps per batch)"""
    vf_coef: float = 0.1
    """weight of the value loss in the total loss (algorithms with a value head)"""
    cliprange_value: float = 0.2
    """clip of the value prediction around its old value (≤ 0: no clipping)"""
    gamma: float = 1.0
    """discount γ"""
    lam: float = 0.95
    """λ of GAE (PPO/NLPO)"""
    baseline: Literal["moving_average", "value"] = "moving_average"
    """REINFORCE baseline: a moving average of returns, or a learned value head"""
    baseline_decay: float = 0.9
    """decay of the moving-average baseline"""
    kl_estimator: Literal["k1", "k2", "k3"] | None = None
    """per-token KL estimator: k1, k2 or k3 (REFERENCES.md)"""
    kl_in: Literal["reward", "loss"] | None = None
    """where the KL goes: per-token −β·kl in the reward, or +β·kl in the loss"""
    kl_anchor: Literal["reference", "previous"] = "reference"
    """KL to the frozen reference, or to a snapshot of the policy refreshed every anchor_refresh steps"""
    anchor_refresh: int = 10
    """steps between refreshes of the 'previous' KL anchor"""
    whiten_advantages: bool | None = None
    """scale advantages to zero mean, unit variance over valid tokens"""
    loss_aggregation: Literal["token_mean", "sequence_mean", "constant"] | None = None
    """token_mean over the batch (PPO); mean over sequences of token means (GRPO); sum over a constant (Dr. GRPO)"""
    nlpo_top_p: float = 0.9
    """NLPO: nucleus of the masking policy that actions are restricted to"""
    nlpo_min_tokens: int = 100
    """NLPO: always keep at least this many tokens in the mask"""
    nlpo_refresh: int = 5
    """NLPO: iterations μ between copies of the policy into the masking policy"""
    score_clip: float | None = None
    """clip sequence scores to ±this before shaping"""
    score_norm: Literal["none", "batch", "running"] = "none"
    """normalise scores: per batch, or by a running mean/std"""
    missing_eos_penalty: float | None = None
    """subtract this from the score of responses that hit max_new_tokens without EOS"""
    ptx_coef: float = 0.0
    """PPO-ptx: weight γ_ptx of the log-likelihood of ptx_data added to the loss"""
    ptx_data: str = ""
    """PPO-ptx: an SFT/pretraining data file (kind sft: prompt/completion or messages)"""
    ptx_batch_size: int = 4
    """PPO-ptx: examples per optimiser step"""
    temperature: float = 1.0
    """sampling temperature during rollouts (1.0 samples the policy itself)"""
    # GRPO variants (DAPO, GSPO, Dr. GRPO): ALGO_DEFAULTS gives each algorithm its values
    clip_low: float | None = None
    """lower ratio clip ε_low (DAPO's decoupled clip, GSPO's sequence clip); unset: clip_coef"""
    clip_high: float | None = None
    """upper ratio clip ε_high: the ratio is clipped to [1 − ε_low, 1 + ε_high]; unset: clip_coef"""
    importance_ratio: Literal["token", "sequence"] | None = None
    """token: one ratio per token (PPO, GRPO); sequence: GSPO's length-normalised ratio of the whole response"""
    dynamic_sampling: bool | None = None
    """DAPO: drop the groups whose rewards are all equal and refill the batch with groups of fresh prompts"""
    dynamic_sampling_rounds: int = 4
    """DAPO: most extra sampling rounds per step while refilling (a batch still short is topped up with dropped groups)"""
    overlong_buffer_fraction: float | None = None
    """DAPO's soft overlong punishment: the last fraction of max_new_tokens over which the reward falls linearly by overlong_penalty (0: off)"""
    overlong_penalty: float = 1.0
    """DAPO: reward lost by a response that reaches max_new_tokens"""
    # iterative (round-based) DPO: online_dpo with one iteration per round (trainers/online_dpo.py)
    dpo_rounds: int = 0
    """online_dpo: iterative DPO in this many rounds, each sampling --pairs-per-round pairs from the policy as the round starts, the reward picking each winner, then --ppo-epochs DPO passes over them (Xu et al. 2023; Yuan et al. 2024); sets steps, batch_size, kl_anchor and anchor_refresh; 0: plain online DPO"""
    pairs_per_round: int = 32
    """iterative DPO: prompts per round, two responses each (batch_size = 2 x this)"""
    round_reference: Literal["round", "initial"] = "round"
    """iterative DPO's reference π_ref: round = the policy as each round starts (reset every round), initial = the initial policy throughout"""

    def __post_init__(self):
        if self.algo not in ALGO_DEFAULTS:
            raise ConfigError(f"algo must be one of {', '.join(ALGORITHMS)}, got {self.algo!r}")
        self.defaults_by.fill(self)
        self._derive_rounds()
        if self.micro_batch_size is None:
            self.micro_batch_size = self.mini_batch_size
        if self.algo in GROUP_ALGORITHMS and self.group_size < 2:
            raise ConfigError(f"{self.algo} compares samples of the same prompt: group_size must be at least 2")
        if self.batch_size % self.group_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of group_size ({self.group_size}) "
                "so every prompt gets its whole group"
            )
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size}) "
                "so each epoch splits the rollout into whole mini-batches"
            )
        if self.mini_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"mini_batch_size ({self.mini_batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size}): each optimiser step accumulates whole micro-batches"
            )
        if self.steps < 1 or self.ppo_epochs < 1:
            raise ConfigError("steps and ppo_epochs must be at least 1")
        if not 0 <= self.lam <= 1 or not 0 <= self.gamma <= 1:
            raise ConfigError("gamma and lam must lie in [0, 1]")
        if not 0 < self.nlpo_top_p <= 1:
            raise ConfigError("nlpo_top_p must lie in (0, 1]")
        if self.ptx_coef > 0 and not self.ptx_data:
            raise ConfigError("ptx_coef > 0 needs --ptx-data (an SFT data file)")
        self.check_kl_control()
        self.check_variant_fields()

    def _derive_rounds(self) -> None:
        """Iterative DPO: a round is one iteration of 2·pairs_per_round responses; the reference
        reset every round is the 'previous' KL anchor refreshed after every iteration."""
        if not self.dpo_rounds:
            return
        if self.algo != "online_dpo":
            raise ConfigError(f"--dpo-rounds is iterative DPO: it needs --algo online_dpo, not {self.algo}")
        self.steps, self.batch_size = self.dpo_rounds, 2 * self.pairs_per_round
        self.kl_anchor = "previous" if self.round_reference == "round" else "reference"
        self.anchor_refresh = 1
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(f"--pairs-per-round {self.pairs_per_round} gives {self.batch_size} responses a round, "
                              f"which must be a multiple of --mini-batch-size ({self.mini_batch_size})")

    def check_variant_fields(self) -> None:
        """Checks of the GRPO-variant fields, once the algorithm's defaults are in."""
        if self.algo == "online_dpo" and (self.group_size != 2 or not self.init_kl_coef or self.dynamic_sampling):
            raise ConfigError("online_dpo samples pairs: group_size must be 2, init_kl_coef (DPO's β) > 0, "
                              "and dynamic_sampling off")
        if self.dynamic_sampling and self.algo == "nlpo":
            raise ConfigError("dynamic_sampling joins rollouts, which NLPO's per-step action masks do not allow")
        if self.dynamic_sampling and self.group_size < 2:
            raise ConfigError("dynamic_sampling drops groups whose rewards are all equal: group_size must be at least 2")
        if not 0 <= self.overlong_buffer_fraction <= 1:
            raise ConfigError("overlong_buffer_fraction must lie in [0, 1]")
        if any(c is not None and c <= 0 for c in (self.clip_low, self.clip_high)) or self.dynamic_sampling_rounds < 0:
            raise ConfigError("clip_low and clip_high must be > 0 and dynamic_sampling_rounds >= 0")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size // self.group_size

    @property
    def uses_value_head(self) -> bool:
        return self.algo in ("ppo", "nlpo") or (self.algo == "reinforce" and self.baseline == "value")


@dataclass
class EpochOptions:
    """Passes over the training data in batches of a fixed size."""

    help_group: ClassVar[str] = "training"
    help_terms: ClassVar[dict[str, str]] = {"examples": "examples"}
    limits: ClassVar[dict[str, str]] = {"epochs": ">= 0", "batch_size": ">= 1"}

    epochs: int = 1
    """passes over the training data"""
    batch_size: int = 8
    """{examples} per optimiser step"""


@dataclass
class RewardTrainConfig(EpochOptions, AdamWOptions, SeedOptions):
    """Reward-model training from any feedback kind (each kind's label class owns its loss)."""

    help_group: ClassVar[str] = "optimiser"  # of head_learning_rate, the one field declared here
    help_terms: ClassVar[dict[str, str]] = {
        "examples": "rows (pairs, rankings, ratings, ...; a ranking of K responses is one row)",
        "trained": "the backbone", "seeded": "shuffling and head initialisation",
    }
    limits: ClassVar[dict[str, str]] = {"epochs": ">= 1", "head_learning_rate": "> 0"}

    # reward models' defaults of the pieces' fields
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    """AdamW learning rate of the scalar head(s)"""


@dataclass
class OfflineTrainOptions(ModelOptions, DataFileOptions, ChatOptions, EpochOptions, LoRAOptions, AdamWOptions,
                          ResumeOptions, RunOptions, ComputeOptions, SeedOptions):
    """What SFT and DPO share: a model trained on a data file in epochs of gradient-accumulated
    steps, LoRA or full, under a warmed-up schedule, with periodic evaluation. A subclass sets
    `defaults_by`: the learning rate's default per --lora."""

    help_group: ClassVar[str] = "training"
    help_terms: ClassVar[dict[str, str]] = {"trained": "the LoRA adapter, or every weight with --no-lora"}
    limits: ClassVar[dict[str, str]] = {"max_steps": ">= 0", "micro_batch_size": ">= 1", "warmup_steps": ">= 0",
                                        "eval_every": ">= 0"}

    max_steps: int = 0
    """if > 0: train exactly this many optimiser steps, cycling the data as often as needed (overrides epochs)"""
    micro_batch_size: int = 8
    """{examples} per forward/backward; batch_size / micro_batch_size gradient-accumulation steps"""
    learning_rate: float | None = None  # per --lora: the subclass's defaults_by
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    """learning-rate schedule after warm-up: constant, linear or cosine decay to 0"""
    warmup_steps: int = 0
    """linear warm-up steps"""
    eval_every: int = 0
    """evaluate every N optimiser steps (0: at the end of each epoch)"""
    save_merged: bool = True
    """with LoRA, save checkpoints/final as the merged full model (usable as --model elsewhere); otherwise the adapter only"""

    def __post_init__(self):
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ConfigError("batch_size and micro_batch_size must be at least 1")
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size}): "
                "each optimiser step accumulates whole micro-batches"
            )
        if self.epochs < 1 and self.max_steps < 1:
            raise ConfigError("give epochs >= 1 or max_steps >= 1: otherwise there is nothing to train")
        if self.max_steps < 0 or self.warmup_steps < 0 or self.eval_every < 0:
            raise ConfigError("max_steps, warmup_steps and eval_every cannot be negative")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.eval_data and self.eval_fraction:
            raise ConfigError("give either eval_data (a file) or eval_fraction (a held-out share of data), not both")
        self.defaults_by.fill(self)  # type: ignore[attr-defined]
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_grad_norm <= 0:
            raise ConfigError("max_grad_norm must be positive")
        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1):
            raise ConfigError("lora_r and lora_alpha must be at least 1")

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch_size


@dataclass
class SFTConfig(OfflineTrainOptions):
    """Supervised fine-tuning on demonstrations (prompt/completion or chat `messages`)."""

    defaults_by: ClassVar[DefaultsBy] = DefaultsBy("lora", {True: {"learning_rate": 2e-4}, False: {"learning_rate": 2e-5}})
    help_defaults: ClassVar[dict[str, str]] = {"run_name": "sft-<date>-<time>"}
    help_terms: ClassVar[dict[str, str]] = {
        "rows": "SFT rows: prompt + completion, or messages", "model_role": "model to fine-tune",
        "chat_text": "examples", "chat_auto": "when it has one; chat rows always use it",
        "examples": "examples (packed rows with --packing)",
        "seeded": "data order, the held-out split and the adapter's initialisation",
    }
    limits: ClassVar[dict[str, str]] = {"max_length": ">= 2"}

    loss_on: Literal["completion", "all"] = "completion"
    """tokens that carry the loss: the completion (last assistant turn) only, or every token"""
    packing: bool = False
    """pack several examples into each max_length row (examples do not attend to each other, see docs)"""
    max_length: int = 512
    """longest example (or packed row) in tokens; longer examples lose prompt tokens from the left, then completion tokens from the right"""

    def __post_init__(self):
        super().__post_init__()
        if self.max_length < 2:
            raise ConfigError("max_length must be at least 2 tokens (one to condition on, one to predict)")


@dataclass
class PromptResponseLengthOptions:
    """How long the prompts and responses of an offline (prompt, response) data file may be."""

    limits: ClassVar[dict[str, str]] = {"max_prompt_tokens": ">= 1", "max_response_tokens": ">= 1"}

    max_prompt_tokens: int = 256
    """longer prompts keep their last tokens"""
    max_response_tokens: int = 256
    """longer responses keep their first tokens (and lose their EOS)"""

    def check_lengths(self) -> None:
        if self.max_prompt_tokens < 1 or self.max_response_tokens < 1:
            raise ConfigError("max_prompt_tokens and max_response_tokens must be at least 1")


@dataclass
class DPOConfig(OfflineTrainOptions, PromptResponseLengthOptions):
    """Direct preference optimisation from offline data: DPO, IPO or KTO, and the reference-free ORPO, SimPO, CPO."""

    # as in TRL: 5e-5 for a LoRA adapter, 1e-6 for every weight
    defaults_by: ClassVar[DefaultsBy] = DefaultsBy("lora", {True: {"learning_rate": 5e-5}, False: {"learning_rate": 1e-6}})
    help_defaults: ClassVar[dict[str, str]] = {"run_name": "<loss>-<date>-<time>"}
    help_terms: ClassVar[dict[str, str]] = {
        "rows": "pairwise rows (prompt, chosen, rejected[, label]); for --loss kto also thumbs rows (prompt, response, thumbs_up)",
        "model_role": "policy to train", "examples": "pairs (KTO: examples)",
        "seeded": "data order, the held-out split and KTO's mismatched pairs",
    }
    limits: ClassVar[dict[str, str]] = {"beta": "> 0", "tau": "> 0", "desirable_weight": "> 0", "undesirable_weight": "> 0",
                                        "orpo_lambda": ">= 0",
                                        "simpo_beta": "> 0", "simpo_gamma_beta_ratio": ">= 0", "cpo_alpha": ">= 0"}

    ref_model: str = ""
    """reference model π_ref (default: the initial policy; with LoRA its adapter-disabled base)"""
    loss: Literal["dpo", "ipo", "kto", "orpo", "simpo", "cpo"] = "dpo"
    """dpo: −log σ(β·h); ipo: (h − 1/(2τ))²; kto: unpaired desirable/undesirable (REFERENCES.md); reference-free, no π_ref loaded: orpo (SFT NLL + λ·odds-ratio term), simpo (length-normalised reward, margin γ), cpo (−log σ(β·Δ log π) + NLL)"""
    beta: float = 0.1
    """β of DPO, KTO and CPO; also scales the logged implicit reward β·log(π/π_ref) for every loss"""
    tau: float = 0.1
    """τ of IPO: the loss pulls the log-ratio difference h towards 1/(2τ)"""
    ipo_logratio: Literal["mean", "sum"] = "mean"
    """IPO's log-ratios per completion: mean = averaged over its tokens (as TRL, checked with the IPO authors); sum = summed, the paper's formula as written"""
    desirable_weight: float = 1.0
    """KTO λ_D, weight of desirable examples"""
    undesirable_weight: float = 1.0
    """KTO λ_U, weight of undesirable examples"""
    precompute_ref: bool = True
    """compute reference log-probs once before training (no reference forward passes while training)"""
    # reference-free losses (algorithms/reference_free.py)
    orpo_lambda: float = 0.1
    """ORPO λ: weight of the odds-ratio term added to the SFT NLL (Hong et al. 2024; TRL's default)"""
    simpo_beta: float = 2.0
    """SimPO β: scale of the length-normalised reward β·log π(y|x)/|y| (Meng et al. 2024 use 2.0–2.5)"""
    simpo_gamma_beta_ratio: float = 0.5
    """SimPO γ/β: the target reward margin γ over β (0.5: the authors' Llama-3-Base setting, γ 1 with β 2)"""
    cpo_alpha: float = 1.0
    """CPO α: weight of the NLL of the preferred response (Xu et al. 2024; TRL's cpo_alpha); CPO's β is --beta"""

    def __post_init__(self):
        super().__post_init__()
        if self.loss in ("orpo", "simpo", "cpo") and self.ref_model:
            raise ConfigError(f"--loss {self.loss} is reference-free: it loads no reference model, so drop --ref-model")
        if self.orpo_lambda < 0 or self.simpo_beta <= 0 or self.simpo_gamma_beta_ratio < 0 or self.cpo_alpha < 0:
            raise ConfigError("orpo_lambda, simpo_gamma_beta_ratio and cpo_alpha must be >= 0, simpo_beta > 0")
        if self.beta <= 0 or self.tau <= 0:
            raise ConfigError("beta and tau must be positive")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError("desirable_weight and undesirable_weight (KTO's λ_D, λ_U) must be positive")
        self.check_lengths()


@dataclass
class GKDConfig(SFTConfig):
    """On-policy distillation (GKD; Agarwal et al. 2024): the student (--model) learns the teacher's
    token distributions by the generalised JSD(β), on its own samples with probability lmbda and
    on the data's completions otherwise. Defaults: TRL's GKDConfig (lmbda 0.5, β 0.5, temperature
    0.9, 128 new tokens)."""

    help_defaults: ClassVar[dict[str, str]] = {"run_name": "gkd-<date>-<time>"}
    help_terms: ClassVar[dict[str, str]] = {
        **SFTConfig.help_terms,
        "rows": "SFT rows: prompt + completion, or messages (the completions are used off-policy); with --lmbda 1 prompt-only rows do",
        "model_role": "student to train",
    }
    limits: ClassVar[dict[str, str]] = {**SFTConfig.limits, "lmbda": "[0, 1]", "beta": "[0, 1]", "temperature": "> 0",
                                        "max_new_tokens": ">= 1"}

    teacher: str = ""
    """teacher LM: any local causal LM (folder, .gguf, HF id, the embedded model) with the student's tokenizer"""
    lmbda: float = 0.5
    """λ: the probability that an optimiser batch is the student's own samples (on-policy); otherwise the data's completions"""
    beta: float = 0.5
    """β of the generalised JSD: 0 = forward KL(teacher‖student), 1 = reverse KL(student‖teacher), between: JSD(β) with M = β·teacher + (1 − β)·student"""
    temperature: float = 0.9
    """temperature of the student's sampling and of both distributions in the divergence"""
    max_new_tokens: int = 128
    """longest completion the student samples"""

    def __post_init__(self):
        super().__post_init__()
        if not self.teacher:
            raise ConfigError("--teacher is required: the LM whose token distributions the student learns")
        if not 0.0 <= self.lmbda <= 1.0 or not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"lmbda and beta must lie in [0, 1], got {self.lmbda} and {self.beta}")
        if self.temperature <= 0 or self.max_new_tokens < 1:
            raise ConfigError("temperature must be > 0 and max_new_tokens >= 1")
        if self.packing or self.loss_on != "completion":
            raise ConfigError("gkd samples completions after each prompt: no --packing, and --loss-on completion")


@dataclass
class ILQLConfig(OfflineTrainOptions, PromptResponseLengthOptions):
    """Implicit language Q-learning (Snell et al. 2022) from a fixed file of scored responses:
    twin Q heads with Polyak-averaged targets, an expectile-regressed V head, the CQL term and the
    AWAC term on the LM; decoding with the advantage-perturbed logits. Defaults: trlx's ILQL."""

    # trlx trains every weight at 5e-5; a LoRA adapter and the zero-initialised heads need more
    defaults_by: ClassVar[DefaultsBy] = DefaultsBy("lora", {True: {"learning_rate": 1e-4}, False: {"learning_rate": 5e-5}})
    help_defaults: ClassVar[dict[str, str]] = {"run_name": "ilql-<date>-<time>"}
    help_terms: ClassVar[dict[str, str]] = {
        "rows": "scored rows (prompt, completion or response, score or reward)",
        "model_role": "policy π_β to train and decode", "examples": "scored responses",
        "seeded": "data order, the held-out split and the adapter's initialisation",
        "trained": "the LoRA adapter (or every weight with --no-lora) and the Q and V heads",
    }
    limits: ClassVar[dict[str, str]] = {"gamma": "[0, 1]", "tau": "(0, 1)", "cql_scale": ">= 0", "awac_scale": ">= 0",
                                        "alpha": "(0, 1]", "steps_for_target_q_sync": ">= 1", "beta": ">= 0",
                                        "top_k": ">= 0"}

    gamma: float = 0.99
    """discount γ of the token-level Bellman target r_t + γ·V(s_t+1) (the score is the reward of the last token)"""
    tau: float = 0.7
    """expectile τ of the V regression towards min_i Q̂_i(s, a)"""
    cql_scale: float = 0.1
    """weight of the CQL term logsumexp_a Q(s, a) − Q(s, a_t)"""
    awac_scale: float = 1.0
    """weight of the AWAC term on the LM: exp(awac_beta·(Q̂ − V))-weighted negative log-likelihood of the data"""
    awac_beta: float = 0.0
    """advantage temperature of the AWAC weights (0: plain behaviour cloning, as trlx)"""
    alpha: float = 0.001
    """Polyak rate of the target Q heads: Q̂ ← α·Q + (1 − α)·Q̂"""
    steps_for_target_q_sync: int = 5
    """optimiser steps between target-head updates"""
    two_qs: bool = True
    """twin Q heads (the targets and the decoding take their minimum)"""
    beta: float = 1.0
    """decoding: logits log π_β + β·(Q̂ − V)"""
    top_k: int = 20
    """decoding: keep the k largest perturbed logits (0: all)"""

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau < 1.0:
            raise ConfigError(f"gamma must lie in [0, 1] and tau in (0, 1), got gamma {self.gamma}, tau {self.tau}")
        if not 0.0 < self.alpha <= 1.0 or self.steps_for_target_q_sync < 1:
            raise ConfigError("alpha must lie in (0, 1] and steps_for_target_q_sync be at least 1")
        if self.cql_scale < 0 or self.awac_scale < 0 or self.beta < 0 or self.top_k < 0:
            raise ConfigError("cql_scale, awac_scale, beta and top_k cannot be negative")
        self.check_lengths()
