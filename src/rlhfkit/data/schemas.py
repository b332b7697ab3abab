"""Row schemas: turn one raw row (a dict from JSONL/CSV/Parquet/datasets) into a typed record,
or raise `RowError` naming the field and what is wrong with it.

Each kind's parser is a small function; `KINDS` maps the CLI name to it. Imports no torch.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from rlhfkit.types import (
    LabelledRecord,
    Message,
    PairwiseRecord,
    PromptRecord,
    RankingRecord,
    RatingRecord,
    RewriteRecord,
    ScoredRecord,
    SFTRecord,
    StepwiseRecord,
    ThumbsRecord,
)


class DataError(ValueError):
    """Bad input data; the message names file, row and field."""


class RowError(ValueError):
    """A row breaks its schema. `field` names the offending column."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"field '{field}': {reason}")
        self.field = field
        self.reason = reason


def _is_missing(value: Any) -> bool:
    # NaN is not "missing": a JSON `NaN` label must fail as a non-finite number, not become the
    # default 1.0 (CSV blanks and Parquet / datasets nulls arrive as None).
    return value is None


def _text(row: dict, name: str, *, allow_empty: bool = False) -> str:
    if name not in row or _is_missing(row[name]):
        raise RowError(name, "missing")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected text, got {type(value).__name__} {value!r:.60}")
    if not allow_empty and not value.strip():
        raise RowError(name, "empty text")
    return value


def _number(row: dict, name: str, *, required: bool = True, lo: float | None = None, hi: float | None = None):
    if name not in row or _is_missing(row[name]) or row[name] == "":
        if required:
            raise RowError(name, "missing")
        return None
    value = row[name]
    if isinstance(value, bool):
        raise RowError(name, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(name, f"expected a number, got {value!r:.60}") from None
    except OverflowError:  # an integer beyond the float range
        raise RowError(name, f"must be finite, got an integer of {len(str(value))} digits") from None
    if not math.isfinite(number):
        raise RowError(name, f"must be finite, got {value!r:.60}")
    if lo is not None and number < lo or hi is not None and number > hi:
        raise RowError(name, f"must lie in [{lo}, {hi}], got {number}")
    return number


def _text_list(row: dict, name: str, *, min_len: int) -> tuple[str, ...]:
    if name not in row or _is_missing(row[name]):
        raise RowError(name, "missing")
    value = row[name]
    if isinstance(value, str):  # CSV cells hold lists as JSON text
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RowError(name, "expected a list of texts (JSON list in CSV cells)") from None
    if hasattr(value, "tolist"):  # numpy / arrow arrays
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(name, f"expected a list of texts, got {type(value).__name__}")
    if len(value) < min_len:
        raise RowError(name, f"needs at least {min_len} items, got {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RowError(f"{name}[{i}]", "expected non-empty text")
    return tuple(value)


def parse_prompt(row: dict) -> PromptRecord:
    meta = {k: v for k, v in row.items() if k != "prompt"}
    return PromptRecord(prompt=_text(row, "prompt"), meta=meta)


def parse_sft(row: dict) -> SFTRecord:
    if "messages" in row and not _is_missing(row["messages"]):
        raw = row["messages"]
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except (ValueError, RecursionError):
                raise RowError("messages", "expected a list of {role, content} (JSON in CSV cells)") from None
        if hasattr(raw, "tolist"):
            raw = raw.tolist()
        if not isinstance(raw, (list, tuple)) or not raw:
            raise RowError("messages", "expected a non-empty list of {role, content}")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise RowError(f"messages[{i}]", "expected an object with 'role' and 'content'")
            role = m.get("role")
            if role not in ("system", "user", "assistant"):
                raise RowError(f"messages[{i}].role", f"must be system, user or assistant, got {role!r}")
            content = m.get("content")
            if not isinstance(content, str):
                raise RowError(f"messages[{i}].content", "expected text")
            if role == "assistant" and i == len(raw) - 1 and not content.strip():
                raise RowError(f"messages[{i}].content", "empty text (the demonstration to learn)")
            messages.append(Message(role, content))
        if messages[-1].role != "assistant":
            raise RowError("messages", "the last message must be the assistant's (the demonstration)")
        return SFTRecord(messages=tuple(messages))
    if "prompt" not in row and "completion" not in row:
        raise RowError("prompt", "missing (an SFT row needs prompt + completion, or messages)")
    return SFTRecord(prompt=_text(row, "prompt", allow_empty=True), completion=_text(row, "completion"))


def parse_pairwise(row: dict) -> PairwiseRecord:
    label = _number(row, "label", required=False, lo=0.0, hi=1.0)
    margin = _number(row, "margin", required=False, lo=0.0)
    return PairwiseRecord(
        prompt=_text(row, "prompt", allow_empty=True),
        chosen=_text(row, "chosen"),
        rejected=_text(row, "rejected"),
        label=1.0 if label is None else label,
        margin=margin,
    )


def parse_ranking(row: dict) -> RankingRecord:
    return RankingRecord(prompt=_text(row, "prompt", allow_empty=True), responses=_text_list(row, "responses", min_len=2))


def parse_rating(row: dict) -> RatingRecord:
    return RatingRecord(
        prompt=_text(row, "prompt", allow_empty=True), response=_text(row, "response"), rating=_number(row, "rating")
    )


def _first_present(row: dict, names: tuple[str, ...]) -> str:
    """The first of the accepted column names the row has (else the first, to be named as missing)."""
    return next((n for n in names if n in row and not _is_missing(row[n])), names[0])


def parse_scored(row: dict) -> ScoredRecord:
    """prompt, completion (or response, as `rlhfkit generate` and rating rows have it) and score
    (or reward, as `rlhfkit generate --reward` writes it, or a rating row's rating)."""
    return ScoredRecord(prompt=_text(row, "prompt", allow_empty=True),
                        completion=_text(row, _first_present(row, ("completion", "response"))),
                        score=_number(row, _first_present(row, ("score", "reward", "rating"))))


_TRUE = {"1", "true", "up", "yes", "👍"}
_FALSE = {"0", "false", "down", "no", "👎"}


def _list_cell(row: dict, name: str) -> list:
    """A list column: a list, an array, or JSON text (CSV cells)."""
    if name not in row or _is_missing(row[name]):
        raise RowError(name, "missing")
    value = row[name]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RowError(name, "expected a list (JSON list in CSV cells)") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(name, f"expected a list, got {type(value).__name__}")
    return list(value)


def parse_stepwise(row: dict) -> StepwiseRecord:
    """TRL's stepwise-supervision row: `prompt`, `completions` (the steps, in order) and `labels`
    (one bool per step: true = a correct step)."""
    steps = _text_list(row, "completions", min_len=1)
    labels = _list_cell(row, "labels")
    if len(labels) != len(steps):
        raise RowError("labels", f"has {len(labels)} labels for {len(steps)} steps in 'completions' (one per step)")
    for i, label in enumerate(labels):
        if not isinstance(label, bool):
            raise RowError(f"labels[{i}]", f"expected true or false, got {label!r:.60}")
    return StepwiseRecord(prompt=_text(row, "prompt", allow_empty=True), completions=steps, labels=tuple(labels))


def parse_thumbs(row: dict) -> ThumbsRecord:
    if "thumbs_up" not in row or _is_missing(row["thumbs_up"]):
        raise RowError("thumbs_up", "missing")
    raw = row["thumbs_up"]
    if isinstance(raw, bool):
        value = raw
    elif isinstance(raw, (int, float)) and raw in (0, 1):
        value = bool(raw)
    elif isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        value = raw.strip().lower() in _TRUE
    else:
        raise RowError("thumbs_up", f"expected true/false, 1/0 or up/down, got {raw!r:.60}")
    return ThumbsRecord(prompt=_text(row, "prompt", allow_empty=True), response=_text(row, "response"), thumbs_up=value)


def parse_rewrite(row: dict) -> RewriteRecord:
    record = RewriteRecord(
        prompt=_text(row, "prompt", allow_empty=True), original=_text(row, "original"), rewrite=_text(row, "rewrite")
    )
    if record.original.strip() == record.rewrite.strip():
        raise RowError("rewrite", "identical to 'original' (a rewrite must change the response)")
    return record


def parse_labelled(row: dict) -> LabelledRecord:
    """`text` and its class `label`: text, or a whole number (CSV cells and JSON numbers alike
    become text: 1 -> "1")."""
    text = _text(row, "text")
    if "label" not in row or _is_missing(row["label"]):
        raise RowError("label", "missing")
    raw = row["label"]
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise RowError("label", f"expected a label (text or a whole number), got {type(raw).__name__} {raw!r:.60}")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise RowError("label", f"expected a label (text or a whole number), got {raw!r}")
        raw = int(raw)
    label = str(raw).strip()
    if not label:
        raise RowError("label", "empty text")
    return LabelledRecord(text=text, label=label)


FIELDS: dict[str, frozenset[str] | None] = {
    "prompt": None,  # every other column is kept as the prompt's metadata
    "sft": frozenset({"prompt", "completion", "messages"}),
    "pairwise": frozenset({"prompt", "chosen", "rejected", "label", "margin"}),
    "ranking": frozenset({"prompt", "responses"}),
    "rating": frozenset({"prompt", "response", "rating"}),
    "thumbs": frozenset({"prompt", "response", "thumbs_up"}),
    "rewrite": frozenset({"prompt", "original", "rewrite"}),
    "labelled": frozenset({"text", "label"}),
    "stepwise": frozenset({"prompt", "completions", "labels"}),
    "scored": frozenset({"prompt", "completion", "response", "score", "reward", "rating"}),
}
"""The columns each kind reads (None: all); others are ignored, and `data validate` lists them."""

KINDS: dict[str, Callable[[dict], Any]] = {
    "prompt": parse_prompt,
    "sft": parse_sft,
    "pairwise": parse_pairwise,
    "ranking": parse_ranking,
    "rating": parse_rating,
    "thumbs": parse_thumbs,
    "rewrite": parse_rewrite,
    "labelled": parse_labelled,
    "stepwise": parse_stepwise,
    "scored": parse_scored,
}
