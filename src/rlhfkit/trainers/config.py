"""Config dataclasses of the trainers. Field docstrings become `--help` (see rlhfkit.config).

Kept free of torch imports so the CLI can build its parser instantly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlhfkit.config import ConfigError


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


@dataclass
class RLConfig:
    """Online RL against a reward with a KL anchor: PPO, REINFORCE, RLOO, GRPO, REINFORCE++,
    ReMax, NLPO. Options left unset take the chosen algorithm's published defaults."""

    algo: Literal["ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "remax", "nlpo"] = "ppo"
    """the policy-gradient algorithm"""
    steps: int = 30
    """number of rollout → update iterations"""
    batch_size: int = 32
    """responses sampled per iteration (prompts per iteration = batch_size / group_size)"""
    group_size: int | None = None
    """samples per prompt (RLOO/GRPO default 4, others 1)"""
    mini_batch_size: int = 16
    """responses per optimiser step inside an iteration"""
    micro_batch_size: int | None = None
    """responses per forward/backward (default: the whole mini-batch); lower it to accumulate gradients"""
    ppo_epochs: int | None = None
    """passes over each rollout batch (PPO/NLPO default 4, others 1)"""
    learning_rate: float = 3e-4
    """AdamW learning rate (for the LoRA adapter and value head)"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
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
    """per-token KL estimator (default k1 in the reward; k3 in the loss for GRPO)"""
    kl_in: Literal["reward", "loss"] | None = None
    """where the KL goes: per-token −β·kl in the reward, or +β·kl in the loss (GRPO)"""
    kl_anchor: Literal["reference", "previous"] = "reference"
    """KL to the frozen reference, or to a snapshot of the policy refreshed every anchor_refresh steps"""
    anchor_refresh: int = 10
    """steps between refreshes of the 'previous' KL anchor"""
    init_kl_coef: float | None = None
    """initial KL coefficient β (PPO 0.05 as Stiennon et al.; GRPO 0.04)"""
    target_kl: float | None = None
    """target per-sequence KL (nats) of the adaptive controller; unset: β stays fixed"""
    kl_horizon: float = 10000.0
    """horizon of the adaptive KL controller (Ziegler et al. 2019)"""
    whiten_advantages: bool | None = None
    """scale advantages to zero mean, unit variance over valid tokens (PPO/NLPO default on)"""
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
    max_new_tokens: int = 24
    """longest response sampled"""
    temperature: float = 1.0
    """sampling temperature during rollouts (1.0 samples the policy itself)"""
    seed: int = 0
    """random seed"""

    def __post_init__(self):
        if self.algo not in ALGO_DEFAULTS:
            raise ConfigError(f"algo must be one of {', '.join(ALGORITHMS)}, got {self.algo!r}")
        for key, value in ALGO_DEFAULTS[self.algo].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.micro_batch_size is None:
            self.micro_batch_size = self.mini_batch_size
        if self.algo in ("rloo", "grpo") and self.group_size < 2:
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
        if self.target_kl is not None and self.target_kl <= 0:
            raise ConfigError("target_kl must be positive (or unset for a fixed KL coefficient)")
        if not 0 <= self.lam <= 1 or not 0 <= self.gamma <= 1:
            raise ConfigError("gamma and lam must lie in [0, 1]")
        if not 0 < self.nlpo_top_p <= 1:
            raise ConfigError("nlpo_top_p must lie in (0, 1]")
        if self.ptx_coef > 0 and not self.ptx_data:
            raise ConfigError("ptx_coef > 0 needs --ptx-data (an SFT data file)")
        if self.init_kl_coef < 0:
            raise ConfigError("init_kl_coef must be >= 0")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size // self.group_size

    @property
    def uses_value_head(self) -> bool:
        return self.algo in ("ppo", "nlpo") or (self.algo == "reinforce" and self.baseline == "value")


@dataclass
class RewardTrainConfig:
    """Reward-model training from any feedback kind (each kind's label class owns its loss)."""

    epochs: int = 2
    """passes over the training pairs"""
    batch_size: int = 16
    """pairs per optimiser step"""
    learning_rate: float = 5e-5
    """AdamW learning rate of the backbone"""
    head_learning_rate: float = 1e-3
    """AdamW learning rate of the scalar head"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
    seed: int = 0
    """random seed"""


@dataclass
class QuickstartConfig:
    """The whole RLHF loop on one built-in task with the embedded defaults."""

    task: str = "sentiment"
    """built-in task: prompts + gold scorer"""
    policy: str = "smollm2-135m-instruct"
    """policy/reference model: the embedded default, an HF id, a local folder or a .gguf file"""
    reward_backbone: str = "all-minilm-l6-v2"
    """reward-model backbone: the embedded MiniLM, or any local/HF encoder or decoder"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = "quickstart"
    """this run's folder name under output_dir"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision: auto picks bf16 where the hardware has it (CUDA, AVX512-BF16 CPUs)"""
    seed: int = 0
    """random seed of the whole run"""
    # 1–2. preference data
    rm_prompts: int = 384
    """training prompts to sample two responses for (one labelled pair each)"""
    label_temperature: float = 0.25
    """noise of the simulated human: P(y1 ≻ y2) = σ((gold1 − gold2) / label_temperature)"""
    rm_eval_fraction: float = 0.2
    """fraction of pairs held out to measure reward-model accuracy"""
    # 3. reward model
    rm_epochs: int = 2
    """reward-model epochs"""
    rm_batch_size: int = 16
    """pairs per reward-model step"""
    rm_learning_rate: float = 5e-5
    """reward-model backbone learning rate"""
    # 4. PPO
    ppo_steps: int = 25
    """PPO iterations"""
    batch_size: int = 32
    """prompts per PPO iteration"""
    mini_batch_size: int = 16
    """responses per optimiser step"""
    micro_batch_size: int | None = None
    """responses per forward/backward (default: the whole mini-batch; lower it to accumulate gradients)"""
    ppo_epochs: int = 2
    """epochs over each rollout batch"""
    learning_rate: float = 3e-4
    """LoRA / value-head learning rate"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA α (scale α/r)"""
    lora_top_layers: int = 0
    """put LoRA only in the last N blocks (0: all blocks)"""
    init_kl_coef: float = 0.1
    """initial KL coefficient β"""
    target_kl: float | None = 6.0
    """target per-sequence KL (nats) for the adaptive controller (unset: fixed β)"""
    kl_horizon: float = 500.0
    """adaptive KL horizon (shorter than Ziegler's 10000 so β adapts within a short run)"""
    max_new_tokens: int = 24
    """response length limit"""
    # 5. evaluation
    eval_prompts: int = 96
    """held-out prompts for the base-vs-final comparison"""
    eval_samples_per_prompt: int = 2
    """responses per held-out prompt and policy"""

    def __post_init__(self):
        if self.rm_prompts < 10:
            raise ConfigError("rm_prompts must be at least 10 (a handful of pairs cannot train a reward model)")
        if not 0 < self.rm_eval_fraction < 1:
            raise ConfigError("rm_eval_fraction must lie strictly between 0 and 1")
        if self.label_temperature <= 0:
            raise ConfigError("label_temperature must be positive")
        if self.eval_prompts < 2:
            raise ConfigError("eval_prompts must be at least 2 for a confidence interval")
        self.ppo_config()  # checks the PPO batch sizes now, with RLConfig's own messages

    def ppo_config(self) -> RLConfig:
        return RLConfig(
            algo="ppo", steps=self.ppo_steps, batch_size=self.batch_size, mini_batch_size=self.mini_batch_size,
            micro_batch_size=self.micro_batch_size, ppo_epochs=self.ppo_epochs, learning_rate=self.learning_rate,
            init_kl_coef=self.init_kl_coef, target_kl=self.target_kl, kl_horizon=self.kl_horizon,
            max_new_tokens=self.max_new_tokens, seed=self.seed,
        )

    def reward_config(self) -> RewardTrainConfig:
        return RewardTrainConfig(epochs=self.rm_epochs, batch_size=self.rm_batch_size,
                                 learning_rate=self.rm_learning_rate, seed=self.seed)


@dataclass
class RLRunConfig(RLConfig):
    """`rlhfkit rl`: online RL of a policy on a task's or a file's prompts against a reward."""

    policy: str = "smollm2-135m-instruct"
    """policy/reference model: the embedded default, an HF id, a local folder or a .gguf file"""
    task: str = "sentiment"
    """built-in task (prompts + gold scorer); its gold score is logged next to the training reward"""
    prompts: str = ""
    """a prompt file (JSONL/CSV/Parquet/saved dataset, column 'prompt') instead of the task's prompts"""
    reward: str = "gold"
    """reward: gold (the task's scorer), vader, length, judge[:MODEL] (direct RLAIF), task:NAME (another task's gold scorer), a saved reward-model folder, or a weighted mix 'A=1,B=0.5'"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap prompts in the chat template (auto: the task's choice; for files, when the tokenizer has one)"""
    lora: bool = True
    """train a LoRA adapter (the reference is the adapter-disabled base); --no-lora trains all weights"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA α"""
    lora_top_layers: int = 0
    """LoRA only in the last N blocks (0: all)"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = ""
    """run folder name (default: the algorithm and a timestamp)"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    resume: bool = False
    """continue from the run folder's last checkpoint"""
    checkpoint_every: int = 10
    """save a resumable checkpoint every N steps (0: only at the end)"""
    eval_prompts: int = 64
    """held-out prompts scored before and after training (0: skip)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision"""


@dataclass
class CompareConfig:
    """`rlhfkit compare`: several alignment methods on one task at matched sample budgets."""

    methods: list[str] = field(default_factory=lambda: ["ppo", "reinforce", "rloo", "grpo", "nlpo", "dpo", "best_of_n"])
    """methods to run: any of ppo, reinforce, rloo, grpo, reinforce_pp, remax, nlpo, dpo, best_of_n"""
    task: str = "sentiment"
    """built-in task; its gold scorer is the reward (and labels DPO's pairs)"""
    policy: str = "smollm2-135m-instruct"
    """base policy"""
    sample_budget: int = 384
    """policy samples each training method may draw (online: steps × batch; DPO: 2 per pair)"""
    batch_size: int = 32
    """responses per online iteration"""
    learning_rate: float = 3e-4
    """LoRA learning rate of the online methods (each keeps its own published KL defaults)"""
    dpo_learning_rate: float = 5e-4
    """LoRA learning rate of DPO"""
    best_of_n: int = 16
    """n of the best-of-n policy (its cost is n samples per query at inference)"""
    eval_prompts: int = 64
    """held-out prompts for the table"""
    max_new_tokens: int = 24
    """response length limit"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = "compare"
    """this comparison's folder name"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision"""
    seed: int = 0
    """random seed"""

    def __post_init__(self):
        known = set(ALGORITHMS) | {"dpo", "best_of_n"}
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        if self.sample_budget < self.batch_size:
            raise ConfigError(f"sample_budget ({self.sample_budget}) must be at least one batch ({self.batch_size})")
