"""Crash-safe resume, through the real CLI: each command is started in a subprocess, killed with
SIGKILL once its checkpoint pointer names a few checkpoints, resumed with --resume, and its
final weights and metrics.jsonl are compared with those of an uninterrupted run of the same
command. On CPU with a fixed seed they must be identical (bit for bit; only wall-clock fields
differ). The pieces (atomic writes, the pointer, cutting the logs back) are tested on their own
at the bottom."""

from __future__ import annotations

import json
import math
import os
import shutil
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


def _flat_tensors(value, prefix: str, out: dict) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _flat_tensors(v, f"{prefix}.{k}", out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flat_tensors(v, f"{prefix}.{i}", out)


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor saved under `folder` (safetensors files and torch .pt files), by file and name."""
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            out.update({f"{path.relative_to(folder)}:{k}": v for k, v in load_file(path).items()})
        elif path.suffix == ".pt":
            _flat_tensors(torch.load(path, weights_only=False), str(path.relative_to(folder)), out)
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
    args = ["sft", "--data", data, "--model", tiny_dir, "--eval-fraction", "0.25", "--epochs", "4", "--batch-size", "2",
            "--micro-batch-size", "1", "--learning-rate", "0.01", "--lora-r", "4", "--checkpoint-every", "3",
            "--eval-every", "5", "--precision", "fp32", "--device", "cpu"]

    def check_cut(run):
        assert 0 < _pointer_step(run / "checkpoints") < 36  # killed in the middle
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
    args = ["rm", "--data", data, "--kind", "pairwise", "--backbone", tiny_dir, "--eval-fraction", "0.25", "--epochs", "5",
            "--batch-size", "2", "--max-length", "32", "--checkpoint-every", "2", "--ensemble", "2", "--device", "cpu"]
    _resume_test(tmp_path, args, "reward_model", lambda run: _pointer_step(run / "checkpoints") >= 4,
                 _cut_between(4, 45))


def test_rl_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir):
    args = ["rl", "--policy", tiny_dir, "--algo", "ppo", "--task", "sentiment", "--batch-size", "4", "--mini-batch-size", "2",
            "--steps", "10", "--ppo-epochs", "2", "--eval-prompts", "4", "--max-new-tokens", "4", "--checkpoint-every", "2", "--target-kl", "1",
            "--kl-horizon", "50", "--precision", "fp32", "--device", "cpu"]
    run = _resume_test(tmp_path, args, "checkpoints/final", lambda run: _pointer_step(run / "checkpoints") >= 4,
                       _cut_between(4, 10))
    whole = json.loads((tmp_path / "runs" / "whole" / "summary.json").read_text())
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["before"] == whole["before"] and resumed["after"] == whole["after"]
    assert (run / "samples.jsonl").read_text() == (tmp_path / "runs" / "whole" / "samples.jsonl").read_text()


def test_quickstart_resumes_after_sigkill_as_if_never_stopped(tmp_path, tiny_dir):
    args = ["quickstart", "--policy", tiny_dir, "--reward-backbone", tiny_dir, "--rm-prompts", "16", "--rm-epochs", "2",
            "--rm-batch-size", "4", "--ppo-steps", "12", "--batch-size", "4", "--mini-batch-size", "4", "--eval-prompts", "4",
            "--eval-samples-per-prompt", "1", "--max-new-tokens", "4", "--checkpoint-every", "2", "--precision", "fp32",
            "--device", "cpu"]

    def check_cut(run):
        stages = json.loads((run / "stages.json").read_text())
        assert list(stages) == ["pairs", "reward_model"]  # killed inside PPO: two stages finished
        assert 2 <= _pointer_step(run / "checkpoints" / "ppo") < 12
    run = _resume_test(tmp_path, args, "checkpoints/final", lambda run: _pointer_step(run / "checkpoints" / "ppo") >= 2,
                       check_cut)
    whole = tmp_path / "runs" / "whole"
    assert _tensors(run / "reward_model").keys() == _tensors(whole / "reward_model").keys()
    assert (run / "samples.jsonl").read_text() == (whole / "samples.jsonl").read_text()
    assert (run / "preferences.jsonl").read_text() == (whole / "preferences.jsonl").read_text()
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run, whole))
    assert a["evaluation"] == b["evaluation"] and a["reward_model"] == b["reward_model"]


def test_quickstart_resume_reuses_a_finished_reward_model(tmp_path, tiny_dir):
    """Killed after the reward model was saved, before PPO's first checkpoint: the resumed run
    loads reward_model/ instead of training it again."""
    args = ["quickstart", "--policy", tiny_dir, "--reward-backbone", tiny_dir, "--rm-prompts", "16", "--rm-epochs", "1",
            "--ppo-steps", "6", "--batch-size", "4", "--mini-batch-size", "4", "--eval-prompts", "4",
            "--eval-samples-per-prompt", "1", "--max-new-tokens", "4", "--checkpoint-every", "0", "--precision", "fp32",
            "--device", "cpu", "--output-dir", str(tmp_path / "runs"), "--run-name", "q"]
    run = tmp_path / "runs" / "q"
    assert main(args) == 0
    stages = json.loads((run / "stages.json").read_text())
    del stages["ppo"]  # as if killed in PPO before its first checkpoint
    (run / "stages.json").write_text(json.dumps(stages))
    shutil.rmtree(run / "checkpoints" / "ppo")
    before = _tensors(run / "reward_model")
    weights = _tensors(run / "checkpoints" / "final")
    metrics = _metrics(run)
    assert main(args + ["--resume"]) == 0
    after = _tensors(run / "reward_model")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _metrics(run) == metrics  # the PPO rows were cut back and logged again, once
    assert all(torch.equal(v, _tensors(run / "checkpoints" / "final")[k]) for k, v in weights.items())


def test_compare_resumes_after_sigkill_keeping_finished_methods(tmp_path, tiny_dir):
    args = ["compare", "--policy", tiny_dir, "--methods", "rloo,ppo,dpo,best_of_n", "--sample-budget", "32",
            "--batch-size", "4", "--eval-prompts", "4", "--max-new-tokens", "4", "--best-of-n", "2",
            "--checkpoint-every", "2", "--precision", "fp32", "--device", "cpu"]

    def killed_inside_ppo(run):
        stages = run / "stages.json"
        return stages.exists() and "rloo" in json.loads(stages.read_text()) and _pointer_step(run / "checkpoints" / "ppo") >= 2

    def check_cut(run):
        assert list(json.loads((run / "stages.json").read_text())) == ["base", "rloo"]
        assert 2 <= _pointer_step(run / "checkpoints" / "ppo") < 8
    run = _resume_test(tmp_path, args, "checkpoints/ppo", killed_inside_ppo, check_cut)
    whole = tmp_path / "runs" / "whole"
    assert (run / "samples.jsonl").read_text() == (whole / "samples.jsonl").read_text()
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run, whole))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    # the methods after the cut (dpo, best_of_n) train and score in another process than in 'whole'
    # (the PPO weights are bitwise equal above); their floats may differ in the last bits
    _assert_nearly_equal(drop(a["rows"]), drop(b["rows"]))
    _assert_nearly_equal(a["win_rates"], b["win_rates"])


def _assert_nearly_equal(a, b, where: str = "") -> None:
    """Equal JSON values, floats within 1e-6 relative (and 1e-9 absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_nearly_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_nearly_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_eval_sample_resumes_after_sigkill_keeping_finished_policies(tmp_path, tiny_dir):
    args = ["eval", "sample", "--policies", f"a={tiny_dir},b={tiny_dir},c={tiny_dir}", "--task", "sentiment",
            "--n-prompts", "48", "--max-new-tokens", "12", "--chat", "no", "--precision", "fp32", "--device", "cpu"]
    whole = ["--output-dir", str(tmp_path / "runs"), "--run-name", "whole"]
    cut = ["--output-dir", str(tmp_path / "runs"), "--run-name", "cut"]
    assert main(args + whole) == 0
    run = tmp_path / "runs" / "cut"
    _killed_run(args + cut, lambda: (run / "samples" / "a.meta.json").exists())
    assert not (run / "samples" / "c.meta.json").exists()  # killed before the last policy was done
    assert main(args + cut + ["--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["policies"]["a"]["cached"] and not summary["policies"]["c"]["cached"]
    for name in "abc":
        assert (run / "samples" / f"{name}.jsonl").read_text() == (tmp_path / "runs" / "whole" / "samples" / f"{name}.jsonl").read_text()
    assert not list((run / "samples").glob("*.tmp"))
    # --resume of a folder that does not exist is a one-line error
    assert main(args + ["--output-dir", str(tmp_path / "runs"), "--run-name", "nothing-here", "--resume"]) == 2


# ---------------------------------------------------------------------------------------------
# the pieces


def test_pointer_names_the_newest_complete_checkpoint_and_old_ones_are_pruned(tmp_path):
    log = tmp_path / "metrics.jsonl"
    ckpt = Checkpointer(tmp_path / "ckpt", every=2, logs=[log], keep=2)
    assert ckpt.latest() is None and ckpt.load() is None
    for step in (2, 4, 6):
        log.write_text("x\n" * step)
        ckpt.save(step, {"value": torch.tensor([float(step)])})
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-000006\n"
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*")) == ["step-000004", "step-000006"]
    # a write that died before its rename leaves only a .tmp file: the pointer still names step 6
    (tmp_path / "ckpt" / "step-000008").mkdir()
    (tmp_path / "ckpt" / "step-000008" / "trainer_state.pt.tmp").write_bytes(b"half a file")
    log.write_text("x\n" * 7)  # a row of step 7, logged after the checkpoint
    state = ckpt.load()
    assert state["step"] == 6 and state["value"].item() == 6.0
    assert log.read_text() == "x\n" * 6  # cut back to the checkpoint
    assert not list((tmp_path / "ckpt").glob("*.tmp"))  # the pointer itself was replaced whole


def test_a_resume_without_checkpoint_cuts_the_logs_to_where_training_began(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("earlier stage\nhalf of this one\n")
    ckpt = Checkpointer(tmp_path / "ckpt", logs=[log], start_sizes={"metrics.jsonl": len("earlier stage\n")})
    assert ckpt.load() is None
    assert log.read_text() == "earlier stage\n"


def test_checkpoint_restores_the_random_number_generators(tmp_path):
    import random

    ckpt = Checkpointer(tmp_path / "ckpt")
    random.seed(3)
    torch.manual_seed(3)
    ckpt.save(1, {})
    expected = (random.random(), torch.rand(2))
    random.seed(99)
    torch.manual_seed(99)
    ckpt.load()
    assert random.random() == expected[0] and torch.equal(torch.rand(2), expected[1])


def test_epoch_cursor_resumed_mid_epoch_gives_the_same_batches():
    whole = EpochCursor(7, 3, seed=5)
    straight = [whole.next_batch() for _ in range(8)]  # 3 batches per epoch, into the third epoch
    first = EpochCursor(7, 3, seed=5)
    head = [first.next_batch() for _ in range(4)]
    resumed = EpochCursor(7, 3, seed=5)
    resumed.load(first.state())
    assert head + [resumed.next_batch() for _ in range(4)] == straight
    assert [epoch for epoch, _, _ in straight] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert all(sorted(i for _, b, _ in straight[e * 3:(e + 1) * 3] for i in b) == list(range(7)) for e in (0, 1))


def test_resuming_with_other_options_says_which(tmp_path, capsys):
    from rlhfkit.pipelines.run_dir import RunDir
    from rlhfkit.trainers.config import SFTConfig

    RunDir(tmp_path, "r").save_config(SFTConfig(data="a.jsonl", max_steps=6))
    RunDir(tmp_path, "r", resume=True).save_config(SFTConfig(data="a.jsonl", max_steps=6, resume=True))
    assert "warning" not in capsys.readouterr().out
    RunDir(tmp_path, "r", resume=True).save_config(SFTConfig(data="a.jsonl", max_steps=8, seed=1, resume=True))
    assert "options that differ from the first run's (max_steps, seed)" in capsys.readouterr().out
