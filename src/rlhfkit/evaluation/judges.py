"""Judges: one interface giving, per prompt, P(A ≻ B) with ties as ½.

- `ScoreJudge`: any reward function (a task's gold scorer, `vader`, any `--reward` spec of
  `rewards.spec`, a saved reward-model folder among them) scores both responses; the higher
  score wins, scores within `tie_margin` of each other tie. It can also score one policy's
  responses once (`scores`), so a leaderboard costs one pass per policy, not one per pair.
- `AIJudge`: a judge LM from `feedback/` (a local causal LM or an OpenAI-compatible URL) sees
  both orders and its two soft labels are swapped back and averaged (position debiasing,
  RLAIF: REFERENCES.md "AI feedback"). The share of pairs where it picked the same *position*
  both times is kept in `last_same_position_rate`.

`build_judge(spec)`: `ai` or `ai:MODEL_OR_URL` for an AI judge (default model: the embedded
SmolLM2-135M-Instruct); anything else is a reward spec.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from rlhfkit.config import ConfigError
from rlhfkit.evaluation.winrate import preference_from_scores
from rlhfkit.feedback.backends import load_judge
from rlhfkit.feedback.judge import JudgeTemplate, load_preamble
from rlhfkit.feedback.labeler import LabelPlan, Pair, judge_reward, label_pairs
from rlhfkit.rewards.spec import build_reward
from rlhfkit.tasks.registry import task_gold_scorer


class Judge(Protocol):
    name: str

    def prefer(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[float]:
        """P(A ≻ B) in [0, 1] for each (prompt, A, B); ½ is a tie."""
        ...


class ScoreJudge:
    """A reward function as a judge: P(A ≻ B) = 1, ½ or 0 by comparing the two scores."""

    def __init__(self, reward_fn, name: str, tie_margin: float = 0.0):
        self.reward_fn = reward_fn
        self.name = name
        self.tie_margin = float(tie_margin)

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [float(s) for s in self.reward_fn(list(prompts), list(responses))]

    def prefer_scores(self, scores_a: Sequence[float], scores_b: Sequence[float]) -> list[float]:
        return [preference_from_scores(a, b, self.tie_margin) for a, b in zip(scores_a, scores_b)]

    def prefer(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[float]:
        return self.prefer_scores(self.scores(prompts, responses_a), self.scores(prompts, responses_b))


class AIJudge:
    """A judge LM (`feedback.backends`) comparing both orders; P(A ≻ B) is the debiased soft label."""

    def __init__(self, backend, template=None, name: str = "ai"):
        self.backend = backend
        self.template = template or JudgeTemplate()
        self.name = name
        self.last_same_position_rate: float | None = None

    def prefer(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[float]:
        pairs = [Pair(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
        run = label_pairs(self.backend, pairs, self.template, LabelPlan(swap=True))
        stats = run.final.positions()
        self.last_same_position_rate = stats.same_position_rate if stats is not None else None
        return [min(1.0, max(0.0, float(p))) for p in run.final.p_first]


def _default_preamble(task) -> str:
    return "positive" if task is not None and task.name == "sentiment" else "helpful"


def build_judge(spec: str, task=None, device: str = "cpu", preamble: str = "auto", tie_margin: float = 0.0,
                cache: str | None = None, batch_size: int = 16, precision: str = "auto") -> Judge:
    """A judge from its spec: `ai[:MODEL_OR_URL]`, or a reward spec (`gold`, `vader`, `task:NAME`,
    a saved reward-model folder, `judge[:MODEL]` for direct 1–10 ratings, a weighted mix)."""
    spec = spec.strip()
    if not spec:
        raise ConfigError("--judge is empty: use gold, vader, task:NAME, a reward-model folder, or ai[:MODEL_OR_URL]")
    preamble = _default_preamble(task) if preamble == "auto" else preamble
    if spec == "ai" or spec.startswith("ai:"):
        model = spec[3:] or "smollm2-135m-instruct"
        try:
            template = JudgeTemplate(preamble=load_preamble(preamble))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        backend = load_judge(model, device=device, precision=precision, batch_size=batch_size, cache=cache)
        return AIJudge(backend, template, name=spec)

    def rating_judge(model: str):
        return judge_reward(model or "smollm2-135m-instruct", preamble=preamble, device=device, precision=precision,
                            batch_size=batch_size, cache=cache)

    reward_fn, _ = build_reward(spec, task, device, named={"task": task_gold_scorer, "judge": rating_judge})
    return ScoreJudge(reward_fn, spec, tie_margin)
