"""What a task is: rows of prompts (with their other columns: a reference, an answer, concept
words…), a gold scorer over those columns, its metrics and generation defaults, and a fixed
train/test split."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

from rlhfkit.config import ConfigError
from rlhfkit.rewards.python import PromptColumns, with_columns

TRAIN_TEST_SEED = 1234  # the split never depends on a run's seed


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    make_rows: Callable[[], list[dict]]
    """-> rows {"prompt": ..., other columns}; a row with an "id" is split by a hash of it (stable
    when rows are added or removed), the others by a seeded shuffle of their order"""
    scorer: Callable[..., list[float]]
    """the gold scorer `fn(prompts, completions, **columns)`; `gold` hands it the task's columns"""
    chat: bool = False
    max_new_tokens: int = 24
    eval_fraction: float = 0.2
    reference_column: str | None = None
    """the column holding each prompt's reference text, if the task has references"""
    metrics: tuple[str, ...] = ()
    """the evaluation room's metrics that suit the task: rouge, bleu, meteor, diversity, perplexity"""
    source: str = ""
    """where the prompts come from and under which licence"""
    needs: tuple[str, ...] = field(default=())
    """the columns the gold scorer reads"""

    @cached_property
    def rows(self) -> list[dict]:
        return self.make_rows()

    @cached_property
    def columns(self) -> PromptColumns:
        return PromptColumns(self.rows)

    @cached_property
    def _splits(self) -> dict[str, list[dict]]:
        rows = self.rows
        if rows and all("id" in r for r in rows):
            test = [r for r in rows if _hash_fraction(str(r["id"])) < self.eval_fraction]
            train = [r for r in rows if _hash_fraction(str(r["id"])) >= self.eval_fraction]
        else:
            order = list(range(len(rows)))
            random.Random(TRAIN_TEST_SEED).shuffle(order)
            cut = int(len(order) * (1 - self.eval_fraction))
            train, test = [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]
        return {"train": train, "test": test}

    def split_rows(self, split: str = "train") -> list[dict]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self._splits[split]

    def prompts(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[str]:
        """`n` prompts of `split` ("train" or "test"; disjoint), shuffled by `seed`.
        Prompts repeat (cycling) only if `n` exceeds the split's size."""
        pool = [r["prompt"] for r in self.split_rows(split)]
        random.Random(seed).shuffle(pool)
        if n is None:
            return pool
        return [pool[i % len(pool)] for i in range(n)]

    def references(self, prompts: Sequence[str]) -> list[list[str]] | None:
        """Each prompt's references (for BLEU/ROUGE/METEOR), or None if the task has none."""
        if not self.reference_column:
            return None
        values = self.columns.lookup(prompts).get(self.reference_column, [None] * len(prompts))
        return [[v] if isinstance(v, str) else list(v or []) for v in values]

    def gold(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        """The gold score of each completion, given the task's own columns of its prompts (columns
        passed in the call win: a prompt file may bring its own references)."""
        given = with_columns(self.columns, prompts, columns)
        for name in self.needs:
            values = given.get(name)
            missing = next((i for i, v in enumerate(values or [None] * len(prompts)) if v is None), None)
            if missing is not None:
                raise ConfigError(f"task '{self.name}': its gold score needs each prompt's '{name}', and prompt "
                                  f"{prompts[missing]!r:.70} is not one of the task's prompts and has no '{name}' column")
        return self.scorer(list(prompts), list(completions), **given)

    def summary_line(self) -> str:
        return f"{self.name:12s} {self.description}"


def _hash_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16 ** 8
