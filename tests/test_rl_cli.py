"""`rlhfkit rl` and `rlhfkit compare` end to end on a tiny model saved to disk."""

import json

import pytest

from rlhfkit.cli import main


def test_rl_runs_evaluates_and_resumes(tmp_path, tiny_dir, capsys):
    common = ["rl", "--policy", tiny_dir, "--algo", "rloo", "--batch-size", "8", "--mini-batch-size", "8", "--micro-batch-size", "4",
              "--eval-prompts", "4", "--max-new-tokens", "4", "--output-dir", str(tmp_path), "--run-name", "r", "--precision", "fp32",
              "--checkpoint-every", "1", "--reward", "gold=1,length=0.5"]
    assert main(common + ["--steps", "2"]) == 0
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and {"reward", "gold"} <= set(summary["after"])
    # no --target-kl: a fixed β, and the KL it let through (held-out) reported all the same
    assert summary["kl_control"]["controller"] == "fixed"
    assert summary["kl_control"]["achieved"] == summary["after"]["kl_to_reference"]
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and "reward/length" in rows[0] and "reward/gold" in rows[0]
    assert "reward/gold_mean" not in rows[0]  # gold is a part of the reward: logged once, as reward/gold
    assert main(common + ["--steps", "3", "--resume"]) == 0
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert "trained 3 steps" in capsys.readouterr().out


def test_rl_rejects_bad_options(tmp_path, tiny_dir, capsys):
    assert main(["rl", "--policy", tiny_dir, "--algo", "grpo", "--group-size", "1"]) == 2
    assert "group_size must be at least 2" in capsys.readouterr().err
    assert main(["rl", "--policy", tiny_dir, "--reward", "nonsense", "--output-dir", str(tmp_path)]) == 2
    assert "expected gold, vader, length, judge, task or a saved reward-model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rl", "--algo", "trpo"])


def test_compare_prints_a_row_per_method(tmp_path, tiny_dir, capsys):
    assert main(["compare", "--policy", tiny_dir, "--methods", "ppo,grpo,dpo,best_of_n", "--sample-budget", "16",
                 "--batch-size", "8", "--eval-prompts", "4", "--max-new-tokens", "4", "--best-of-n", "4",
                 "--output-dir", str(tmp_path), "--precision", "fp32"]) == 0
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == ["base", "ppo", "grpo", "dpo", "best_of_4"]
    bon = summary["rows"][-1]
    assert bon["kl_to_reference"] == pytest.approx(1.3862944 - 0.75)  # log 4 − 3/4
    assert summary["rows"][1]["kl_control"]["achieved_held_out"] == summary["rows"][1]["kl_to_reference"]
    assert "kl_control" not in bon
    out = capsys.readouterr().out
    assert "| method | gold reward (95% CI)" in out and "| best_of_4 |" in out
    assert "ppo: KL control: fixed β 0.05" in out and "grpo: KL control: fixed β 0.04" in out


def test_reward_spec_weights_and_judge_factory():
    from rlhfkit.rewards.spec import build_reward

    calls = []

    def fake_judge(argument):
        calls.append(argument)
        return lambda prompts, completions, **_: [0.5] * len(completions)

    reward, weights = build_reward("vader=2,length=-1,judge:http://127.0.0.1:9/v1=0.5", named={"judge": fake_judge})
    assert weights == {"vader": 2.0, "length": -1.0, "judge:http://127.0.0.1:9/v1": 0.5}
    assert calls == ["http://127.0.0.1:9/v1"]
    # 'I love it' has VADER compound 0.6369; 3 words -> length 0.03; judge 0.5:
    # 2·0.6369 − 0.03 + 0.25 = 1.4938
    assert reward(["p"], ["I love it"])[0] == pytest.approx(2 * 0.6369 - 0.03 + 0.25, abs=1e-4)
