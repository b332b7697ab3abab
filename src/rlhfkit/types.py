"""Typed records shared by every room.

Text records (what data files hold and feedback produces) are plain frozen dataclasses.
`Rollout` is the tensor record of one batch of sampled responses; shape letters follow
STYLE.md: B batch, P prompt tokens (left-padded), T response tokens (right-padded).

This module imports nothing of ours, and torch only for type annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


# ---------------------------------------------------------------------------------------------
# Text records (one row of a data file)


@dataclass(frozen=True)
class PromptRecord:
    """A prompt alone (online RL, generation)."""

    prompt: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class SFTRecord:
    """A demonstration: either prompt/completion text or a chat (`messages`, the last one the
    assistant's answer)."""

    prompt: str = ""
    completion: str = ""
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True)
class PairwiseRecord:
    """A preference between two responses to one prompt.

    `label` is the probability that `chosen` is preferred: 1.0 for a hard label, 0.5 for a tie,
    anything in [0, 1] for a soft label (e.g. from an AI labeler). `margin` is an optional
    preference strength (>= 0) used by the margin Bradley–Terry loss.
    """

    prompt: str
    chosen: str
    rejected: str
    label: float = 1.0
    margin: float | None = None


@dataclass(frozen=True)
class RankingRecord:
    """K >= 2 responses to one prompt, ordered best first."""

    prompt: str
    responses: tuple[str, ...]


@dataclass(frozen=True)
class RatingRecord:
    """A scalar rating of one response (e.g. 1–10)."""

    prompt: str
    response: str
    rating: float


@dataclass(frozen=True)
class ThumbsRecord:
    """A binary judgement of one response (True = thumbs up)."""

    prompt: str
    response: str
    thumbs_up: bool


@dataclass(frozen=True)
class RewriteRecord:
    """A correction: `rewrite` is the annotator's improved version of `original`."""

    prompt: str
    original: str
    rewrite: str


# ---------------------------------------------------------------------------------------------
# Tensor records


@dataclass
class Rollout:
    """One batch of sampled responses and everything the update needs about them.

    prompt_ids:     (B, P) long, left-padded
    prompt_mask:    (B, P) long, 1 on real prompt tokens
    response_ids:   (B, T) long, right-padded after EOS
    response_mask:  (B, T) float, 1 on real response tokens (EOS included)
    logprobs:       (B, T) float, log π_old(a_t | s_t) in nats (0 on padding)
    ref_logprobs:   (B, T) float, log π_ref(a_t | s_t) in nats, or None
    values:         (B, T) float, V_old(s_t), or None
    scores:         (B,)   float, sequence-level reward (e.g. RM score), or None
    prompts / responses: the decoded text, length B
    """

    prompt_ids: "torch.Tensor"
    prompt_mask: "torch.Tensor"
    response_ids: "torch.Tensor"
    response_mask: "torch.Tensor"
    logprobs: "torch.Tensor"
    prompts: list[str]
    responses: list[str]
    ref_logprobs: "torch.Tensor | None" = None
    values: "torch.Tensor | None" = None
    scores: "torch.Tensor | None" = None
    finished: "torch.Tensor | None" = None  # (B,) bool: ended with EOS
    action_mask: "torch.Tensor | None" = None  # (B, T, V) bool: NLPO's allowed tokens per step
