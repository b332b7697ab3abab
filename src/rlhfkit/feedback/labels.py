"""Feedback kinds as small typed classes, each knowing how to become training data.

A *task* is what an annotator is asked to do with one item (a prompt and 0..K candidate
responses); a *label* is one annotator's (or the AI labeler's) answer. Every label class has
`kind` (the record kind of `rlhfkit.data.schemas` it exports to), `to_record()` (the typed record
of `rlhfkit.types`, or None when the label carries no training signal, e.g. "both bad") and
`to_row()` (the JSON row `rlhfkit data validate --kind KIND` accepts).

`parse_value(task, value, n_responses)` checks the JSON an annotator submits for a task and
`label_from_value` turns it into a label. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from rlhfkit.types import (
    PairwiseRecord,
    RankingRecord,
    RatingRecord,
    RewriteRecord,
    SFTRecord,
    ThumbsRecord,
)

TASKS = ("pairwise", "ranking", "rating", "thumbs", "rewrite", "demonstration")
"""What an annotator can be asked to do with an item."""

RESPONSES_PER_TASK = {
    "pairwise": (2, 2),
    "ranking": (3, 9),
    "rating": (1, 1),
    "thumbs": (1, 1),
    "rewrite": (1, 1),
    "demonstration": (0, 0),
}
"""(min, max) candidate responses an item of each task shows. Ranking: K in [3, 9] (InstructGPT
used 4..9; K = 2 is a pairwise item)."""

EXPORT_KIND = {
    "pairwise": "pairwise",
    "ranking": "ranking",
    "rating": "rating",
    "thumbs": "thumbs",
    "rewrite": "rewrite",
    "demonstration": "sft",
}
"""Record kind (rlhfkit.data.schemas.KINDS) that each task's labels export to."""

RATING_MIN, RATING_MAX = 1, 10
PAIRWISE_CHOICES = ("tie", "both_bad")


class LabelError(ValueError):
    """A submitted label does not fit its item's task."""


class _Label:
    """Every label kind turns into a typed record (`to_record`) and so into a data-file row."""

    def to_row(self) -> dict[str, Any] | None:
        record = self.to_record()
        return None if record is None else _row(record)


def _row(record) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    if isinstance(record, RankingRecord):
        row["responses"] = list(record.responses)
    if isinstance(record, SFTRecord):
        row = {"prompt": record.prompt, "completion": record.completion}
    if isinstance(record, PairwiseRecord) and record.margin is None:
        row.pop("margin")
    return row


@dataclass(frozen=True)
class PairwiseLabel(_Label):
    """A preference between two responses. `p_first` = P(first preferred): 1 / 0 for a hard
    choice, 0.5 for a tie, anything in [0, 1] for a soft (AI) label, None for "both bad"."""

    kind: ClassVar[str] = "pairwise"
    prompt: str
    first: str
    second: str
    p_first: float | None

    def __post_init__(self):
        if self.p_first is not None and not 0.0 <= self.p_first <= 1.0:
            raise LabelError(f"p_first must lie in [0, 1], got {self.p_first}")

    def to_record(self) -> PairwiseRecord | None:
        """Chosen = the preferred response (the first one on a tie); label = P(chosen preferred) ≥ ½."""
        if self.p_first is None:
            return None
        if self.p_first >= 0.5:
            return PairwiseRecord(self.prompt, self.first, self.second, label=self.p_first)
        return PairwiseRecord(self.prompt, self.second, self.first, label=1.0 - self.p_first)


@dataclass(frozen=True)
class RankingLabel(_Label):
    """K responses ordered best first."""

    kind: ClassVar[str] = "ranking"
    prompt: str
    responses: tuple[str, ...]

    def to_record(self) -> RankingRecord:
        return RankingRecord(self.prompt, tuple(self.responses))


@dataclass(frozen=True)
class RatingLabel(_Label):
    """A 1–10 rating of one response (AI ratings may be fractional: an expected rating)."""

    kind: ClassVar[str] = "rating"
    prompt: str
    response: str
    rating: float

    def to_record(self) -> RatingRecord:
        return RatingRecord(self.prompt, self.response, float(self.rating))


@dataclass(frozen=True)
class ThumbsLabel(_Label):
    kind: ClassVar[str] = "thumbs"
    prompt: str
    response: str
    thumbs_up: bool

    def to_record(self) -> ThumbsRecord:
        return ThumbsRecord(self.prompt, self.response, bool(self.thumbs_up))


@dataclass(frozen=True)
class RewriteLabel(_Label):
    """A correction of `original` written by the annotator."""

    kind: ClassVar[str] = "rewrite"
    prompt: str
    original: str
    rewrite: str

    def to_record(self) -> RewriteRecord:
        return RewriteRecord(self.prompt, self.original, self.rewrite)


@dataclass(frozen=True)
class Demonstration(_Label):
    """A response written from scratch by the annotator: SFT data."""

    kind: ClassVar[str] = "sft"
    prompt: str
    completion: str

    def to_record(self) -> SFTRecord:
        return SFTRecord(prompt=self.prompt, completion=self.completion)


Label = PairwiseLabel | RankingLabel | RatingLabel | ThumbsLabel | RewriteLabel | Demonstration


def _text(value: dict, key: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text.strip():
        raise LabelError(f"'{key}' must be non-empty text")
    return text


def parse_value(task: str, value: Any, responses: Sequence[str]) -> dict[str, Any]:
    """Check an annotator's answer for an item of `task` with these candidate `responses`; return
    it normalised (the form stored and compared for idempotent resubmission).

    pairwise:      {"preferred": 0 | 1 | "tie" | "both_bad"}  (0/1: index into the item's responses)
    ranking:       {"order": [indices, best first]}           (a permutation of all K)
    rating:        {"rating": 1..10}                          (an integer)
    thumbs:        {"thumbs_up": true | false}
    rewrite:       {"rewrite": "corrected text"}              (must differ from the response)
    demonstration: {"completion": "text"}
    """
    if not isinstance(value, dict):
        raise LabelError(f"a {task} label must be a JSON object")
    if task == "pairwise":
        preferred = value.get("preferred")
        if preferred in PAIRWISE_CHOICES:
            return {"preferred": preferred}
        if isinstance(preferred, int) and not isinstance(preferred, bool) and preferred in (0, 1):
            return {"preferred": preferred}
        raise LabelError("'preferred' must be 0, 1, 'tie' or 'both_bad'")
    if task == "ranking":
        order = value.get("order")
        k = len(responses)
        if (
            not isinstance(order, list)
            or any(isinstance(i, bool) or not isinstance(i, int) for i in order)
            or sorted(order) != list(range(k))
        ):
            raise LabelError(f"'order' must list each of the {k} response indices 0..{k - 1} once, best first")
        return {"order": list(order)}
    if task == "rating":
        rating = value.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
            raise LabelError(f"'rating' must be a whole number from {RATING_MIN} to {RATING_MAX}")
        if rating != int(rating) or not RATING_MIN <= rating <= RATING_MAX:
            raise LabelError(f"'rating' must be a whole number from {RATING_MIN} to {RATING_MAX}, got {rating}")
        return {"rating": int(rating)}
    if task == "thumbs":
        if not isinstance(value.get("thumbs_up"), bool):
            raise LabelError("'thumbs_up' must be true or false")
        return {"thumbs_up": value["thumbs_up"]}
    if task == "rewrite":
        text = _text(value, "rewrite")
        if text.strip() == responses[0].strip():
            raise LabelError("the rewrite is identical to the response; change it, or skip the item")
        return {"rewrite": text}
    if task == "demonstration":
        return {"completion": _text(value, "completion")}
    raise LabelError(f"unknown task '{task}' (one of {', '.join(TASKS)})")


def label_from_value(task: str, prompt: str, responses: Sequence[str], value: dict[str, Any]) -> Label:
    """The typed label for an answer already checked by `parse_value`."""
    if task == "pairwise":
        preferred = value["preferred"]
        p_first = {0: 1.0, 1: 0.0, "tie": 0.5, "both_bad": None}[preferred]
        return PairwiseLabel(prompt, responses[0], responses[1], p_first)
    if task == "ranking":
        return RankingLabel(prompt, tuple(responses[i] for i in value["order"]))
    if task == "rating":
        return RatingLabel(prompt, responses[0], value["rating"])
    if task == "thumbs":
        return ThumbsLabel(prompt, responses[0], value["thumbs_up"])
    if task == "rewrite":
        return RewriteLabel(prompt, responses[0], value["rewrite"])
    if task == "demonstration":
        return Demonstration(prompt, value["completion"])
    raise LabelError(f"unknown task '{task}'")


# ---------------------------------------------------------------------------------------------
# Aggregation of several annotators' answers to one item


def mean_pairwise(prompt: str, responses: Sequence[str], values: Sequence[dict]) -> PairwiseLabel | None:
    """Soft label = share of votes for the first response, a tie counting ½ to each side; "both
    bad" votes carry no preference and are left out. None if every vote was "both bad"."""
    votes = [{0: 1.0, 1: 0.0, "tie": 0.5}[v["preferred"]] for v in values if v["preferred"] != "both_bad"]
    if not votes:
        return None
    return PairwiseLabel(prompt, responses[0], responses[1], sum(votes) / len(votes))


def borda_ranking(prompt: str, responses: Sequence[str], values: Sequence[dict]) -> RankingLabel:
    """Borda count: a response ranked r-th of K (0-based) gets K − 1 − r points; order by total
    points, ties broken by the response's index."""
    points: dict[int, float] = defaultdict(float)
    k = len(responses)
    for v in values:
        for rank, index in enumerate(v["order"]):
            points[index] += k - 1 - rank
    order = sorted(range(k), key=lambda i: (-points[i], i))
    return RankingLabel(prompt, tuple(responses[i] for i in order))


def mean_rating(prompt: str, responses: Sequence[str], values: Sequence[dict]) -> RatingLabel:
    return RatingLabel(prompt, responses[0], sum(v["rating"] for v in values) / len(values))


def majority_thumbs(prompt: str, responses: Sequence[str], values: Sequence[dict]) -> ThumbsLabel | None:
    """Majority vote; None on an exact split."""
    up = sum(1 for v in values if v["thumbs_up"])
    down = len(values) - up
    if up == down:
        return None
    return ThumbsLabel(prompt, responses[0], up > down)


AGGREGATORS = {"pairwise": mean_pairwise, "ranking": borda_ranking, "rating": mean_rating, "thumbs": majority_thumbs}
"""Tasks whose answers can be combined across annotators (`feedback export --aggregate mean`)."""
