"""`rlhfkit overopt fit` on points files, and `rlhfkit overopt run` end to end on a tiny model."""

import json
import math

import pytest

from rlhfkit.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_fit_prints_the_fit_of_the_users_points(tmp_path, capsys):
    # R(d) = d(1 − 0.5d) + 0.2 (the initial policy scores 0.2): at d = 0, 1, 1.5, 2 →
    # 0.2, 0.7, 0.575, 0.2; recentring on the d = 0 row removes the 0.2. One point given as kl = 1.
    points = _write(tmp_path / "p.jsonl", [{"d": 0, "score": 0.2}, {"kl": 1.0, "score": 0.7},
                                           {"d": 1.5, "score": 0.575}, {"d": 2.0, "score": 0.2}])
    assert main(["overopt", "fit", "--points", points, "--form", "bon", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"alpha", "beta", "r2", "d_peak", "score_peak"} <= set(out)
    # α = 1, β = 0.5 exactly; peak d* = α/(2β) = 1, R* = α²/(4β) = 0.5
    assert out["alpha"] == pytest.approx(1.0) and out["beta"] == pytest.approx(0.5) and out["r2"] == pytest.approx(1.0)
    assert out["d_peak"] == pytest.approx(1.0) and out["score_peak"] == pytest.approx(0.5)
    assert out["recentred_by"] == pytest.approx(0.2)
    assert main(["overopt", "fit", "--points", points, "--form", "rl"]) == 0
    assert "R(d) = d(α − β log d) on 4 points" in capsys.readouterr().out


@pytest.mark.parametrize("row, field", [
    ({"d": 1.0}, "score"),
    ({"score": 0.3}, "d"),
    ({"d": -1.0, "score": 0.3}, "d"),
    ({"kl": "much", "score": 0.3}, "kl"),
    ({"d": 1.0, "score": float("nan")}, "score"),
])
def test_fit_names_the_bad_row_and_field(tmp_path, capsys, row, field):
    points = tmp_path / "bad.jsonl"
    points.write_text(json.dumps({"d": 0.5, "score": 0.1}) + "\n" + json.dumps(row) + "\n")
    assert main(["overopt", "fit", "--points", str(points), "--form", "bon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rlhfkit: error: {points}: row 2: field '{field}'"), err


def test_fit_refuses_too_few_points_and_a_missing_file(tmp_path, capsys):
    one = _write(tmp_path / "one.jsonl", [{"d": 1.0, "score": 0.3}])
    assert main(["overopt", "fit", "--points", one, "--form", "bon"]) == 2
    assert "1 point(s); a fit needs at least two" in capsys.readouterr().err
    assert main(["overopt", "fit", "--points", str(tmp_path / "none.jsonl"), "--form", "bon"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_overopt_run_end_to_end_on_a_tiny_model(tmp_path, tiny_dir, capsys):
    """Labels from the gold scorer, two proxies (the tiny decoder as RM backbone), the best-of-n
    sweep from one pool, RL at two β against the smaller proxy, fits, overopt.json, the plot and
    the report section."""
    args = ["overopt", "run", "--policy", tiny_dir, "--reward-backbone", tiny_dir, "--label-prompts", "8",
            "--label-samples-per-prompt", "3", "--rm-eval-fraction", "0.25", "--label-counts", "12,4", "--bon-prompts", "3",
            "--bon-pool", "8", "--bon-extrapolate-n", "4", "--rl-steps", "4", "--rl-eval-every", "2", "--rl-eval-prompts", "4",
            "--batch-size", "4", "--mini-batch-size", "4", "--max-new-tokens", "4", "--learning-rate", "0.05",
            "--rl-kl-coefs", "0,0.1", "--rl-proxies", "4", "--precision", "fp32", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    run = tmp_path / "overopt"
    result = json.loads((run / "overopt.json").read_text())
    # 6 training prompts × C(3, 2) = 18 pairs at most (ties left out); proxies sorted by label count
    assert result["labels"]["train_pairs"] + result["labels"]["ties_left_out"] + result["labels"]["held_out_pairs"] == 8 * 3
    assert [p["labels"] for p in result["proxies"]] == [4, 12]
    bon = result["bon"]
    assert bon["ns"] == [1, 2, 4, 8] and [c["proxy_labels"] for c in bon["curves"]] == [4, 12]
    for curve in bon["curves"]:
        ds = [p["d"] for p in curve["points"]]
        assert ds[0] == 0.0 and ds[-1] == pytest.approx(math.sqrt(math.log(8) - 7 / 8))
        proxy = [p["proxy"] for p in curve["points"]]
        assert proxy == sorted(proxy)  # best-of-n by proxy: its expected proxy never falls with n
        assert "alpha" in curve["fits"]["gold"] and curve["fits"]["extrapolation"]["n_predicted"] == 1  # fit on n ≤ 4, predict n = 8
    assert [(r["proxy_labels"], r["kl_coef"]) for r in result["rl"]] == [(4, 0.0), (4, 0.1)]
    for r in result["rl"]:
        assert [p["step"] for p in r["points"]] == [0, 2, 4]
        assert r["points"][0]["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the base policy
    checks = result["checks"]
    assert set(checks) >= {"bon_smallest_proxy", "bon_gold_r2", "more_labels_higher_or_later_peak", "rl_smallest_proxy"}
    assert (run / "overopt.png").stat().st_size > 10_000
    assert json.loads((run / "summary.json").read_text())["command"] == "overopt"
    page = (run / "report.html").read_text()
    assert "<h2>Reward over-optimization</h2>" in page and "best-of-n" in page and "rlhfkit overopt run" in page
    out = capsys.readouterr().out
    assert "curve | proxy labels | score" in out and "best-of-n gold fits R² ≥ 0.9" in out


def test_overopt_run_rejects_impossible_label_counts_before_loading(tmp_path, tiny_dir, capsys):
    assert main(["overopt", "run", "--policy", tiny_dir, "--label-prompts", "10", "--label-samples-per-prompt", "2",
                 "--label-counts", "50", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "label_counts asks for 50 labels, but 9 training prompts × C(2, 2) pairs give at most 9" in err
    assert not (tmp_path / "overopt").exists()
