"""`rlhfkit eval ...` and `rlhfkit report` end to end on tiny models saved to disk."""

import json

import pytest

from rlhfkit.cli import main


@pytest.fixture()
def models(tmp_path, tiny_tok):
    from rlhfkit.models.tiny import tiny_causal_lm

    paths = []
    for arch, seed in (("llama", 0), ("gpt2", 1)):
        path = tmp_path / f"tiny-{arch}"
        tiny_causal_lm(arch, vocab_size=len(tiny_tok), seed=seed).save_pretrained(path)
        tiny_tok.save_pretrained(path)
        paths.append(str(path))
    return paths


@pytest.fixture()
def prompts(tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["the movie was", "i loved it", "the ending is", "what a"]))
    return str(f)


def _sample(tmp_path, models, prompts, *extra):
    return main(["eval", "sample", "--policies", f"llama={models[0]},gpt2={models[1]},best_of_n:{models[0]}:4:vader",
                 "--prompts", prompts, "--samples-per-prompt", "2", "--max-new-tokens", "5", "--chat", "no",
                 "--output-dir", str(tmp_path), "--run-name", "ev", "--precision", "fp32", *extra])


def test_sample_winrate_leaderboard_metrics_and_report(tmp_path, models, prompts, capsys):
    assert _sample(tmp_path, models, prompts) == 0
    run = tmp_path / "ev"
    rows = [json.loads(line) for line in (run / "samples" / "best_of_4.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["prompt"] for r in rows} == {"the movie was", "i loved it", "the ending is", "what a"}
    first = (run / "samples" / "llama.jsonl").read_text()
    capsys.readouterr()
    assert _sample(tmp_path, models, prompts) == 0  # same settings: the cache answers, nothing is resampled
    assert capsys.readouterr().out.count("(cached)") == 3
    assert (run / "samples" / "llama.jsonl").read_text() == first

    assert main(["eval", "winrate", "--run-dir", str(run), "--a", "best_of_4", "--b", "llama", "--judge", "vader",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    assert {"win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "n", "lc_win_rate"} <= set(result)
    assert result["n"] == 8 and result["wins"] + result["ties"] + result["losses"] == 8
    assert result["win_rate"] == pytest.approx((result["wins"] + 0.5 * result["ties"]) / 8)
    assert result["ci_low"] <= result["win_rate"] <= result["ci_high"]

    assert main(["eval", "leaderboard", "--run-dir", str(run), "--judge", "vader", "--bootstrap", "50", "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert set(board["ratings"]) == {"llama", "gpt2", "best_of_4"} and set(board["elo"]) == set(board["ratings"])
    assert sum(r["rating"] for r in board["ratings"].values()) / 3 == pytest.approx(1000)
    assert all(r["battles"] == 16 for r in board["ratings"].values())  # 2 opponents × 8 aligned samples
    battles = (run / "battles.jsonl").read_text().splitlines()
    assert len(battles) == 3 * 8

    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"prompt": p, "reference": "a great film"}) + "\n"
                            for p in ["the movie was", "i loved it", "the ending is", "what a"]))
    assert main(["eval", "metrics", "--run-dir", str(run), "--samples", "llama", "--references", str(refs),
                 "--reference-model", models[0], "--task", "sentiment", "--json", "--precision", "fp32"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "distinct_1", "distinct_2", "distinct_3", "self_bleu",
                "words_mean", "perplexity", "token_entropy_nats", "gold"):
        assert key in metrics, key
    assert metrics["perplexity"] > 1 and 0 <= metrics["rougeL"] <= 1

    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["policies"]) == {"llama", "gpt2", "best_of_4"} and summary["win_rates"][0]["a"] == "best_of_4"
    assert "leaderboard" in summary and "llama" in summary["metrics"]
    page = (run / "report.html").read_text()
    assert "Win rates" in page and "Leaderboard" in page and "Text metrics" in page and "data:image/png;base64," in page
    assert main(["report", str(run)]) == 0


def test_winrate_from_files_with_column_and_policy_selectors(tmp_path, capsys):
    qs = tmp_path / "samples.jsonl"
    qs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "p1", "base": "awful", "final": "great"},
        {"prompt": "p2", "base": "fine", "final": "fine"},
        {"prompt": "p3", "base": "good", "final": "bad"},
        {"prompt": "p4", "base": "sad", "final": "wonderful"},
    ]))
    assert main(["eval", "winrate", "--a", f"{qs}#final", "--b", f"{qs}#base", "--judge", "vader", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # vader: great > awful, fine = fine (tie), bad < good, wonderful > sad → (1 + ½ + 0 + 1)/4 = 0.625
    assert (r["wins"], r["ties"], r["losses"], r["win_rate"]) == (2, 1, 1, 0.625)
    compare = tmp_path / "compare.jsonl"
    compare.write_text("".join(json.dumps({"method": m, "prompt": "p", "response": t}) + "\n"
                               for m, t in [("base", "terrible"), ("ppo", "excellent")]))
    assert main(["eval", "winrate", "--a", f"{compare}#ppo", "--b", f"{compare}#base", "--judge", "vader", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["win_rate"] == 1.0


def test_eval_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"prompt": "p", "response": "ok"}\n{"prompt": "q"}\n')
    assert main(["eval", "winrate", "--a", str(bad), "--b", str(bad), "--judge", "vader"]) == 2
    assert "s.jsonl: row 2: field 'response': missing" in capsys.readouterr().err
    assert main(["eval", "winrate", "--a", str(tmp_path / "nope.jsonl"), "--b", str(bad)]) == 2
    assert "sample file" in capsys.readouterr().err
    assert main(["eval", "leaderboard", "--run-dir", str(tmp_path), "--battles", str(bad)]) == 2
    assert "exactly one of --run-dir" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "response": "ok"}\n')
    assert main(["eval", "winrate", "--a", str(good), "--b", str(good), "--judge", "nonsense"]) == 2
    assert "rlhfkit: error: reward 'nonsense'" in capsys.readouterr().err


def test_leaderboard_from_a_battles_file(tmp_path, capsys):
    f = tmp_path / "battles.jsonl"
    rows = [("A", "B", "a")] * 3 + [("A", "B", "b")] + [("B", "C", "a")] * 2 + [("B", "C", "tie"), ("B", "C", "b")]
    f.write_text("".join(json.dumps({"model_a": a, "model_b": b, "winner": w}) + "\n" for a, b, w in rows))
    assert main(["eval", "leaderboard", "--battles", str(f), "--bootstrap", "100", "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert list(board["ratings"]) == ["A", "B", "C"]
    # a weak prior (l2 = 1e-4) is the only difference from the closed form 1156.8 / 966.0 / 877.2
    assert board["ratings"]["A"]["rating"] == pytest.approx(1156.8, abs=0.5)
    assert board["ratings"]["C"]["rating"] == pytest.approx(877.2, abs=0.5)
    assert set(board["ratings"]["B"]) == {"rating", "ci_low", "ci_high", "battles"}
