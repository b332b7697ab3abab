"""Process reward models (Lightman et al. 2023, "Let's verify step by step"; TRL's stepwise format):
the per-step BCE by hand, the step-end tokens of hand-made tokenised examples, a tiny PRM that
learns to mark the step with a bad token, the data checks, and the PRM as a dense RL reward."""

import json
import math
import random
import re
from types import SimpleNamespace

import pytest
import torch

from rlhfkit import cli
from rlhfkit.algorithms.process_reward import (
    join_steps,
    place_step_rewards,
    split_steps,
    step_end_tokens,
    stepwise_bce_loss,
)
from rlhfkit.data.loaders import load_records
from rlhfkit.data.schemas import DataError
from rlhfkit.models import load_reward_model
from rlhfkit.models.process_reward import ProcessRewardModel
from rlhfkit.rewards.functions import ProcessRewardScorer, WeightedSum
from rlhfkit.trainers.config import RewardTrainConfig
from rlhfkit.trainers.reward import StepwiseLabels, evaluate_records, train_reward_model
from rlhfkit.trainers.token_credit import StepCredit, response_char_spans
from rlhfkit.types import StepwiseRecord


def test_stepwise_bce_by_hand():
    # step 1: z = 0, y = 1: −log σ(0) = ln 2; step 2: z = ln 3, y = 0: −log σ(−ln 3) = −log(1/4) = ln 4.
    # mean = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2 ≈ 1.0397; both wrong (z = 0 is not > 0; ln 3 > 0 but y = 0)
    loss, stats = stepwise_bce_loss(torch.tensor([0.0, math.log(3)]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(1.5 * math.log(2), rel=1e-6) and stats["step_accuracy"].item() == 0.0
    # y = (1, 1): (ln 2 + ln(4/3)) / 2 ≈ 0.4904, the second right
    loss, stats = stepwise_bce_loss(torch.tensor([0.0, math.log(3)]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)
    assert stats["step_accuracy"].item() == 0.5


def test_step_ends_by_hand():
    # "ab cd\nef": tokens ab (0, 2), cd (3, 5), ef (6, 8); step 1 ends at 5 (before the "\n"), step 2 at 8
    assert join_steps(["ab cd", "ef"], "\n") == ("ab cd\nef", [5, 8])
    assert split_steps("ab cd\nef\n", "\n") == [("ab cd", 5), ("ef", 8)]  # no empty step after the last "\n"
    assert join_steps(["ab ", "cd"], "\n") == ("ab \ncd", [2, 6])  # a step's trailing space is not its own
    assert step_end_tokens([(0, 2), (3, 5), (6, 8)], [5, 8]) == [1, 2]
    # two prompt tokens in front (no score): the indices are those of the whole sequence
    assert step_end_tokens([(-1, -1), (-1, -1), (0, 2), (3, 5), (6, 8)], [5, 8]) == [3, 4]
    # truncated after "cd": step 2 has no token
    assert step_end_tokens([(0, 2), (3, 5)], [5, 8]) == [1, -1]
    # rewards on the step-end tokens, two steps on one token add up, −1 dropped
    dense = place_step_rewards([[1, 2], [0, 0, -1]], [[-0.5, -1.0], [0.25, 0.5, 9.0]], T=3)
    assert dense.tolist() == [[0.0, -0.5, -1.0], [0.75, 0.0, 0.0]]


def _prm(tiny_dir, separator="\n"):
    return ProcessRewardModel.on_backbone_of(load_reward_model(tiny_dir), separator)


def test_the_prm_reads_each_steps_last_token(tiny_dir):
    # decoder backbone: "the movie" + " " + "was good .\nthe cast is bad", word tokens
    # the(0) movie(1) | was(2) good(3) .(4) | the(5) cast(6) is(7) bad(8): steps end on tokens 4 and 8
    prm = _prm(tiny_dir)
    text, ends = join_steps(["was good .", "the cast is bad"], "\n")
    tensors, spans = prm._encode(["the movie"], [text])
    assert step_end_tokens(spans[0], ends) == [4, 8]
    logits = prm.step_logits_batch(["the movie"], [text], [ends])
    hidden = prm.backbone(**tensors, output_hidden_states=True).hidden_states[-1][0]  # (L, H)
    expected = prm.head(hidden[[4, 8]]).squeeze(-1)
    assert torch.allclose(logits, expected, atol=1e-6)


WORDS = "the movie was good great fine story cast is acting film ending".split()


def _rows(n, seed):
    """Completions of 1–3 steps of 3 words; a step may contain 'bad' and is then wrong, and the
    completion stops there (PRM800K's first-error convention)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        steps, labels = [], []
        for _ in range(rng.randint(1, 3)):
            words = [rng.choice(WORDS) for _ in range(3)]
            bad = rng.random() < 0.4
            if bad:
                words[rng.randrange(3)] = "bad"
            steps.append(" ".join(words))
            labels.append(not bad)
            if bad:
                break
        rows.append(StepwiseRecord(prompt="the review", completions=tuple(steps), labels=tuple(labels)))
    return rows


def test_a_tiny_prm_learns_to_mark_the_bad_step(tiny_dir):
    prm = _prm(tiny_dir)
    label = StepwiseLabels("\n")
    train, held = _rows(96, 0), _rows(32, 1)
    before = evaluate_records(prm, held, label)
    cfg = RewardTrainConfig(epochs=6, batch_size=8, learning_rate=3e-3, head_learning_rate=1e-2, seed=0)
    after = train_reward_model(prm, train, cfg, held, progress=False, label_type=label)
    assert after["loss"] < before["loss"] - 0.2, (before, after)
    assert after["step_accuracy"] > 0.9 and after["accuracy"] > 0.9, after


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_broken_stepwise_file_names_file_row_and_field(tmp_path, tiny_dir, capsys):
    good = {"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}
    cases = [({"prompt": "p", "completions": ["a", "b"], "labels": [True]}, "field 'labels': has 1 labels for 2 steps"),
             ({"prompt": "p", "completions": ["a"], "labels": [1]}, "field 'labels[0]': expected true or false"),
             ({"prompt": "p", "completions": ["a", ""], "labels": [True, True]}, "field 'completions[1]'"),
             ({"prompt": "p", "labels": [True]}, "field 'completions': missing")]
    for i, (bad, message) in enumerate(cases):
        path = _write(tmp_path / f"bad{i}.jsonl", [good, bad])
        with pytest.raises(DataError, match=rf"bad{i}.jsonl: row 2: {re.escape(message)}"):
            load_records(path, "stepwise")
    code = cli.main(["rm", "--kind", "stepwise", "--data", str(tmp_path / "bad0.jsonl"), "--backbone", tiny_dir,
                     "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and "row 2: field 'labels'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written, no model loaded


def test_prm_steps_land_on_the_policys_step_end_tokens(tiny_dir, tiny_tok):
    prm = _prm(tiny_dir, separator=".")
    reward = WeightedSum({"prm": ProcessRewardScorer(prm), "len": lambda p, c, **_: [1.0] * len(c)},
                         {"prm": 1.0, "len": 0.5})
    assert reward.has_steps
    ids = tiny_tok("good . the cast is bad", add_special_tokens=False)["input_ids"]
    # the decoded words joined by spaces: good(0, 4) .(5, 6) the(7, 10) cast(11, 15) is(16, 18) bad(19, 22)
    assert response_char_spans(tiny_tok, ids) == [(0, 4), (5, 6), (7, 10), (11, 15), (16, 18), (19, 22)]
    T = len(ids) + 2  # two pad columns
    ro = SimpleNamespace(prompts=["the movie"], responses=["good . the cast is bad"],
                         response_ids=torch.tensor([ids + [0, 0]]), response_mask=torch.tensor([[1] * len(ids) + [0, 0]]))
    credit = StepCredit(reward, tiny_tok)
    (score,) = credit.scores(ro)
    dense = credit.dense(ro, ro.response_mask.float(), torch.tensor([score]), None)
    # steps "good " (its last character ends at 4: token 0) and " the cast is bad" (ends at 22: token 5);
    # the length term on the last character (token 5)
    (step1, r1), (step2, r2) = [(e, r) for e, r in credit.last[0][:2]]
    assert (step1, step2) == (4, 22) and r1 < 0 and r2 < 0  # log P(correct) of each step
    assert dense[0, 0].item() == pytest.approx(r1) and dense[0, 5].item() == pytest.approx(r2 + 0.5)
    assert dense[0, [1, 2, 3, 4, 6, 7]].abs().sum().item() == 0.0
    assert dense.sum().item() == pytest.approx(score) and score == pytest.approx(r1 + r2 + 0.5)
    assert ProcessRewardScorer(prm)(["the movie"], ["good . the cast is bad"]) == [pytest.approx(r1 + r2)]


def test_rm_stepwise_then_rl_with_its_step_rewards(tmp_path, tiny_dir, capsys):
    data = _write(tmp_path / "steps.jsonl", [
        {"prompt": r.prompt, "completions": list(r.completions), "labels": list(r.labels)} for r in _rows(12, 2)])
    assert cli.main(["rm", "--kind", "stepwise", "--data", data, "--backbone", tiny_dir, "--epochs", "1",
                     "--output-dir", str(tmp_path / "runs"), "--run-name", "prm"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "step accuracy" in out and "process reward model" in out
    folder = tmp_path / "runs" / "prm" / "reward_model"
    assert isinstance(load_reward_model(str(folder)), ProcessRewardModel)
    code = cli.main(["rl", "--algo", "reinforce", "--task", "sentiment", "--policy", tiny_dir, "--reward", str(folder),
                     "--reward-granularity", "token", "--steps", "2", "--batch-size", "4", "--mini-batch-size", "4",
                     "--max-new-tokens", "4", "--eval-prompts", "4", "--precision", "fp32",
                     "--output-dir", str(tmp_path / "runs"), "--run-name", "rl"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "runs" / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("stage") == "rl"]
    assert len(steps) == 2 and all("token_credit/steps_mean" in r and r["reward/score_mean"] <= 0 for r in steps)
