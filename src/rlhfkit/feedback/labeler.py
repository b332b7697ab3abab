"""The AI labeler (RLAIF): soft pairwise labels with position debiasing, chain of thought and
self-consistency; direct 1–10 scoring as a reward function.

Reads like the paper (Lee et al. 2023, REFERENCES.md "AI feedback"): for each pair, build the
judge prompt in both orders → score "1"/"2" → soft label per order → swap back and average;
optionally write a rationale first (greedy: CoT; N samples at temperature T: self-consistency)
and score after it. Each technique's labels are kept so that their alignment with gold/human
labels can be compared in one table.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Sequence

from rlhfkit.feedback.backends import JudgeBackend, load_judge
from rlhfkit.feedback.judge import (
    PAIR_CHOICES,
    RATING_CHOICES,
    JudgeTemplate,
    PositionStats,
    alignment,
    debiased,
    expected_rating,
    load_preamble,
    position_stats,
    rating_to_reward,
    soft_label,
)
from rlhfkit.feedback.labels import PairwiseLabel, RatingLabel


@dataclass(frozen=True)
class Pair:
    """Two responses to judge, in the order shown first. `gold` = P(first preferred) from gold or
    human labels (1, 0, 0.5 for a tie), or None when unknown."""

    prompt: str
    first: str
    second: str
    gold: float | None = None


@dataclass(frozen=True)
class LabelPlan:
    """Which techniques to run (each one builds on the cheaper ones, all are reported)."""

    swap: bool = True
    cot: bool = False
    self_consistency: int = 0
    temperature: float = 1.0
    max_rationale_tokens: int = 64


@dataclass
class Technique:
    """One row of the alignment table: P(first preferred) per pair and what it cost."""

    name: str
    p_first: list[float]
    p_forward: list[float]  # P(position 1) with (first, second) shown
    p_swapped: list[float] | None  # P(position 1) with (second, first) shown
    seconds: float  # judge time this technique needs on its own
    cached: bool = False  # every answer came from the judge's cache (its seconds say nothing)

    def positions(self) -> PositionStats | None:
        return None if self.p_swapped is None else position_stats(self.p_forward, self.p_swapped)


@dataclass
class LabelRun:
    pairs: list[Pair]
    techniques: list[Technique]
    rationales: list[str] = field(default_factory=list)  # CoT rationale (forward order) per pair

    @property
    def final(self) -> Technique:
        """The most elaborate technique run: its labels are the ones written."""
        return self.techniques[-1]

    @property
    def has_gold(self) -> bool:
        return any(p.gold is not None for p in self.pairs)

    def labels(self) -> list[PairwiseLabel]:
        return [PairwiseLabel(p.prompt, p.first, p.second, q) for p, q in zip(self.pairs, self.final.p_first)]

    def table(self) -> list[dict]:
        """One dict per technique: alignment (if gold known), position statistics, seconds per label."""
        rows = []
        gold = [p.gold for p in self.pairs]
        n = max(len(self.pairs), 1)
        for t in self.techniques:
            row: dict = {"technique": t.name, "pairs": len(self.pairs), "seconds_per_label": t.seconds / n,
                         "cached": t.cached}
            if self.has_gold:
                row["alignment"], row["gold_pairs"] = alignment(t.p_first, gold)
            stats = t.positions()
            if stats is not None:
                row["same_position_rate"] = stats.same_position_rate
                row["same_position_first"] = stats.position1
                row["same_position_second"] = stats.position2
            rows.append(row)
        return rows


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _misses(judge) -> int | None:
    """Requests a `CachedJudge` had to send to its backend so far (None: the judge has no cache)."""
    return getattr(judge, "misses", None)


def _all_cached(judge, misses_before: int | None) -> bool:
    """True when every request since `misses_before` was answered from the judge's cache."""
    return misses_before is not None and _misses(judge) == misses_before


def _score(judge: JudgeBackend, prompts) -> list[float]:
    """P(position 1) for each prompt from the log-probs of "1" and "2"."""
    return [soft_label(lp[0], lp[1]) for lp in judge.choice_logprobs(prompts, PAIR_CHOICES)]


def clean_rationale(text: str, template: JudgeTemplate) -> str:
    """Keep the rationale itself: cut where the judge starts stating its verdict or a new block."""
    cut = len(text)
    for marker in (template.ending.rstrip("=: "), "\n\n"):
        at = text.find(marker)
        if at > 0:
            cut = min(cut, at)
    return text[:cut].strip()


def _orders(pairs: Sequence[Pair], swap: bool):
    """(context, shown first, shown second) for the forward order, then the swapped one."""
    forward = [(p.prompt, p.first, p.second) for p in pairs]
    swapped = [(p.prompt, p.second, p.first) for p in pairs] if swap else []
    return forward, swapped


def _combine(p_forward: list[float], p_swapped: list[float] | None) -> list[float]:
    if p_swapped is None:
        return list(p_forward)
    return [debiased(f, s) for f, s in zip(p_forward, p_swapped)]


def _with_rationales(judge, template, shown, max_tokens, temperature, seeds):
    """Chain of thought: a rationale per shown pair, then P(position 1) scored after it."""
    prompts = [template.rationale(*s) for s in shown]
    rationales = [clean_rationale(r, template) for r in judge.generate(prompts, max_tokens, temperature, seeds)]
    scored = [template.pairwise_after_rationale(*s, r) for s, r in zip(shown, rationales)]
    return _score(judge, scored), rationales


def label_pairs(judge: JudgeBackend, pairs: Sequence[Pair], template: JudgeTemplate = JudgeTemplate(),
                plan: LabelPlan = LabelPlan(), progress=None) -> LabelRun:
    """Run every technique of `plan` on `pairs`: base (one order), +swap, +CoT, +self-consistency.

    `progress(stage_name)` is called before each stage (for a status line)."""
    pairs = list(pairs)
    say = progress or (lambda stage: None)
    forward, swapped = _orders(pairs, plan.swap)
    techniques: list[Technique] = []
    start = _misses(judge)

    say("scoring (forward order)")
    p_fwd, t_fwd = _timed(_score, judge, [template.pairwise(*s) for s in forward])
    techniques.append(Technique("base", list(p_fwd), p_fwd, None, t_fwd, _all_cached(judge, start)))
    p_sw = None
    if plan.swap:
        say("scoring (swapped order)")
        p_sw, t_sw = _timed(_score, judge, [template.pairwise(*s) for s in swapped])
        techniques.append(Technique("+swap", _combine(p_fwd, p_sw), p_fwd, p_sw, t_fwd + t_sw, _all_cached(judge, start)))
        # "base" reports the labeler's position preference too (it is a property of the judge).
        techniques[0].p_swapped = p_sw

    rationales: list[str] = []
    if plan.cot:
        say("chain of thought (greedy rationales)")
        start = _misses(judge)
        (c_fwd, rationales), t_c = _timed(_with_rationales, judge, template, forward, plan.max_rationale_tokens, 0.0, None)
        c_sw = None
        if plan.swap:
            (c_sw, _), t_c2 = _timed(_with_rationales, judge, template, swapped, plan.max_rationale_tokens, 0.0, None)
            t_c += t_c2
        techniques.append(Technique("+CoT", _combine(c_fwd, c_sw), c_fwd, c_sw, t_c, _all_cached(judge, start)))

    if plan.self_consistency > 0:
        n, temp = plan.self_consistency, plan.temperature
        say(f"self-consistency ({n} rationales at T={temp:g})")
        start = _misses(judge)
        seeds = [s for s in range(1, n + 1) for _ in pairs]

        def sampled(shown):
            scores, _ = _with_rationales(judge, template, list(shown) * n, plan.max_rationale_tokens, temp, seeds)
            return [sum(scores[k * len(pairs) + i] for k in range(n)) / n for i in range(len(pairs))]

        s_fwd, t_s = _timed(sampled, forward)
        s_sw = None
        if plan.swap:
            s_sw, t_s2 = _timed(sampled, swapped)
            t_s += t_s2
        techniques.append(Technique(f"+self-consistency ({n} @ T={temp:g})", _combine(s_fwd, s_sw), s_fwd, s_sw, t_s,
                                    _all_cached(judge, start)))
    return LabelRun(pairs, techniques, rationales)


def format_table(run: LabelRun) -> str:
    """The RLAIF-style table: technique, alignment, % same position preferred, seconds per label."""
    rows = run.table()
    lines = []
    header = f"{'technique':<32}"
    if run.has_gold:
        header += f"{'alignment':>10}"
    header += f"{'same position':>15}{'  (pos 1 / pos 2)':<18}{'s/label':>9}"
    lines.append(header)
    for row in rows:
        line = f"{row['technique']:<32}"
        if run.has_gold:
            line += f"{100 * row['alignment']:>9.1f}%"
        if "same_position_rate" in row:
            line += f"{100 * row['same_position_rate']:>14.1f}%  ({row['same_position_first']} / {row['same_position_second']})"
            line = line.ljust(len(header) - 9)
        else:
            line += " " * (15 + 18)
        line += f"{'cached':>9}" if row.get("cached") else f"{row['seconds_per_label']:>9.3f}"
        lines.append(line)
    if run.has_gold:
        counted = rows[0]["gold_pairs"]
        lines.append(f"alignment over {counted} pairs with a non-tie gold label")
    if any(row.get("cached") for row in rows):
        lines.append("cached: every answer came from the judgement cache (--cache off to time the judge)")
    return "\n".join(lines)


def randomise_order(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """Show each pair in a random order (gold flipped with it), so that a file where the
    preferred response always comes first does not reward a judge's position bias."""
    rng = random.Random(seed)
    out = []
    for p in pairs:
        if rng.random() < 0.5:
            gold = None if p.gold is None else 1.0 - p.gold
            out.append(Pair(p.prompt, p.second, p.first, gold))
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# Direct scoring


def rate_responses(judge: JudgeBackend, prompts: Sequence[str], responses: Sequence[str],
                   template: JudgeTemplate = JudgeTemplate()) -> list[float]:
    """Expected 1–10 rating Σ i·P("i") of each response (direct RLAIF)."""
    requests = [template.rating(p, r) for p, r in zip(prompts, responses)]
    return [expected_rating(lp) for lp in judge.choice_logprobs(requests, RATING_CHOICES)]


def rating_labels(judge: JudgeBackend, prompts: Sequence[str], responses: Sequence[str],
                  template: JudgeTemplate = JudgeTemplate()) -> list[RatingLabel]:
    return [RatingLabel(p, r, s) for p, r, s in zip(prompts, responses, rate_responses(judge, prompts, responses, template))]


class JudgeReward:
    """A judge as a reward function for RL without a reward model (direct RLAIF):
    `reward(prompts, completions) -> list[float]`, the expected 1–10 rating rescaled to [−1, 1]."""

    def __init__(self, judge: JudgeBackend, template: JudgeTemplate = JudgeTemplate()):
        self.judge = judge
        self.template = template

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        return [rating_to_reward(r) for r in rate_responses(self.judge, prompts, completions, self.template)]


def judge_reward(spec: str = "smollm2-135m-instruct", preamble: str = "helpful", **judge_options) -> JudgeReward:
    """Build a direct-RLAIF reward function from a judge spec (local model or http(s) URL) and a
    preamble (built-in name or text file); `judge_options` go to `load_judge`."""
    return JudgeReward(load_judge(spec, **judge_options), JudgeTemplate(preamble=load_preamble(preamble)))
