"""The envs room: the calculator's evaluator on hostile input, the built-in environments'
rules, and loading user environments by module:Class / file.py:Class (one clear error each)."""

import sys

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.envs import BUILTIN_ENVS, env_rows, load_env_class
from rlhfkit.envs.calculator import CalculatorEnv
from rlhfkit.envs.dialogue import DialogueEnv
from rlhfkit.envs.safe_calc import CalcError, find_calls, safe_eval


@pytest.mark.parametrize("expression, value", [
    ("1+2", 3), ("2*(3+4)", 14), ("-3**2", -9), ("(-3)**2", 9), ("7/2", 3.5), ("7//2", 3), ("7%3", 1),
    ("2**-1", 0.5), ("+4", 4), (" 10 - 2 - 3 ", 5), ("1.5*2", 3), ("2**10", 1024),
])
def test_safe_eval_does_arithmetic(expression, value):
    assert safe_eval(expression) == value


HOSTILE = [
    "__import__('os').system('touch {canary}')",  # a call that would leave a file behind
    "open('{canary}', 'w').write('x')",
    "(1).__class__.__bases__[0].__subclasses__()",  # attribute access
    "x", "os", "True", "None",  # names and non-numbers
    "lambda: 1", "(lambda: 1)()",
    "[1, 2]", "{{1: 2}}", "'a' * 3", "b'ab'", "1j", "1 if 1 else 2", "(x := 3)", "1 < 2", "not 1", "~1", "1 << 50",
    "print(1)", "calc(1+1)", "abs(-1)",  # nested calls
    "9**9**9", "2**100", "10**16", "99999999**99", "2.0**1000", "(-8)**0.5",  # huge or complex results
    "1" * 300, "(" * 150 + "1" + ")" * 150, "1+" * 120 + "1",  # long strings, deep nesting
    "1/0", "1//0", "1%0", "0**-1", "", "1 +", "import os",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_safe_eval_refuses_everything_but_arithmetic(expression, tmp_path):
    """Each hostile input is a CalcError and has no effect (the canary file is never written)."""
    canary = tmp_path / "pwned"
    with pytest.raises(CalcError):
        safe_eval(expression.format(canary=canary))
    assert not canary.exists()


def test_the_evaluator_never_calls_eval_exec_or_import():
    """The module's own code names none of eval, exec, compile, __import__, open, getattr."""
    import ast

    import rlhfkit.envs.safe_calc as module

    names = {n.id for n in ast.walk(ast.parse(open(module.__file__).read())) if isinstance(n, ast.Name)}
    assert not names & {"eval", "exec", "compile", "__import__", "open", "getattr", "globals", "vars"}


def test_find_calls_balances_parentheses():
    assert find_calls("first calc((2+3)*4) then calc(1 - 1).") == ["(2+3)*4", "1 - 1"]
    assert find_calls("no tool here") == []
    assert find_calls("calc(1+") == ["1+"]  # unclosed: returned, and it fails to evaluate


def test_calculator_rewards_the_exact_answer_minus_the_call_cost():
    env = CalculatorEnv()
    messages = env.reset({"prompt": "What is 3 plus 4? Answer with the number only.", "answer": 7})
    assert [m["role"] for m in messages] == ["system", "user"]
    new, reward, done = env.step("calc(3+4)")
    assert new == [{"role": "tool", "content": "7"}] and reward == -0.05 and not done
    new, reward, done = env.step("calc(3*) calc(2**999)")
    assert new[0]["content"].startswith("error:") and "; error:" in new[0]["content"] and reward == -0.1
    assert tuple(env.step("The answer is 7.")) == ([], 1.0, True)
    env.reset({"prompt": "p", "answer": 7})
    assert tuple(env.step("8"))[1:] == (0.0, True)


def test_dialogue_user_gives_hints_and_ends_at_the_goal():
    env = DialogueEnv()
    env.reset({"prompt": "Hi", "goal": "blue"})
    assert tuple(env.step("Which colour would you like?")) == ([{"role": "user", "content": "It's a cool colour."}], 0.0, False)
    assert tuple(env.step("Is it red?"))[0] == [{"role": "user", "content": "No, not red."}]
    assert tuple(env.step("red green blue yellow black white"))[1:] == (0.0, False)  # listing every colour is no answer
    assert tuple(env.step("Here is a blue shirt."))[1:] == (1.0, True)
    train, test = env_rows(DialogueEnv, "train"), env_rows(DialogueEnv, "test")
    assert len(train) == 24 and len(test) == 8 and not {r["id"] for r in train} & {r["id"] for r in test}


def test_builtins_load_by_name():
    assert load_env_class("calculator") is CalculatorEnv and set(BUILTIN_ENVS) == {"calculator", "dialogue"}
    assert len(env_rows(CalculatorEnv, "train")) + len(env_rows(CalculatorEnv, "test")) == 504


USER_ENV = """
class EchoEnv:
    max_turns = 2
    def reset(self, row):
        return [{"role": "user", "content": row["prompt"]}]
    def step(self, text):
        return [], float("yes" in text), True

class NoStep:
    def reset(self, row):
        return []

NOT_A_CLASS = 3
"""


def test_user_envs_load_from_a_file_or_a_module(tmp_path, monkeypatch):
    path = tmp_path / "my_envs.py"
    path.write_text(USER_ENV)
    cls = load_env_class(f"{path}:EchoEnv")
    assert cls.__name__ == "EchoEnv" and env_rows(cls, "train") is None
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_env_class("my_envs:EchoEnv").max_turns == 2
    sys.modules.pop("my_envs", None)


@pytest.mark.parametrize("spec, message", [
    ("calculater", "not a built-in environment (calculator, dialogue)"),
    ("no_such_module_xyz:Env", "no module named 'no_such_module_xyz'"),
    ("{dir}/missing.py:Env", "no file"),
    ("{dir}/my_envs.py:Missing", "has no 'Missing'"),
    ("{dir}/my_envs.py:NOT_A_CLASS", "NOT_A_CLASS is not a class"),
    ("{dir}/my_envs.py:NoStep", "NoStep has no step method"),
    ("{dir}/broken.py:Env", "importing"),
])
def test_env_loading_errors_are_one_clear_line(spec, message, tmp_path):
    (tmp_path / "my_envs.py").write_text(USER_ENV)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as err:
        load_env_class(spec.format(dir=tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_names_a_wrong_env_before_loading_a_model(tmp_path, capsys):
    from rlhfkit.cli import main

    code = main(["rl", "--env", "nope:Env", "--policy", str(tmp_path / "no-model-needed"), "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("rlhfkit: error: ") and len(err) == 1
