"""`rlhfkit dpo --loss orpo|simpo|cpo` on tiny random models: no reference model is built, loaded or
run; each loss raises the held-out accuracy of its own implicit reward; ORPO and CPO (with their
NLL term) also raise the likelihood of the chosen responses; accumulation equals the full batch;
the command writes a run folder and refuses --ref-model."""

import copy
import json

import pytest
import torch

from rlhfkit import cli
from rlhfkit.config import ConfigError
from rlhfkit.trainers.config import DPOConfig
from rlhfkit.trainers.dpo import DPOTrainer, _examples, train_dpo
from rlhfkit.types import PairwiseRecord
from tests.test_dpo import _cfg, _flat, _offline_commands_registered  # noqa: F401 (an autouse fixture)

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
PAIRS = [PairwiseRecord(p, chosen, rejected) for p, chosen, rejected in zip(
    PROMPTS, ["good .", "great acting and a fine story .", "four", "excellent"],
    ["bad , boring and slow .", "awful", "five six", "terrible plot ."])]
REFERENCE_FREE = ["orpo", "simpo", "cpo"]


@pytest.mark.parametrize("loss", REFERENCE_FREE)
def test_no_reference_model_is_built_or_run(tiny_llama, tiny_tok, loss, monkeypatch):
    # live reference log-probs with full fine-tuning would need a frozen copy (DPO makes one);
    # the reference-free losses make none and never ask for reference log-probs
    cfg = _cfg(loss=loss, precompute_ref=False)
    assert DPOTrainer(copy.deepcopy(tiny_llama), tiny_tok, _cfg(loss="dpo", precompute_ref=False), 1).reference is not None
    trainer = DPOTrainer(tiny_llama, tiny_tok, cfg, total_steps=1)
    assert trainer.reference is None
    monkeypatch.setattr(DPOTrainer, "reference_logps", lambda *a, **k: pytest.fail("a reference pass was made"))
    items = DPOTrainer(tiny_llama, tiny_tok, _cfg(loss=loss), 1).prepare(_examples(tiny_tok, PAIRS, cfg)[0])
    assert all(it.ref_logps is None for it in items)
    stats = trainer.step(trainer.prepare(_examples(tiny_tok, PAIRS * 2, cfg)[0]))
    assert stats["loss"] == stats["loss"] and "kl_proxy/seq_logratio" not in stats


@pytest.mark.parametrize("loss", REFERENCE_FREE)
def test_gradient_accumulation_equals_the_full_batch(tiny_llama, tiny_tok, loss):
    results = []
    for micro in (8, 2):
        model = copy.deepcopy(tiny_llama)
        cfg = _cfg(loss=loss, micro_batch_size=micro)
        trainer = DPOTrainer(model, tiny_tok, cfg, total_steps=1)
        trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)  # the change is the gradient
        trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
        trainer.step(trainer.prepare(_examples(tiny_tok, PAIRS * 2, cfg)[0]))
        results.append(_flat(model.parameters()))
    assert (results[0] - _flat(tiny_llama.parameters())).abs().max() > 1e-3
    assert torch.allclose(results[0], results[1], atol=1e-5), (results[0] - results[1]).abs().max()


@pytest.mark.parametrize("loss, use_lora", [("orpo", False), ("simpo", False), ("cpo", False), ("simpo", True)])
def test_reference_free_training_raises_implicit_reward_accuracy(tiny_llama, tiny_tok, loss, use_lora):
    cfg = _cfg(loss=loss, lora=use_lora, lora_r=8, lora_alpha=16, learning_rate=2e-2 if use_lora else 5e-3,
               max_steps=20, micro_batch_size=4)
    held_out = [PairwiseRecord("i hated it", "what a wonderful film .", "an awful waste of time .")]
    result = train_dpo(tiny_llama, tiny_tok, PAIRS * 2, cfg, eval_data=PAIRS + held_out, progress=False)
    before, after = result["eval"]["before"], result["eval"]["after"]
    assert after["rewards/accuracy"] == 1.0
    assert after["rewards/margin"] > before["rewards/margin"] + 0.1
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    if loss in ("orpo", "cpo"):  # the NLL term pulls the chosen responses up, not only the margin
        assert after["logps/chosen"] > before["logps/chosen"] + 1.0
        assert result["history"][-1]["loss/nll"] < result["history"][0]["loss/nll"]
    assert all(v == v for h in result["history"] for v in h.values() if isinstance(v, float))  # no NaN


def test_config_defaults_and_checks():
    cfg = DPOConfig(loss="simpo")
    assert (cfg.simpo_beta, cfg.simpo_gamma_beta_ratio, cfg.orpo_lambda, cfg.cpo_alpha, cfg.beta) == (2.0, 0.5, 0.1, 1.0, 0.1)
    with pytest.raises(ConfigError, match="--loss orpo is reference-free"):
        DPOConfig(loss="orpo", ref_model="some/model")
    with pytest.raises(ConfigError, match="simpo_beta > 0"):
        DPOConfig(loss="simpo", simpo_beta=0)


def test_command_trains_simpo_and_refuses_a_reference_model(tmp_path, tiny_dir, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                            for p in PAIRS * 2))
    assert cli.main(["dpo", "--loss", "orpo", "--data", str(data), "--ref-model", tiny_dir]) == 2
    assert "--loss orpo is reference-free" in capsys.readouterr().err
    code = cli.main(["dpo", "--loss", "simpo", "--data", str(data), "--model", tiny_dir, "--eval-fraction", "0.25",
                     "--max-steps", "3", "--batch-size", "4", "--micro-batch-size", "2", "--learning-rate", "0.05",
                     "--chat", "no", "--output-dir", str(tmp_path / "runs"), "--run-name", "s", "--precision", "fp32",
                     "--lora-r", "4", "--no-save-merged"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["loss"] == "simpo" and summary["steps"] == 3
    stages = {json.loads(line)["stage"] for line in (tmp_path / "runs" / "s" / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"simpo", "simpo_eval"}
