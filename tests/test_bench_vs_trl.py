"""The TRL side-by-side benchmark still runs: one step of each job on a one-layer model.
Times are printed, never asserted (DESIGN.md §6)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_trl.py"


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed (the bench extra)")
def test_benchmark_runs_every_job_for_one_step(tmp_path):
    out = tmp_path / "bench.json"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--jobs", "grpo,rloo,dpo", "--precision", "fp32",
                           "--steps", "1", "--warmup", "0", "--repeats", "1", "--layers", "1", "--width", "32",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"grpo/fp32", "rloo/fp32", "dpo/fp32"}
    for key, result in report["results"].items():
        summary = result["summary"]
        assert summary["speed_ratio"] > 0
        for lib in ("trl", "rlhfkit"):
            assert len(summary[lib]["curve"]) == 1, (key, lib)
            assert summary[lib]["peak_rss_mb"] > 0
            if not key.startswith("dpo"):
                # the reward is the fraction of "e" among letters; a random policy gets about 0.1
                assert 0.0 < summary[lib]["curve"][0] < 0.5
        assert "speed ratio" in proc.stdout


def test_benchmark_rejects_an_unknown_job():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--jobs", "sft"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--jobs takes dpo, grpo, ppo, rloo" in proc.stderr


def test_the_ppo_job_asks_for_the_trl_1_12_virtualenv():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--jobs", "ppo"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--trl112-python" in proc.stderr


TRL112 = os.environ.get("RLHFKIT_TRL112_PYTHON", "")


@pytest.mark.skipif(not (TRL112 and Path(TRL112).exists()),
                    reason="set RLHFKIT_TRL112_PYTHON to a python with TRL 1.12 (the last TRL with PPOTrainer)")
def test_the_ppo_job_runs_one_step_against_trl_1_12(tmp_path):
    out = tmp_path / "bench.json"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--jobs", "ppo", "--precision", "fp32", "--steps", "1",
                           "--warmup", "0", "--repeats", "1", "--layers", "1", "--width", "32", "--trl112-python", TRL112,
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())["results"]["ppo/fp32"]["summary"]
    for lib in ("trl", "rlhfkit"):
        assert summary[lib]["step_s"] > 0 and summary[lib]["peak_rss_mb"] > 0
        assert len(summary[lib]["curve"]) >= 1  # the reward model's mean score per step
