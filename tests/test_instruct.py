"""`rlhfkit data instruct`: labelled rows through instruction templates (FLAN / T0 style: one task,
several templates, each with its own verbaliser), the template file's checks, bad rows named by
file / row / field, and `rlhfkit sft` training on the output."""

import json

import pytest

from rlhfkit import cli
from rlhfkit.data.instruct import BUILTIN, Template, TemplateSet, instruct_rows, load_template_file, template_set
from rlhfkit.data.loaders import load_records
from rlhfkit.data.schemas import DataError
from rlhfkit.types import LabelledRecord


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_template_words_the_label_with_its_own_verbaliser():
    two = TemplateSet("t", (
        Template("Review: {text}\n", "The author {label} the movie.", {"positive": "likes", "negative": "dislikes"}),
        Template("{text} Good?\n", "{label}"),  # no verbaliser: the label as written
    ))
    rows = instruct_rows([LabelledRecord("Dull.", "negative"), LabelledRecord("Fun!", "positive")], two, templates_per_row=0)
    # worked by hand: each record through both templates, in record order
    assert [(r["prompt"], r["completion"], r["template"]) for r in rows] == [
        ("Review: Dull.\n", "The author dislikes the movie.", "t/0"),
        ("Dull. Good?\n", "negative", "t/1"),
        ("Review: Fun!\n", "The author likes the movie.", "t/0"),
        ("Fun! Good?\n", "positive", "t/1"),
    ]
    assert {r["label"] for r in rows} == {"negative", "positive"}


def test_templates_per_row_draws_distinct_templates_reproducibly():
    records = [LabelledRecord(f"review {i}", "positive" if i % 2 else "negative") for i in range(20)]
    rows = instruct_rows(records, BUILTIN["sentiment"], templates_per_row=3, seed=7)
    assert len(rows) == 60
    for i in range(20):
        names = [r["template"] for r in rows[3 * i: 3 * i + 3]]
        assert len(set(names)) == 3  # three different templates for each row
    assert rows == instruct_rows(records, BUILTIN["sentiment"], templates_per_row=3, seed=7)
    used = {r["template"] for r in rows}
    assert len(used) == 5  # over 20 rows every one of the five templates is drawn
    with pytest.raises(DataError, match="has only 5 templates"):
        instruct_rows(records, BUILTIN["sentiment"], templates_per_row=6)


def test_the_sentiment_set_reads_the_usual_spellings_of_its_labels():
    first = BUILTIN["sentiment"].templates[0]
    assert first.verbalise("1") == first.verbalise("Positive") == first.verbalise("pos") == "likes"
    assert first.verbalise("0") == first.verbalise("NEGATIVE") == "dislikes"
    assert first.verbalise("neutral") is None


def test_numeric_labels_from_csv_and_json_become_text(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\nloved it,1\nhated it,0\n")
    assert [r.label for r in load_records(csv, "labelled").records] == ["1", "0"]
    jsonl = _write(tmp_path / "rows.jsonl", [{"text": "ok", "label": 1}, {"text": "no", "label": 0.0}])
    assert [r.label for r in load_records(jsonl, "labelled").records] == ["1", "0"]
    bad = _write(tmp_path / "bad.jsonl", [{"text": "ok", "label": 0.5}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 1: field 'label': expected a label"):
        load_records(bad, "labelled")


def test_a_template_file_with_its_own_verbalisers(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text('labels: {positive: likes, negative: dislikes}\n'
                    'templates:\n'
                    '  - prompt: "Say whether the author likes the movie.\\n\\n{text}\\n"\n'
                    '    completion: "The user {label} the movie."\n'
                    '  - prompt: "{text} -- liked it? {{yes/no}}"\n'
                    '    completion: "{label}"\n'
                    '    labels: {positive: "yes", negative: "no"}\n')
    templates = load_template_file(path)
    rows = instruct_rows([LabelledRecord("Awful.", "negative")], templates, templates_per_row=0)
    assert [(r["prompt"], r["completion"]) for r in rows] == [
        ("Say whether the author likes the movie.\n\nAwful.\n", "The user dislikes the movie."),
        ("Awful. -- liked it? {yes/no}", "no"),  # {{ }} is a literal brace
    ]
    assert template_set(str(path)).name == "mine"


@pytest.mark.parametrize("body, message", [
    ('templates:\n  - prompt: "no slot"\n    completion: "{label}"\n', r"templates\[0\]: field 'prompt': has no \{text\}"),
    ('templates:\n  - prompt: "{text}"\n    completion: "{lable}"\n', r"templates\[0\]: field 'completion': has no \{label\}"),
    ('templates:\n  - prompt: "{text} {label}"\n    completion: "{label}"\n', r"field 'prompt': unknown placeholder\(s\) \{label\}"),
    ('templates:\n  - prompt: "{text"\n    completion: "{label}"\n', r"field 'prompt': .*literal brace"),
    ('templates: []\n', "a non-empty list"),
    ('templates:\n  - prompt: "{text}"\n    completion: "{label}"\n    label: {a: b}\n', r"unknown field\(s\) label"),
    ('labels: [a, b]\ntemplates:\n  - prompt: "{text}"\n    completion: "{label}"\n', "field 'labels': expected a non-empty mapping"),
])
def test_template_file_mistakes_name_the_file_template_and_field(tmp_path, body, message):
    path = tmp_path / "t.yaml"
    path.write_text(body)
    with pytest.raises(DataError, match=message) as err:
        load_template_file(path)
    assert str(path) in str(err.value)


def test_command_bad_rows_and_unknown_labels_name_file_row_and_field(tmp_path, capsys):
    data = _write(tmp_path / "reviews.jsonl", [{"text": "Fun.", "label": "positive"}, {"text": "Hm.", "label": "neutral"},
                                               {"label": "negative"}])
    out = tmp_path / "out.jsonl"
    assert cli.main(["data", "instruct", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "reviews.jsonl: row 2: field 'label': 'neutral' is not a label of template 0" in err and err.count("\n") == 1
    assert not out.exists()
    assert cli.main(["data", "instruct", str(data), "--output", str(out), "--skip-invalid", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows_read"], summary["rows_skipped"], summary["rows_written"]) == (1, 2, 1)
    assert "row 3: field 'text': missing" in summary["skipped"][1]
    assert cli.main(["data", "instruct", str(data), "--output", str(out), "--skip-invalid"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["data", "instruct", str(data), "--templates", "nope"]) == 2
    assert "unknown template set 'nope'" in capsys.readouterr().err


def test_sft_trains_on_the_instruction_rows(tmp_path, tiny_dir, capsys):
    data = _write(tmp_path / "reviews.jsonl", [{"text": "the movie was good", "label": "positive"},
                                               {"text": "the movie was bad", "label": "negative"}] * 4)
    out = tmp_path / "instruct.jsonl"
    assert cli.main(["data", "instruct", str(data), "--templates", "classify", "--templates-per-row", "2",
                     "--output", str(out)]) == 0
    assert "16 prompt/completion rows from 8 labelled rows" in capsys.readouterr().out
    assert cli.main(["data", "validate", str(out), "--kind", "sft"]) == 0
    code = cli.main(["sft", "--data", str(out), "--model", tiny_dir, "--epochs", "3", "--batch-size", "4",
                     "--micro-batch-size", "4", "--learning-rate", "0.01", "--no-lora", "--chat", "no",
                     "--eval-fraction", "0.25", "--output-dir", str(tmp_path / "runs"), "--run-name", "s",
                     "--precision", "fp32"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["eval"]["after"]["loss"] < summary["eval"]["before"]["loss"]
