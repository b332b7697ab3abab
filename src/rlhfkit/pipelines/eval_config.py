"""Configs of `rlhfkit eval sample | winrate | leaderboard | metrics` (no torch here).

Field docstrings are the `--help` text (see rlhfkit.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from rlhfkit.config import ConfigError, RolloutBackendOptions
from rlhfkit.pipelines.config import TASK_MAX_NEW_TOKENS_HELP

JUDGE_HELP = ("who decides P(A ≻ B): gold (the task's scorer), vader, task:NAME, a saved reward-model folder, "
              "judge[:MODEL] (direct 1-10 ratings), a weighted mix 'A=1,B=0.5' (higher score wins), or "
              "ai[:MODEL_OR_URL] (a judge LM sees both orders, labels averaged; default model: the embedded SmolLM2)")


@dataclass
class JudgeOptions:
    """Options shared by the commands that judge pairs."""

    limits: ClassVar[dict[str, str]] = {"tie_margin": ">= 0", "judge_batch_size": ">= 1"}

    judge: str = "gold"
    """who decides P(A ≻ B): gold (the task's scorer), vader, task:NAME, a saved reward-model folder, judge[:MODEL] (direct 1-10 ratings), a weighted mix 'A=1,B=0.5' (the higher score wins), or ai[:MODEL_OR_URL] (a judge LM sees both orders and its labels are averaged; default model: the embedded SmolLM2)"""
    task: str = "sentiment"
    """built-in task whose gold scorer the judge `gold` is"""
    tie_margin: float = 0.0
    """scoring judges: scores this close (or closer) count as a tie"""
    judge_preamble: str = "auto"
    """ai judge: built-in preamble (helpful, positive) or a text file; auto: positive for the sentiment task, else helpful"""
    judge_batch_size: int = 16
    """local judge models: prompts per forward pass"""
    cache: str = "auto"
    """ai and judge:MODEL judges: SQLite file of cached judgements ('auto': $RLHFKIT_CACHE/judgements.sqlite, 'off': none)"""
    seed: int = 0
    """random seed (bootstrap, sampled schedules)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision of judge and reference models"""
    json: bool = False
    """print the result as JSON"""

    def _check_judge(self):
        if not self.judge.strip():
            raise ConfigError("--judge is empty: " + JUDGE_HELP)
        if self.tie_margin < 0:
            raise ConfigError(f"--tie-margin must be >= 0, got {self.tie_margin}")
        if self.judge_batch_size < 1:
            raise ConfigError("--judge-batch-size must be at least 1")


@dataclass
class EvalSampleConfig(RolloutBackendOptions):
    """`rlhfkit eval sample`: responses of several policies to the same prompts, cached in an eval run folder."""

    help_terms: ClassVar[dict[str, str]] = {"backend_model": "each policy's SPEC is the model name sent to the server"}

    limits: ClassVar[dict[str, str]] = {"n_prompts": ">= 0", "samples_per_prompt": ">= 1", "max_new_tokens": ">= 1",
                                        "temperature": "> 0", "top_p": "(0, 1]", "batch_size": ">= 1"}
    help_defaults: ClassVar[dict[str, str]] = {"max_new_tokens": f"{TASK_MAX_NEW_TOKENS_HELP}; with --task none, 24"}

    policies: list[str] = field(default_factory=lambda: ["smollm2-135m-instruct"])
    """policies, each NAME=SPEC or SPEC: a run folder (its checkpoints/final), a checkpoint or HF model folder, an HF id, the embedded default, or best_of_n:POLICY:N:REWARD (N samples, the one REWARD scores best)"""
    task: str = "sentiment"
    """built-in task: its test prompts (unless --prompts) and gold score of each sample"""
    prompts: str = ""
    """a prompt file (JSONL/CSV/Parquet/saved dataset, column 'prompt') instead of the task's test prompts"""
    n_prompts: int = 64
    """prompts to answer (0: all)"""
    samples_per_prompt: int = 1
    """responses per prompt and policy"""
    max_new_tokens: int | None = None
    """response length limit"""
    temperature: float = 1.0
    """sampling temperature"""
    top_p: float = 1.0
    """nucleus sampling (1: sample from the whole distribution)"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap prompts in the chat template (auto: the task's choice; for files, when the tokenizer has one)"""
    batch_size: int = 32
    """prompts per generation batch"""
    resample: bool = False
    """sample again even when the run folder holds samples made with the same settings"""
    resume: bool = False
    """continue an interrupted `eval sample` in its existing run folder: the policies it finished are kept, the others sampled (each policy's file is written whole or not at all)"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = "eval"
    """the eval run's folder: samples/ (one JSONL per policy), summary.json, report.html; reused by later eval commands"""
    seed: int = 0
    """random seed of the sampling"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision"""

    def __post_init__(self):
        if not self.policies:
            raise ConfigError("--policies is empty: name at least one policy to sample")
        if self.n_prompts < 0 or self.samples_per_prompt < 1 or (self.max_new_tokens or 1) < 1 or self.batch_size < 1:
            raise ConfigError("--n-prompts must be >= 0; --samples-per-prompt, --max-new-tokens and --batch-size >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("--temperature must be > 0 and --top-p in (0, 1]")
        self.check_rollout_backend()


@dataclass
class WinrateConfig(JudgeOptions):
    """`rlhfkit eval winrate`: win rate of A over B, paired by prompt."""

    limits: ClassVar[dict[str, str]] = {"bootstrap": ">= 1"}

    a: str = ""
    """policy A: a sample file (rows with prompt, response), FILE#COLUMN (e.g. a quickstart samples.jsonl#final), FILE#POLICY (rows whose method/policy is POLICY), or a policy name of --run-dir"""
    b: str = ""
    """policy B (the baseline), given like --a"""
    run_dir: str = ""
    """an eval run folder: --a/--b may name its policies, and the result is added to its summary and report"""
    bootstrap: int = 2000
    """bootstrap resamples of the prompts for the 95% CI"""

    def __post_init__(self):
        if not self.a or not self.b:
            raise ConfigError("--a and --b are required: sample files (prompt, response) or policy names of --run-dir")
        if self.bootstrap < 1:
            raise ConfigError("--bootstrap must be at least 1")
        self._check_judge()


@dataclass
class LeaderboardConfig(JudgeOptions):
    """`rlhfkit eval leaderboard`: Bradley–Terry ratings with CIs and online Elo from battles."""

    limits: ClassVar[dict[str, str]] = {"pairs_per_prompt": ">= 1", "bootstrap": ">= 0", "elo_k": "> 0"}

    run_dir: str = ""
    """eval run folder whose samples/ (from `rlhfkit eval sample`) are judged against each other"""
    battles: str = ""
    """instead: a battles file whose rows hold model_a, model_b and winner ("a", "b" or "tie"); no judging"""
    policies: list[str] = field(default_factory=list)
    """policies of --run-dir to rank (default: all of its samples)"""
    schedule: Literal["round_robin", "sampled"] = "round_robin"
    """round_robin: every pair of policies on every prompt; sampled: --pairs-per-prompt random pairs per prompt"""
    pairs_per_prompt: int = 1
    """sampled schedule: battles per prompt"""
    bootstrap: int = 1000
    """bootstrap refits for the 95% CIs (resample battles with replacement)"""
    elo_k: float = 4.0
    """K of the online Elo beside the ratings"""

    def __post_init__(self):
        if bool(self.run_dir) == bool(self.battles):
            raise ConfigError("give exactly one of --run-dir (judge its samples) or --battles (a battles file)")
        if self.bootstrap < 0 or self.pairs_per_prompt < 1:
            raise ConfigError("--bootstrap must be >= 0 and --pairs-per-prompt >= 1")
        if self.policies and len(self.policies) < 2:
            raise ConfigError("--policies: a leaderboard needs at least 2 policies (3 or more to be useful)")
        self._check_judge()


@dataclass
class MetricsConfig:
    """`rlhfkit eval metrics`: lexical, diversity, fluency and gold metrics of a sample file."""

    limits: ClassVar[dict[str, str]] = {"batch_size": ">= 1"}

    samples: str = ""
    """sample file (rows with prompt, response), FILE#COLUMN or FILE#POLICY, or a policy name of --run-dir"""
    references: str = ""
    """file of references (rows with prompt and reference or references [...]) for BLEU, ROUGE and METEOR; rows of --samples with a reference(s) field count too"""
    run_dir: str = ""
    """an eval run folder: --samples may name its policies, and the metrics are added to its summary and report"""
    task: str = "sentiment"
    """built-in task whose gold score is reported ('' or none: no gold score)"""
    reference_model: str = "smollm2-135m-instruct"
    """model for perplexity and per-token entropy of the responses ('none': skip them)"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap prompts in the reference model's chat template (auto: the task's choice; else when it has one)"""
    batch_size: int = 16
    """responses per reference-model forward pass"""
    seed: int = 0
    """random seed (bootstrap CI of the gold score, self-BLEU subset)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision of the reference model"""
    json: bool = False
    """print the result as JSON"""

    def __post_init__(self):
        if not self.samples:
            raise ConfigError("--samples is required: a sample file (prompt, response) or a policy name of --run-dir")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
