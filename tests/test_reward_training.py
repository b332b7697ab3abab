"""Reward-model training from every kind of feedback on a tiny random decoder (last-token
pooling), and `rlhfkit rm` as a user runs it.

The synthetic preference: a response containing "good" beats one containing "bad" (the word at a
random place among neutral words), so held-out accuracy near 1 means the model learned it.
"""

import json
import random

import pytest
import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.schemas import DataError
from rlhfkit.models import load_reward_model
from rlhfkit.models.heads import RewardEnsemble
from rlhfkit.pipelines.rm import split_by_prompt, with_members
from rlhfkit.trainers.config import RewardTrainConfig
from rlhfkit.trainers.reward import (
    RatingLabels,
    evaluate_pairs,
    evaluate_records,
    label_type_for,
    train_reward_model,
)
from rlhfkit.types import (
    PairwiseRecord,
    RankingRecord,
    RatingRecord,
    RewriteRecord,
    ThumbsRecord,
)

NEUTRAL = "the movie was a film story plot cast ending one two three time".split()
FAST = RewardTrainConfig(epochs=4, batch_size=8, learning_rate=3e-3, head_learning_rate=1e-2, seed=0)


class Synthetic:
    """Deterministic feedback of every kind. Prompts end with a space: a decoder RM reads
    prompt + response as one text."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def prompt(self) -> str:
        return " ".join(self.rng.sample(NEUTRAL, 2)) + " "

    def response(self, marker: str) -> str:
        words = self.rng.sample(NEUTRAL, self.rng.randint(2, 4))
        words.insert(self.rng.randint(0, len(words)), marker)
        return " ".join(words)

    def records(self, kind: str, n: int) -> list:
        r, out = self.response, []
        for _ in range(n if kind in ("pairwise", "rewrite", "ranking") else n // 2):
            p = self.prompt()
            out += {
                "pairwise": lambda: [PairwiseRecord(p, r("good"), r("bad"))],
                "rewrite": lambda: [RewriteRecord(p, original=r("bad"), rewrite=r("good"))],
                "ranking": lambda: [RankingRecord(p, (r("good") + " good", r("good"), r("fun"), r("bad")))],
                "rating": lambda: [RatingRecord(p, r("good"), 9.0), RatingRecord(p, r("bad"), 2.0)],
                "thumbs": lambda: [ThumbsRecord(p, r("good"), True), ThumbsRecord(p, r("bad"), False)],
            }[kind]()
        return out


@pytest.fixture()
def tiny_dir(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


# --- learning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pairwise", "ranking", "rating", "thumbs", "rewrite"])
def test_each_kind_learns_the_preference(kind, tiny_dir):
    data = Synthetic(seed=1)
    train, held_out = data.records(kind, 128), data.records(kind, 40)
    rm = load_reward_model(str(tiny_dir))
    label = label_type_for(train)
    assert label.kind == kind
    label.fit(train)
    before = evaluate_records(rm, held_out, label)
    rows = []
    after = train_reward_model(rm, train, FAST, held_out, logger=rows.append, progress=False)
    assert after["accuracy"] >= 0.9 > before["accuracy"]
    assert after["loss"] < before["loss"]
    assert after["pairs"] >= 20 and after["accuracy_scope"] == "same_prompt"
    steps = [r for r in rows if r["stage"] == "reward_model"]
    assert len(steps) == FAST.epochs * 16 and all(r["loss"] == r["loss"] for r in steps)
    assert [r["epoch"] for r in rows if r["stage"] == "reward_model_eval"] == [0, 1, 2, 3]


def test_pairwise_api_of_the_quickstart_is_unchanged(tiny_dir):
    data = Synthetic(seed=2)
    train, held_out = data.records("pairwise", 64), data.records("pairwise", 20)
    rm = load_reward_model(str(tiny_dir))
    metrics = train_reward_model(rm, train, FAST, held_out, None, False)
    pairs = evaluate_pairs(rm, held_out)
    assert pairs["accuracy"] == pytest.approx(metrics["accuracy"]) and pairs["loss"] == pytest.approx(metrics["loss"])
    # without held-out records: the last epoch's mean training loss
    assert set(train_reward_model(rm, train, RewardTrainConfig(epochs=1), progress=False)) >= {"loss", "accuracy"}


def test_pointwise_accuracy_falls_back_to_pairs_across_prompts(tiny_dir):
    rm = load_reward_model(str(tiny_dir))
    held_out = [ThumbsRecord(f"{w} ", "good", True) for w in ("one", "two")] + [ThumbsRecord("three ", "bad", False)]
    metrics = evaluate_records(rm, held_out)
    assert metrics["accuracy_scope"] == "all_pairs" and metrics["pairs"] == 2  # each up vs the down


def test_training_on_the_same_seed_is_deterministic(tiny_dir):
    data = Synthetic(seed=3)
    train = data.records("rating", 32)
    scores = []
    for _ in range(2):
        torch.manual_seed(0)
        rm = load_reward_model(str(tiny_dir))
        train_reward_model(rm, train, RewardTrainConfig(epochs=1, batch_size=8, learning_rate=1e-3), progress=False)
        scores.append(rm.score(["one "], ["good film"]))
    assert torch.equal(scores[0], scores[1])


# --- ensembles and centring --------------------------------------------------------------------------


def test_ensemble_of_identical_heads_equals_the_single_model(tiny_dir):
    rm = load_reward_model(str(tiny_dir))
    ensemble = with_members(rm, 3)
    with torch.no_grad():
        ensemble.head.weight.copy_(rm.head.weight.repeat(3, 1))
        ensemble.head.bias.copy_(rm.head.bias.repeat(3))
    prompts, responses = ["one ", "two "], ["good film", "bad plot"]
    assert torch.allclose(ensemble.score(prompts, responses), rm.score(prompts, responses), atol=1e-6)
    batch = label_type_for([PairwiseRecord("one ", "good", "bad")]).to_batch([PairwiseRecord("one ", "good", "bad")])
    members = ensemble.member_scores_batch(batch.prompts, batch.responses)  # (2, 3)
    single = rm.member_scores_batch(batch.prompts, batch.responses)  # (2, 1)
    from rlhfkit.trainers.reward import PairwiseLabels

    assert PairwiseLabels().loss(members, batch)[0].item() == pytest.approx(PairwiseLabels().loss(single, batch)[0].item(), abs=1e-6)


def test_ensemble_trains_reports_disagreement_centres_and_round_trips(tiny_dir, tmp_path):
    data = Synthetic(seed=4)
    train, held_out = data.records("pairwise", 96), data.records("pairwise", 20)
    ensemble = with_members(load_reward_model(str(tiny_dir)), 3, uncertainty_penalty=0.5)
    assert isinstance(ensemble, RewardEnsemble) and ensemble.members == 3
    metrics = train_reward_model(ensemble, train, FAST, held_out, progress=False)
    assert metrics["accuracy"] >= 0.9 and metrics["member_accuracy_mean"] >= 0.9
    assert metrics["ensemble_std_mean"] > 0
    # centring: every member and the penalised score average 0 on the references
    prompts, responses = [p.prompt for p in train], [p.chosen for p in train]
    ensemble.center(prompts, responses)
    members = ensemble.member_scores(prompts, responses)  # (N, 3)
    assert members.mean(0).abs().max().item() < 1e-4
    assert abs(ensemble.score(prompts, responses).mean().item()) < 1e-4
    # the score is mean − λ·std across members, less the constant that centres it
    mean, std = members.mean(1), members.std(1, unbiased=False)
    penalised = mean - 0.5 * std
    assert torch.allclose(ensemble.score(prompts, responses), penalised - penalised.mean(), atol=1e-5)
    ensemble.save(tmp_path / "ens")
    again = load_reward_model(str(tmp_path / "ens"))
    assert isinstance(again, RewardEnsemble) and again.uncertainty_penalty == 0.5
    assert torch.allclose(again.member_scores(prompts, responses), members, atol=1e-5)
    with pytest.raises(ConfigError, match="--ensemble 3"):
        with_members(again, 2)


# --- errors and helpers ----------------------------------------------------------------------------


def test_bad_training_input_says_what_is_wrong():
    with pytest.raises(ConfigError, match="one kind of feedback at a time"):
        label_type_for([PairwiseRecord("p", "a", "b"), RatingRecord("p", "a", 3.0)])
    with pytest.raises(ConfigError, match="no feedback records"):
        label_type_for([])
    with pytest.raises(DataError, match="all 2 training ratings equal 5.0"):
        RatingLabels().fit([RatingRecord("p", "a", 5.0), RatingRecord("q", "b", 5.0)])
    with pytest.raises(DataError, match="thumbs are up"):
        label_type_for([ThumbsRecord("p", "a", True)]).fit([ThumbsRecord("p", "a", True)])


def test_split_by_prompt_keeps_prompts_whole():
    records = [RatingRecord(f"p{i // 3}", f"r{i}", float(i)) for i in range(30)]  # 10 prompts × 3
    train, held = split_by_prompt(records, 0.2, seed=0)
    assert len(train) + len(held) == 30 and len(held) == 6
    assert not {r.prompt for r in train} & {r.prompt for r in held}
    assert split_by_prompt(records, 0.0) == (records, [])
    one_prompt = [RatingRecord("", f"r{i}", float(i)) for i in range(10)]
    assert [len(x) for x in split_by_prompt(one_prompt, 0.3)] == [7, 3]


# --- the CLI -------------------------------------------------------------------------------------------


@pytest.fixture()
def rlhfkit(monkeypatch):
    """`rlhfkit` as a user runs it (registers `rm` if cli.py does not list it yet)."""
    from rlhfkit import cli

    if "rlhfkit.cli.rm" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "rlhfkit.cli.rm"])
    return cli.main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(records):
    import dataclasses

    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(r).items() if v is not None}
            for r in records]


FAST_FLAGS = ["--epochs", "3", "--batch-size", "8", "--learning-rate", "3e-3", "--head-learning-rate", "1e-2"]


def test_cli_help(rlhfkit, capsys):
    with pytest.raises(SystemExit) as exc:
        rlhfkit(["rm", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--kind {pairwise,ranking,rating,thumbs,rewrite,stepwise}", "--eval-fraction", "--ensemble", "--center-on",
                 "--uncertainty-penalty", "all C(K,2) pairs"):
        assert text in out, text


def test_cli_trains_an_ensemble_and_writes_the_run_folder(rlhfkit, tiny_dir, tmp_path, capsys):
    data = Synthetic(seed=5)
    train = _write(tmp_path / "prefs.jsonl", _rows(data.records("pairwise", 80)))
    references = [{"prompt": data.prompt(), "response": data.response(w)} for w in ("good", "bad", "fun") * 4]
    refs = _write(tmp_path / "samples.jsonl", references)
    args = ["rm", "--data", str(train), "--kind", "pairwise", "--eval-fraction", "0.25", "--backbone", str(tiny_dir),
            "--ensemble", "2", "--center-on", str(refs), "--output-dir", str(tmp_path / "runs"), "--run-name", "ens",
            *FAST_FLAGS]
    assert rlhfkit(args) == 0
    out = capsys.readouterr().out
    assert "held-out pairwise accuracy" in out and "ensemble of 2 heads" in out
    assert out.count("training rows") == 1  # the split is printed once
    assert f"centred: the 12 responses in {refs} score 0 on average" in out
    run = tmp_path / "runs" / "ens"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "reward_model/head.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["records"]["train"] + summary["records"]["eval"] == 80 and summary["records"]["eval"] >= 16
    assert summary["eval"]["accuracy"] >= 0.9 and summary["eval"]["ensemble_std_mean"] > 0
    assert summary["centering"]["on"] == str(refs) and summary["centering"]["responses"] == 12
    rm = load_reward_model(str(run / "reward_model"))
    assert isinstance(rm, RewardEnsemble)
    ref_scores = rm.score([r["prompt"] for r in references], [r["response"] for r in references])
    assert abs(ref_scores.mean().item()) < 1e-4
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"reward_model", "reward_model_eval", "reward_model_final"} <= {m["stage"] for m in metrics}
    # the same run folder again needs --overwrite
    assert rlhfkit(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_rating_run_centres_on_the_training_responses(rlhfkit, tiny_dir, tmp_path, capsys):
    rows = _rows(Synthetic(seed=6).records("rating", 64))
    rows.insert(3, {"prompt": "one ", "response": "good"})  # no rating: skipped and counted
    train = _write(tmp_path / "ratings.jsonl", rows)
    assert rlhfkit(["rm", "--data", str(train), "--kind", "rating", "--backbone", str(tiny_dir), "--skip-invalid",
                    "--output-dir", str(tmp_path), "--run-name", "r", "--json", *FAST_FLAGS]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"]["skipped_train"] == 1
    assert summary["label"]["rating_std"] > 0 and summary["eval"]["accuracy"] >= 0.8
    assert summary["centering"]["on"] == "training responses"
    train_rows = [r for i, r in enumerate(rows) if i != 3]
    rm = load_reward_model(str(tmp_path / "r" / "reward_model"))
    scores = rm.score([r["prompt"] for r in train_rows], [r["response"] for r in train_rows])
    # centred on the training part only (the held-out tenth is not a reference): close to 0 overall
    assert abs(scores.mean().item()) < 0.5


def test_cli_run_folder_is_named_after_the_kind(rlhfkit, tiny_dir, tmp_path, capsys):
    import re

    train = _write(tmp_path / "thumbs.jsonl", _rows(Synthetic(seed=7).records("thumbs", 16)))
    assert rlhfkit(["rm", "--data", str(train), "--kind", "thumbs", "--backbone", str(tiny_dir), "--epochs", "1",
                    "--eval-fraction", "0", "--output-dir", str(tmp_path / "runs")]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"rm-thumbs-\d{8}-\d{6}", folder.name), folder.name  # like sft-…, <loss>-…, <algo>-…
    # nothing held out: each of the 16 thumbs rows gives one reference response
    assert "centred: the 16 training responses score 0 on average" in capsys.readouterr().out


def test_cli_rejects_a_wrong_kind_and_broken_files(rlhfkit, tiny_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rlhfkit(["rm", "--data", "x.jsonl", "--kind", "votes"])
    assert exc.value.code == 2 and "invalid choice: 'votes'" in capsys.readouterr().err
    assert rlhfkit(["rm", "--kind", "pairwise"]) == 2
    assert "--data is required" in capsys.readouterr().err
    broken = _write(tmp_path / "broken.jsonl", [{"prompt": "p ", "chosen": "good", "rejected": "bad"},
                                                {"prompt": "p ", "chosen": "good"}])
    common = ["--backbone", str(tiny_dir), "--output-dir", str(tmp_path / "runs")]
    assert rlhfkit(["rm", "--data", str(broken), "--kind", "pairwise", *common]) == 2
    assert "broken.jsonl: row 2: field 'rejected': missing" in capsys.readouterr().err
    assert rlhfkit(["rm", "--data", str(broken), "--kind", "ranking", *common]) == 2
    assert "broken.jsonl: row 1: field 'responses': missing" in capsys.readouterr().err
    ok = _write(tmp_path / "ok.jsonl", [{"prompt": "p ", "chosen": "good", "rejected": "bad"}] * 4)
    bad_refs = _write(tmp_path / "refs.jsonl", [{"prompt": "p ", "response": "fine"}, {"prompt": "p "}])
    assert rlhfkit(["rm", "--data", str(ok), "--center-on", str(bad_refs), *common]) == 2
    assert "refs.jsonl: row 2: field 'response': missing" in capsys.readouterr().err
    assert rlhfkit(["rm", "--data", str(ok), "--uncertainty-penalty", "1", *common]) == 2
    assert "needs an ensemble" in capsys.readouterr().err
    assert rlhfkit(["rm", "--data", str(ok), "--backbone", str(tmp_path / "nothing"), "--output-dir", str(tmp_path)]) == 2
    assert "is neither" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jsonl", "ok.jsonl", "refs.jsonl", "tiny"]  # no run folders
