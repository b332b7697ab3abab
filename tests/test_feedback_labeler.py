"""The AI labeler: techniques on a fake judge with known log-probs (hand-derived labels), the
local backend on a tiny model (against a teacher-forced forward pass), the cache, the CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from rlhfkit.feedback.backends import CachedJudge, JudgementCache, LocalJudge
from rlhfkit.feedback.judge import JudgePrompt, JudgeTemplate
from rlhfkit.feedback.labeler import (
    JudgeReward,
    LabelPlan,
    Pair,
    format_table,
    label_pairs,
    randomise_order,
)

_SHOWN = re.compile(r"Response 1: (.*)\nResponse 2: (.*)\n")


class FakeJudge:
    """P("1"), P("2") looked up by the (shown first, shown second) responses; after a rationale
    the `cot` table is used, per rationale text. Rationales: "R" greedy, "S<seed>" when sampled."""

    identity = "fake"

    def __init__(self, plain, cot=None):
        self.plain, self.cot = plain, cot or {}
        self.calls = 0

    def choice_logprobs(self, prompts, choices):
        self.calls += len(prompts)
        out = []
        for p in prompts:
            shown = _SHOWN.search(p.user).groups()
            rationale = re.search(r"Rationale: (\S+)", p.prefix)
            p1, p2 = self.cot[(rationale.group(1),) + shown] if rationale else self.plain[shown]
            out.append([math.log(p1), math.log(p2)])
        return out

    def generate(self, prompts, max_new_tokens, temperature=0.0, seeds=None):
        return ["R" if temperature == 0 else f"S{s}" for s in (seeds or [0] * len(prompts))]


def test_techniques_on_known_logprobs():
    # pair 1 (good, bad), gold: first. forward P(1), P(2) = .6, .2 -> 0.75; swapped (bad, good) = .3, .1
    #   -> P(pos 1) = 0.75 -> P(good) = 0.25; +swap = (0.75 + 0.25)/2 = 0.5 (same position: 1).
    # pair 2 (fine, awful), gold: first. forward .8/.2 -> 0.8; swapped .1/.9 -> 0.1 -> P(fine) = 0.9;
    #   +swap = 0.85.
    plain = {("good", "bad"): (0.6, 0.2), ("bad", "good"): (0.3, 0.1),
             ("fine", "awful"): (0.8, 0.2), ("awful", "fine"): (0.1, 0.9)}
    # CoT (rationale "R"): pair 1 forward .9/.1 = 0.9, swapped (bad, good) .2/.8 = 0.2 -> (0.9 + 0.8)/2 = 0.85;
    # pair 2 forward .3/.7 = 0.3, swapped .5/.5 = 0.5 -> (0.3 + 0.5)/2 = 0.4.
    # Self-consistency (S1, S2): pair 1 forward S1 .5/.5, S2 1/3 -> mean(0.5, 0.75) = 0.625,
    #   swapped S1 and S2 .25/.75 -> P(pos 1) = 0.25 -> P(good) = 0.75; label = (0.625 + 0.75)/2 = 0.6875. pair 2: forward .4/.6 both = 0.4, swapped .4/.6 both = 0.4
    #   -> P(fine) = 0.6; label = 0.5.
    cot = {("R", "good", "bad"): (0.9, 0.1), ("R", "bad", "good"): (0.2, 0.8),
           ("R", "fine", "awful"): (0.3, 0.7), ("R", "awful", "fine"): (0.5, 0.5),
           ("S1", "good", "bad"): (0.5, 0.5), ("S2", "good", "bad"): (0.75, 0.25),
           ("S1", "bad", "good"): (0.25, 0.75), ("S2", "bad", "good"): (0.25, 0.75),
           ("S1", "fine", "awful"): (0.4, 0.6), ("S2", "fine", "awful"): (0.4, 0.6),
           ("S1", "awful", "fine"): (0.4, 0.6), ("S2", "awful", "fine"): (0.4, 0.6)}
    pairs = [Pair("p", "good", "bad", 1.0), Pair("q", "fine", "awful", 1.0)]
    run = label_pairs(FakeJudge(plain, cot), pairs, JudgeTemplate(), LabelPlan(swap=True, cot=True, self_consistency=2))
    by_name = {t.name: t for t in run.techniques}
    assert by_name["base"].p_first == pytest.approx([0.75, 0.8])
    assert by_name["+swap"].p_first == pytest.approx([0.5, 0.85])
    assert by_name["+CoT"].p_first == pytest.approx([0.85, 0.4])
    sc = run.techniques[-1]
    assert sc.name.startswith("+self-consistency (2")
    assert sc.p_first == pytest.approx([0.6875, 0.5])
    table = {row["technique"]: row for row in run.table()}
    # alignment vs gold "first": base 2/2; +swap: 0.5 is half right, 0.85 right -> 0.75; CoT: 0.85 right,
    # 0.4 wrong -> 0.5; SC: 0.6875 right, 0.5 half -> 0.75.
    assert table["base"]["alignment"] == pytest.approx(1.0)
    assert table["+swap"]["alignment"] == pytest.approx(0.75)
    assert table["+CoT"]["alignment"] == pytest.approx(0.5)
    assert table[sc.name]["alignment"] == pytest.approx(0.75)
    # same position: pair 1 (position 1 both orders) only -> 50%, position 1 once
    assert table["+swap"]["same_position_rate"] == pytest.approx(0.5)
    assert (table["+swap"]["same_position_first"], table["+swap"]["same_position_second"]) == (1, 0)
    # CoT: pair 1 0.9 / 0.2 -> consistent; pair 2 0.3 / 0.5 (tie) -> not counted -> 0%
    assert table["+CoT"]["same_position_rate"] == 0.0
    assert run.rationales == ["R", "R"]
    assert "alignment" in format_table(run)
    # the labels written are the last technique's, chosen = preferred
    rows = [label.to_row() for label in run.labels()]
    assert rows[0] == {"prompt": "p", "chosen": "good", "rejected": "bad", "label": 0.6875}
    assert rows[1]["label"] == 0.5


def test_no_swap_runs_one_order_only():
    plain = {("good", "bad"): (0.6, 0.2)}
    run = label_pairs(FakeJudge(plain), [Pair("p", "good", "bad")], plan=LabelPlan(swap=False))
    assert [t.name for t in run.techniques] == ["base"]
    assert run.final.p_swapped is None
    assert "alignment" not in run.table()[0]  # no gold


def test_randomise_order_flips_gold_with_the_pair():
    pairs = [Pair("p", f"a{i}", f"b{i}", 1.0) for i in range(40)]
    shown = randomise_order(pairs, seed=0)
    flipped = [s for s in shown if s.first.startswith("b")]
    assert 0 < len(flipped) < 40
    assert all(s.gold == 0.0 for s in flipped)
    assert all(s.gold == 1.0 for s in shown if s.first.startswith("a"))


def test_judge_reward_rescales_expected_rating():
    class Rater:
        identity = "rater"

        def choice_logprobs(self, prompts, choices):
            # all mass on "10" -> rating 10 -> reward 1; all on "1" -> −1
            return [[0.0 if c == ("10" if "great" in p.user else "1") else -1e9 for c in choices] for p in prompts]

    reward = JudgeReward(Rater())
    assert reward(["p", "p"], ["great film", "awful film"]) == pytest.approx([1.0, -1.0])


# --------------------------------------------------------------------------------------------
# Local backend on a tiny model


def test_local_choice_logprobs_match_teacher_forcing(tiny_llama, tiny_tok):
    judge = LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=False, batch_size=2)
    prompts = [JudgePrompt("the movie was", " "), JudgePrompt("i loved it . what a", " "),
               JudgePrompt("terrible plot , boring and slow . the ending is", " ")]
    # "good" is a token prefix of "good ." -> P(exactly "good") = P(good) · (1 − P(. | good))
    choices = ["good", "bad", "good ."]
    got = judge.choice_logprobs(prompts, choices)
    for prompt, row in zip(prompts, got):
        ids = tiny_tok(prompt.user + prompt.prefix)["input_ids"]
        good, bad, dot = (tiny_tok.convert_tokens_to_ids(t) for t in ("good", "bad", "."))
        with torch.no_grad():
            logp = torch.log_softmax(tiny_llama(torch.tensor([ids + [good]])).logits[0].float(), -1)
        p_good, p_bad = logp[len(ids) - 1, good].item(), logp[len(ids) - 1, bad].item()
        p_dot = logp[len(ids), dot].item()
        assert row[0] == pytest.approx(p_good + math.log1p(-math.exp(p_dot)), abs=1e-4)
        assert row[1] == pytest.approx(p_bad, abs=1e-4)
        assert row[2] == pytest.approx(p_good + p_dot, abs=1e-4)
    # left padding in a batch changes nothing
    one_by_one = LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=False, batch_size=1)
    alone = one_by_one.choice_logprobs(prompts, choices)
    assert torch.allclose(torch.tensor(alone), torch.tensor(got), atol=1e-4)


def _digit_judge_model():
    """A tiny tokenizer that knows the digits and a tiny llama whose digit logits are all large
    (about 30× a common row added to each), as in a real judge whose logits sit around ±15, while
    their differences stay those of the random init."""
    from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    tok.add_tokens([str(d) for d in range(10)])
    model = tiny_causal_lm("llama", vocab_size=len(tok))
    weight = model.get_output_embeddings().weight  # (V, H)
    with torch.no_grad():
        common = 30.0 * weight[tok.convert_tokens_to_ids("the")].clone()
        for d in range(10):
            weight[tok.convert_tokens_to_ids(str(d))] += common
    return model, tok


def test_bf16_judge_keeps_distinct_pairs_distinct():
    """Issue 16: under bf16 the judge gave different pairs the same soft label (bf16 logits of
    magnitude ~16 are spaced 0.125 apart, so "1" vs "2" log-odds collapse onto a few values).
    The output head and softmax now run in fp32: 16 distinct pairs give 16 distinct labels, close
    to the fp32 model's, and so do 1-10 ratings of distinct responses. (Before the fix the same
    setup gave 5 distinct values for the 16 pairs, among them σ(−1) = 0.268941 twice over.)"""
    from rlhfkit.feedback.labeler import rate_responses

    model, tok = _digit_judge_model()
    words = "good bad great awful fun slow long short clever dull".split()
    pairs = [Pair(f"the movie was {words[i % 4]}", f"{words[4 + i // 4]} and {words[(3 * i) % 10]}",
                  f"it was {words[(7 * i + 2) % 10]}") for i in range(16)]
    assert len(set(pairs)) == 16
    labels, ratings = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        judge = LocalJudge(model, tok, identity="tiny-digits", chat=False, batch_size=4, compute_dtype=dtype)
        labels[dtype] = label_pairs(judge, pairs, JudgeTemplate(), LabelPlan(swap=False)).techniques[0].p_first
        ratings[dtype] = rate_responses(judge, [p.prompt for p in pairs], [p.first for p in pairs], JudgeTemplate())
    assert len(set(labels[torch.float32])) == 16  # the setup itself tells the pairs apart
    assert len(set(labels[torch.bfloat16])) == 16
    assert labels[torch.bfloat16] == pytest.approx(labels[torch.float32], abs=0.01)
    assert len(set(ratings[torch.bfloat16])) == len(set(ratings[torch.float32])) == 16
    assert ratings[torch.bfloat16] == pytest.approx(ratings[torch.float32], abs=0.05)


def test_local_generate_and_chat_rendering(tiny_llama, tiny_tok):
    judge = LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=True, batch_size=4)
    prompt = JudgePrompt("which is better ?", "answer :")
    assert judge.render(prompt) == "<|user|> which is better ? <|assistant|>answer :"
    texts = judge.generate([prompt, JudgePrompt("the movie", "")], max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert judge.generate([prompt], max_new_tokens=5) == texts[:1]  # greedy is deterministic


def test_cache_answers_repeated_requests(tmp_path, tiny_llama, tiny_tok):
    judge = CachedJudge(LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=False), JudgementCache(tmp_path / "c.sqlite"))
    prompts = [JudgePrompt("the movie was", " "), JudgePrompt("i hated it", " ")]
    first = judge.choice_logprobs(prompts, ["good", "bad"])
    assert (judge.hits, judge.misses) == (0, 2)
    again = judge.choice_logprobs(prompts[::-1], ["good", "bad"])
    assert (judge.hits, judge.misses) == (2, 2)
    assert again == first[::-1]
    # a new process (new cache object) reads the same file
    other = CachedJudge(LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=False), JudgementCache(tmp_path / "c.sqlite"))
    other.generate(prompts, 3)
    other.generate(prompts, 3)
    assert (other.hits, other.misses) == (2, 2)


def test_answers_from_the_cache_are_reported_as_cached(tmp_path, tiny_llama, tiny_tok):
    judge = CachedJudge(LocalJudge(tiny_llama, tiny_tok, identity="tiny", chat=False), JudgementCache(tmp_path / "c.sqlite"))
    pairs = [Pair("the movie was", "good", "bad", 1.0), Pair("i", "loved it", "hated it", 1.0)]
    plan = LabelPlan(swap=True, cot=True, max_rationale_tokens=3)
    first = label_pairs(judge, pairs, plan=plan)
    assert [t.cached for t in first.techniques] == [False, False, False]
    again = label_pairs(judge, pairs, plan=plan)  # every request is in the cache now
    assert [t.cached for t in again.techniques] == [True, True, True]
    table = format_table(again)
    assert table.count("cached") >= 3 and "0.000" not in table
    assert not any(row["cached"] for row in label_pairs(FakeJudge({("good", "bad"): (0.6, 0.4), ("bad", "good"): (0.5, 0.5),
                                                                    ("loved it", "hated it"): (0.6, 0.4),
                                                                    ("hated it", "loved it"): (0.5, 0.5)}),
                                                        pairs).table())  # no cache: never "cached"


# --------------------------------------------------------------------------------------------
# CLI


def _cli(argv):
    import argparse

    from rlhfkit import cli
    from rlhfkit.cli.feedback import register

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "label" not in sub.choices:
        register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def tiny_judge_dir(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny-judge"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


def test_label_cli_writes_valid_pairs_and_reports_alignment(tmp_path, tiny_judge_dir, capsys):
    from rlhfkit.data.loaders import load_records

    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "the movie was", "chosen": "good", "rejected": "bad"},
            {"prompt": "the ending is", "chosen": "weak", "rejected": "excellent", "label": 0.0},
            {"prompt": "i", "chosen": "loved it", "rejected": "hated it", "label": 0.5}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, report = tmp_path / "labels.jsonl", tmp_path / "report.json"
    assert _cli(["label", "--pairs", str(pairs), "--judge", str(tiny_judge_dir), "--output", str(out),
                 "--cot", "--max-rationale-tokens", "4", "--cache", "off", "--chat", "no", "--report", str(report),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "alignment over 2 pairs" in printed and "+CoT" in printed
    records = load_records(out, "pairwise").records
    assert len(records) == 3 and all(0.5 <= r.label <= 1.0 for r in records)
    written = json.loads(report.read_text())
    assert [t["technique"] for t in written["techniques"]] == ["base", "+swap", "+CoT"]
    # the report names the judge as a person reads it; the cache key is kept apart
    assert written["judge"].startswith(f"{tiny_judge_dir} (local, ") and written["judge_cache_key"].startswith("local:")


def test_label_cli_rating_mode(tmp_path, tiny_judge_dir, capsys):
    from rlhfkit.config import ConfigError
    from rlhfkit.data.loaders import load_records

    src = tmp_path / "gen.jsonl"
    src.write_text(json.dumps({"prompt": "the movie was", "response": "good"}) + "\n")
    out = tmp_path / "ratings.jsonl"
    argv = ["label", "--mode", "rating", "--pairs", str(src), "--judge", str(tiny_judge_dir),
            "--output", str(out), "--cache", "off", "--device", "cpu"]
    assert _cli(argv) == 0
    (record,) = load_records(out, "rating").records
    assert 1.0 <= record.rating <= 10.0
    printed = capsys.readouterr().out
    assert f"judge {tiny_judge_dir} (local, " in printed and "local:" not in printed
    with pytest.raises(ConfigError, match="ratings.jsonl exists; .*--overwrite"):
        _cli(argv)  # an earlier output is not replaced silently
    assert _cli([*argv, "--overwrite"]) == 0


def test_label_cli_user_errors(tmp_path, tiny_judge_dir):
    from rlhfkit.config import ConfigError
    from rlhfkit.data.schemas import DataError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: field 'chosen'"):
        _cli(["label", "--pairs", str(bad), "--judge", str(tiny_judge_dir)])
    with pytest.raises(ConfigError, match="--pairs is required"):
        _cli(["label"])
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(ConfigError, match="--judge ./nowhere"):
        _cli(["label", "--pairs", str(good), "--judge", "./nowhere"])
    with pytest.raises(ConfigError, match="preamble"):
        _cli(["label", "--pairs", str(good), "--preamble", "nonexistent"])


# --------------------------------------------------------------------------------------------
# The embedded judge (SmolLM2-135M-Instruct): one short run in the default suite


@pytest.mark.embedded
def test_embedded_judge_labels_two_pairs(tmp_path, capsys):
    from tests.conftest import embedded_available

    if not embedded_available():
        pytest.skip("embedded model wheels not installed (run `make setup`)")
    from rlhfkit.data.loaders import load_records

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "The film is set on a space station. The story was",
                                 "chosen": "gripping and beautiful, I loved it.", "rejected": "dull, a waste of time."}))
    out = tmp_path / "labels.jsonl"
    # fp32: bf16 autocast spends ~15 s compiling CPU kernels on its first call, longer than this whole test
    assert _cli(["label", "--pairs", str(pairs), "--preamble", "positive", "--output", str(out),
                 "--cache", "off", "--device", "cpu", "--precision", "fp32"]) == 0
    assert "same position preferred" in capsys.readouterr().out
    (record,) = load_records(out, "pairwise").records
    assert 0.5 <= record.label <= 1.0
