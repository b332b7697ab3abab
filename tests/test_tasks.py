"""The built-in tasks: fixed splits, columns, and hand-checked gold scorers; tasks from a YAML file."""

from __future__ import annotations

import json
import math

import pytest

from rlhfkit.cli import main
from rlhfkit.config import ConfigError
from rlhfkit.tasks import TASKS, get_task
from rlhfkit.tasks.arithmetic import exact_match, final_number
from rlhfkit.tasks.summarize import docstring_rows, length_penalty, rouge_l_with_length_penalty
from tests.conftest import needs_embedded


def _wordnet_or_skip():
    from rlhfkit.data.wordnet import WordNetMissing, wordnet_folder

    try:
        wordnet_folder()
    except WordNetMissing:
        pytest.skip("no WordNet installed (make setup installs Debian's wordnet-base)")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_a_fixed_disjoint_split_and_scores_its_own_prompts(name):
    if name == "concepts":
        _wordnet_or_skip()
    task = get_task(name)
    train, test = task.prompts("train"), task.prompts("test")
    assert train and test and not set(train) & set(test)
    assert sorted(task.prompts("test", seed=5)) == sorted(test)  # a run's seed shuffles, never re-splits
    assert len(test) == pytest.approx(task.eval_fraction * (len(train) + len(test)), rel=0.35)
    scores = task.gold(test[:3], ["a sentence", "", "7"])
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores)


def test_sentiment_split_is_unchanged():
    # 15 subjects × 12 plots × 8 openings = 1440 prompts, 80/20 by a shuffle seeded with 1234
    task = get_task("sentiment")
    assert len(task.prompts("train")) == 1152 and len(task.prompts("test")) == 288


def test_unknown_task_names_the_built_in_ones():
    with pytest.raises(ValueError, match="built-in tasks: arithmetic, concepts, sentiment, summarize"):
        get_task("nope")


# -- arithmetic ---------------------------------------------------------------------------------

def test_final_number_by_hand():
    assert final_number("The answer is 7.") == 7.0
    assert final_number("3 + 4 = 7") == 7.0  # the final number, not the first
    assert final_number("It costs 1,000 coins") == 1000.0
    assert final_number("7.0") == 7.0 and final_number("-3") == -3.0
    assert final_number("no number here") is None


def test_arithmetic_exact_match_by_hand():
    completions = ["7", "It is 8", "7 apples, not 8", "", "seven"]
    assert exact_match(["p"] * 5, completions, answer=[7, 8, 7, 0, 7]) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_arithmetic_rows_and_their_answers():
    task = get_task("arithmetic")
    # 4 templates × (81 additions + 45 subtractions with a ≥ b) = 504
    assert len(task.rows) == 504
    row = next(r for r in task.rows if r["id"] == "9-4#3")
    assert row["prompt"] == "What is 9 minus 4? Answer with the number only." and row["answer"] == 5
    assert task.gold([row["prompt"]] * 2, ["5", "The answer is 4."]) == [1.0, 0.0]


def test_task_gold_needs_its_column_for_foreign_prompts():
    with pytest.raises(ConfigError, match="needs each prompt's 'answer'"):
        get_task("arithmetic").gold(["How much is 2 and 2?"], ["4"])
    assert get_task("arithmetic").gold(["How much is 2 and 2?"], ["4"], answer=[4]) == [1.0]


# -- summarize ----------------------------------------------------------------------------------

def test_rouge_l_with_length_penalty_by_hand():
    ref = "Return the sum of two numbers."  # rouge-score tokens: return the sum of two number (6)
    # "Return the sum.": LCS 3, P = 3/3, R = 3/6 → F = 2·1·½/(1+½) = ⅔; 3 ≤ 2·6 words: no penalty
    got = rouge_l_with_length_penalty(["p"], ["Return the sum."], reference=[ref])[0]
    assert got == pytest.approx(2 / 3)
    # 13 words holding the reference in order: LCS 6, P = 6/13, R = 1 → F = 12/19;
    # 13 > 2·6 → penalty exp(1 − 13/12)
    long = "Return the sum of two numbers and then some more words here now"
    got = rouge_l_with_length_penalty(["p"], [long], reference=[ref])[0]
    assert got == pytest.approx(12 / 19 * math.exp(1 - 13 / 12))
    assert rouge_l_with_length_penalty(["p", "p"], ["", ref], reference=[ref, ref]) == [0.0, pytest.approx(1.0)]


def test_length_penalty_by_hand():
    assert length_penalty(10, 5) == 1.0 and length_penalty(20, 5) == pytest.approx(math.exp(1 - 20 / 10))


def test_docstring_pairs_follow_pep257(tmp_path):
    (tmp_path / "csv.py").write_text('''
def f():
    """Read rows from a file of comma separated values.

    Each row is returned as a list of strings, one per field, in the order the fields appear
    in the file; quoting and escaping follow the dialect that the reader was created with, and
    blank lines are skipped.
    """

def g():
    """No body here."""

def h():
    """Has an example.

    Use it like this, which is long enough to pass the word limit of the passage filter
    and so on and so forth until it has more than twenty-five words in total:
    >>> h()
    """
''')
    rows = docstring_rows(tmp_path)
    assert [r["id"] for r in rows] == ["csv:f"]
    assert rows[0]["reference"] == "Read rows from a file of comma separated values."
    assert rows[0]["passage"].startswith("Each row is returned as a list of strings")
    assert rows[0]["prompt"].endswith(rows[0]["passage"]) and rows[0]["reference"] not in rows[0]["prompt"]


def test_docstrings_sharing_a_passage_give_one_row(tmp_path):
    # the same body under two summaries would be one prompt with two references: the first is kept
    body = ("Each row is returned as a list of strings, one per field, in the order the fields appear in the "
            "file; quoting and escaping follow the dialect that the reader was created with.")
    (tmp_path / "csv.py").write_text(f'''
def f():
    """Read rows from a file of comma separated values.

    {body}
    """

def g():
    """Read the rows of a CSV file one by one.

    {body}
    """
''')
    rows = docstring_rows(tmp_path)
    assert [r["id"] for r in rows] == ["csv:f"]


def test_summarize_prompts_are_unique_so_each_has_one_reference():
    rows = get_task("summarize").split_rows("train") + get_task("summarize").split_rows("test")
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == len(set(prompts)) > 50


def test_summarize_references_are_the_docstrings_first_lines():
    task = get_task("summarize")
    prompts = task.prompts("test")[:2]
    refs = task.references(prompts)
    assert all(len(r) == 1 and r[0].endswith(".") for r in refs)
    assert task.gold(prompts, [r[0] for r in refs]) == [pytest.approx(1.0)] * 2


# -- concepts -----------------------------------------------------------------------------------

def test_concepts_coverage_counts_inflections_by_hand():
    _wordnet_or_skip()
    from rlhfkit.tasks.concepts import coverage

    concepts = ["ball", "dog", "throw"]
    assert coverage("The boy threw the ball to his dogs.", concepts) == 1.0  # threw → throw, dogs → dog
    assert coverage("A dog sleeps.", concepts) == pytest.approx(1 / 3)
    assert coverage("", concepts) == 0.0


def test_concepts_gold_by_hand():
    _wordnet_or_skip()
    from rlhfkit.tasks.concepts import coverage_times_fluency

    concepts = [["ball", "dog", "throw"]] * 3
    got = coverage_times_fluency(["p"] * 3, ["The boy threw the ball to his dog.", "ball dog throw",
                                             "xqzt blorf ball dog throw"], concepts=concepts)
    # 1: coverage 1; 8 words, all English, 7 distinct (the ×2), length min(1, 8/6) → 7/8
    # 2: coverage 1; 3 words, all English and distinct, length 3/6 → 1/2
    # 3: coverage 1; 5 words, 3 English, distinct, length 5/6 → 3/5 · 5/6 = 1/2
    assert got == [pytest.approx(7 / 8), pytest.approx(0.5), pytest.approx(0.5)]


def test_concept_sets_are_two_nouns_and_a_verb():
    _wordnet_or_skip()
    from rlhfkit.tasks.concepts import N_PROMPTS, concept_words

    nouns, verbs = concept_words()
    task = get_task("concepts")
    assert len(task.rows) == N_PROMPTS and len({r["id"] for r in task.rows}) == N_PROMPTS
    for row in task.rows[:50]:
        a, b, verb = row["concepts"]
        assert a in nouns and b in nouns and a < b and verb in verbs
        assert all(c in row["prompt"] for c in row["concepts"])
    assert {"dog", "ball", "house"} <= set(nouns) and {"throw", "walk", "eat"} <= set(verbs)


# -- tasks from a file --------------------------------------------------------------------------

CHECK = '''
def exact(prompts, completions, capital):
    return [1.0 if c.strip().lower() == k.lower() else 0.0 for c, k in zip(completions, capital)]
'''


def _task_file(tmp_path, **changes):
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
            ("Spain", "Madrid"), ("Egypt", "Cairo"), ("India", "New Delhi"), ("Italy", "Rome"), ("Cuba", "Havana")]
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "capitals.csv").write_text("prompt,capital\n" + "".join(
        f"The capital of {c} is,{k}\n" for c, k in rows))
    (tmp_path / "check.py").write_text(CHECK)
    fields = {"name": "capitals", "prompts": "data/capitals.csv", "references": "capital",
              "reward": "check.py:exact=1,length=-0.1", "metrics": "[rouge, diversity]", "max_new_tokens": 4,
              "test_fraction": 0.3, **changes}
    path = tmp_path / "capitals.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None))
    return path


def test_a_task_file_gives_prompts_references_split_and_gold(tmp_path):
    task = get_task(str(_task_file(tmp_path)))
    assert task.name == "capitals" and task.max_new_tokens == 4 and task.metrics == ("rouge", "diversity")
    assert len(task.prompts("train")) == 7 and len(task.prompts("test")) == 3  # 30% of 10 rows
    assert task.references(["The capital of Peru is"]) == [["Lima"]]
    # check.py:exact gets the 'capital' column by name: 1 − 0.1·(1 word / 100) = 0.999; "Cusco": −0.001
    assert task.gold(["The capital of Peru is"] * 2, ["Lima", "Cusco"]) == [pytest.approx(0.999), pytest.approx(-0.001)]


@pytest.mark.parametrize("changes, message", [
    ({"rewards": "vader"}, "field 'rewards': unknown field \\(did you mean 'reward'\\?\\)"),
    ({"prompts": None}, "field 'prompts': required"),
    ({"references": None}, "field 'metrics': rouge, bleu and meteor need a 'references' column"),
    ({"reward": "gold"}, "field 'reward': 'gold' would be this task's own scorer"),
    ({"reward": "check.py:nope"}, "field 'reward': reward '.*check.py:nope': .* has no function 'nope'"),
    ({"test_fraction": 1.5}, "field 'test_fraction': expected a number between 0 and 1"),
    ({"references": "capitol", "metrics": "[]"}, "row 1: field 'capitol': missing"),
])
def test_task_file_errors_name_file_and_field(tmp_path, changes, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        get_task(str(_task_file(tmp_path, **changes)))


def test_rl_and_generate_and_tasks_take_a_task_file(tmp_path, capsys):
    from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer

    tiny = tmp_path / "tiny"
    tiny_causal_lm("llama").save_pretrained(tiny)
    tiny_tokenizer().save_pretrained(tiny)
    task_file = str(_task_file(tmp_path))
    assert main(["rl", "--task", task_file, "--policy", str(tiny), "--algo", "grpo", "--group-size", "4",
                 "--batch-size", "8", "--mini-batch-size", "8", "--steps", "1", "--max-new-tokens", "2",
                 "--eval-prompts", "3", "--precision", "fp32", "--output-dir", str(tmp_path), "--run-name", "r"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == 1 and "reward" in summary["after"]
    out = tmp_path / "gen.jsonl"
    assert main(["generate", "--prompts", f"task:{task_file}", "--model", str(tiny), "--max-new-tokens", "2",
                 "--policy", "best_of_n", "--n", "2", "--reward", f"task:{task_file}", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all("reward" in r for r in rows)
    capsys.readouterr()
    assert main(["tasks", task_file, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described[0]["name"] == "capitals" and described[0]["test_prompts"] == 3


def test_tasks_command_lists_one_line_per_task(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == list(TASKS)
    assert main(["tasks", "nope"]) == 2 and "unknown task 'nope'" in capsys.readouterr().err


@pytest.mark.slow
@needs_embedded
@pytest.mark.parametrize("name", sorted(TASKS))
def test_generate_runs_every_task_on_the_embedded_model(tmp_path, name):
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--prompts", f"task:{name}", "--limit", "4", "--max-new-tokens", "8",
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and get_task(name).gold([r["prompt"] for r in rows], [r["response"] for r in rows])
