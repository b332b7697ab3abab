"""Online DPO (Guo et al. 2024): pairs from the current policy, the reward picks the winner, DPO
steps against the reference — its pair rule by hand, its first step equal to offline DPO's on
the same pairs, learning on a tiny model, resume, and the `rlhfkit rl --algo online_dpo` command."""

import copy
import json

import pytest
import torch

from rlhfkit import cli
from rlhfkit.algorithms.online_pairs import preference_pairs
from rlhfkit.algorithms.preference import dpo_loss
from rlhfkit.config import ConfigError
from rlhfkit.models.forward import response_forward
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online_dpo import OnlineDPOTrainer, make_online_trainer

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
POSITIVE = {"good", "great", "excellent", "wonderful", "fine", "best", "happy", "love", "loved", "fun"}


def good_fraction(prompts, completions, **_):
    return [sum(w in POSITIVE for w in c.split()) / max(len(c.split()), 1) for c in completions]


def _cfg(**kw):
    base = dict(algo="online_dpo", steps=1, batch_size=16, mini_batch_size=16, micro_batch_size=16, learning_rate=1e-2,
                max_new_tokens=6, target_kl=None, seed=0)
    base.update(kw)
    return RLConfig(**base)


def test_pairs_by_hand():
    # prompt 0: 0.2 vs 0.9 -> row 1 wins; prompt 1: a tie keeps the order with μ ½; prompt 2: row 4 wins
    chosen, rejected, label = preference_pairs(torch.tensor([0.2, 0.9, 0.5, 0.5, 1.0, -1.0]))
    assert chosen.tolist() == [1, 2, 4] and rejected.tolist() == [0, 3, 5] and label.tolist() == [1.0, 0.5, 1.0]


def test_config():
    cfg = RLConfig(algo="online_dpo")
    assert (cfg.group_size, cfg.init_kl_coef, cfg.ppo_epochs) == (2, 0.1, 1)
    with pytest.raises(ConfigError, match="group_size must be 2"):
        RLConfig(algo="online_dpo", group_size=4)
    with pytest.raises(ConfigError, match="init_kl_coef"):
        RLConfig(algo="online_dpo", init_kl_coef=0.0)


def test_the_update_is_offline_dpo_on_the_sampled_pairs(tiny_llama, tiny_tok):
    # one iteration with SGD lr 1: the parameter change equals −∇ of dpo_loss on the pairs the
    # rollout gave (summed log-probs, β 0.1 against the frozen reference), computed here by hand
    model = copy.deepcopy(tiny_llama)
    trainer = make_online_trainer(model, tiny_tok, good_fraction, _cfg(), reference=frozen_copy(tiny_llama), chat=False)
    assert isinstance(trainer, OnlineDPOTrainer)
    trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)
    trainer.cfg.max_grad_norm = 1e9
    stats = trainer.step(PROMPTS * 2)
    scored = trainer.last_scored
    chosen, rejected, label = preference_pairs(scored.scores)
    check = copy.deepcopy(tiny_llama)
    ro = scored.rollout
    out = response_forward(check, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    seq = (out.logprobs * ro.response_mask).sum(1)
    ref = (scored.anchor_logprobs * ro.response_mask).sum(1)
    loss, _ = dpo_loss(seq[chosen], seq[rejected], ref[chosen], ref[rejected], beta=0.1, label=label)
    loss.backward()
    expected = torch.cat([(p - p.grad).detach().flatten() for p in check.parameters()])
    got = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert stats["loss/dpo"] == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # the no-grad pass of the policy that sampled equals the reference before the step: KL 0
    assert stats["kl/k1_seq_mean"] == pytest.approx(0.0, abs=1e-5)


def test_online_dpo_raises_the_reward(tiny_llama, tiny_tok):
    cfg = _cfg(steps=30, mini_batch_size=8, micro_batch_size=8, learning_rate=1e-2)
    trainer = OnlineDPOTrainer(tiny_llama, tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    first = sum(h["reward/score_mean"] for h in history[:5]) / 5
    last = sum(h["reward/score_mean"] for h in history[-5:]) / 5
    assert last > first + 0.2, (first, last)
    assert history[-1]["kl/k1_seq_mean"] > 0 and "rewards/accuracy" in history[-1]
    assert all(v == v for h in history for v in h.values() if isinstance(v, float))


def test_resume_equals_no_interruption(tmp_path, tiny_llama, tiny_tok):
    def run(steps, folder, resume=False):
        model = copy.deepcopy(tiny_llama)
        trainer = OnlineDPOTrainer(model, tiny_tok, good_fraction, _cfg(steps=steps), reference=frozen_copy(tiny_llama),
                                   chat=False)
        checkpointer = Checkpointer(folder, every=2)
        if resume:
            assert trainer.load_checkpoint(checkpointer)
        trainer.train(PROMPTS, progress=False, checkpointer=checkpointer)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    whole = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    resumed = run(4, tmp_path / "b", resume=True)
    assert torch.equal(whole, resumed)


def test_rl_command_runs_online_dpo(tmp_path, tiny_dir, capsys):
    code = cli.main(["rl", "--algo", "online_dpo", "--task", "sentiment", "--policy", tiny_dir, "--steps", "2",
                     "--batch-size", "4", "--mini-batch-size", "4", "--max-new-tokens", "4", "--eval-prompts", "4",
                     "--precision", "fp32", "--output-dir", str(tmp_path / "runs"), "--run-name", "o"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "runs" / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["algo"] for r in rows if r.get("stage") == "rl"] == ["online_dpo"] * 2
    assert "loss/dpo" in rows[-1] and "online_dpo/tie_fraction" in rows[-1]


@pytest.mark.slow  # about 25 s of CPU (three methods, each loading the model); the README's compare line covers it by default
def test_compare_runs_online_dpo_dapo_and_simpo_side_by_side(tmp_path, tiny_dir, capsys):
    # the reference-free SimPO trains on the same gold-labelled base pairs as compare's DPO; online
    # DPO and DAPO spend the same sample budget online
    assert cli.main(["compare", "--policy", tiny_dir, "--methods", "online_dpo,dapo,simpo", "--sample-budget", "8",
                     "--batch-size", "4", "--mini-batch-size", "4", "--eval-prompts", "4", "--max-new-tokens", "4",
                     "--output-dir", str(tmp_path), "--precision", "fp32"]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == ["base", "online_dpo", "dapo", "simpo"]
    assert all(r["train_samples"] == 8 for r in summary["rows"][1:])
    with pytest.raises(ConfigError, match="unknown method"):
        from rlhfkit.pipelines.config import CompareConfig

        CompareConfig(methods=["trpo"])
