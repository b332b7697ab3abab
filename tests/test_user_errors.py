"""What a new user hits first: a device the machine lacks, a run that failed on its inputs
(issue 18, items 2 and 3)."""

from __future__ import annotations

import json

import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.config import ConfigError
from rlhfkit.models.loading import resolve_device
from rlhfkit.pipelines.run_dir import RunDir


@pytest.fixture()
def no_cuda(monkeypatch):
    """A machine without CUDA (also on a GPU box): what the CPU build of torch reports."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.version, "cuda", None)


def test_resolve_device_says_what_is_missing(no_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"--device cuda: the installed torch .* is a CPU-only build.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="is not a device name"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="sees no mps device"):
        resolve_device("mps")
    # one GPU: cuda:0 is fine, cuda:3 names the devices there are
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"--device cuda:3: this machine has 1 cuda device\(s\), cuda:0 to cuda:0"):
        resolve_device("cuda:3")


DEVICE_COMMANDS = {
    "quickstart": ["quickstart", "--policy", "./my-hf-model", "--reward-backbone", "./my-encoder"],
    "generate": ["generate", "--prompts", "task:sentiment", "--model", "./my-hf-model"],
    "sft": ["sft", "--data", "missing.jsonl", "--model", "./my-hf-model"],
    "dpo": ["dpo", "--data", "missing.jsonl", "--model", "./my-hf-model"],
    "rm": ["rm", "--data", "missing.jsonl", "--backbone", "./my-encoder"],
    "rl": ["rl", "--policy", "./my-hf-model"],
    "compare": ["compare", "--policy", "./my-hf-model"],
    "label": ["label", "--pairs", "missing.jsonl", "--judge", "./my-hf-model"],
    "overopt run": ["overopt", "run", "--policy", "./my-hf-model", "--reward-backbone", "./my-encoder"],
}


@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
def test_an_unavailable_device_is_one_line_before_anything_else(command, no_cuda, tmp_path, monkeypatch, capsys):
    # The README's GPU example on a CPU machine: the device is reported, not the missing model
    # paths or data files, and no run folder is left behind.
    monkeypatch.chdir(tmp_path)
    assert main([*DEVICE_COMMANDS[command], "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhfkit: error: --device cuda: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_model_path_fails_before_a_run_folder_is_made(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--policy", "./my-hf-model", "--device", "cpu"]) == 2
    assert "my-hf-model" in capsys.readouterr().err
    assert main(["sft", "--data", "d.jsonl", "--model", "./my-hf-model", "--device", "cpu"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_folder_left_before_the_first_step_is_reused(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Cfg:
        steps: int = 1

    first = RunDir(tmp_path, "run")
    first.save_config(Cfg())
    # the run died here (bad input): config.yaml and an empty checkpoints/ only
    assert sorted(p.name for p in first.path.iterdir()) == ["checkpoints", "config.yaml"]
    second = RunDir(tmp_path, "run")  # no --overwrite needed
    second.save_config(Cfg(steps=2))
    second.log_metrics({"step": 0})
    with pytest.raises(FileExistsError, match="--overwrite"):
        RunDir(tmp_path, "run")  # a run that logged a step is kept
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("my own file")
    with pytest.raises(FileExistsError):
        RunDir(tmp_path, "mine")  # and so is anything we did not write


def test_a_failed_rl_run_does_not_block_the_next(tmp_path, tiny_llama, tiny_tok, capsys):
    model = tmp_path / "tiny"
    tiny_llama.save_pretrained(model)
    tiny_tok.save_pretrained(model)
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    bad.write_text('{"text": "no prompt"}\n')
    good.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["the movie was", "i loved it"] * 4))
    common = ["rl", "--policy", str(model), "--algo", "reinforce", "--steps", "1", "--batch-size", "2",
              "--mini-batch-size", "2", "--max-new-tokens", "3", "--eval-prompts", "0", "--output-dir", str(tmp_path),
              "--run-name", "r", "--precision", "fp32", "--reward", "length", "--device", "cpu"]
    assert main([*common, "--prompts", str(bad)]) == 2
    assert "bad.jsonl: row 1: field 'prompt'" in capsys.readouterr().err
    assert main([*common, "--prompts", str(good)]) == 0
    assert (tmp_path / "r" / "summary.json").exists()
