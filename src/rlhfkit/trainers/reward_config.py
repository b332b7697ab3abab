"""Config of `rlhfkit rm`: train a reward model from any kind of feedback (no torch imports here).

Field docstrings are the `--help` text (see rlhfkit.config). The optimiser fields mirror
`RewardTrainConfig`, which `RMConfig.train_config()` builds for `train_reward_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from rlhfkit.config import ConfigError
from rlhfkit.trainers.config import RewardTrainConfig

LabelKind = Literal["pairwise", "ranking", "rating", "thumbs", "rewrite"]
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)


@dataclass
class RMConfig:
    """Reward-model training from pairwise, ranking, rating, thumbs or rewrite feedback."""

    data: str = ""
    """training file (.jsonl/.json/.csv/.parquet or a folder saved by `datasets`) with rows of --kind"""
    kind: LabelKind = "pairwise"
    """feedback kind of the rows: pairwise (Bradley–Terry; label 1 / 0.5 tie / soft, optional margin), ranking (K responses best first, all C(K,2) pairs), rating (regression on normalised ratings), thumbs (binary cross-entropy), rewrite (the rewrite preferred over the original)"""
    eval_data: str = ""
    """held-out file of the same kind; empty: hold out --eval-fraction of the training rows"""
    eval_fraction: float = 0.1
    """without --eval-data: fraction of training rows held out, whole prompts at a time (0: no held-out evaluation)"""
    skip_invalid: bool = False
    """skip bad rows (counted and reported) instead of stopping at the first"""
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
    epochs: int = 2
    """passes over the training rows"""
    batch_size: int = 16
    """rows (pairs, rankings, ratings, ...) per optimiser step; a ranking of K responses is one row"""
    learning_rate: float = 5e-5
    """AdamW learning rate of the backbone"""
    head_learning_rate: float = 1e-3
    """AdamW learning rate of the scalar head(s)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
    seed: int = 0
    """random seed (shuffling, held-out split, head initialisation)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = ""
    """this run's folder name under output_dir; empty: the date and time"""
    overwrite: bool = False
    """reuse a non-empty run folder"""

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
        self.train_config()

    def train_config(self) -> RewardTrainConfig:
        return RewardTrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate, weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, seed=self.seed,
        )
