"""Crash-safe resume, through the real CLI: each command is started in a subprocess, killed with
SIGKILL once its checkpoint pointer names a few checkpoints, resumed with --resume, and its
final weights and metrics.jsonl are compared with those of an uninterrupted run of the same
command. On CPU with a fixed seed they must be identical (bit for bit; only wall-clock fields
differ). The pieces (atomic writes, the pointer, cutting the logs back) are tested on their own
at the bottom."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.cli import main
from rlhfkit.trainers.checkpoint import Checkpointer, EpochCursor

SRC = str(Path(__file__).resolve().parents[1] / "src")
WORDS = "the movie was good bad i loved it hated great acting and a fine story terrible plot boring slow".split()


@pytest.fixture()
def tiny_dir(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return str(path)


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _phrase(i: int, n: int = 3) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def _pointer_step(folder: Path) -> int:
    pointer = folder / "latest"
    try:
        return int(pointer.read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


def _killed_run(args: list[str], ready, timeout: float = 120.0) -> None:
    """Start `rlhfkit ARGS` in a subprocess and SIGKILL it as soon as `ready()` holds."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "rlhfkit.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (code {proc.returncode}) before it could be killed: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _metrics(run: Path) -> list[dict]:
    """metrics.jsonl without its wall-clock fields."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "seconds"} for r in rows]


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor saved under `folder` (safetensors files and torch .pt files), by file and name."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            out.update({f"{path.relative_to(folder)}:{k}": v for k, v in load_file(path).items()})
        elif path.suffix == ".pt":
            saved = torch.load(path, weights_only=False)
            flat = saved if isinstance(saved, dict) else {"": saved}
            for k, v in flat.items():
                if isinstance(v, dict):
                    out.update({f"{path.relative_to(folder)}:{k}.{kk}": vv for kk, vv in v.items()})
                else:
                    out[f"{path.relative_to(folder)}:{k}"] = v
    assert out, f"no tensors under {folder}"
    return out


def _assert_same(a: Path, b: Path, weights: str) -> None:
    assert _metrics(a) == _metrics(b)
    wa, wb = _tensors(a / weights), _tensors(b / weights)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def _resume_test(tmp_path: Path, args: list[str], weights: str, ready_for, expect_resumed_from=None) -> Path:
    """Run `args` uninterrupted (run 'whole'), then killed and resumed (run 'cut'); compare."""
    whole = ["--output-dir", str(tmp_path / "runs"), "--run-name", "whole"]
    cut = ["--output-dir", str(tmp_path / "runs"), "--run-name", "cut"]
    assert main(args + whole) == 0
    run = tmp_path / "runs" / "cut"
    _killed_run(args + cut, lambda: ready_for(run))
    if expect_resumed_from is not None:
        expect_resumed_from(run)
    assert main(args + cut + ["--resume"]) == 0
    _assert_same(tmp_path / "runs" / "whole", run, weights)
    return run


# ---------------------------------------------------------------------------------------------
# one test per command


def test_sft_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir):
    data = _write(tmp_path / "sft.jsonl", [{"prompt": _phrase(i), "completion": _phrase(i + 5, 2)} for i in range(24)])
    args = ["sft", "--data", data, "--model", tiny_dir, "--eval-fraction", "0.25", "--epochs", "6", "--batch-size", "2",
            "--micro-batch-size", "1", "--learning-rate", "0.01", "--lora-r", "4", "--checkpoint-every", "3",
            "--eval-every", "5", "--precision", "fp32", "--device", "cpu"]

    def check_cut(run):
        assert 0 < _pointer_step(run / "checkpoints") < 54  # killed in the middle
    _resume_test(tmp_path, args, "checkpoints/final", lambda run: _pointer_step(run / "checkpoints") >= 6, check_cut)


def _pairs(n: int) -> list[dict]:
    return [{"prompt": _phrase(i), "chosen": _phrase(i + 3, 2), "rejected": _phrase(i + 11, 2)} for i in range(n)]


def _cut_between(low: int, high: int):
    def check(run: Path) -> None:
        assert low <= _pointer_step(run / "checkpoints") < high, "killed in the middle"
    return check


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_dpo_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir, loss):
    data = _write(tmp_path / "pairs.jsonl", _pairs(20))
    # full fine-tuning with reference log-probs computed once up front: after the resume the
    # policy is no longer π_ref, so those log-probs must come from the checkpoint
    args = ["dpo", "--loss", loss, "--data", data, "--model", tiny_dir, "--eval-fraction", "0.2", "--max-steps", "40",
            "--batch-size", "2", "--micro-batch-size", "1", "--no-lora", "--learning-rate", "0.001", "--beta", "0.5",
            "--checkpoint-every", "2", "--precision", "fp32", "--device", "cpu"]
    _resume_test(tmp_path, args, "checkpoints/final", lambda run: _pointer_step(run / "checkpoints") >= 4,
                 _cut_between(4, 40))


def test_rm_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir):
    rows = [{"prompt": _phrase(i), "chosen": "great acting and a fine story", "rejected": "terrible plot boring and slow"}
            for i in range(24)]
    data = _write(tmp_path / "prefs.jsonl", rows)
    args = ["rm", "--data", data, "--kind", "pairwise", "--backbone", tiny_dir, "--eval-fraction", "0.25", "--epochs", "8",
            "--batch-size", "2", "--max-length", "32", "--checkpoint-every", "2", "--ensemble", "2", "--device", "cpu"]
    _resume_test(tmp_path, args, "reward_model", lambda run: _pointer_step(run / "checkpoints") >= 4,
                 _cut_between(4, 72))


def test_rl_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir):
    args = ["rl", "--policy", tiny_dir, "--algo", "ppo", "--task", "sentiment", "--batch-size", "4", "--mini-batch-size", "2",
            "--steps", "14", "--ppo-epochs", "2", "--eval-prompts", "4", "--max-new-tokens", "4", "--checkpoint-every", "2", "--target-kl", "1",
            "--kl-horizon", "50", "--precision", "fp32", "--device", "cpu"]
    run = _resume_test(tmp_path, args, "checkpoints/final", lambda run: _pointer_step(run / "checkpoints") >= 4,
                       _cut_between(4, 14))
    whole = json.loads((tmp_path / "runs" / "whole" / "summary.json").read_text())
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["before"] == whole["before"] and resumed["after"] == whole["after"]
    assert (run / "samples.jsonl").read_text() == (tmp_path / "runs" / "whole" / "samples.jsonl").read_text()
