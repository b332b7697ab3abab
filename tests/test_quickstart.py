"""The quickstart loop on the embedded default model: a short run in CI, the full one marked slow."""

import json

import pytest
import yaml

from rlhfkit.cli import main
from tests.conftest import needs_embedded


@needs_embedded
def test_short_quickstart_writes_a_complete_run_folder(tmp_path, capsys):
    args = [
        "quickstart", "--output-dir", str(tmp_path), "--run-name", "short", "--rm-prompts", "16", "--rm-epochs", "1",
        "--ppo-steps", "2", "--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2",
        "--eval-prompts", "4", "--eval-samples-per-prompt", "1", "--max-new-tokens", "8", "--lora-top-layers", "4",
    ]
    assert main(args) == 0
    run = tmp_path / "short"
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "summary.json", "preferences.jsonl"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "final" / "adapter_config.json").exists()
    assert (run / "checkpoints" / "final" / "value_head.pt").exists()
    assert (run / "reward_model" / "head.pt").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["ppo_steps"] == 2 and config["policy"] == "smollm2-135m-instruct"
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["stage_seconds"]) == {"load policy", "sample pairs", "label pairs", "train reward model", "PPO", "evaluate"}
    for key in ("gold", "proxy"):
        for side in ("base", "final", "improvement"):
            e = summary["evaluation"][key][side]
            assert e["ci_low"] <= e["mean"] <= e["ci_high"]
    assert summary["ppo"]["steps"] == 2
    kl = summary["kl_control"]  # the PI controller on --target-kl 6, measured on the held-out samples
    assert kl["controller"] == "pi" and kl["target"] == 6.0
    assert kl["achieved"] == summary["evaluation"]["kl_to_reference"]["mean"]
    ppo_rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"ppo"' in line]
    assert len(ppo_rows) == 2 and all("kl/k1_seq_mean" in r and "time/generate" in r for r in ppo_rows)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"prompt", "base", "final", "gold_base", "gold_final"} <= set(samples[0])
    out = capsys.readouterr().out
    assert "gold reward" in out and "KL to reference" in out and "KL control (pi): target 6.00 nats" in out


@needs_embedded
def test_quickstart_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.json").write_text("{}")
    assert main(["quickstart", "--output-dir", str(tmp_path), "--run-name", "taken", "--rm-prompts", "16"]) == 2
    assert "exists and is not empty; pick another --run-name or pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
@needs_embedded
def test_full_quickstart_beats_the_base_policy(tmp_path):
    """The default `make demo` run: the final policy's gold reward beats the base policy's with
    a 95% CI of the paired difference that excludes zero."""
    assert main(["quickstart", "--output-dir", str(tmp_path), "--run-name", "full"]) == 0
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["evaluation"]["gold"]["improvement"]["ci_low"] > 0
    assert summary["reward_model"]["eval_accuracy_vs_gold_order"] > 0.6


def test_gold_order_accuracy_counts_pairs_with_different_gold():
    import torch

    from rlhfkit.evaluation.reward_eval import gold_order_accuracy
    from rlhfkit.types import PairwiseRecord

    class LengthRM:  # scores a response by its length
        def score(self, prompts, texts):
            return torch.tensor([float(len(t)) for t in texts])

    pairs = [
        (PairwiseRecord("p", "long answer", "short"), (0.9, 0.1)),  # RM agrees with gold
        (PairwiseRecord("p", "tiny", "much longer one"), (0.5, 0.2)),  # RM disagrees
        (PairwiseRecord("p", "xx", "yyyyy"), (0.3, 0.3)),  # equal gold: no comparison
        (PairwiseRecord("p", "a", "bbbbbbb"), (-0.2, 0.4)),  # gold prefers the rejected side; RM agrees
    ]
    assert gold_order_accuracy(LengthRM(), pairs) == pytest.approx(2 / 3)
