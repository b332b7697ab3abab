"""`rlhfkit gridworld solve|sweep`, driven through `rlhfkit.cli.gridworld.register` on a bare parser."""

from __future__ import annotations

import argparse
import json

import pytest

from rlhfkit.cli.gridworld import register
from rlhfkit.config import ConfigError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rlhfkit")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_solve_prints_utilities_and_arrows(capsys):
    argv = ["gridworld", "solve", "--world", "aima4x3", "--step-reward", "-0.04", "--method", "policy-iteration"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    # AIMA Fig. 17.3 (utilities) and Fig. 17.2(a) (policy), top row first.
    assert "  3    0.812   0.868   0.918  +1.000" in out
    assert "  1    0.705   0.655   0.611   0.388" in out
    assert "  3   →  →  →  +" in out and "  2   ↑  #  ↑  -" in out and "  1   ↑  ←  ←  ←" in out


def test_solve_json_is_keyed_by_cell(capsys):
    assert run(["gridworld", "solve", "--method", "value-iteration", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert round(report["utilities"]["(1,1)"], 3) == 0.705 and report["utilities"]["(4,3)"] == 1.0
    assert report["policy"]["(4,1)"] == "left" and report["policy"]["(3,2)"] == "up"
    assert "(2,2)" not in report["utilities"] and "(4,3)" not in report["policy"]  # wall, exit


def test_solve_with_a_learner_reports_agreement_and_outcomes(capsys):
    argv = ["gridworld", "solve", "--method", "q-learning", "--train-episodes", "3000", "--episodes", "500", "--json"]
    assert run(argv) == 0
    report = json.loads(capsys.readouterr().out)
    comparison = report["compared_with_policy_iteration"]
    assert comparison["states"] == 9 and comparison["agree"] >= 7
    counts = report["outcomes"]["counts"]
    assert sum(counts.values()) == 500 and set(counts) == {"exit +1 (4,3)", "exit -1 (4,2)", "timeout"}


def test_sweep_accepts_negative_comma_lists_and_counts_outcomes(capsys, tmp_path):
    plot = tmp_path / "sweep.png"
    argv = ["gridworld", "sweep", "--world", "lander", "--step-rewards", "-0.04,-0.5", "--episodes", "200"]
    argv += ["--plot", str(plot)]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "step reward -0.04" in out and "step reward -0.5" in out
    assert "landing pad (8,3)" in out and "crater (2,2)" in out and "timeout" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json(capsys):
    argv = ["gridworld", "sweep", "--world", "lander", "--step-rewards", "-0.1,-0.2", "--episodes", "100", "--json"]
    assert run(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["step_reward"] for r in report["results"]] == [-0.1, -0.2]
    assert all(sum(r["outcomes"]["counts"].values()) == 100 for r in report["results"])
    assert report["start"] == "(1,3)"


def test_user_map_file(tmp_path, capsys):
    path = tmp_path / "corridor.map"
    path.write_text("; a corridor\n+: exit +1 home\nS . +\n")
    assert run(["gridworld", "solve", "--map", str(path), "--episodes", "50"]) == 0
    out = capsys.readouterr().out
    assert "  1   →  →  +" in out and "home (3,1)" in out


def test_broken_map_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.map"
    path.write_text("G: exit +1\n. . G\n. ? .\n")
    with pytest.raises(ConfigError, match=r"broken\.map, line 3, column 3: unknown cell '\?'"):
        run(["gridworld", "solve", "--map", str(path)])


def test_missing_map_and_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run(["gridworld", "solve", "--map", str(tmp_path / "nope.map")])
    with pytest.raises(ConfigError, match="--gamma below 1"):
        run(["gridworld", "solve", "--step-reward", "0.1"])
    with pytest.raises(ConfigError, match="noise"):
        run(["gridworld", "sweep", "--noise", "2"])


def test_unknown_world_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as info:
        run(["gridworld", "solve", "--world", "mars"])
    assert info.value.code == 2 and "invalid choice: 'mars'" in capsys.readouterr().err


def test_world_names_match_the_built_in_maps():
    import typing

    from rlhfkit.tabular.config import WorldName
    from rlhfkit.tabular.worlds import WORLDS

    assert set(typing.get_args(WorldName)) == set(WORLDS)
