"""--report-to: TensorBoard event files and an offline W&B run hold the values of metrics.jsonl."""

import importlib.util
import json
import struct
import subprocess
import sys

import pytest

from rlhfkit.cli import build_parser, main
from rlhfkit.config import ConfigError, parse_report_to
from rlhfkit.pipelines.trackers import row_prefix, row_scalars

TRAINING_COMMANDS = ["sft", "dpo", "rm", "rl", "quickstart", "compare", "overopt"]


def test_parse_report_to():
    assert parse_report_to("none") == ()
    assert parse_report_to("") == ()
    assert parse_report_to("tensorboard") == ("tensorboard",)
    assert parse_report_to(" tensorboard , tensorboard ") == ("tensorboard",)
    assert parse_report_to(["tensorboard"]) == ("tensorboard",)  # a YAML list
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        parse_report_to("tensorbored")
    with pytest.raises(ConfigError, match="'none' cannot stand beside a tracker"):
        parse_report_to("none,tensorboard")


def test_every_training_command_takes_report_to():
    commands = build_parser()._subparsers._group_actions[0].choices
    present = [name for name in TRAINING_COMMANDS if name in commands]
    assert {"sft", "dpo", "rm", "rl", "quickstart", "compare"} <= set(present)
    for name in present:
        parser = commands[name]
        if name == "overopt":  # a group: `overopt run` is the study that trains (`overopt fit` only fits points)
            parser = parser._subparsers._group_actions[0].choices["run"]
        options = {o for action in parser._actions for o in action.option_strings}
        assert "--report-to" in options, name


def test_a_row_becomes_prefixed_scalars():
    # compare's evaluation row: method and stage name the prefix, nested dicts flatten, text/bool/NaN drop out
    row = {"stage": "compare", "method": "ppo", "gold": {"mean": 0.5, "ci_low": 0.25}, "kl_is_bound": True,
           "distinct_2": 0.75, "note": "text", "bad": "nan", "seconds": 3}
    assert row_prefix(row) == "ppo/compare"
    assert row_scalars(row) == {"gold/mean": 0.5, "gold/ci_low": 0.25, "distinct_2": 0.75, "seconds": 3.0}
    assert row_prefix({"step": 1, "loss": 0.1}) == "train"
    assert row_scalars({"step": 4, "epoch": 1, "loss": 0.5, "nan": float("nan")}) == {"epoch": 1.0, "loss": 0.5}


def test_bad_or_missing_tracker_fails_in_one_line_before_any_model_loads(tmp_path):
    # wandb blocked from import (as if not installed): rm stops before it reads its data file
    code = ("import sys; sys.modules['wandb'] = None; from rlhfkit.cli import main; "
            f"sys.exit(main(['rm', '--data', {str(tmp_path / 'missing.jsonl')!r}, '--report-to', 'wandb']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "rlhfkit: error: --report-to wandb needs the wandb package, which is not installed: "
        "pip install -e '.[wandb]' (rlhfkit's optional extra; W&B runs offline, in the run folder)"]


def _rl(tmp_path, tiny_dir, report_to: str, *extra: str):
    assert main(["rl", "--policy", tiny_dir, "--algo", "reinforce", "--batch-size", "4", "--mini-batch-size", "4",
                 "--steps", "3", "--eval-prompts", "0", "--max-new-tokens", "4", "--output-dir", str(tmp_path),
                 "--run-name", "r", "--precision", "fp32", "--checkpoint-every", "0", "--report-to", report_to, *extra]) == 0
    run = tmp_path / "r"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and all(r["stage"] == "rl" for r in rows)
    # what each tracker must hold, read straight off metrics.jsonl: rl/<key> at the row's step
    expected = {(f"rl/{k}", r["step"]): v for r in rows for k, v in r.items()
                if k not in ("stage", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert len(expected) >= 3 * 10
    return run, expected


def test_tensorboard_event_files_hold_the_metrics_of_metrics_jsonl(tmp_path, tiny_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, expected = _rl(tmp_path, tiny_dir, "tensorboard")
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert set(got) == set(expected)
    for key, value in expected.items():  # event files store float32
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-30), key
    # --overwrite starts the trackers anew with metrics.jsonl: one event file, the new run's values
    run, expected = _rl(tmp_path, tiny_dir, "tensorboard", "--overwrite", "--seed", "1")
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-30)


def _wandb_records(path):
    """The records of a .wandb file: a 7-byte header (":W&B", magic 0xBEE1, version 0), then
    LevelDB-log-style 32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first,
    3 middle, 4 last), each record a wandb_internal Record protobuf."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in the block for a header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="the optional extra wandb is not installed")
def test_offline_wandb_run_holds_the_metrics_of_metrics_jsonl(tmp_path, tiny_dir):
    run, expected = _rl(tmp_path, tiny_dir, "wandb")
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    got = {}
    config_keys = set()
    for record in _wandb_records(files[0]):
        which = record.WhichOneof("record_type")
        if which == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            step = items["rl/step"]
            got.update({(key, step): value for key, value in items.items() if key.startswith("rl/") and key != "rl/step"})
        elif which == "run":  # the run's config, as given to wandb.init
            config_keys |= {item.key for item in record.run.config.update}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert {"algo", "report_to", "learning_rate"} <= config_keys


def test_compare_ends_with_a_leaderboard_holding_each_win_rate_over_base(tmp_path, tiny_dir, capsys):
    """Issue 9 item 8: every method on the leaderboard (BT ratings with CIs, gold judge) with its
    win rate over the base policy; the summary carries both; the trackers get each method's
    training rows under its own name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["compare", "--policy", tiny_dir, "--methods", "reinforce,best_of_n", "--sample-budget", "8",
                 "--batch-size", "8", "--eval-prompts", "4", "--max-new-tokens", "4", "--best-of-n", "4",
                 "--output-dir", str(tmp_path), "--precision", "fp32", "--report-to", "tensorboard"]) == 0
    run = tmp_path / "compare"
    summary = json.loads((run / "summary.json").read_text())
    board = summary["leaderboard"]
    assert board["judge"] == "gold" and board["baseline"] == "base"
    assert set(board["ratings"]) == {"base", "reinforce", "best_of_4"}
    for w in summary["win_rates"]:
        assert board["ratings"][w["a"]]["win_rate_over_baseline"] == {k: w[k] for k in ("win_rate", "ci_low", "ci_high")}
    assert board["ratings"]["base"]["win_rate_over_baseline"] is None
    for r in board["ratings"].values():
        assert r["ci_low"] <= r["rating"] <= r["ci_high"] and r["battles"] == 2 * 4  # 4 prompts × 2 opponents
    out = capsys.readouterr().out
    assert "| rank | policy | BT rating (95% CI) | online Elo | battles | score rate | win rate over base (95% CI) |" in out
    assert "| ≤ 0.64 (bound) |" in out and "| k1 " in out  # best-of-4's KL bound log 4 − 3/4; reinforce's k1
    page = (run / "report.html").read_text()
    assert "<th>win rate over base (95% CI)</th>" in page
    tags = EventAccumulator(str(run / "tensorboard")).Reload().Tags()["scalars"]
    assert "reinforce/loss/policy" in tags and "reinforce/compare/gold/mean" in tags and "base/compare/gold/mean" in tags


def test_a_resumed_run_rebuilds_its_tracker_copies_from_metrics_jsonl(tmp_path, tiny_dir):
    # a run stopped after logging steps 2 and 3 but before its step-4 checkpoint: pointing `latest`
    # back at step 2 leaves metrics.jsonl rows past the checkpoint, which the resume cuts off and redoes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    names = ["tensorboard"] + (["wandb"] if importlib.util.find_spec("wandb") else [])
    args = ["rl", "--policy", tiny_dir, "--algo", "reinforce", "--batch-size", "4", "--mini-batch-size", "4",
            "--steps", "4", "--eval-prompts", "0", "--max-new-tokens", "4", "--output-dir", str(tmp_path),
            "--run-name", "r", "--precision", "fp32", "--checkpoint-every", "2", "--report-to", ",".join(names)]
    assert main(args) == 0
    run = tmp_path / "r"
    (run / "checkpoints" / "latest").write_text("step-000002\n")
    assert main(args + ["--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    expected = {(f"rl/{k}", r["step"]): v for r in rows for k, v in r.items()
                if k not in ("stage", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1  # one copy, not two
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}, purge_orphaned_data=False).Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert sum(len(events.Scalars(tag)) for tag in events.Tags()["scalars"]) == len(expected)  # no step twice
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-30)
    if "wandb" in names:  # one offline W&B run holding every row, not a second run with the resumed rows only
        files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1
        steps = [json.loads(item.value_json) for record in _wandb_records(files[0])
                 if record.WhichOneof("record_type") == "history"
                 for item in record.history.item if (item.key or "/".join(item.nested_key)) == "rl/step"]
        assert steps == [0, 1, 2, 3]
