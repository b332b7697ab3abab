"""Every bad-input class of the loaders gives one line naming file, row and field; with
skip_invalid nothing is dropped silently."""

import json

import pytest

from rlhfkit.cli import main
from rlhfkit.data import DataError, load_records
from rlhfkit.types import PairwiseRecord, RankingRecord, SFTRecord


def _jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD_PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}
GOOD = {
    "pairwise": GOOD_PAIR,
    "ranking": {"prompt": "p", "responses": ["a", "b"]},
    "rating": {"prompt": "p", "response": "r", "rating": 3},
    "thumbs": {"prompt": "p", "response": "r", "thumbs_up": True},
    "rewrite": {"prompt": "p", "original": "a", "rewrite": "b"},
    "sft": {"prompt": "q", "completion": "a"},
}


def test_every_kind_loads_good_rows(tmp_path):
    cases = {
        "prompt": {"prompt": "hi"},
        "sft": {"prompt": "q", "completion": "a"},
        "pairwise": {**GOOD_PAIR, "label": 0.7, "margin": 1.5},
        "ranking": {"prompt": "p", "responses": ["a", "b", "c"]},
        "rating": {"prompt": "p", "response": "r", "rating": 7},
        "thumbs": {"prompt": "p", "response": "r", "thumbs_up": "down"},
        "rewrite": {"prompt": "p", "original": "bad", "rewrite": "good"},
    }
    for kind, row in cases.items():
        result = load_records(_jsonl(tmp_path, [row], f"{kind}.jsonl"), kind)
        assert len(result.records) == 1 and not result.skipped
    pair = load_records(_jsonl(tmp_path, [{**GOOD_PAIR, "label": 0.7, "margin": 1.5}]), "pairwise").records[0]
    assert pair == PairwiseRecord("p", "a", "b", 0.7, 1.5)
    chat = load_records(_jsonl(tmp_path, [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]), "sft")
    assert isinstance(chat.records[0], SFTRecord) and chat.records[0].messages[-1].content == "a"


@pytest.mark.parametrize(
    "row, kind, field, reason",
    [
        ({"chosen": "a", "rejected": "b"}, "pairwise", "prompt", "missing"),
        ({"prompt": "p", "chosen": "", "rejected": "b"}, "pairwise", "chosen", "empty"),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, "pairwise", "chosen", "expected text"),
        ({**GOOD_PAIR, "label": 1.5}, "pairwise", "label", "[0.0, 1.0]"),
        ({**GOOD_PAIR, "label": "yes"}, "pairwise", "label", "expected a number"),
        ({**GOOD_PAIR, "margin": -1}, "pairwise", "margin", "must lie in"),
        ({"prompt": "p", "responses": ["only one"]}, "ranking", "responses", "at least 2"),
        ({"prompt": "p", "responses": ["a", ""]}, "ranking", "responses[1]", "non-empty"),
        ({"prompt": "p", "response": "r", "rating": "NaN"}, "rating", "rating", "finite"),
        ({"prompt": "p", "response": "r", "thumbs_up": "maybe"}, "thumbs", "thumbs_up", "up/down"),
        ({"prompt": "p", "original": "same", "rewrite": "same"}, "rewrite", "rewrite", "identical"),
        ({"messages": [{"role": "user", "content": "q"}]}, "sft", "messages", "assistant"),
        ({"messages": [{"role": "robot", "content": "q"}]}, "sft", "messages[0].role", "system, user or assistant"),
        ({"text": "x"}, "sft", "prompt", "missing"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, row, kind, field, reason):
    path = _jsonl(tmp_path, [GOOD[kind], row])
    with pytest.raises(DataError) as err:
        load_records(path, kind)
    message = str(err.value)
    assert str(path) in message and "row 2" in message and f"field '{field}'" in message and reason in message
    assert "\n" not in message


def test_broken_json_line_and_skip_invalid_reports_counts(tmp_path):
    path = _jsonl(tmp_path, [GOOD_PAIR, '{"prompt": "p", "chosen": ', GOOD_PAIR, {"prompt": "p"}])
    with pytest.raises(DataError, match=r"row 2: field '\(line\)': not valid JSON"):
        load_records(path, "pairwise")
    result = load_records(path, "pairwise", skip_invalid=True)
    assert len(result.records) == 2
    assert [(s.row, s.field) for s in result.skipped] == [(2, "(line)"), (4, "chosen")]


def test_csv_parquet_and_saved_dataset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    csv_path = tmp_path / "r.csv"
    csv_path.write_text('prompt,responses\np,"[""a"", ""b""]"\nq,not-json\n')
    with pytest.raises(DataError, match=r"r.csv: row 2: field 'responses'"):
        load_records(csv_path, "ranking")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("prompt,chosen,rejected\np,a,b,extra\n")
    with pytest.raises(DataError, match=r"row 1: field '\(row\)': has 4 cells but the header has 3"):
        load_records(ragged, "pairwise")
    pq_path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"prompt": ["p", "q"], "responses": [["a", "b"], ["c", "d", "e"]]}), pq_path)
    assert [len(r.responses) for r in load_records(pq_path, "ranking").records] == [2, 3]
    ds_path = tmp_path / "ds"
    DatasetDict({"train": Dataset.from_list([GOOD_PAIR]), "test": Dataset.from_list([GOOD_PAIR, GOOD_PAIR])}).save_to_disk(ds_path)
    assert len(load_records(ds_path, "pairwise").records) == 1
    assert len(load_records(ds_path, "pairwise", split="test").records) == 2
    with pytest.raises(DataError, match="no split 'dev'"):
        load_records(ds_path, "pairwise", split="dev")
    assert isinstance(load_records(pq_path, "ranking").records[0], RankingRecord)


def test_unreadable_sources(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_records(tmp_path / "missing.jsonl", "prompt")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type"):
        load_records(tmp_path / "x.txt", "prompt")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        load_records(tmp_path / "bad.parquet", "prompt")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty file"):
        load_records(tmp_path / "empty.jsonl", "prompt")


def test_cli_data_validate(tmp_path, capsys):
    path = _jsonl(tmp_path, [GOOD_PAIR, {"prompt": "p", "chosen": "a"}])
    assert main(["data", "validate", str(path), "--kind", "pairwise"]) == 2
    assert f"{path}: row 2: field 'rejected': missing" in capsys.readouterr().err
    assert main(["data", "validate", str(path), "--kind", "pairwise", "--skip-invalid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid_rows"] == 1 and report["skipped_rows"] == 1 and report["skipped"][0]["field"] == "rejected"
