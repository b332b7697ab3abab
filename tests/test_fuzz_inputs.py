"""Bad-input fuzzing through the CLI (issue 16, item 3).

Every data kind (prompt, sft, pairwise, ranking, rating, thumbs, rewrite) through `rlhfkit data
validate`, and feedback-import rows through `rlhfkit feedback import`, get malformed rows of each
class — wrong types, empty strings, NaN/inf, non-UTF-8 bytes, a 10 MB line, BOM, CRLF, unknown
fields, nested junk, an empty file — and must answer with exactly one `rlhfkit: error:` line naming
file, row and field (exit 2), or, with --skip-invalid, a counted and listed skip; never a
traceback, never a row lost without a word. Most cases call `rlhfkit.cli.main` in-process (an
escaping exception fails the test just as a traceback would); a subprocess run of the real
`python -m rlhfkit.cli` covers every class once for one kind. The commands that read such files
before loading a model (sft, dpo, rm, generate, label) are checked to stop on the file first.
Battles files ({model_a, model_b, winner}) belong to the evaluation work and are not covered here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rlhfkit.cli
from rlhfkit.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
TEN_MB = 10 * 1024 * 1024

# kind -> (a good row for row number i, the text field to break, the number field to break or None)
KINDS = {
    "prompt": (lambda i: {"prompt": f"hello {i}", "source": "x"}, "prompt", None),
    "sft": (lambda i: {"prompt": f"q{i}", "completion": "an answer"}, "completion", None),
    "pairwise": (lambda i: {"prompt": f"p{i}", "chosen": "a", "rejected": "b", "label": 0.8}, "chosen", "label"),
    "ranking": (lambda i: {"prompt": f"p{i}", "responses": ["a", "b", "c"]}, "responses", None),
    "rating": (lambda i: {"prompt": f"p{i}", "response": "r", "rating": 7}, "response", "rating"),
    "thumbs": (lambda i: {"prompt": f"p{i}", "response": "r", "thumbs_up": True}, "response", "thumbs_up"),
    "rewrite": (lambda i: {"prompt": f"p{i}", "original": "bad", "rewrite": "good"}, "original", None),
    "import": (lambda i: {"prompt": f"p{i}", "responses": ["a", "b"]}, "responses", None),
}
LIST_FIELDS = {"responses"}
MARK = "@@BAD@@"
_PARSER = []


@pytest.fixture(autouse=True)
def _one_parser(monkeypatch):
    """Build the CLI's parser once for the module: it reads every config's field docs from source,
    which costs more than the cases themselves."""
    if not _PARSER:
        _PARSER.append(rlhfkit.cli.build_parser())
    monkeypatch.setattr(rlhfkit.cli, "build_parser", lambda: _PARSER[0])


def _line(row: dict, field: str, raw: bytes) -> bytes:
    """JSON of `row` with the value of `field` replaced by the raw bytes `raw`."""
    text = json.dumps({**row, field: MARK}).encode()
    return text.replace(json.dumps(MARK).encode(), raw)


def _wrong_type_reason(field: str) -> str:
    return "expected a list" if field in LIST_FIELDS else "expected text"


def _error_cases(kind: str) -> dict[str, tuple[bytes, str, str]]:
    """case name -> (the bad second line, field named in the error, a phrase of the reason)."""
    good, text, number = KINDS[kind]
    row = good(2)
    wrong = _wrong_type_reason(text)
    nan_field, nan_reason = (number, "finite") if number in ("label", "rating") else \
        (number, "expected true/false") if number else (text, wrong)
    typo = {(k[:-1] + k[-1] * 2 if k == text else k): v for k, v in row.items()}
    cases = {
        "wrong type (number)": (_line(row, text, b"123"), text, wrong),
        "wrong type (bool)": (_line(row, text, b"true"), text, wrong),
        "empty string": (_line(row, text, b"[]" if text in LIST_FIELDS else b'""'), text,
                         "at least" if text in LIST_FIELDS else "empty text"),
        "NaN": (_line(row, nan_field, b"NaN"), nan_field, nan_reason),
        "inf": (_line(row, nan_field, b"-Infinity"), nan_field, nan_reason),
        "nested junk": (_line(row, text, b'{"a": [1, {"b": null}], "c": {"d": []}}'), text, wrong),
        "non-UTF-8 byte in a value": (_line(row, text, b'["a\xff", "b"]' if text in LIST_FIELDS else b'"caf\xe9"'),
                                      text, "not valid UTF-8"),
        "non-UTF-8 byte outside strings": (json.dumps(row).encode().replace(b", ", b", \xfe", 1), "(line)",
                                           "not valid UTF-8"),
        "broken JSON": (json.dumps(row).encode()[:-7], "(line)", "not valid JSON"),
        "10 MB line of junk": (b'{"prompt": "' + b"x" * TEN_MB, "(line)", "not valid JSON"),
        "nesting 100000 deep": (b"[" * 100_000 + b"]" * 100_000, "(line)", "nested too deeply"),
        "integer of 5000 digits": (_line(row, number or text, b"9" * 5000), "(line)", "4300 digits"),
        "not an object": (b'["a", "b"]', "(row)", "expected an object"),
        "unknown field instead of a required one": (json.dumps(typo).encode(), text, "a typo?"),
    }
    if kind == "prompt":  # the prompt kind keeps unknown fields as metadata: no typo to catch
        del cases["unknown field instead of a required one"]
    return cases


def _valid_cases(kind: str) -> dict[str, bytes]:
    """case name -> a whole file of three rows that must all load."""
    good, text, _ = KINDS[kind]
    lines = [json.dumps(good(i)).encode() for i in (1, 2, 3)]
    big = dict(good(2))
    big[text] = ["y" * TEN_MB, "z"] if text in LIST_FIELDS else "y" * TEN_MB
    return {
        "BOM": b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n",
        "CRLF": b"\r\n".join(lines) + b"\r\n",
        "10 MB line (a valid row)": b"\n".join([lines[0], json.dumps(big).encode(), lines[2]]) + b"\n",
        "unknown field": b"\n".join([lines[0], json.dumps({**good(2), "extra": {"x": [1]}}).encode(), lines[2]]) + b"\n",
    }


def _csv_bytes(rows: list[dict], bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))  # csv writes CRLF line ends
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, bool)) else v for k, v in row.items()})
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def _csv_cases(kind: str) -> dict[str, tuple[bytes, str | None, str]]:
    """CSV files: (content, field of the error at row 2 or None when all 3 rows load, reason)."""
    good, text, number = KINDS[kind]
    rows = [good(i) for i in (1, 2, 3)]
    plain = _csv_bytes(rows)
    first, _, second = plain.split(b"\r\n")[:3]  # header, data row 1, data row 2
    bad_value = b'"[""a\xff"", ""b""]"' if text in LIST_FIELDS else b"caf\xe9"
    header = first.decode().split(",")
    cells = next(csv.reader([second.decode()]))
    cells[header.index(text)] = MARK
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    broken_second = buf.getvalue().strip().encode().replace(MARK.encode(), bad_value)
    cases = {
        "CSV with BOM and CRLF": (_csv_bytes(rows, bom=True), None, ""),
        "CSV 10 MB cell": (_csv_bytes([rows[0], {**rows[1], text: ["y" * TEN_MB, "z"] if text in LIST_FIELDS
                                                 else "y" * TEN_MB}, rows[2]]), None, ""),
        "CSV non-UTF-8 cell": (plain.replace(second, broken_second), text, "not valid UTF-8"),
        "CSV empty cell": (_csv_bytes([rows[0], {**rows[1], text: ""}, rows[2]]), text, "missing"),
        "CSV ragged row": (plain.replace(second, second + b",extra"), "(row)", "cells but the header has"),
    }
    if kind == "import":  # a blank responses cell is a prompt alone: a demonstration item, counted as one
        cases["CSV empty cell"] = (cases["CSV empty cell"][0], None, "demonstration 1")
    if number in ("label", "rating"):
        cases["CSV NaN cell"] = (_csv_bytes([rows[0], {**rows[1], number: "NaN"}, rows[2]]), number, "finite")
    return cases


def _run(kind: str, path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    if kind == "import":
        argv = ["feedback", "import", str(path), "--db", str(path.with_suffix(".sqlite")), *extra]
    else:
        argv = ["data", "validate", str(path), "--kind", kind, *extra]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(err: str, *phrases: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlhfkit: error: "), err[:500]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0][:500])


def _assert_counted_skip(kind: str, path: Path, out: str, field: str) -> None:
    # 3 rows in: 2 loaded + 1 skipped and listed, so no row disappears unreported
    assert f"skipped {path}: row 2: field '{field}'" in out, out[:500]
    if kind == "import":
        assert "2 items" in out and "2 new" in out, out[:500]
    else:
        assert f"2 valid {kind} rows, 1 skipped" in out, out[:500]


@pytest.mark.parametrize("kind", list(KINDS))
def test_malformed_jsonl_rows(kind, tmp_path, capsys):
    good = KINDS[kind][0]
    for i, (case, (bad, field, reason)) in enumerate(_error_cases(kind).items()):
        path = tmp_path / f"case{i}.jsonl"
        path.write_bytes(json.dumps(good(1)).encode() + b"\n" + bad + b"\n" + json.dumps(good(3)).encode() + b"\n")
        code, out, err = _run(kind, path, capsys)
        assert code == 2, (case, out, err[:300])
        _assert_one_error_line(err, f"{path}: row 2: field '{field}'", reason)
        code, out, err = _run(kind, path, capsys, "--skip-invalid")
        assert code == 0 and "Traceback" not in err, (case, err[:300])
        _assert_counted_skip(kind, path, out, field)


@pytest.mark.parametrize("kind", list(KINDS))
def test_files_that_must_load_whole(kind, tmp_path, capsys):
    for i, (case, content) in enumerate(_valid_cases(kind).items()):
        path = tmp_path / f"valid{i}.jsonl"
        path.write_bytes(content)
        code, out, err = _run(kind, path, capsys)
        assert code == 0 and not err, (case, err[:300])
        assert ("3 items" if kind == "import" else f"3 valid {kind} rows") in out, (case, out[:300])
        if case == "unknown field" and kind not in ("prompt", "import"):  # those two keep extra fields as metadata
            assert "ignored fields" in out and "'extra' (1 rows)" in out, out


@pytest.mark.parametrize("kind", list(KINDS))
def test_malformed_csv_files(kind, tmp_path, capsys):
    for i, (case, (content, field, reason)) in enumerate(_csv_cases(kind).items()):
        path = tmp_path / f"case{i}.csv"
        path.write_bytes(content)
        code, out, err = _run(kind, path, capsys)
        if field is None:
            assert code == 0 and not err, (case, err[:300])
            assert ("3 items" if kind == "import" else f"3 valid {kind} rows") in out, (case, out[:300])
            assert reason in out
            continue
        assert code == 2, (case, out[:300])
        _assert_one_error_line(err, f"{path}: row 2: field '{field}'", reason)
        code, out, _ = _run(kind, path, capsys, "--skip-invalid")
        assert code == 0
        _assert_counted_skip(kind, path, out, field)


@pytest.mark.parametrize("kind", ["pairwise", "import"])
def test_empty_and_unreadable_files(kind, tmp_path, capsys):
    cases = {
        "empty.jsonl": (b"", "empty file"),
        "blank.jsonl": (b"\n  \n\r\n", "empty file"),
        "bom-only.jsonl": (b"\xef\xbb\xbf", "empty file"),
        "empty.csv": (b"", "empty CSV file"),
        "empty.json": (b"", "empty file"),
        "utf16.jsonl": ('{"prompt": "p"}\n'.encode("utf-16"), "UTF-16"),
        "dup-column.csv": (b"prompt,chosen,chosen,rejected\np,a,b,c\n", "column 'chosen' appears 2 times"),
        "truncated.json": (b'[{"prompt": "p"', "not valid JSON"),
    }
    for name, (content, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for extra in ((), ("--skip-invalid",)):  # skipping bad rows cannot make a bad file good
            code, out, err = _run(kind, path, capsys, *extra)
            assert code == 2, (name, out)
            _assert_one_error_line(err, str(path), phrase)


@pytest.mark.parametrize("kind", ["rating", "import"])
def test_json_list_files(kind, tmp_path, capsys):
    """A .json file (a list of rows): a bad row is named like a JSONL line; BOM and CRLF load."""
    good, text, _ = KINDS[kind]
    path = tmp_path / "rows.json"
    path.write_bytes(b"\xef\xbb\xbf[\r\n" + json.dumps(good(1)).encode() + b",\r\n"
                     + _line(good(2), text, b'"caf\xe9"' if text not in LIST_FIELDS else b'["caf\xe9"]') + b",\r\n"
                     + json.dumps(good(3)).encode() + b"\r\n]")
    code, _, err = _run(kind, path, capsys)
    assert code == 2
    _assert_one_error_line(err, f"{path}: row 2: field '{text}': not valid UTF-8 (byte 0xe9)")
    code, out, _ = _run(kind, path, capsys, "--skip-invalid")
    assert code == 0
    _assert_counted_skip(kind, path, out, text)


def test_real_cli_process_never_prints_a_traceback(tmp_path):
    """Each class once through `python -m rlhfkit.cli` in its own process (pairwise kind)."""
    good = KINDS["pairwise"][0]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    files = []
    for i, (case, (bad, field, reason)) in enumerate(_error_cases("pairwise").items()):
        path = tmp_path / f"p{i}.jsonl"
        path.write_bytes(json.dumps(good(1)).encode() + b"\n" + bad + b"\n")
        files.append((path, f"row 2: field '{field}'"))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    files.append((empty, "empty file"))
    for path, phrase in files:
        proc = subprocess.run([sys.executable, "-m", "rlhfkit.cli", "data", "validate", str(path), "--kind", "pairwise"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr[-500:]
        _assert_one_error_line(proc.stderr, str(path), phrase)


def test_commands_check_their_files_before_loading_a_model(tmp_path, capsys):
    """A model folder that holds no model: had any of these loaded the model first, the error would
    name the model, not the data file (the path itself exists, so the up-front path check passes)."""
    nowhere = tmp_path / "empty-model-folder"
    nowhere.mkdir()
    (nowhere / "config.json").write_text('{"model_type": "no-such-architecture"}')  # unloadable
    nowhere = str(nowhere)
    runs = tmp_path / "runs"
    pair = {"prompt": "p", "chosen": "a", "rejected": "b"}
    commands = {  # command line, (good row, bad row), the field named
        "sft": (["sft", "--model", nowhere, "--output-dir", str(runs)],
                ({"prompt": "q", "completion": "a"}, '{"prompt": "q", "completion": ["a"]}'), "completion"),
        "dpo": (["dpo", "--model", nowhere, "--output-dir", str(runs)], (pair, '{"prompt": "p", "chosen": "a", '
                '"rejected": "b", "label": NaN}'), "label"),
        "rm": (["rm", "--kind", "rating", "--backbone", nowhere, "--output-dir", str(runs)],
               ({"prompt": "p", "response": "r", "rating": 3}, '{"prompt": "p", "response": "r", "rating": Infinity}'),
               "rating"),
        "generate": (["generate", "--model", nowhere, "--output", str(tmp_path / "o.jsonl")],
                     ({"prompt": "p"}, '{"prompt": {"text": "p"}}'), "prompt"),
        "label": (["label", "--judge", nowhere, "--output", str(tmp_path / "l.jsonl"), "--cache", "off"],
                  (pair, b'{"prompt": "p", "chosen": "\xff", "rejected": "b"}'.decode("latin-1")), "chosen"),
    }
    flag = {"generate": "--prompts", "label": "--pairs"}
    for name, (argv, (good, bad_line), field) in commands.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_bytes((json.dumps(good) + "\n").encode() + bad_line.encode("latin-1") + b"\n")
        code = main([*argv, flag.get(name, "--data"), str(bad)])
        _, err = capsys.readouterr()
        assert code == 2, (name, err)
        _assert_one_error_line(err, f"{bad}: row 2: field '{field}'")
        assert nowhere not in err, (name, err)
    assert not runs.exists()  # no run folder for a run that could not start
