"""Config dataclasses of the trainers. Field docstrings become `--help` (see rlhfkit.config).

Kept free of torch imports so the CLI can build its parser instantly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import ConfigError


@dataclass
class PPOConfig:
    """PPO for language models (Stiennon et al. 2020; InstructGPT) with a KL-shaped reward."""

    steps: int = 30
    """number of rollout → update iterations"""
    batch_size: int = 32
    """prompts (one response each) sampled per iteration"""
    mini_batch_size: int = 16
    """responses per optimiser step inside an iteration"""
    micro_batch_size: int = 16
    """responses per forward/backward; mini_batch_size / micro_batch_size gradient-accumulation steps"""
    ppo_epochs: int = 2
    """passes over each rollout batch (the papers use 4; 2 halves the update time on CPU)"""
    learning_rate: float = 3e-4
    """AdamW learning rate (for the LoRA adapter and value head)"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
    clip_coef: float = 0.2
    """PPO ratio clip ε"""
    vf_coef: float = 0.1
    """weight of the value loss in the total loss"""
    cliprange_value: float = 0.2
    """clip of the value prediction around its old value (≤ 0: no clipping)"""
    gamma: float = 1.0
    """discount γ of GAE"""
    lam: float = 0.95
    """λ of GAE"""
    init_kl_coef: float = 0.05
    """initial β of the per-token −β·k1 KL penalty (Stiennon et al. 2020: 0.05)"""
    target_kl: float | None = 3.0
    """target per-sequence KL (nats) of the adaptive controller; unset: β stays fixed"""
    kl_horizon: float = 10000.0
    """horizon of the adaptive KL controller (Ziegler et al. 2019)"""
    whiten_advantages: bool = True
    """scale advantages to zero mean, unit variance over valid tokens"""
    score_clip: float | None = None
    """clip sequence scores to ±this before shaping"""
    missing_eos_penalty: float | None = None
    """subtract this from the score of responses that hit max_new_tokens without EOS"""
    max_new_tokens: int = 24
    """longest response sampled"""
    temperature: float = 1.0
    """sampling temperature during rollouts (1.0 samples the policy itself)"""
    seed: int = 0
    """random seed"""

    def __post_init__(self):
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size}) "
                "so each PPO epoch splits the rollout into whole mini-batches"
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

    @property
    def accumulation_steps(self) -> int:
        return self.mini_batch_size // self.micro_batch_size


@dataclass
class RewardTrainConfig:
    """Pairwise Bradley–Terry reward-model training."""

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
    micro_batch_size: int = 16
    """responses per forward/backward (gradient accumulation below mini_batch_size)"""
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
    init_kl_coef: float = 0.05
    """initial KL coefficient β"""
    target_kl: float | None = 3.0
    """target per-sequence KL (nats) for the adaptive controller (unset: fixed β)"""
    kl_horizon: float = 1000.0
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
        self.ppo_config()  # checks the PPO batch sizes now, with PPOConfig's own messages

    def ppo_config(self) -> PPOConfig:
        return PPOConfig(
            steps=self.ppo_steps, batch_size=self.batch_size, mini_batch_size=self.mini_batch_size,
            micro_batch_size=self.micro_batch_size, ppo_epochs=self.ppo_epochs, learning_rate=self.learning_rate,
            init_kl_coef=self.init_kl_coef, target_kl=self.target_kl, kl_horizon=self.kl_horizon,
            max_new_tokens=self.max_new_tokens, seed=self.seed,
        )

    def reward_config(self) -> RewardTrainConfig:
        return RewardTrainConfig(epochs=self.rm_epochs, batch_size=self.rm_batch_size,
                                 learning_rate=self.rm_learning_rate, seed=self.seed)
