"""Config of `rlhfkit data validate` (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import ConfigError, SkipInvalidOptions


@dataclass
class ValidateConfig(SkipInvalidOptions):
    """Check a data file against a record kind."""

    file: str = ""
    """a .jsonl/.json/.csv/.parquet file or a folder saved by `datasets`"""
    kind: Literal["prompt", "sft", "pairwise", "ranking", "rating", "thumbs", "rewrite"] | None = None
    """the record kind the rows must follow (required)"""
    split: str = ""
    """split to read from a saved DatasetDict (empty: train)"""

    def __post_init__(self):
        if not self.file:
            raise ConfigError("data validate: give the FILE to check (or `file:` in --config)")
        if not self.kind:
            raise ConfigError("data validate: --kind is required (prompt, sft, pairwise, ranking, rating, thumbs, "
                              "rewrite)")
