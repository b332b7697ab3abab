"""Typed records shared by every room.

Text records (what data files hold and feedback produces) are plain frozen dataclasses.
Tensor records: `Rollout` (one batch of sampled responses, as the sampler made it),
`ForwardOutput` (what one forward pass over prompt + response gives training) and
`ScoredRollout` (a rollout with its scores and the passes the update needs). Shape letters
follow STYLE.md: B batch, P prompt tokens (left-padded), T response tokens (right-padded).

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
class ScoredRecord:
    """One response with its scalar score (a reward, a gold score): offline RL data (ILQL)."""

    prompt: str
    completion: str
    score: float


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


@dataclass(frozen=True)
class StepwiseRecord:
    """A completion in steps with a label per step (TRL's stepwise-supervision format; Lightman et
    al. 2023): `completions` the steps in order, `labels` True where the step is correct."""

    prompt: str
    completions: tuple[str, ...]
    labels: tuple[bool, ...]


@dataclass(frozen=True)
class LabelledRecord:
    """A text with its class label (a review and its sentiment, a question and its topic): the raw
    material `rlhfkit data instruct` turns into instruction rows. Numeric labels arrive as text
    ("1", "0")."""

    text: str
    label: str


# ---------------------------------------------------------------------------------------------
# Tensor records


@dataclass
class Rollout:
    """One batch of sampled responses, as the sampler returns it.

    prompt_ids:     (B, P) long, left-padded
    prompt_mask:    (B, P) long, 1 on real prompt tokens
    response_ids:   (B, T) long, right-padded after EOS
    response_mask:  (B, T) float, 1 on real response tokens (EOS included)
    logprobs:       (B, T) float, log-probs of the sampled tokens under the sampling
                    distribution, in nats (0 on padding)
    prompts / responses: the decoded text, length B
    finished:       (B,) bool, ended with EOS (None when the sampler does not know)
    action_mask:    (B, T, V) bool, NLPO's allowed tokens per step (None without a masker)
    Multi-turn episodes (generation/episodes.py) add three fields; single-turn rollouts leave them None:
    policy_mask:    (B, T) float, 1 on the policy's own tokens only; the response then holds the
                    user/tool turns too (response_mask: 1 on every real token, what attention sees)
    token_scores:   (B, T) float, each turn's environment reward on that turn's last policy token
    episodes:       length B, each episode's transcript {"turns": [...], "return": float, ...}
    """

    prompt_ids: "torch.Tensor"
    prompt_mask: "torch.Tensor"
    response_ids: "torch.Tensor"
    response_mask: "torch.Tensor"
    logprobs: "torch.Tensor"
    prompts: list[str]
    responses: list[str]
    finished: "torch.Tensor | None" = None
    action_mask: "torch.Tensor | None" = None
    policy_mask: "torch.Tensor | None" = None
    token_scores: "torch.Tensor | None" = None
    episodes: "list[dict] | None" = None


@dataclass(frozen=True)
class ForwardOutput:
    """One forward pass of a model over [prompt | response] (`models.forward.response_forward`).

    Every tensor is (B, T), 0 on response padding; log-probs in nats.
    logprobs:          log π(a_t | s_t) of the response tokens; under an NLPO action mask, of π
                       renormalised over the allowed tokens (what the policy-gradient loss uses)
    unmasked_logprobs: log π(a_t | s_t) of the policy itself (what the KL penalty uses); the same
                       tensor as `logprobs` when there is no action mask
    values:            V(s_t) from a value head, or None
    entropy:           H(π(· | s_t)) (no gradient), or None
    """

    logprobs: "torch.Tensor"
    unmasked_logprobs: "torch.Tensor"
    values: "torch.Tensor | None" = None
    entropy: "torch.Tensor | None" = None


@dataclass(frozen=True)
class ScoredRollout:
    """A sampled `Rollout` with everything the online update needs about it, built once per
    iteration (the sampled record itself is left as the sampler made it).

    rollout:           the sampled batch
    raw_scores:        (B,) what the reward function returned
    scores:            (B,) after shaping (clip, normalisation, missing-EOS penalty)
    baseline_scores:   (B,) ReMax's shaped score of the greedy response to the same prompt, or None
    old_logprobs:      (B, T) log π_old(a_t | s_t) from a no-grad pass of the policy that sampled
                       (or, for a single on-policy update, the detached log-probs of its forward)
                       (renormalised over the NLPO mask when there is one)
    unmasked_logprobs: (B, T) log π_old(a_t | s_t) of the policy itself
    anchor_logprobs:   (B, T) log π_anchor(a_t | s_t): the reference, or the previous policy; None
                       when β is 0 and fixed (the trainer then skips that pass; kl is all 0)
    old_values:        (B, T) V_old(s_t), or None without a value head
    entropy:           (B, T) H(π_old(· | s_t))
    kl:                (B, T) per-token KL estimate of π_old to the anchor (the configured
                       estimator, on the unmasked log-probs), 0 on padding, nats
    kl_coef:           the KL coefficient β this iteration uses (in the rewards or in the loss)
    token_rewards:     (B, T) −kl_coef·kl per token when the KL is in the reward, plus the score
                       on the last real token
    importance_weights: (B, T) min(exp(old_logprobs − the sampler's log-probs), C) when another
                       engine sampled (vLLM, an OpenAI-compatible server), multiplied into the
                       per-token policy loss; None when our own sampler did
    """

    rollout: Rollout
    raw_scores: "torch.Tensor"
    scores: "torch.Tensor"
    baseline_scores: "torch.Tensor | None"
    old_logprobs: "torch.Tensor"
    unmasked_logprobs: "torch.Tensor"
    anchor_logprobs: "torch.Tensor | None"
    old_values: "torch.Tensor | None"
    entropy: "torch.Tensor"
    kl: "torch.Tensor"
    kl_coef: float
    token_rewards: "torch.Tensor"
    importance_weights: "torch.Tensor | None" = None

    @property
    def mask(self) -> "torch.Tensor":
        """(B, T) float, 1 on the tokens the loss and KL cover: the real response tokens, or in
        a multi-turn episode the policy's own tokens only."""
        ro = self.rollout
        return ro.policy_mask if ro.policy_mask is not None else ro.response_mask
