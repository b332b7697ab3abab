"""`rlhfkit bench` end to end on a tiny model: tasks × methods, bench.json, report.html, the table."""

from __future__ import annotations

import json

import pytest

from rlhfkit.cli import main
from rlhfkit.evaluation.bench import bench_table, cell


def test_cell_is_mean_plus_minus_half_the_ci():
    # CI [0.1, 0.5] around 0.3 → half-width 0.2
    assert cell({"gold": {"mean": 0.3, "ci_low": 0.1, "ci_high": 0.5}}) == "+0.300 ± 0.200"


def test_table_marks_a_method_a_task_lacks():
    g = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    results = {"tasks": {"a": {"rows": {"base": {"gold": g}, "grpo": {"gold": g}}}, "b": {"rows": {"base": {"gold": g}}}}}
    assert bench_table(results).splitlines()[-1] == "| grpo | +0.500 ± 0.100 | — |"


def test_bench_runs_tasks_by_methods_and_writes_json_and_report(tmp_path, tiny_llama, tiny_tok, capsys):
    model = tmp_path / "tiny"
    tiny_llama.save_pretrained(model)
    tiny_tok.save_pretrained(model)
    assert main(["bench", "--policy", str(model), "--tasks", "arithmetic,summarize", "--preset", "custom",
                 "--methods", "grpo,best_of_n", "--sample-budget", "8", "--batch-size", "8", "--eval-prompts", "4",
                 "--best-of-n", "2", "--max-new-tokens", "3", "--precision", "fp32", "--output-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert list(results["tasks"]) == ["arithmetic", "summarize"]
    for name, task in results["tasks"].items():
        assert list(task["rows"]) == ["base", "grpo", "best_of_2"]
        for row in task["rows"].values():
            assert row["gold"]["ci_low"] <= row["gold"]["mean"] <= row["gold"]["ci_high"]
            assert "distinct_2" in row["metrics"]
    assert "rougeL" in results["tasks"]["summarize"]["rows"]["grpo"]["metrics"]  # the task has references
    assert "rougeL" not in results["tasks"]["arithmetic"]["rows"]["grpo"]["metrics"]
    page = (tmp_path / "bench" / "report.html").read_text()
    assert "<h2>summarize</h2>" in page and "PSF License" in page and "http" not in page.split("source:")[0]
    out = capsys.readouterr().out
    assert "| method | arithmetic | summarize |" in out and "| best_of_2 |" in out


def test_presets_set_the_budget(tmp_path):
    from rlhfkit.pipelines.bench_config import BenchConfig

    quick = BenchConfig(preset="quick", sample_budget=999)
    assert quick.sample_budget == 64 and quick.methods == ["ppo", "grpo", "dpo", "best_of_n"]
    assert BenchConfig(preset="custom", sample_budget=128).sample_budget == 128
    with pytest.raises(Exception, match="tasks"):
        BenchConfig(tasks=[])


def test_a_resumed_bench_keeps_its_finished_tasks_and_refuses_other_settings(tmp_path, tiny_llama, tiny_tok, capsys):
    model = tmp_path / "tiny"
    tiny_llama.save_pretrained(model)
    tiny_tok.save_pretrained(model)
    args = ["bench", "--policy", str(model), "--preset", "custom", "--methods", "best_of_n", "--sample-budget", "8",
            "--batch-size", "8", "--eval-prompts", "4", "--best-of-n", "2", "--max-new-tokens", "3",
            "--precision", "fp32", "--output-dir", str(tmp_path)]
    assert main([*args, "--tasks", "arithmetic"]) == 0  # as if stopped after its first task
    first = json.loads((tmp_path / "bench" / "bench.json").read_text())["tasks"]["arithmetic"]
    capsys.readouterr()
    assert main([*args, "--tasks", "arithmetic,sentiment", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "task arithmetic kept from the stopped run" in out and "bench: task sentiment\n" in out
    results = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert results["tasks"]["arithmetic"] == first and list(results["tasks"]) == ["arithmetic", "sentiment"]
    assert results["wall_seconds"] == pytest.approx(sum(t["wall_seconds"] for t in results["tasks"].values()))
    assert main([*args, "--tasks", "arithmetic", "--best-of-n", "4", "--resume"]) == 2
    assert "made with other best_of_n" in capsys.readouterr().err
