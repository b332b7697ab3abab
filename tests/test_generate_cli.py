"""`rlhfkit generate` end to end on a tiny model saved to disk (real loading code, local files)."""

import json
import math

import pytest

from rlhfkit.cli import main


def _save_tiny(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


def test_generate_writes_jsonl(tmp_path, tiny_llama, tiny_tok):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "the movie was"}\n{"prompt": "i loved it"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(out), "--strategy", "top_p",
                 "--top-p", "0.9", "--max-new-tokens", "5", "--n", "2", "--chat", "no", "--precision", "fp32"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["the movie was"] * 2 + ["i loved it"] * 2
    assert all(1 <= r["tokens"] <= 5 and r["logprob"] <= 0 for r in rows)


def test_generate_greedy_is_deterministic_and_beam_runs(tmp_path, tiny_llama, tiny_tok):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt\nthe movie was\n")
    texts = []
    for strategy, seed in [("greedy", "1"), ("greedy", "2"), ("beam", "1")]:
        out = tmp_path / f"{strategy}{seed}.jsonl"
        assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(out), "--strategy", strategy,
                     "--max-new-tokens", "4", "--seed", seed, "--chat", "no", "--precision", "fp32"]) == 0
        texts.append(json.loads(out.read_text())["response"])
    assert texts[0] == texts[1]


def test_best_of_n_keeps_the_highest_reward(tmp_path, tiny_llama, tiny_tok):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "the movie was"}\n')
    out = tmp_path / "bon.jsonl"
    assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(out), "--policy", "best_of_n",
                 "--n", "6", "--reward", "vader", "--max-new-tokens", "6", "--chat", "no", "--precision", "fp32"]) == 0
    row = json.loads(out.read_text())
    assert len(row["candidate_rewards"]) == 6 and row["reward"] == max(row["candidate_rewards"])
    # like every output row: the kept response's token count, summed log-prob and EOS flag
    assert 1 <= row["tokens"] <= 6 and row["logprob"] <= 0 and isinstance(row["finished"], bool)
    assert row["kl_bound"] == pytest.approx(math.log(6) - 5 / 6)  # REFERENCES.md: log n − (n−1)/n


def test_generate_bad_prompt_file_names_the_row(tmp_path, tiny_llama, tiny_tok, capsys):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "p.jsonl: row 2: field 'prompt': missing" in capsys.readouterr().err


def test_best_of_n_with_a_task_gold_scorer_and_a_wrong_reward(tmp_path, tiny_llama, tiny_tok, capsys):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "the movie was"}\n')
    out = tmp_path / "bon.jsonl"
    assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(out), "--policy", "best_of_n",
                 "--n", "3", "--reward", "task:sentiment", "--max-new-tokens", "4", "--chat", "no", "--precision", "fp32"]) == 0
    assert len(json.loads(out.read_text())["candidate_rewards"]) == 3
    assert main(["generate", "--model", str(model), "--prompts", str(prompts), "--output", str(out), "--policy", "best_of_n",
                 "--reward", "task:nope", "--chat", "no"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, phrase", [
    (["--top-p", "1.5"], "--top-p must lie in (0, 1], got 1.5"),
    (["--top-p", "0"], "--top-p must lie in (0, 1]"),
    (["--strategy", "top_p", "--top-p", "1"], "--strategy top_p needs --top-p below 1"),
    (["--temperature", "-1"], "--temperature must be a number > 0, got -1.0"),
    (["--temperature", "nan"], "--temperature must be a number > 0, got nan"),
    (["--strategy", "top_k", "--top-k", "0"], "--top-k must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
])
def test_bad_sampling_options_fail_before_the_model_loads(tmp_path, capsys, flags, phrase):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    # a model that does not exist: the option is refused first, in one line, without a traceback
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompts", str(prompts), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlhfkit: error: ") and phrase in err, err
