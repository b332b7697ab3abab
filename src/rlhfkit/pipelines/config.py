"""Configs of the multi-stage commands: rm, rl, quickstart, compare, generate (no torch here).

Each is built from the shared pieces (rlhfkit.config, trainers/config.py); quickstart and compare
derive the trainers' configs from their own fields with `derive_config`, and take every
per-algorithm default from ALGO_DEFAULTS through RLConfig. Field docstrings are the `--help`
text (see rlhfkit.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from rlhfkit.config import (
    ChatOptions,
    ComputeOptions,
    ConfigError,
    DataFileOptions,
    DeviceOptions,
    LoRAAdapterOptions,
    LoRAOptions,
    ModelOptions,
    OptimizerOptions,
    ResumeOptions,
    RolloutBackendOptions,
    RunOptions,
    SeedOptions,
    SkipInvalidOptions,
    derive_config,
)
from rlhfkit.trainers.config import (
    ALGO_DEFAULTS,
    ALGORITHMS,
    KLControlOptions,
    RewardTrainConfig,
    RLConfig,
    RolloutOptions,
)

# --max-new-tokens left unset takes the task's own (pipelines.common.apply_task_defaults); the
# figures are the built-in tasks' (tests/test_task_defaults.py checks them against the registry)
TASK_MAX_NEW_TOKENS_HELP = "the task's own: sentiment 24, summarize 40, concepts 32, arithmetic 16, a task file's max_new_tokens (`rlhfkit tasks --json`)"

LabelKind = Literal["pairwise", "ranking", "rating", "thumbs", "rewrite", "stepwise"]
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)


@dataclass
class TaskPolicyOptions:
    """A built-in task, and the policy trained on its prompts."""

    task: str = "sentiment"
    """task: built-in (sentiment, summarize, concepts, arithmetic: see `rlhfkit tasks`) or a task file my_task.yaml (prompts + gold scorer); {task_gold}"""
    policy: str = "smollm2-135m-instruct"
    """policy/reference model: the embedded default, an HF id, a local folder or a .gguf file"""


@dataclass
class RMConfig(RewardTrainConfig, DataFileOptions, ResumeOptions, RunOptions, DeviceOptions):
    """Reward-model training from pairwise, ranking, rating, thumbs or rewrite feedback.
    An RMConfig is the RewardTrainConfig of its training."""

    help_defaults: ClassVar[dict[str, str]] = {"run_name": "the date and time"}
    help_terms: ClassVar[dict[str, str]] = {
        "rows": "--kind rows", "held_out": "whole prompts at a time", "models": "the reward model",
        "seeded": "shuffling, the held-out split and head initialisation",
    }
    limits: ClassVar[dict[str, str]] = {"ensemble": ">= 1", "uncertainty_penalty": ">= 0", "max_length": ">= 8"}

    kind: LabelKind = "pairwise"
    """feedback kind of the rows: pairwise (Bradley–Terry; label 1 / 0.5 tie / soft, optional margin), ranking (K responses best first, all C(K,2) pairs), rating (regression on normalised ratings), thumbs (binary cross-entropy), rewrite (the rewrite preferred over the original), stepwise (a process reward model: prompt, completions = the steps, labels = a bool per step; binary cross-entropy at each step's last token)"""
    step_separator: str = "\\n"
    """stepwise: the text between steps when they are joined into one completion, saved with the model; the RL reward splits completions at it (escapes \\n and \\t are read as newline and tab)"""
    eval_fraction: float = 0.1
    backbone: str = "all-minilm-l6-v2"
    """the embedded MiniLM, a local HF folder or HF id (encoder or decoder), or a saved rlhfkit reward model to train further"""
    max_length: int = 256
    """tokens per (prompt, response) text; longer texts are truncated"""
    ensemble: int = 1
    """number of scalar heads on the shared backbone; > 1 reports their disagreement (std across heads)"""
    uncertainty_penalty: float = 0.0
    """λ for an ensemble: the model's score is mean − λ·std over its heads (0: the plain mean)"""
    center_on: str = ""
    """file of reference responses (rows with prompt and response, e.g. `rlhfkit generate` output) that should score 0 on average; empty: the responses of the training data (for rewrites: the originals)"""

    def __post_init__(self):
        if not self.data:
            raise ConfigError("--data is required: a file of feedback rows of --kind (see `rlhfkit data validate`)")
        if self.kind not in LABEL_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(LABEL_KINDS)}, got {self.kind!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.ensemble < 1:
            raise ConfigError(f"ensemble must be at least 1 head, got {self.ensemble}")
        if self.uncertainty_penalty < 0:
            raise ConfigError(f"uncertainty_penalty λ must be >= 0 (score = mean − λ·std), got {self.uncertainty_penalty}")
        if self.uncertainty_penalty > 0 and self.ensemble < 2:
            raise ConfigError("uncertainty_penalty needs an ensemble: pass --ensemble K with K >= 2 heads")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}")
        self.step_separator = self.step_separator.replace("\\n", "\n").replace("\\t", "\t")
        if self.kind == "stepwise" and (self.ensemble > 1 or self.center_on or not self.step_separator):
            raise ConfigError("--kind stepwise trains one head whose step scores are log-odds: no --ensemble or "
                              "--center-on, and a non-empty --step-separator")


@dataclass
class QuickstartConfig(TaskPolicyOptions, RolloutOptions, KLControlOptions, OptimizerOptions, LoRAAdapterOptions,
                       ResumeOptions, RunOptions, ComputeOptions, SeedOptions):
    """The whole RLHF loop on one built-in task with the embedded defaults. Its PPO stage is the
    RLConfig of --algo ppo with this config's rollout, KL, optimiser and seed fields."""

    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer plays the human labeller and judges base vs final",
        "per_prompt": "PPO samples each prompt once", "trained": "the LoRA adapter and the value head (PPO)",
        "resumed": "(finished stages kept, the unfinished one from its latest checkpoint)",
    }
    help_defaults: ClassVar[dict[str, str]] = {"max_new_tokens": TASK_MAX_NEW_TOKENS_HELP}
    limits: ClassVar[dict[str, str]] = {
        "rm_prompts": ">= 10", "label_temperature": "> 0", "rm_eval_fraction": "(0, 1)", "rm_epochs": ">= 1",
        "rm_batch_size": ">= 1", "rm_learning_rate": "> 0", "ppo_steps": ">= 1", "eval_prompts": ">= 2",
        "eval_samples_per_prompt": ">= 1",
    }

    reward_backbone: str = "all-minilm-l6-v2"
    """reward-model backbone: the embedded MiniLM, or any local/HF encoder or decoder"""
    run_name: str = "quickstart"
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
    # 4. PPO (defaults of the pieces' fields, as tuned for a short run)
    ppo_steps: int = 25
    """PPO iterations"""
    ppo_epochs: int = 2
    init_kl_coef: float = 0.1
    target_kl: float | None = 6.0
    kl_horizon: float = 500.0
    max_new_tokens: int | None = None
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
        return derive_config(RLConfig, self, algo="ppo", steps=self.ppo_steps)

    def reward_config(self) -> RewardTrainConfig:
        return derive_config(RewardTrainConfig, self, epochs=self.rm_epochs, batch_size=self.rm_batch_size,
                             learning_rate=self.rm_learning_rate)


@dataclass
class EpisodeOptions:
    """Multi-turn episodes with an environment (envs/), and token-level credit."""

    help_group: ClassVar[str] = "multi-turn episodes and token credit"
    limits: ClassVar[dict[str, str]] = {"max_turns": ">= 1", "episode_tokens": ">= 1"}

    env: str = ""
    """play multi-turn episodes with an environment instead of single responses: calculator (arithmetic with a calc(EXPR) tool), dialogue (a scripted user with a hidden goal), or a class my_module:MyEnv / path/file.py:MyEnv (reset(row) -> messages, step(text) -> (messages, reward, done)); the environment's rewards replace --reward"""
    max_turns: int | None = None
    """policy turns per episode (default: the environment's own limit)"""
    episode_tokens: int | None = None
    """token budget of an episode after its opening prompt, policy and environment turns together (default: the environment's own)"""
    reward_granularity: Literal["sequence", "token"] = "sequence"
    """sequence: the score on the last token; token: dense per-token rewards (their sum is the score exactly; ppo, reinforce, reinforce_pp): with a process reward model (rm --kind stepwise) in --reward, each step's log P(correct) on its last token; otherwise from a token-level reward model trained on the sequence scores"""


@dataclass
class RLRunConfig(TaskPolicyOptions, RLConfig, ChatOptions, LoRAOptions, ResumeOptions, RunOptions, ComputeOptions,
                  RolloutBackendOptions, EpisodeOptions):
    """`rlhfkit rl`: online RL of a policy on a task's or a file's prompts against a reward."""

    help_defaults: ClassVar[dict[str, str]] = {"run_name": "<algo>-<date>-<time>",
                                               "max_new_tokens": f"{TASK_MAX_NEW_TOKENS_HELP}; with --prompts, --task's"}
    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold score is logged next to the training reward",
        "chat_auto": "the task's choice; for files, when the tokenizer has one",
        "backend_model": "the model name sent to the server: --policy; token ids go as the prompt and come back "
        "with their log-probs, and the policy's weights are pushed to POST /v1/load_weights after each update",
    }
    limits: ClassVar[dict[str, str]] = {"eval_prompts": ">= 0", "importance_cap": ">= 0"}

    prompts: str = ""
    """a prompt file (JSONL/CSV/Parquet/saved dataset, column 'prompt') instead of the task's prompts"""
    reward: str = "gold"
    """reward: gold (the task's scorer), vader, length, judge[:MODEL] (direct RLAIF), task:NAME (another task's gold scorer), a saved reward-model folder, a Python function module:function or file.py:function (fn(prompts, completions, **columns) -> list[float]), or a weighted mix 'A=1,B=0.5'"""
    eval_prompts: int = 64
    """held-out prompts scored before and after training (0: skip)"""
    importance_cap: float = 2.0
    """--rollout-backend openai/vllm: cap C of the per-token importance weight min(exp(log π_old − log π_sampler), C) multiplied into the policy loss (TRL's correction for vLLM rollouts; 0: none)"""
    max_new_tokens: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self.check_rollout_backend()
        if self.rollout_backend != "hf" and self.algo == "nlpo":
            raise ConfigError("--algo nlpo masks each sampling step with its masking policy: it needs "
                              f"--rollout-backend hf (not {self.rollout_backend})")


# compare's offline methods: DPO and the reference-free losses, on gold-labelled pairs of base samples
OFFLINE_METHODS = ("dpo", "simpo", "orpo", "cpo")

# compare's --ppo-epochs is for the algorithms that reuse each batch; the others keep their one pass
MULTI_EPOCH_ALGORITHMS = tuple(algo for algo, defaults in ALGO_DEFAULTS.items() if defaults["ppo_epochs"] > 1)


@dataclass
class CompareConfig(TaskPolicyOptions, RolloutOptions, KLControlOptions, OptimizerOptions, ResumeOptions, RunOptions,
                    ComputeOptions, SeedOptions):
    """`rlhfkit compare`: several alignment methods on one task at matched sample budgets. Each
    online method's RLConfig is its --algo defaults with this config's rollout, KL, optimiser and
    seed fields (`rl_config`; --init-kl-coef unset: each method's own β)."""

    help_defaults: ClassVar[dict[str, str]] = {
        "mini_batch_size": "half of --batch-size",
        "ppo_epochs": f"{{default}} for {', '.join(MULTI_EPOCH_ALGORITHMS)}; the others make their one pass",
        "max_new_tokens": TASK_MAX_NEW_TOKENS_HELP,
    }
    help_terms: ClassVar[dict[str, str]] = {
        "task_gold": "its gold scorer is the reward (and labels DPO's pairs)",
        "per_prompt": "prompts per iteration = batch_size / the method's group size",
        "trained": "the online methods' LoRA adapters and value heads (DPO: --dpo-learning-rate; ILQL: --ilql-learning-rate)",
        "resumed": "(finished methods kept, the unfinished one from its latest checkpoint)",
    }
    limits: ClassVar[dict[str, str]] = {"sample_budget": ">= 1", "dpo_learning_rate": "> 0", "ilql_learning_rate": "> 0",
                                        "best_of_n": ">= 1", "eval_prompts": ">= 1"}

    methods: list[str] = field(default_factory=lambda: ["ppo", "reinforce", "rloo", "grpo", "nlpo", "dpo", "best_of_n"])
    """methods to run: any of ppo, reinforce, rloo, grpo, reinforce_pp, remax, nlpo, dapo, gspo, dr_grpo, online_dpo, dpo, simpo, orpo, cpo, ilql, best_of_n"""
    sample_budget: int = 384
    """policy samples each training method may draw (online: steps × batch; DPO: 2 per pair; ILQL: scored base samples)"""
    mini_batch_size: int | None = None
    ppo_epochs: int = 2
    dpo_learning_rate: float = 5e-4
    """LoRA learning rate of DPO"""
    ilql_learning_rate: float = 5e-4
    """learning rate of ILQL (its LoRA adapter and Q/V heads)"""
    best_of_n: int = 16
    """n of the best-of-n policy (its cost is n samples per query at inference)"""
    max_new_tokens: int | None = None
    eval_prompts: int = 64
    """held-out prompts for the table"""
    run_name: str = "compare"

    def __post_init__(self):
        known = set(ALGORITHMS) | set(OFFLINE_METHODS) | {"ilql", "best_of_n"}
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        if self.sample_budget < self.batch_size:
            raise ConfigError(f"sample_budget ({self.sample_budget}) must be at least one batch ({self.batch_size})")
        for method in self.methods:
            if method in ALGORITHMS:
                self.rl_config(method)  # checks the batch sizes now, with RLConfig's own messages

    def rl_config(self, method: str) -> RLConfig:
        """The RLConfig of online method `method`: ALGO_DEFAULTS[method] (filled in by RLConfig),
        then this config's shared fields; the step count spends the sample budget."""
        return derive_config(
            RLConfig, self, algo=method, steps=max(1, self.sample_budget // self.batch_size),
            mini_batch_size=self.mini_batch_size or self.batch_size // 2,
            ppo_epochs=self.ppo_epochs if method in MULTI_EPOCH_ALGORITHMS else None,
        )


@dataclass
class GenerationConfig(ModelOptions, ChatOptions, SkipInvalidOptions, ComputeOptions, SeedOptions, RolloutBackendOptions):
    """Sample responses for a file of prompts."""

    help_terms: ClassVar[dict[str, str]] = {"model_role": "model to sample from", "seeded": "sampling",
                                            "chat_auto": "the task's choice for task:NAME; for files, when the tokenizer has one"}
    # temperature: `_check_sampling` says it with a hint (greedy for argmax decoding)
    limits: ClassVar[dict[str, str]] = {"top_p": "(0, 1]", "top_k": ">= 0", "num_beams": ">= 1",
                                        "length_penalty": ">= 0", "max_new_tokens": ">= 1", "n": ">= 1", "batch_size": ">= 1",
                                        "limit": ">= 0"}
    help_defaults: ClassVar[dict[str, str]] = {"max_new_tokens": f"for task:NAME {TASK_MAX_NEW_TOKENS_HELP}; for a prompt file 64"}

    prompts: str = ""
    """prompt file (JSONL/CSV/Parquet/saved dataset with a 'prompt' column), or task:NAME (a built-in task or a task .yaml file) for a task's test prompts"""
    output: str = "generations.jsonl"
    """where to write one JSON line per response"""
    strategy: Literal["greedy", "sample", "top_k", "top_p", "beam"] = "top_p"
    """how to pick tokens"""
    temperature: float = 1.0
    """softmax temperature (sampling strategies)"""
    top_k: int = 50
    """keep the k most likely tokens (strategy top_k)"""
    top_p: float = 0.9
    """keep the smallest set of tokens with this much probability (strategy top_p)"""
    num_beams: int = 4
    """beams per prompt (strategy beam)"""
    length_penalty: float = 1.0
    """beam score = summed log-prob / length**length_penalty"""
    max_new_tokens: int | None = None
    """longest response"""
    policy: Literal["sample", "best_of_n"] = "sample"
    """sample: the model itself; best_of_n: draw --n candidates per prompt and keep the one --reward scores best"""
    n: int = 1
    """responses per prompt (policy sample), or candidates per prompt (policy best_of_n)"""
    reward: str = ""
    """reward for best_of_n (with policy sample: each response's score, written as `reward`, e.g. for rlhfkit ilql): vader, length, task:NAME (a task's gold scorer), a saved reward-model folder, a Python function module:function or file.py:function, or a weighted mix 'A=1,B=0.5'"""
    batch_size: int = 16
    """prompts per generation batch"""
    limit: int = 0
    """use only the first N prompts (0: all)"""

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("--prompts is required: a prompt file, or task:sentiment for built-in prompts")
        if self.policy == "best_of_n" and not self.reward:
            raise ConfigError("--policy best_of_n needs --reward (vader, task:NAME, a saved reward-model folder, or a mix)")
        if self.n < 1:
            raise ConfigError("--n must be at least 1")
        self._check_sampling()
        self.check_rollout_backend()
        if self.rollout_backend != "hf" and self.strategy == "beam":
            raise ConfigError(f"--strategy beam runs on our own sampler only: use --rollout-backend hf "
                              f"(not {self.rollout_backend})")

    def _check_sampling(self):
        """The sampler's own checks, made here so that they fail before the model loads."""
        if not 0.0 < self.temperature < float("inf"):
            raise ConfigError(f"--temperature must be a number > 0, got {self.temperature} "
                              "(for argmax decoding use --strategy greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must lie in (0, 1], got {self.top_p}")
        if self.strategy == "top_p" and self.top_p == 1.0:
            raise ConfigError("--strategy top_p needs --top-p below 1 (1 keeps every token: use --strategy sample)")
        if self.top_k < 0 or (self.strategy == "top_k" and self.top_k == 0):
            raise ConfigError(f"--top-k must be at least 1 with --strategy top_k (and never negative), got {self.top_k}")
        if self.num_beams < 1 or (self.max_new_tokens is not None and self.max_new_tokens < 1) or self.batch_size < 1:
            raise ConfigError("--num-beams, --max-new-tokens and --batch-size must be at least 1")
        if self.limit < 0:
            raise ConfigError("--limit must be >= 0 (0: all prompts)")
