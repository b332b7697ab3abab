"""The closed loops (issue 14): best-of-n output as SFT data, `rlhfkit rft`, `rlhfkit iterate`
(rounds, resume, labels per round), `rlhfkit pareto` and its dominance on hand-made points."""

from __future__ import annotations

import json
import threading
import time

import pytest

from rlhfkit.cli import main
from rlhfkit.evaluation.pareto import dominates, non_dominated, weight_grid

TINY_RL = ["--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2", "--max-new-tokens", "4",
           "--precision", "fp32"]


def _iterate_args(tiny_dir, out, rounds, *extra):
    return ["iterate", "--policy", tiny_dir, "--reward-backbone", tiny_dir, "--output-dir", str(out), "--run-name", "it",
            "--rounds", str(rounds), "--rm-prompts", "12", "--rm-epochs", "1", "--ppo-steps", "2", "--eval-prompts", "4",
            "--eval-samples-per-prompt", "1", *TINY_RL, *extra]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- Pareto dominance: pure functions on points worked out by hand ---------------------------------


def test_dominance_on_hand_made_points():
    # maximise both: a = (1, 1); b = (2, 0.5) trades x for y; c = (0.5, 0.5) is below a in both;
    # d = (1, 1) equals a (neither dominates the other, both stay); e = (2, 0.4) is b with less y
    # (b dominates it); f = (0, 2) has the best y.
    points = [(1, 1), (2, 0.5), (0.5, 0.5), (1, 1), (2, 0.4), (0, 2)]
    assert non_dominated(points) == [True, True, False, True, False, True]
    assert dominates((2, 0.5), (2, 0.4)) and not dominates((1, 1), (1, 1)) and not dominates((2, 0.5), (1, 1))
    # three objectives: (1, 1, 0) and (0, 0, 1) are incomparable; (0.5, 0.5, 0) lies below the first
    assert non_dominated([(1, 1, 0), (0, 0, 1), (0.5, 0.5, 0)]) == [True, True, False]
    with pytest.raises(ValueError):
        dominates((1, 2), (1, 2, 3))


def test_weight_grid_is_the_simplex_grid():
    assert weight_grid(2, 5) == [(0, 1), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1, 0)]
    # three objectives in halves: C(2 + 2, 2) = 6 vectors, each summing to 1
    assert weight_grid(3, 3) == [(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)]


# --- rejection-sampling fine-tuning -------------------------------------------------------------


def test_best_of_n_output_is_sft_data(tmp_path, tiny_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"the movie was {w}"}) + "\n" for w in ("good", "bad", "fun", "dull")))
    best = tmp_path / "best.jsonl"
    assert main(["generate", "--model", tiny_dir, "--prompts", str(prompts), "--output", str(best), "--policy", "best_of_n",
                 "--n", "4", "--reward", "length", "--max-new-tokens", "6", "--chat", "no"]) == 0
    rows = _rows(best)
    assert len(rows) == 4 and all(r["completion"] == r["response"] for r in rows)
    assert main(["sft", "--data", str(best), "--model", tiny_dir, "--max-steps", "2", "--batch-size", "2",
                 "--micro-batch-size", "2", "--output-dir", str(tmp_path), "--run-name", "sft", "--chat", "no"]) == 0
    summary = json.loads((tmp_path / "sft" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["data"]["train"]["examples"] == 4


def test_rft_improves_the_reward_on_a_tiny_task(tmp_path, tiny_dir):
    """Learning test: the reward is the share of the word "good" in the response; two rounds of
    best-of-8 → SFT raise it on held-out prompts (the paired 95% CI of last round − base > 0)."""
    reward = tmp_path / "good.py"
    reward.write_text("def good(prompts, completions, **_):\n"
                      "    return [c.split().count('good') / max(len(c.split()), 1) for c in completions]\n")
    assert main(["rft", "--policy", tiny_dir, "--output-dir", str(tmp_path), "--reward", f"{reward}:good",
                 "--rounds", "2", "--n", "8", "--prompts-per-round", "32", "--eval-prompts", "32",
                 "--max-new-tokens", "6", "--sft-learning-rate", "1e-2", "--sft-epochs", "2", "--precision", "fp32"]) == 0
    summary = json.loads((tmp_path / "rft" / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    first = summary["rounds"][0]
    assert first["winner_reward_mean"] > first["candidate_reward_mean"]  # the winners are the best of their group
    gain = summary["rounds"][-1]["evaluation"]["reward"]["improvement"]
    assert gain["ci_low"] > 0, gain
    assert (tmp_path / "rft" / "checkpoints" / "final" / "config.json").exists()
    assert len(_rows(tmp_path / "rft" / "winners_round2.jsonl")) == 32


# --- iterated online RLHF -----------------------------------------------------------------------


def test_iterate_two_rounds_resume_and_the_second_rm_sees_the_new_labels(tmp_path, tiny_dir, capsys):
    out = tmp_path / "runs"
    assert main(_iterate_args(tiny_dir, out, 1)) == 0
    run = out / "it"
    first = json.loads((run / "summary.json").read_text())
    metrics_after_one = (run / "metrics.jsonl").read_text()
    # a stop between rounds, then the run goes on for a second round
    assert main(_iterate_args(tiny_dir, out, 2, "--resume")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert summary["rounds"][0] == first["rounds"][0]  # round 1 kept as it was, not repeated
    metrics = (run / "metrics.jsonl").read_text()
    assert metrics.startswith(metrics_after_one)  # round 1's rows once, round 2's appended
    rows = [json.loads(line) for line in metrics.splitlines()]
    assert sum(r.get("stage") == "ppo_round1" for r in rows) == 2 and sum(r.get("stage") == "ppo_round2" for r in rows) == 2
    assert [r["step"] for r in rows if r.get("stage") == "ppo_round2"] == [2, 3]  # PPO continued from step 2

    # the labels: each round's file; quickstart's split holds out max(1, int(0.2 · pairs)) of them
    counts = [len(_rows(run / f"labels_round{r}.jsonl")) for r in (1, 2)]
    train = [c - max(1, int(c * 0.2)) for c in counts]
    assert summary["rounds"][0]["reward_model"]["train_pairs"] == train[0]
    assert summary["rounds"][1]["reward_model"]["train_pairs"] == train[0] + train[1]  # the new labels are in
    assert summary["rounds"][1]["labels_used"] == train[0] + train[1]
    assert summary["rounds"][0]["previous_rm_on_fresh"] is None  # no reward model before round 1
    assert 0 <= summary["rounds"][1]["previous_rm_on_fresh"]["accuracy_vs_labels"] <= 1
    for r in summary["rounds"]:
        for key in ("gold", "proxy"):
            assert r[key]["final"]["ci_low"] <= r[key]["final"]["mean"] <= r[key]["final"]["ci_high"]
        assert "mean" in r["kl_to_initial"]

    # everything finished: a further resume redoes nothing
    capsys.readouterr()
    assert main(_iterate_args(tiny_dir, out, 2, "--resume")) == 0
    assert (run / "metrics.jsonl").read_text() == metrics
    assert "resuming: finished stages kept" in capsys.readouterr().out
    assert (run / "report.html").exists() and (run / "checkpoints" / "final" / "adapter_config.json").exists()


def test_iterate_previous_anchor_waits_for_people_in_the_feedback_app(tmp_path, tiny_dir, capsys):
    """--labeler feedback: the round imports its pairs into the app's database and waits for the
    labels, which an annotator gives meanwhile (here a thread answering through the store, as the
    page's API does); --anchor previous runs the KL against the round's starting policy."""
    from rlhfkit.feedback.store import FeedbackStore

    db = tmp_path / "feedback.sqlite"
    store = FeedbackStore(db)
    alice = store.annotator_for_token(store.add_annotator("alice"))
    done = threading.Event()

    def annotate():
        answered = set()
        while not done.is_set() and len(answered) < 4:
            for entry in list(store._db().execute("SELECT id FROM items")):
                if entry[0] not in answered and len(answered) < 4:
                    store.submit(alice, entry[0], f"s{entry[0]}", {"preferred": 0})
                    answered.add(entry[0])
            time.sleep(0.05)

    worker = threading.Thread(target=annotate)
    worker.start()
    try:
        code = main(_iterate_args(tiny_dir, tmp_path / "runs", 1, "--labeler", "feedback", "--feedback-db", str(db),
                                  "--labels-per-round", "4", "--poll-seconds", "0.1", "--anchor", "previous"))
    finally:
        done.set()
        worker.join()
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "it" / "summary.json").read_text())
    assert summary["anchor"] == "previous" and summary["rounds"][0]["new_labels"] == 4
    assert "round 1: 4/4 labels" in capsys.readouterr().err


# --- Pareto sweep ---------------------------------------------------------------------------------


def test_pareto_best_of_n_sweep_writes_the_front_and_its_plot(tmp_path, tiny_dir):
    assert main(["pareto", "--policy", tiny_dir, "--output-dir", str(tmp_path), "--objectives", "gold,length=-1",
                 "--n", "4", "--eval-prompts", "6", "--max-new-tokens", "6", "--precision", "fp32"]) == 0
    result = json.loads((tmp_path / "pareto" / "pareto.json").read_text())
    assert [p["weights"]["gold"] for p in result["points"]] == [0, 0.25, 0.5, 0.75, 1]
    means = [[p["objectives"][o]["mean"] for o in ("gold", "length=-1")] for p in result["points"]]
    assert [p["non_dominated"] for p in result["points"]] == non_dominated(means)
    # the mix that weighs only gold picks each prompt's best-gold candidate: no mix beats its gold
    assert result["points"][-1]["objectives"]["gold"]["mean"] == max(m[0] for m in means)
    assert (tmp_path / "pareto" / "pareto.png").stat().st_size > 0
    assert "Pareto" in (tmp_path / "pareto" / "report.html").read_text()


def test_pareto_needs_two_objectives(tmp_path, capsys):
    assert main(["pareto", "--objectives", "gold", "--output-dir", str(tmp_path)]) == 2
    assert "at least two rewards" in capsys.readouterr().err
