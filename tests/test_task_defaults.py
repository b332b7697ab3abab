"""A task's generation defaults (its max_new_tokens) are what rl, generate, compare, eval sample
and quickstart use when --max-new-tokens is not given; a given value wins."""

import json

import pytest

from rlhfkit.cli import main
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import TASK_MAX_NEW_TOKENS_HELP, CompareConfig, GenerationConfig, QuickstartConfig, RLRunConfig
from rlhfkit.pipelines.eval_config import EvalSampleConfig
from rlhfkit.tasks import TASKS, get_task
from tests.test_tasks import _task_file


def test_the_help_text_states_each_built_in_tasks_length():
    for task in TASKS.values():
        assert f"{task.name} {task.max_new_tokens}" in TASK_MAX_NEW_TOKENS_HELP


@pytest.mark.parametrize("cls, command", [(RLRunConfig, ["rl"]), (GenerationConfig, ["generate"]),
                                          (CompareConfig, ["compare"]), (EvalSampleConfig, ["eval", "sample"]),
                                          (QuickstartConfig, ["quickstart"])])
def test_unset_means_the_tasks_own_and_help_says_so(cls, command, capsys):
    assert cls.__dataclass_fields__["max_new_tokens"].default is None
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    help_line = text[text.index("--max-new-tokens MAX_NEW_TOKENS "):][:300]
    assert "(default: " in help_line and "the task's own: sentiment 24, summarize 40" in help_line, help_line


def test_apply_task_defaults_fills_only_what_is_unset():
    summarize = get_task("summarize")
    cfg = RLRunConfig(task="summarize")
    apply_task_defaults(cfg, summarize)
    assert cfg.max_new_tokens == 40
    given = RLRunConfig(task="summarize", max_new_tokens=7)
    apply_task_defaults(given, summarize)
    assert given.max_new_tokens == 7
    no_task = GenerationConfig(prompts="file.jsonl")
    apply_task_defaults(no_task, None, fallback=64)
    assert no_task.max_new_tokens == 64


def test_generate_and_rl_use_a_task_files_length(tmp_path, tiny_dir):
    """A task file with max_new_tokens 3: generate and rl sample at most 3 tokens without the
    flag (the tiny random model rarely says EOS, so they reach it), and --max-new-tokens wins."""
    task_file = str(_task_file(tmp_path, max_new_tokens=3))
    out = tmp_path / "gen.jsonl"
    assert main(["generate", "--prompts", f"task:{task_file}", "--model", tiny_dir, "--n", "4", "--output", str(out),
                 "--chat", "no"]) == 0
    tokens = [json.loads(line)["tokens"] for line in out.read_text().splitlines()]
    assert max(tokens) == 3 and len(tokens) == 12
    assert main(["generate", "--prompts", f"task:{task_file}", "--model", tiny_dir, "--n", "4", "--output", str(out),
                 "--chat", "no", "--max-new-tokens", "5"]) == 0
    assert max(json.loads(line)["tokens"] for line in out.read_text().splitlines()) == 5
    assert main(["rl", "--task", task_file, "--policy", tiny_dir, "--algo", "grpo", "--group-size", "4",
                 "--batch-size", "8", "--mini-batch-size", "8", "--steps", "1", "--eval-prompts", "3",
                 "--precision", "fp32", "--output-dir", str(tmp_path), "--run-name", "r"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lengths = [r["response/length_mean"] for r in rows if "response/length_mean" in r]
    assert lengths and 0 < max(lengths) <= 3
    assert "max_new_tokens: 3" in (tmp_path / "r" / "config.yaml").read_text()


def test_eval_sample_uses_the_tasks_length(tmp_path, tiny_dir):
    task_file = str(_task_file(tmp_path, max_new_tokens=2))
    assert main(["eval", "sample", "--policies", f"tiny={tiny_dir}", "--task", task_file, "--n-prompts", "3",
                 "--output-dir", str(tmp_path), "--run-name", "ev", "--chat", "no"]) == 0
    meta = json.loads((tmp_path / "ev" / "samples" / "tiny.meta.json").read_text())
    assert meta["max_new_tokens"] == 2
