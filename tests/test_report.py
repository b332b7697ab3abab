"""report.html from run folders: every kind of run, a run in progress, escaping, embedded plots."""

import base64
import json
import re

from rlhfkit.cli import main
from rlhfkit.evaluation.report import build_report

XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & "quotes"'


def make_quickstart_like_run(folder):
    """A run folder shaped like quickstart's output (config, RM + PPO metrics, samples, summary)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: sentiment\nrm_prompts: 384\nppo_steps: 4\n")
    rows = [{"stage": "reward_model", "step": s, "epoch": 0, "loss": 0.7 - 0.05 * s, "accuracy": 0.5 + 0.05 * s}
            for s in range(4)]
    rows.append({"stage": "reward_model_eval", "epoch": 0, "eval/accuracy": 0.71, "eval/loss": 0.6})
    rows += [{"stage": "ppo", "step": s, "algo": "ppo", "reward/score_mean": 0.1 * s, "reward/gold_mean": 0.08 * s,
              "kl/k1_seq_mean": 0.5 * s, "kl/k3_seq_mean": 0.4 * s, "kl/coef": 0.1 - 0.01 * s, "policy/entropy": 2.0 - 0.1 * s,
              "response/length_mean": 20 + s, "loss/policy": -0.01 * s, "loss/value": 0.3 / (s + 1),
              "policy/clipfrac": 0.05, "loss/value_clipfrac": 0.1, "time/step": 3.0, "response/eos_fraction": "nan"}
             for s in range(4)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = [{"prompt": f"Prompt {i} {XSS}", "base": f"base answer {i}", "final": f"final answer {i} {XSS}",
                "gold_base": 0.1, "gold_final": 0.6} for i in range(3)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    ci = {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3}
    summary = {"task": "sentiment", "reward_model": {"eval_accuracy_vs_labels": 0.71}, "ppo": {"steps": 4},
               "evaluation": {"gold": {"base": ci, "final": {"mean": 0.6, "ci_low": 0.5, "ci_high": 0.7},
                                       "improvement": {"mean": 0.4, "ci_low": 0.3, "ci_high": 0.5}},
                              "kl_to_reference": {"mean": 1.5, "ci_low": 1.2, "ci_high": 1.8},
                              "response_length": {"base": 20.0, "final": 23.0}},
               "win_rate": {"a": "final", "b": "base", "judge": "gold", "win_rate": 0.75, "ci_low": 0.6, "ci_high": 0.85,
                            "wins": 70, "ties": 10, "losses": 16, "n": 96, "lc_win_rate": 0.72},
               "stage_seconds": {"sample pairs": 60.0, "PPO": 200.0}, "note": XSS}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_quickstart_like_report_is_self_contained_and_escaped(tmp_path):
    run = make_quickstart_like_run(tmp_path / "qs")
    page = build_report(run).read_text()
    assert "<script" not in page and "onerror=\"" not in page  # model text shown as text, nothing runs
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert "+0.600 [+0.500, +0.700]" in page and "75.0% [60.0%, 85.0%]" in page and "70 / 10 / 16" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch: it opens offline
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    pngs = sorted((run / "plots").glob("*.png"))
    assert len(images) == len(pngs) >= 8  # reward, KL, β, entropy, length, losses, clip fraction, accuracy, time
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for data in images)
    for title in ("KL to the reference by estimator", "KL coefficient β", "Clip fraction", "Accuracy"):
        assert title in page
    assert page.count("<tr><td class=prompt>") == 3 and "base answer 0" in page and "final answer 0" in page
    assert "sample pairs" in page and "rm_prompts: 384" in page


def test_report_of_a_run_in_progress(tmp_path, capsys):
    run = tmp_path / "live"
    run.mkdir()
    (run / "config.yaml").write_text("algo: ppo\n")
    (run / "metrics.jsonl").write_text(json.dumps({"stage": "rl", "step": 0, "reward/score_mean": 0.1}) + "\n"
                                       + json.dumps({"stage": "rl", "step": 1, "reward/score_mean": 0.2}) + "\n"
                                       + '{"stage": "rl", "step": 2, "rew')  # the trainer is writing this line
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "no summary.json yet" in page and "1 unreadable line(s) left out" in page
    assert "Reward: score (proxy) and gold" in page
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "rlhfkit: error: run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no run files" in capsys.readouterr().err


def test_rl_run_writes_its_report_with_base_and_final_samples(tmp_path, tiny_dir):
    assert main(["rl", "--policy", tiny_dir, "--algo", "reinforce", "--batch-size", "4", "--mini-batch-size", "4",
                 "--steps", "2", "--eval-prompts", "3", "--max-new-tokens", "4", "--output-dir", str(tmp_path),
                 "--run-name", "r", "--precision", "fp32", "--checkpoint-every", "0"]) == 0
    run = tmp_path / "r"
    page = (run / "report.html").read_text()
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert all({"prompt", "response", "base"} <= set(s) for s in samples)
    assert "<th>base</th><th>response</th>" in page and "Headline" in page and (run / "plots").is_dir()


def test_compare_ends_with_win_rates_a_leaderboard_and_a_report(tmp_path, tiny_dir, capsys):
    assert main(["compare", "--policy", tiny_dir, "--methods", "reinforce,best_of_n", "--sample-budget", "8",
                 "--batch-size", "8", "--eval-prompts", "4", "--max-new-tokens", "4", "--best-of-n", "4",
                 "--output-dir", str(tmp_path), "--precision", "fp32"]) == 0
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    assert [w["a"] for w in summary["win_rates"]] == ["reinforce", "best_of_4"]
    assert all(w["b"] == "base" and w["n"] == 4 and w["wins"] + w["ties"] + w["losses"] == 4 for w in summary["win_rates"])
    assert set(summary["leaderboard"]["ratings"]) == {"base", "reinforce", "best_of_4"}
    out = capsys.readouterr().out
    assert "win rate of best_of_4 over base (gold judge)" in out and "| rank | policy | BT rating" in out
    page = (tmp_path / "compare" / "report.html").read_text()
    assert "Leaderboard" in page and "Win rates" in page and "<th>best_of_4</th>" in page
