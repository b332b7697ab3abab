"""Config dataclasses drive --help, YAML and overrides; bad values get a sentence."""

import pytest

from rlhfkit.cli import build_parser, main
from rlhfkit.config import ConfigError, build_config, field_docs
from rlhfkit.pipelines.config import QuickstartConfig
from rlhfkit.trainers.config import RLConfig


def test_field_docstrings_become_help(capsys):
    docs = field_docs(RLConfig)
    assert docs["clip_coef"].startswith("ratio clip ε of the surrogate objective")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quickstart", "--help"])
    out = capsys.readouterr().out
    assert "--ppo-steps" in out and "PPO iterations (default: 25)" in out


def test_yaml_then_command_line_overrides(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("ppo_steps: 7\nbatch-size: 8\nmini_batch_size: 4\nmicro_batch_size: 4\n")
    cfg = build_config(QuickstartConfig, path, {"ppo_steps": 9, "seed": None})
    assert (cfg.ppo_steps, cfg.batch_size, cfg.seed) == (9, 8, 0)
    path.write_text("ppo_stepz: 7\n")
    with pytest.raises(ConfigError, match="unknown option\\(s\\) ppo_stepz"):
        build_config(QuickstartConfig, path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(QuickstartConfig, path)


def test_derived_values_are_checked_with_a_sentence(capsys):
    assert main(["quickstart", "--batch-size", "10", "--mini-batch-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "rlhfkit: error: batch_size (10) must be a multiple of mini_batch_size (4)" in err


def test_wrong_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", "--ppo-steps", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quickstart", "--precision", "fp8"])
    assert main([]) == 2


def test_generate_requires_prompts(capsys):
    assert main(["generate"]) == 2
    assert "--prompts is required" in capsys.readouterr().err
