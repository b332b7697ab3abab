"""Configs of the closed-loop commands: `rlhfkit rft`, `rlhfkit iterate`, `rlhfkit pareto` (no torch
here: --help stays instant).

- rft: rounds of best-of-n against a reward spec, then SFT on the winners (Llama 2's rejection
  sampling, RAFT); its SFT stage is the SFTConfig of these fields (`sft_config`).
- iterate: rounds of quickstart's stages (sample → label → reward model → PPO), the policy carried
  over; an IterateConfig is a QuickstartConfig whose sizes count per round.
- pareto: a sweep over the weights of a reward mix, each point optimised by best-of-n or by RL.
"""

from __future__ import annotations

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
from rlhfkit.pipelines.config import MULTI_EPOCH_ALGORITHMS, QuickstartConfig, TaskPolicyOptions
from rlhfkit.trainers.config import ALGORITHMS, KLControlOptions, RLConfig, RolloutOptions, SFTConfig

@dataclass
class RFTConfig(TaskPolicyOptions, LoRAAdapterOptions, RunOptions, ComputeOptions, SeedOptions):
    """Rejection-sampling fine-tuning: each round draws --n candidates per training prompt from the
    current policy, keeps the one --reward scores best, fine-tunes on the winners (LoRA, merged after
    each round) and evaluates on held-out prompts."""

    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer is measured on held-out prompts after every round",
        "trained": "the LoRA adapter of each round's SFT",
    }
    limits: ClassVar[dict[str, str]] = {
        "rounds": ">= 1", "n": ">= 2", "prompts_per_round": ">= 1", "max_new_tokens": ">= 1", "sft_epochs": ">= 1",
        "sft_batch_size": ">= 1", "sft_learning_rate": "> 0", "eval_prompts": ">= 2", "eval_samples_per_prompt": ">= 1",
    }

    run_name: str = "rft"
    resume: bool = False
    """continue the run in its folder: finished rounds are kept, the next starts from the last round's policy"""
    reward: str = "gold"
    """reward that picks the winner of each prompt's candidates: gold (the task's scorer), vader, length, judge[:MODEL], task:NAME, a saved reward-model folder, a Python function module:function or file.py:function, or a weighted mix 'A=1,B=0.5'"""
    rounds: int = 2
    """rounds of best-of-n → SFT"""
    n: int = 8
    """candidates per training prompt and round (the winner is the best of n)"""
    prompts_per_round: int = 64
    """training prompts per round (new prompts each round while the task has them)"""
    max_new_tokens: int = 24
    """longest response sampled"""
    sft_epochs: int = 2
    """SFT epochs over each round's winners"""
    sft_batch_size: int = 8
    """winners per SFT step"""
    sft_learning_rate: float = 2e-4
    """SFT learning rate of the LoRA adapter"""
    eval_prompts: int = 64
    """held-out prompts scored after every round (and for the base policy)"""
    eval_samples_per_prompt: int = 1
    """responses per held-out prompt and policy"""

    def __post_init__(self):
        if not self.reward.strip():
            raise ConfigError("--reward is required: the reward that picks each prompt's best candidate")

    def sft_config(self, chat: bool | None) -> SFTConfig:
        """The SFTConfig of one round: LoRA on the current policy, these epochs and sizes; the
        winners are formatted as they were sampled (with the chat template or without)."""
        return derive_config(SFTConfig, self, model=self.policy, epochs=self.sft_epochs, batch_size=self.sft_batch_size,
                             micro_batch_size=self.sft_batch_size, learning_rate=self.sft_learning_rate, lora=True,
                             chat={True: "yes", False: "no", None: "auto"}[chat], max_length=256, resume=False,
                             run_name="")


@dataclass
class IterateConfig(QuickstartConfig):
    """Iterated online RLHF: rounds of (sample pairs from the current policy → label them → retrain
    the reward model on all labels so far → continue PPO from the last policy), evaluated after each
    round. Quickstart's options, with --rm-prompts and --ppo-steps counted per round."""

    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer plays the human labeller (--labeler simulated) and judges every round",
        "resumed": "(finished rounds and stages kept, an unfinished PPO stage from its latest checkpoint)",
    }
    limits: ClassVar[dict[str, str]] = {"rounds": ">= 1", "labels_per_round": ">= 0", "poll_seconds": "> 0"}

    run_name: str = "iterate"
    rm_prompts: int = 128
    """training prompts per round to sample two responses for from the current policy (one pair each)"""
    ppo_steps: int = 8
    """PPO iterations per round"""
    rounds: int = 3
    """rounds of sample → label → reward model → PPO"""
    anchor: Literal["initial", "previous"] = "initial"
    """KL anchor of each round's PPO: the initial policy (the adapter-disabled base), or the previous round's final policy"""
    labeler: Literal["simulated", "ai", "feedback"] = "simulated"
    """who labels each round's pairs: simulated (the task's gold with --label-temperature noise, as in quickstart), ai (the --judge LM, both orders averaged), feedback (people in `rlhfkit feedback serve`: the pairs are imported into --feedback-db and the round waits for --labels-per-round labels)"""
    judge: str = "smollm2-135m-instruct"
    """--labeler ai: the judge, a local causal LM or an OpenAI-compatible URL (see `rlhfkit label`)"""
    feedback_db: str = "feedback.sqlite"
    """--labeler feedback: the feedback app's database (the one `rlhfkit feedback serve` uses)"""
    labels_per_round: int = 0
    """--labeler feedback: labels to wait for each round (0: one per imported pair)"""
    poll_seconds: float = 5.0
    """--labeler feedback: seconds between looks at the database while waiting"""

    def __post_init__(self):
        super().__post_init__()
        if self.rounds < 1:
            raise ConfigError("rounds must be at least 1")

    def ppo_config(self) -> RLConfig:
        """One round's PPO (the trainer carries on across rounds). With --anchor previous the KL is
        to a snapshot that iterate refreshes at the start of each round (and only then)."""
        anchor = {"initial": "reference", "previous": "previous"}[self.anchor]
        return derive_config(RLConfig, self, algo="ppo", steps=self.ppo_steps, kl_anchor=anchor,
                             anchor_refresh=10 ** 9)


PARETO_ALGOS = ("best_of_n", *ALGORITHMS)


@dataclass
class ParetoConfig(TaskPolicyOptions, RolloutOptions, KLControlOptions, OptimizerOptions, LoRAAdapterOptions,
                   RunOptions, ComputeOptions, SeedOptions):
    """A Pareto front of a reward mix: every weight vector on a grid over the simplex of
    --objectives is optimised (best-of-n from one pool per held-out prompt, or RL with --algo) and
    every objective is measured on held-out prompts with a 95% CI; non-dominated points are marked."""

    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer is the objective `gold`",
        "per_prompt": "with --algo: prompts per RL step = batch_size / the algorithm's group size",
        "trained": "the LoRA adapter (and value head) of each RL point",
    }
    limits: ClassVar[dict[str, str]] = {"weight_steps": ">= 2", "n": ">= 2", "eval_prompts": ">= 2", "steps": ">= 1"}

    run_name: str = "pareto"
    objectives: list[str] = field(default_factory=lambda: ["gold", "length=-1"])
    """objectives to trade off (comma-separated), each a reward to maximise: gold (the task's scorer), vader, length, judge[:MODEL], task:NAME, a saved reward-model folder, or a Python function module:function or file.py:function; a weight flips or scales one (length=-1: shorter is better)"""
    weight_steps: int = 5
    """grid points per objective: weights 0, 1/(k−1), …, 1 on the simplex (two objectives, k = 5: 5 mixes)"""
    standardize: bool = True
    """divide each objective by its standard deviation over the base policy's samples before mixing, so the weights compare like with like"""
    algo: Literal["best_of_n", "ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "remax", "nlpo"] = "best_of_n"
    """how each mix is optimised: best_of_n (one pool of --n samples per held-out prompt, the mix picks; cheap), or an RL algorithm trained for --steps against the mix"""
    n: int = 16
    """best_of_n: candidates per held-out prompt"""
    steps: int = 10
    """RL: iterations per point"""
    eval_prompts: int = 48
    """held-out prompts every point is measured on"""
    ppo_epochs: int | None = 2

    def __post_init__(self):
        if len(self.objectives) < 2:
            raise ConfigError(f"--objectives needs at least two rewards to trade off (e.g. gold,length=-1), got {self.objectives}")
        if len(set(self.objectives)) < len(self.objectives):
            raise ConfigError(f"--objectives names one reward twice: {self.objectives}")
        if self.algo != "best_of_n":
            self.rl_config([1.0 / len(self.objectives)] * len(self.objectives))  # the batch checks, with RLConfig's messages

    def rl_config(self, weights: list[float]) -> RLConfig:
        """The RLConfig of one RL point: --algo's defaults and this config's shared fields."""
        return derive_config(RLConfig, self, algo=self.algo, steps=self.steps,
                             ppo_epochs=self.ppo_epochs if self.algo in MULTI_EPOCH_ALGORITHMS else None)
