"""`calculator`: the arithmetic task with a tool. The model may write `calc(EXPRESSION)`; the
expression is evaluated by the safe evaluator (safe_calc.py: arithmetic only) and the result comes
back as a tool message. The first turn without a call is the final answer: reward 1 for the exact
answer (the arithmetic task's exact match), minus `call_cost` for every call made."""

from __future__ import annotations

from rlhfkit.envs.base import Environment, StepResult
from rlhfkit.envs.safe_calc import CalcError, find_calls, safe_eval
from rlhfkit.tasks.arithmetic import ARITHMETIC, final_number

SYSTEM = ("You can use a calculator: write calc(EXPRESSION), e.g. calc(3+4), and its result comes back. "
          "When you know the answer, reply with the number only.")


def run_calls(text: str) -> list[dict]:
    """Every call in `text`, evaluated: [{"expression", "result" or "error"}]."""
    out = []
    for expression in find_calls(text):
        try:
            out.append({"expression": expression, "result": safe_eval(expression)})
        except CalcError as err:
            out.append({"expression": expression, "error": str(err)})
    return out


class CalculatorEnv(Environment):
    name = "calculator"
    description = "arithmetic word problems with a calc(EXPR) tool; reward = exact answer − 0.05 per call"
    max_turns = 3
    max_tokens = 96
    call_cost = 0.05

    def rows(self, split: str = "train") -> list[dict]:
        return ARITHMETIC.split_rows(split)

    def reset(self, row: dict) -> list[dict]:
        self.answer = float(row["answer"])
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]

    def step(self, assistant_text: str) -> StepResult:
        calls = run_calls(assistant_text)
        if calls:
            content = "; ".join(str(c["result"]) if "result" in c else f"error: {c['error']}" for c in calls)
            return StepResult([{"role": "tool", "content": content}], -self.call_cost * len(calls), False,
                              {"tool_calls": calls})
        got = final_number(assistant_text)
        correct = got is not None and got == self.answer
        return StepResult([], 1.0 if correct else 0.0, True, {"correct": correct})
