"""Python reward functions named `module:function` or `file.py:function` (TRL's convention
`fn(prompts, completions, **columns) -> list[float]`), alone and inside weighted mixes, and the
one-line errors for every way they can be wrong."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError
from rlhfkit.rewards.python import PromptColumns, is_python_spec
from rlhfkit.rewards.spec import build_reward

REWARDS = textwrap.dedent("""
    import math

    def shouting(prompts, completions, **kwargs):
        return [sum(ch.isupper() for ch in c) / max(len(c), 1) for c in completions]

    def matches_answer(prompts, completions, answer):
        return [1.0 if c.strip() == str(a) else 0.0 for c, a in zip(completions, answer)]

    def sees_columns(prompts, completions, **columns):
        return [float(len(columns.get("tags", [None])[i] or [])) for i in range(len(completions))]

    def too_few(prompts, completions, **kwargs):
        return [1.0]

    def not_a_list(prompts, completions, **kwargs):
        return 0.5

    def nan_for_second(prompts, completions, **kwargs):
        return [0.0, math.nan] + [0.0] * (len(completions) - 2)

    def one_argument(completions):
        return [0.0] * len(completions)

    NOT_CALLABLE = 3
""")


@pytest.fixture()
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def test_spec_forms():
    assert is_python_spec("my_rewards:shouting") and is_python_spec("pkg.mod:fn") and is_python_spec("a/b/c.py:fn")
    assert not is_python_spec("judge") and not is_python_spec("runs/rm") and not is_python_spec("x:1bad")


def test_file_function_alone_and_in_a_weighted_mix(reward_file):
    reward, weights = build_reward(f"{reward_file}:shouting")
    # "ABcd": 2 capitals of 4 characters = 0.5; "" scores 0 (no division by zero in the user's code)
    assert reward(["p", "q"], ["ABcd", ""]) == [0.5, 0.0]
    mix, weights = build_reward(f"{reward_file}:shouting=2,length=-1")
    assert weights == {f"{reward_file}:shouting": 2.0, "length": -1.0}
    # 2·0.5 − 1·(1 word / 100) = 0.99
    assert mix(["p"], ["ABcd"]) == [pytest.approx(0.99)]
    assert mix.last_components == {f"{reward_file}:shouting": 0.5, "length": 0.01}


def test_module_function_from_the_current_folder(reward_file, monkeypatch):
    monkeypatch.chdir(reward_file.parent)
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    reward, _ = build_reward("my_rewards:shouting")
    assert reward(["p"], ["AAAA"]) == [1.0]
    assert str(reward_file.parent) not in sys.path  # the current folder was on the path only while importing


def test_columns_by_name_from_the_prompts_rows(reward_file):
    columns = PromptColumns([{"prompt": "2+2?", "answer": 4}, {"prompt": "1+2?", "answer": 3, "tags": ["x", "y"]}])
    reward, _ = build_reward(f"{reward_file}:matches_answer", columns=columns)
    # the function names `answer` and has no **kwargs: it gets just that column, aligned with completions
    assert reward(["2+2?", "1+2?", "2+2?"], ["4", "4", " 4 "]) == [1.0, 0.0, 1.0]
    sees, _ = build_reward(f"{reward_file}:sees_columns", columns=columns)
    assert sees(["2+2?", "1+2?"], ["a", "b"]) == [0.0, 2.0]  # a prompt without the column gets None
    # a column passed in the call wins over the table
    assert reward(["2+2?"], ["5"], answer=[5]) == [1.0]


def test_a_required_column_the_prompts_lack_is_named(reward_file):
    reward, _ = build_reward(f"{reward_file}:matches_answer", columns=PromptColumns([{"prompt": "p", "other": 1}]))
    with pytest.raises(ConfigError, match="needs the column 'answer'.*their columns: other"):
        reward(["p"], ["1"])


def test_ambiguous_prompt_rows_are_refused(reward_file):
    columns = PromptColumns([{"prompt": "p", "answer": 1}, {"prompt": "p", "answer": 2}])
    reward, _ = build_reward(f"{reward_file}:matches_answer", columns=columns)
    with pytest.raises(ConfigError, match="several rows with different columns"):
        reward(["p"], ["1"])


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:fn", "no module named 'no_such_module_xyz'"),
    ("{file}:missing", "has no function 'missing'"),
    ("{file}:shoutin", "did you mean 'shouting'"),
    ("{file}:NOT_CALLABLE", "is a int, not a function"),
    ("{file}:one_argument", r"must take \(prompts, completions, \*\*columns\)"),
    ("{dir}/absent.py:fn", "no such file"),
])
def test_loading_errors_are_one_sentence(reward_file, spec, message):
    spec = spec.format(file=reward_file, dir=reward_file.parent)
    with pytest.raises(ConfigError, match=message):
        build_reward(spec)


def test_a_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(prompts, completions):\n    return [\n")
    with pytest.raises(ConfigError, match=r"bad.py line \d+"):
        build_reward(f"{bad}:f")


@pytest.mark.parametrize("function, error, message", [
    ("too_few", ConfigError, "returned 1 values for 3 completions"),
    ("not_a_list", ConfigError, "returned float; expected a list of 3 numbers"),
    ("nan_for_second", FloatingPointError, "returned nan for completion 1 of 3"),
])
def test_contract_breaches_at_call_time(reward_file, function, error, message):
    reward, _ = build_reward(f"{reward_file}:{function}")
    with pytest.raises(error, match=message):
        reward(["a", "b", "c"], ["x", "y", "z"])


def _prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "say yes", "answer": "yes"}, {"prompt": "say no", "answer": "no"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_errors_are_one_line_before_any_model_loads(tmp_path, reward_file, capsys):
    from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer

    tiny = tmp_path / "tiny"
    tiny_causal_lm("llama").save_pretrained(tiny)
    tiny_tokenizer().save_pretrained(tiny)
    prompts = _prompt_file(tmp_path)
    capsys.readouterr()
    commands = [["rl", "--prompts", str(prompts), "--policy", str(tiny), "--output-dir", str(tmp_path / "runs")],
                # a model that does not exist: the reward's error must come first
                ["generate", "--prompts", str(prompts), "--policy", "best_of_n", "--n", "2", "--model", "no/such-model"]]
    for command in commands:
        assert main(command + ["--reward", f"{reward_file}:nope"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rlhfkit: error: reward") and "no function 'nope'" in err[0]
    assert not (tmp_path / "runs").exists()  # rl made no run folder


def test_rl_trains_against_a_file_function_with_the_files_columns(tmp_path, reward_file):
    from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer

    tiny = tmp_path / "tiny"
    tiny_causal_lm("llama").save_pretrained(tiny)
    tiny_tokenizer().save_pretrained(tiny)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"what is {w}", "answer": w}) + "\n"
                               for w in ("yes", "no", "good", "bad", "one", "two")))
    assert main(["rl", "--prompts", str(prompts), "--policy", str(tiny), "--algo", "grpo", "--group-size", "4",
                 "--batch-size", "8", "--mini-batch-size", "8", "--steps", "2", "--max-new-tokens", "2",
                 "--eval-prompts", "5", "--precision", "fp32", "--output-dir", str(tmp_path), "--run-name", "r",
                 "--reward", f"{reward_file}:matches_answer=1,length=0.1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and f"reward/{reward_file}:matches_answer" in rows[0]
