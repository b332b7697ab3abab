"""Validate before working: every numeric option is checked against its piece's `limits` when the
config is built — before any file is read, model loaded or run folder made — and a bad value
gives one `rlhfkit: error:` line naming the option, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError, _within, build_config, check_limits, class_mapping, derive_config
from rlhfkit.feedback.config import LabelConfig, ServeConfig
from rlhfkit.pipelines.config import CompareConfig, GenerationConfig, QuickstartConfig, RLRunConfig, RMConfig
from rlhfkit.pipelines.eval_config import EvalSampleConfig, LeaderboardConfig, MetricsConfig, WinrateConfig
from rlhfkit.tabular.config import SolveConfig, SweepConfig
from rlhfkit.trainers.config import DPOConfig, RewardTrainConfig, RLConfig, SFTConfig

CONFIGS = [SFTConfig, DPOConfig, RMConfig, RewardTrainConfig, RLConfig, RLRunConfig, QuickstartConfig, CompareConfig,
           GenerationConfig, EvalSampleConfig, WinrateConfig, LeaderboardConfig, MetricsConfig, LabelConfig, ServeConfig,
           SolveConfig, SweepConfig]

# (command line, the option the error must name). Files named here need not exist: the value is
# refused before anything is read. Models are the embedded defaults: refusing must not load them.
BAD = [
    (["generate", "--prompts", "task:sentiment", "--top-p", "1.5"], "--top-p"),
    (["generate", "--prompts", "task:sentiment", "--temperature", "-1"], "--temperature"),
    (["generate", "--prompts", "task:sentiment", "--temperature", "nan"], "--temperature"),
    (["generate", "--prompts", "task:sentiment", "--num-beams", "0"], "--num-beams"),
    (["sft", "--data", "demos.jsonl", "--learning-rate=-1e-4"], "--learning-rate"),
    (["sft", "--data", "demos.jsonl", "--batch-size", "-8"], "--batch-size"),
    (["sft", "--data", "demos.jsonl", "--micro-batch-size", "0"], "--micro-batch-size"),
    (["sft", "--data", "demos.jsonl", "--lora-r", "0"], "--lora-r"),
    (["sft", "--data", "demos.jsonl", "--lora-dropout", "1.5"], "--lora-dropout"),
    (["sft", "--data", "demos.jsonl", "--max-steps", "-3"], "--max-steps"),
    (["sft", "--data", "demos.jsonl", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (["sft", "--data", "demos.jsonl", "--weight-decay", "-0.1"], "--weight-decay"),
    (["dpo", "--data", "prefs.jsonl", "--beta", "0"], "--beta"),
    (["dpo", "--data", "prefs.jsonl", "--eval-fraction", "1.2"], "--eval-fraction"),
    (["dpo", "--data", "prefs.jsonl", "--max-grad-norm", "nan"], "--max-grad-norm"),
    (["rm", "--data", "prefs.jsonl", "--batch-size", "0"], "--batch-size"),
    (["rm", "--data", "prefs.jsonl", "--epochs", "0"], "--epochs"),
    (["rm", "--data", "prefs.jsonl", "--head-learning-rate", "-1"], "--head-learning-rate"),
    (["rl", "--steps", "-1"], "--steps"),
    (["rl", "--init-kl-coef", "-0.1"], "--init-kl-coef"),
    (["rl", "--mini-batch-size", "0"], "--mini-batch-size"),
    (["rl", "--temperature", "0"], "--temperature"),
    (["rl", "--gamma", "2"], "--gamma"),
    (["rl", "--target-kl", "0"], "--target-kl"),
    (["rl", "--eval-prompts", "-4"], "--eval-prompts"),
    (["quickstart", "--ppo-steps", "0"], "--ppo-steps"),
    (["quickstart", "--rm-learning-rate", "-1"], "--rm-learning-rate"),
    (["quickstart", "--lora-r", "0"], "--lora-r"),
    (["quickstart", "--init-kl-coef", "-1"], "--init-kl-coef"),
    (["quickstart", "--batch-size", "0"], "--batch-size"),
    (["compare", "--sample-budget", "0"], "--sample-budget"),
    (["compare", "--best-of-n", "0"], "--best-of-n"),
    (["compare", "--learning-rate", "nan"], "--learning-rate"),
    (["eval", "sample", "--temperature", "-1"], "--temperature"),
    (["eval", "sample", "--top-p", "inf"], "--top-p"),
    (["eval", "winrate", "--a", "a.jsonl", "--b", "b.jsonl", "--bootstrap", "0"], "--bootstrap"),
    (["eval", "leaderboard", "--battles", "battles.jsonl", "--elo-k", "0"], "--elo-k"),
    (["eval", "metrics", "--samples", "s.jsonl", "--batch-size", "0"], "--batch-size"),
    (["label", "--pairs", "pairs.jsonl", "--timeout", "nan"], "--timeout"),
    (["feedback", "serve", "--port", "70000"], "--port"),
    (["gridworld", "solve", "--tolerance", "nan"], "--tolerance"),
]


@pytest.mark.parametrize("argv,option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_is_one_error_line_before_any_work(argv, option, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default output dir (runs/) would appear here
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlhfkit: error: "), err
    assert option in lines[0] and "Traceback" not in err + out
    assert list(tmp_path.iterdir()) == []  # no run folder, no output file


def test_limits_are_checked_with_hand_worked_edges():
    assert _within(1, ">= 1") and not _within(0, ">= 1")
    assert _within(1e-9, "> 0") and not _within(0.0, "> 0")
    assert _within(1.0, "(0, 1]") and not _within(0.0, "(0, 1]") and not _within(1.5, "(0, 1]")
    assert _within(0.0, "[0, 1)") and not _within(1.0, "[0, 1)")
    assert not _within(math.nan, "> 0") and not _within(math.nan, "[0, 1]")  # NaN satisfies no limit
    assert not _within(math.inf, "(0, 1]") and _within(math.inf, "> 0")


def test_every_limit_names_a_field_of_its_config_and_parses():
    for cls in CONFIGS:
        names = {f.name for f in dataclasses.fields(cls)}
        for name, limit in class_mapping(cls, "limits").items():
            assert name in names, f"{cls.__name__}: limit on unknown field {name}"
            _within(0.5, limit)  # raises on a malformed limit


def test_defaults_lie_within_their_limits():
    for cls in CONFIGS:
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        check_limits(cls, defaults)


def test_yaml_values_and_derived_configs_are_checked_too(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lora_r: 0\n")
    with pytest.raises(ConfigError, match="--lora-r must be >= 1, got 0"):
        build_config(SFTConfig, config, {"data": "demos.jsonl"})
    config.write_text("learning_rate: fast\n")
    with pytest.raises(ConfigError, match="--learning-rate must be a number, got 'fast'"):
        build_config(SFTConfig, config, {"data": "demos.jsonl"})
    with pytest.raises(ConfigError, match="--steps must be >= 1"):
        derive_config(RLConfig, QuickstartConfig(), algo="ppo", steps=0)


def test_a_valid_run_is_not_refused(tmp_path, tiny_llama, tiny_tok):
    """The limits hold every documented value: a generate run with edge values works."""
    model = tmp_path / "tiny"
    tiny_llama.save_pretrained(model)
    tiny_tok.save_pretrained(model)
    out = tmp_path / "gen.jsonl"
    assert main(["generate", "--prompts", "task:sentiment", "--model", str(model), "--limit", "2", "--top-p", "1",
                 "--strategy", "sample", "--top-k", "0", "--max-new-tokens", "1", "--output", str(out)]) == 0
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == 2
