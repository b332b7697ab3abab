"""Iterative (round-based) DPO: `rl --algo online_dpo --dpo-rounds K` — rounds of pairs sampled
from the policy as the round starts, judged by the reward, then a DPO phase over them, against
the round's starting policy or the initial one (Xu et al. 2023; Yuan et al. 2024)."""

import copy
import json

import pytest
import torch

from rlhfkit import cli
from rlhfkit.config import ConfigError
from rlhfkit.models.forward import response_forward
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online_dpo import OnlineDPOTrainer
from tests.test_online_dpo import PROMPTS, good_fraction


def _cfg(**kw):
    base = dict(algo="online_dpo", dpo_rounds=2, pairs_per_round=8, mini_batch_size=8, micro_batch_size=8,
                ppo_epochs=2, learning_rate=1e-2, max_new_tokens=6, target_kl=None, seed=0)
    base.update(kw)
    return RLConfig(**base)


def test_rounds_derive_the_loop():
    cfg = _cfg(dpo_rounds=3)
    assert (cfg.steps, cfg.batch_size, cfg.kl_anchor, cfg.anchor_refresh) == (3, 16, "previous", 1)
    assert _cfg(round_reference="initial").kl_anchor == "reference"
    with pytest.raises(ConfigError, match="needs --algo online_dpo"):
        RLConfig(algo="grpo", dpo_rounds=2)
    with pytest.raises(ConfigError, match="multiple of --mini-batch-size"):
        _cfg(pairs_per_round=3)


def _seq_logprobs(model, ro):
    out = response_forward(model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    return out.logprobs * ro.response_mask


@pytest.mark.parametrize("reference", ["round", "initial"])
def test_the_reference_is_reset_per_round_when_asked(tiny_llama, tiny_tok, reference):
    initial = frozen_copy(tiny_llama)
    model = copy.deepcopy(tiny_llama)
    trainer = OnlineDPOTrainer(model, tiny_tok, good_fraction, _cfg(round_reference=reference), reference=initial,
                               chat=False)
    trainer.step(PROMPTS * 2)  # round 1
    after_round1 = frozen_copy(model)
    stats = trainer.step(PROMPTS * 2)  # round 2
    scored = trainer.last_scored
    # the log π_ref the round-2 DPO phase used, against each candidate's own forward pass
    at_start, at_initial = _seq_logprobs(after_round1, scored.rollout), _seq_logprobs(initial, scored.rollout)
    expected, other = (at_start, at_initial) if reference == "round" else (at_initial, at_start)
    used = scored.anchor_logprobs * scored.rollout.response_mask
    assert torch.allclose(used, expected, atol=1e-5)
    assert not torch.allclose(used, other, atol=1e-3)  # round 1 moved the policy: the choice shows
    # either way round 2 samples the policy after round 1: its k1 to the initial policy per sequence
    k1 = float((at_start - at_initial).sum(1).mean())
    assert stats["iterative_dpo/kl_k1_to_initial"] == pytest.approx(k1, abs=1e-4) and k1 > 0


def test_two_rounds_raise_the_reward(tiny_llama, tiny_tok):
    cfg = _cfg(dpo_rounds=3, pairs_per_round=32, mini_batch_size=16, micro_batch_size=16, ppo_epochs=4)
    trainer = OnlineDPOTrainer(tiny_llama, tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    # round 3's samples come from the policy after two rounds of DPO
    assert history[2]["reward/score_mean"] > history[0]["reward/score_mean"] + 0.1, [h["reward/score_mean"] for h in history]
    assert history[0]["iterative_dpo/kl_k1_to_initial"] == pytest.approx(0.0, abs=1e-5)  # round 1 samples the initial policy
    assert history[2]["iterative_dpo/kl_k1_to_initial"] > 0
    assert all(0.5 < h["iterative_dpo/chosen_win_rate"] <= 1 for h in history)  # the phase learnt its pairs


def test_help_and_command(tmp_path, tiny_dir, capsys):
    with pytest.raises(SystemExit):
        cli.main(["rl", "--help"])
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--dpo-rounds", "--pairs-per-round", "--round-reference"))
    code = cli.main(["rl", "--algo", "online_dpo", "--dpo-rounds", "2", "--pairs-per-round", "2", "--task", "sentiment",
                     "--policy", tiny_dir, "--mini-batch-size", "4", "--max-new-tokens", "4", "--eval-prompts", "4",
                     "--precision", "fp32", "--output-dir", str(tmp_path / "runs"), "--run-name", "it"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "[rlhfkit] round 2: sample reward" in captured.out + captured.err
    rows = [json.loads(line) for line in (tmp_path / "runs" / "it" / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rows if r.get("stage") == "rl"]
    assert [r["iterative_dpo/round"] for r in rounds] == [1.0, 2.0]
    assert all("iterative_dpo/kl_k1_to_initial" in r and "reward/score_mean" in r for r in rounds)
