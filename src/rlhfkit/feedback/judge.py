"""The AI labeler's prompts and math (RLAIF, Lee et al. 2023; REFERENCES.md "AI feedback").

A judge prompt = preamble + optional few-shot examples + the context + the candidates + an
ending ("Preferred response="). The judge LM's log-probs of the choice tokens ("1"/"2", or
"1".."10" for direct ratings) give the soft label. Everything here is torch-free and pure:
backends (backends.py) turn a `JudgePrompt` into log-probs or text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

PAIR_CHOICES = ("1", "2")
RATING_CHOICES = tuple(str(i) for i in range(1, 11))


@dataclass(frozen=True)
class JudgePrompt:
    """What a judge sees. `user` is the request (preamble, examples, context, candidates,
    instruction); `prefix` is the start of the judge's own answer, which it continues: the
    ending ("Preferred response=") or, with chain of thought, "Rationale: ..." + the ending.

    Completion-style backends see `user + prefix` as one text; chat backends wrap `user` in the
    chat template and append `prefix` after the assistant header."""

    user: str
    prefix: str


@dataclass(frozen=True)
class Preamble:
    pairwise: str
    rating: str


PREAMBLES: dict[str, Preamble] = {
    "helpful": Preamble(
        pairwise="You are an expert rater of AI assistant responses. Given a prompt and two possible responses, "
        "decide which response is better overall: more helpful, accurate, coherent and fluent. "
        "Output 1 or 2 to indicate the better response.",
        rating="You are an expert rater of AI assistant responses. Given a prompt and a response, rate the "
        "response from 1 (useless, wrong or incoherent) to 10 (helpful, accurate, coherent and fluent).",
    ),
    "positive": Preamble(
        pairwise="Given the opening of a movie review and two possible continuations, decide which continuation "
        "says more positive things about the film (praise, enjoyment, recommendation). "
        "Output 1 or 2 to indicate the more positive continuation.",
        rating="Given the opening of a movie review and a continuation, rate how positive the continuation is "
        "about the film, from 1 (very negative) to 10 (very positive).",
    ),
}
"""Built-in preambles: `helpful` (general quality) and `positive` (the sentiment task's goal)."""


def load_preamble(spec: str) -> Preamble:
    """A built-in preamble by name, or a text file whose content is used for both modes."""
    if spec in PREAMBLES:
        return PREAMBLES[spec]
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise ValueError(f"preamble file {path} is empty")
        return Preamble(pairwise=text, rating=text)
    raise ValueError(f"preamble '{spec}' is neither a built-in ({', '.join(PREAMBLES)}) nor a text file")


@dataclass(frozen=True)
class FewShotExample:
    context: str
    first: str
    second: str
    preferred: int  # 1 or 2


@dataclass(frozen=True)
class JudgeTemplate:
    """Builds the judge prompts. Field names follow the RLAIF paper's prompt structure."""

    preamble: Preamble = PREAMBLES["helpful"]
    examples: tuple[FewShotExample, ...] = ()
    context_name: str = "Prompt"
    candidate_name: str = "Response"
    ending: str = "Preferred response="
    rating_ending: str = "Rating="
    rationale_start: str = "Rationale:"
    cot_instruction: str = ("Explain in one or two sentences which response is better and why, "
                            "then state the preferred response.")
    examples_text: str = field(init=False, default="")

    def __post_init__(self):
        shots = "".join(
            f"{self._pair_body(e.context, e.first, e.second)}{self.ending}{e.preferred}\n\n" for e in self.examples
        )
        object.__setattr__(self, "examples_text", f"Examples:\n\n{shots}" if shots else "")

    def _pair_body(self, context: str, first: str, second: str) -> str:
        c = self.candidate_name
        return f"{self.context_name}: {context}\n{c} 1: {first}\n{c} 2: {second}\n"

    def _pair_user(self, context: str, first: str, second: str, cot: bool) -> str:
        head = f"{self.preamble.pairwise}\n\n{self.examples_text}"
        tail = f"\n{self.cot_instruction}\n" if cot else ""
        return f"{head}{self._pair_body(context, first, second)}{tail}\n"

    def pairwise(self, context: str, first: str, second: str) -> JudgePrompt:
        """Score "1" vs "2" right after the ending."""
        return JudgePrompt(self._pair_user(context, first, second, cot=False), self.ending)

    def rationale(self, context: str, first: str, second: str) -> JudgePrompt:
        """Chain of thought, step 1: the judge writes a rationale after "Rationale:"."""
        return JudgePrompt(self._pair_user(context, first, second, cot=True), f"{self.rationale_start} ")

    def pairwise_after_rationale(self, context: str, first: str, second: str, rationale: str) -> JudgePrompt:
        """Chain of thought, step 2: the rationale appended, then "1" vs "2" scored."""
        return JudgePrompt(
            self._pair_user(context, first, second, cot=True),
            f"{self.rationale_start} {rationale.strip()}\n{self.ending}",
        )

    def rating(self, context: str, response: str) -> JudgePrompt:
        """Direct scoring: "1".."10" scored right after "Rating="."""
        user = f"{self.preamble.rating}\n\n{self.context_name}: {context}\n{self.candidate_name}: {response}\n\n"
        return JudgePrompt(user, self.rating_ending)


# ---------------------------------------------------------------------------------------------
# The math: soft labels, debiasing, position statistics, direct ratings, alignment


def soft_label(logp_first: float, logp_second: float) -> float:
    """P(position 1 preferred) = softmax over the two choice log-probs = σ(logp₁ − logp₂)."""
    diff = logp_first - logp_second
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)


def debiased(p_forward: float, p_swapped: float) -> float:
    """P(A preferred) from both orders: forward shows (A, B), swapped shows (B, A), each `p` is
    the judge's P(position 1). Swap the second back (P(A) = 1 − p_swapped) and average."""
    return 0.5 * (p_forward + (1.0 - p_swapped))


def preferred_position(p_position1: float) -> int | None:
    """1 or 2, or None for an exact tie."""
    if p_position1 > 0.5:
        return 1
    if p_position1 < 0.5:
        return 2
    return None


@dataclass(frozen=True)
class PositionStats:
    """How often the judge prefers the same *position* in both orders (so its choice of response
    flips with the order): RLAIF reports 18% / 21% / 56% for large / small / extra-small PaLM 2."""

    pairs: int
    same_position: int
    position1: int  # of those, how many chose position 1 both times
    position2: int

    @property
    def same_position_rate(self) -> float:
        return self.same_position / self.pairs if self.pairs else float("nan")


def position_stats(p_forward: Sequence[float], p_swapped: Sequence[float]) -> PositionStats:
    """`p_forward[i]`, `p_swapped[i]`: P(position 1) for pair i in each order."""
    first = second = 0
    for f, s in zip(p_forward, p_swapped):
        pf, ps = preferred_position(f), preferred_position(s)
        if pf is not None and pf == ps:
            first += pf == 1
            second += pf == 2
    return PositionStats(len(p_forward), first + second, first, second)


def alignment(p_first: Sequence[float], gold_p_first: Sequence[float | None]) -> tuple[float, int]:
    """Labeler alignment (RLAIF): accuracy of argmax(soft label) against gold/human labels.

    Pairs whose gold label is a tie (0.5) or missing are left out; an AI label of exactly 0.5
    counts as half right. Returns (alignment in [0, 1], pairs counted)."""
    score = 0.0
    counted = 0
    for p, g in zip(p_first, gold_p_first):
        if g is None or g == 0.5:
            continue
        counted += 1
        if p == 0.5:
            score += 0.5
        elif (p > 0.5) == (g > 0.5):
            score += 1.0
    return (score / counted if counted else float("nan")), counted


def normalise_logprobs(logps: Sequence[float]) -> list[float]:
    """Softmax over the choices' log-probs (the probability given that the judge picks a choice)."""
    top = max(logps)
    exps = [math.exp(lp - top) for lp in logps]
    total = sum(exps)
    return [e / total for e in exps]


def expected_rating(logps: Sequence[float]) -> float:
    """Σ_i i·P("i") over the ratings 1..K, P normalised over the K choices."""
    return sum((i + 1) * p for i, p in enumerate(normalise_logprobs(logps)))


def rating_to_reward(rating: float, low: float = 1.0, high: float = 10.0) -> float:
    """Rescale an expected rating from [low, high] to [−1, 1] (direct RLAIF's reward)."""
    return 2.0 * (rating - low) / (high - low) - 1.0
