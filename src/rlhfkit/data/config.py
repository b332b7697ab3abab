"""Configs of `rlhfkit data validate` and `rlhfkit data instruct` (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlhfkit.config import ConfigError, SkipInvalidOptions


@dataclass
class ValidateConfig(SkipInvalidOptions):
    """Check a data file against a record kind."""

    file: str = ""
    """a .jsonl/.json/.csv/.parquet file or a folder saved by `datasets`"""
    kind: Literal["prompt", "sft", "pairwise", "ranking", "rating", "thumbs", "rewrite", "labelled", "stepwise", "scored"] | None = None
    """the record kind the rows must follow (required)"""
    split: str = ""
    """split to read from a saved DatasetDict (empty: train)"""

    def __post_init__(self):
        if not self.file:
            raise ConfigError("data validate: give the FILE to check (or `file:` in --config)")
        if not self.kind:
            raise ConfigError("data validate: --kind is required (prompt, sft, pairwise, ranking, rating, thumbs, "
                              "rewrite, labelled, stepwise, scored)")


@dataclass
class InstructConfig(SkipInvalidOptions):
    """Turn labelled rows (text, label) into instruction rows (prompt, completion) for `rlhfkit sft`."""

    limits: ClassVar[dict[str, str]] = {"templates_per_row": ">= 0"}

    file: str = ""
    """a .jsonl/.json/.csv/.parquet file or saved dataset of rows with 'text' and 'label'"""
    templates: str = "sentiment"
    """instruction templates: a built-in set (sentiment: positive/negative reviews; classify: any labels as written) or a .yaml/.json file of templates (a prompt holding the text, a completion holding the label, and a label -> words map; see the README)"""
    templates_per_row: int = 1
    """distinct templates each row goes through, drawn at random (0: every template)"""
    output: str = "instruct.jsonl"
    """where to write the prompt/completion rows (JSONL)"""
    seed: int = 0
    """seed of the template draw"""
    overwrite: bool = False
    """replace --output if it exists"""

    def __post_init__(self):
        if not self.file:
            raise ConfigError("data instruct: give the FILE of labelled rows (or `file:` in --config)")
        if self.templates_per_row < 0:
            raise ConfigError("templates_per_row must be >= 0 (0: every template)")
