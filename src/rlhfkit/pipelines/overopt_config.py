"""Config of `rlhfkit overopt run` (no torch here: --help stays instant).

The synthetic gold–proxy setup of Gao, Schulman, Hilton 2023 (REFERENCES.md, "Overoptimization"):
the task's gold scorer labels pairs of base-policy samples, proxies are trained on several label
counts, and best-of-n and RL optimise each proxy while the gold is measured. The RL runs are the
RLConfig of --algo with this config's rollout, optimiser and seed fields (`rl_config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from rlhfkit.config import (
    ComputeOptions,
    ConfigError,
    LoRAAdapterOptions,
    OptimizerOptions,
    RunOptions,
    SeedOptions,
    derive_config,
)
from rlhfkit.pipelines.config import MULTI_EPOCH_ALGORITHMS, TaskPolicyOptions
from rlhfkit.trainers.config import RewardTrainConfig, RLConfig, RolloutOptions


@dataclass
class OveroptConfig(TaskPolicyOptions, RolloutOptions, OptimizerOptions, LoRAAdapterOptions, RunOptions,
                    ComputeOptions, SeedOptions):
    """Reward over-optimization: gold and proxy against sqrt(KL) for best-of-n and RL, per proxy."""

    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer labels the pairs and measures every policy",
        "per_prompt": "prompts per RL step = batch_size / the algorithm's group size",
        "trained": "the LoRA adapter (and value head) of each RL run",
    }

    run_name: str = "overopt"
    reward_backbone: str = "all-minilm-l6-v2"
    """backbone of the proxy reward models: the embedded MiniLM, or any local/HF encoder or decoder"""
    # 1. labels and proxies
    label_prompts: int = 200
    """training prompts whose base-policy samples are labelled"""
    label_samples_per_prompt: int = 4
    """base samples per label prompt; every pair of them with different gold is one hard label (higher gold wins)"""
    label_counts: list[int] = field(default_factory=lambda: [100, 300, 900])
    """label counts of the proxies (nested: each proxy's labels include the smaller ones')"""
    rm_eval_fraction: float = 0.1
    """share of the label prompts whose pairs are held out to measure each proxy's gold-order accuracy"""
    rm_epochs: int = 2
    """epochs of each proxy's training"""
    rm_batch_size: int = 16
    """pairs per proxy training step"""
    rm_learning_rate: float = 5e-5
    """proxy backbone learning rate"""
    # 2. best-of-n
    bon_prompts: int = 48
    """held-out prompts of the best-of-n sweep"""
    bon_pool: int = 32
    """samples per prompt in the one pool that every n = 1, 2, 4 … pool is estimated from (unbiased, no resampling)"""
    bon_extrapolate_n: int = 8
    """extrapolation check: fit the best-of-n gold on n ≤ this, predict the larger n"""
    # 3. RL
    algo: Literal["ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "remax", "nlpo"] = "ppo"
    """policy-gradient algorithm of the RL sweep"""
    rl_steps: int = 20
    """RL iterations per run"""
    rl_eval_every: int = 4
    """measure gold, proxy and KL on the held-out prompts every N steps (and at the start and end)"""
    rl_eval_prompts: int = 32
    """held-out prompts of each RL measurement"""
    rl_proxies: list[int] = field(default_factory=list)
    """label counts of the proxies to run RL against (empty: every proxy)"""
    rl_kl_coefs: list[float] = field(default_factory=lambda: [0.0])
    """fixed KL coefficients β of the RL runs (0 as in the paper; a penalty acts like early stopping)"""
    ppo_epochs: int | None = 2
    max_new_tokens: int = 20

    def __post_init__(self):
        if not self.label_counts or any(c < 2 for c in self.label_counts):
            raise ConfigError("label_counts must be a list of label counts, each at least 2 (e.g. 100,300,900)")
        self.label_counts = sorted(set(self.label_counts))
        if self.label_samples_per_prompt < 2 or self.label_prompts < 2:
            raise ConfigError("label_samples_per_prompt and label_prompts must be at least 2 (a pair needs two samples)")
        if not 0 < self.rm_eval_fraction < 1:
            raise ConfigError(f"rm_eval_fraction must lie strictly between 0 and 1, got {self.rm_eval_fraction}")
        available = self.train_label_prompts * math.comb(self.label_samples_per_prompt, 2)
        if self.label_counts[-1] > available:
            raise ConfigError(
                f"label_counts asks for {self.label_counts[-1]} labels, but {self.train_label_prompts} training prompts × "
                f"C({self.label_samples_per_prompt}, 2) pairs give at most {available}: raise --label-prompts or "
                "--label-samples-per-prompt")
        if self.bon_pool < 2 or self.bon_prompts < 1:
            raise ConfigError("bon_pool must be at least 2 and bon_prompts at least 1")
        if not 1 <= self.bon_extrapolate_n < self.bon_pool:
            raise ConfigError(f"bon_extrapolate_n must lie in [1, bon_pool) = [1, {self.bon_pool}), got {self.bon_extrapolate_n}")
        unknown = [c for c in self.rl_proxies if c not in self.label_counts]
        if unknown:
            raise ConfigError(f"rl_proxies {unknown} are not among label_counts {self.label_counts}")
        if any(b < 0 for b in self.rl_kl_coefs):
            raise ConfigError("rl_kl_coefs must be >= 0")
        if self.rl_steps < 0 or self.rl_eval_every < 1 or self.rl_eval_prompts < 1:
            raise ConfigError("rl_steps must be >= 0 (0: no RL sweep), rl_eval_every and rl_eval_prompts >= 1")
        if self.rm_epochs < 1 or self.rm_batch_size < 1:
            raise ConfigError("rm_epochs and rm_batch_size must be at least 1")
        for beta in self.rl_kl_coefs:
            self.rl_config(beta)  # checks the batch sizes now, with RLConfig's own messages

    @property
    def train_label_prompts(self) -> int:
        return self.label_prompts - self.eval_label_prompts

    @property
    def eval_label_prompts(self) -> int:
        return max(1, round(self.label_prompts * self.rm_eval_fraction))

    @property
    def bon_ns(self) -> list[int]:
        """n = 1, 2, 4 … up to the pool, and the pool itself."""
        ns = [2 ** k for k in range(self.bon_pool.bit_length()) if 2 ** k <= self.bon_pool]
        return ns + ([self.bon_pool] if ns[-1] != self.bon_pool else [])

    @property
    def rl_proxy_counts(self) -> list[int]:
        return sorted(self.rl_proxies) if self.rl_proxies else list(self.label_counts)

    def rl_config(self, kl_coef: float) -> RLConfig:
        """The RLConfig of one RL run: --algo's defaults, this config's shared fields, a fixed β;
        --ppo-epochs reaches only the algorithms that reuse each batch (as in compare)."""
        return derive_config(RLConfig, self, algo=self.algo, steps=max(self.rl_steps, 1), init_kl_coef=kl_coef,
                             target_kl=None, ppo_epochs=self.ppo_epochs if self.algo in MULTI_EPOCH_ALGORITHMS else None)

    def reward_config(self) -> RewardTrainConfig:
        return derive_config(RewardTrainConfig, self, epochs=self.rm_epochs, batch_size=self.rm_batch_size,
                             learning_rate=self.rm_learning_rate)
