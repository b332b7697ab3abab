"""On-policy distillation (GKD; Agarwal et al. 2024): the generalised JSD by hand for β = 0, ½, 1,
a tiny student learning a tiny teacher's distributions, the tokenizer check and the command."""

import json
import math

import pytest
import torch

from rlhfkit import cli
from rlhfkit.algorithms.distillation import generalized_jsd, generalized_jsd_loss
from rlhfkit.config import ConfigError
from rlhfkit.models.tiny import tiny_causal_lm
from rlhfkit.trainers.config import GKDConfig
from rlhfkit.trainers.gkd import GKDTrainer, check_same_tokenizer, train_gkd
from rlhfkit.types import SFTRecord

# teacher T = (1/2, 1/2), student S = (1/4, 3/4), as logits (log-probabilities)
T = torch.log(torch.tensor([0.5, 0.5]))
S = torch.log(torch.tensor([0.25, 0.75]))


def test_generalized_jsd_by_hand():
    # β = 0: forward KL(T‖S) = ½ ln(½/¼) + ½ ln(½/¾) = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3) ≈ 0.143841
    assert generalized_jsd(S, T, 0.0).item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    # β = 1: reverse KL(S‖T) = ¼ ln(¼/½) + ¾ ln(¾/½) = −¼ ln 2 + ¾ ln(3/2) ≈ 0.130812
    assert generalized_jsd(S, T, 1.0).item() == pytest.approx(-0.25 * math.log(2) + 0.75 * math.log(1.5), rel=1e-5)
    # β = ½: M = (3/8, 5/8); KL(T‖M) = ½ ln(4/3) + ½ ln(4/5) = ½ ln(16/15) ≈ 0.032270;
    # KL(S‖M) = ¼ ln(2/3) + ¾ ln(6/5) ≈ 0.035373; JSD = ½(0.032270 + 0.035373) ≈ 0.033822
    expected = 0.5 * (0.5 * math.log(16 / 15)) + 0.5 * (0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5))
    assert generalized_jsd(S, T, 0.5).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.033822, abs=1e-6)
    # the same distributions: 0 for every β; temperature divides the logits first (τ = 2 on
    # logits 2·log p gives back p)
    assert generalized_jsd(T, T, 0.3).item() == pytest.approx(0.0, abs=1e-7)
    assert generalized_jsd(2 * S, 2 * T, 0.0, temperature=2.0).item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)


def test_the_loss_is_the_token_mean_over_the_mask():
    # two positions, the second masked out: the loss is position 1's β = 0 value, the sum the same
    student, teacher = torch.stack([S, T])[None], torch.stack([T, S])[None]  # (1, 2, 2)
    loss, stats = generalized_jsd_loss(student, teacher, torch.tensor([[1.0, 0.0]]), beta=0.0)
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5) and stats["tokens"].item() == 1
    half, _ = generalized_jsd_loss(student, teacher, torch.tensor([[1.0, 0.0]]), beta=0.0, num_tokens=2)
    assert half.item() == pytest.approx(loss.item() / 2)


RECORDS = [SFTRecord(prompt=p, completion=c) for p, c in [
    ("the movie was", "good and fun"), ("i loved it", "the cast is excellent"), ("what is two plus two", "four"),
    ("the cast is", "great"), ("the ending is", "weak and slow"), ("what a", "wonderful film")]]


def _cfg(**kw):
    base = dict(data="unused", teacher="unused", lora=False, learning_rate=5e-3, batch_size=6, micro_batch_size=6,
                max_steps=25, lmbda=1.0, beta=0.5, temperature=1.0, max_new_tokens=6, lr_scheduler="constant", seed=0)
    base.update(kw)
    return GKDConfig(**base)


def _peaked_teacher(tiny_tok):
    """Another random tiny model over the same tokens, its output layer scaled up: a random init's
    next-token distributions are close to uniform (and so close to each other); these are peaked."""
    torch.manual_seed(1)
    teacher = tiny_causal_lm("llama", vocab_size=len(tiny_tok))
    with torch.no_grad():
        teacher.lm_head.weight.mul_(200.0)
    return teacher


def test_a_tiny_student_learns_the_teachers_distributions(tiny_llama, tiny_tok):
    teacher = _peaked_teacher(tiny_tok)
    result = train_gkd(tiny_llama, teacher, tiny_tok, RECORDS, _cfg(), RECORDS, progress=False)
    before, after = result["eval"]["before"], result["eval"]["after"]
    # the student's own samples (fixed seed) and the data's completions: its JSD to the teacher falls
    assert after["on_policy_jsd"] < 0.5 * before["on_policy_jsd"], (before, after)
    assert after["loss"] < 0.8 * before["loss"], (before, after)  # on the data completions it was not trained on (λ = 1)
    assert all(h["gkd/on_policy"] == 1.0 for h in result["history"])  # λ = 1: every batch the student's own
    # λ = 0: every batch the data's completions
    mixed = train_gkd(tiny_causal_lm("llama", vocab_size=len(tiny_tok)), teacher, tiny_tok, RECORDS,
                      _cfg(lmbda=0.0, max_steps=2), progress=False)
    assert [h["gkd/on_policy"] for h in mixed["history"]] == [0.0, 0.0]


def test_resume_equals_no_interruption(tmp_path, tiny_llama, tiny_tok):
    import copy

    from rlhfkit.trainers.checkpoint import Checkpointer

    teacher = _peaked_teacher(tiny_tok)

    def run(steps, folder, resume=False):
        student = copy.deepcopy(tiny_llama)
        train_gkd(student, teacher, tiny_tok, RECORDS, _cfg(max_steps=steps, lmbda=0.5, batch_size=3, micro_batch_size=3),
                  progress=False, checkpointer=Checkpointer(folder, every=2), resume=resume)
        return torch.cat([p.detach().flatten() for p in student.parameters()])

    whole = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    assert torch.equal(whole, run(4, tmp_path / "b", resume=True))


def test_sampled_completions_follow_the_prompt(tiny_llama, tiny_tok):
    from rlhfkit.data.collators import tokenize_sft

    trainer = GKDTrainer(tiny_llama, tiny_causal_lm("llama", vocab_size=len(tiny_tok)), tiny_tok, _cfg(), total_steps=1)
    example = tokenize_sft(tiny_tok, RECORDS[0], chat=False)
    prompt = example.input_ids[: example.loss_mask.index(1)]
    (own,) = trainer.sample_completions([example], torch.Generator().manual_seed(0))
    assert own.input_ids[: len(prompt)] == prompt and own.loss_mask == [0] * len(prompt) + [1] * (len(own.input_ids) - len(prompt))
    assert 1 <= len(own.input_ids) - len(prompt) <= 6


def test_another_tokenizer_is_refused(tiny_tok):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    other = Tokenizer(models.WordLevel({"<unk>": 0, "the": 1, "movie": 2}, unk_token="<unk>"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=other, unk_token="<unk>")
    check_same_tokenizer(tiny_tok, tiny_tok, "s", "t")
    with pytest.raises(ConfigError, match="--teacher t has another tokenizer than the student s"):
        check_same_tokenizer(tiny_tok, other, "s", "t")


def test_gkd_command(tmp_path, tiny_dir, tiny_tok, capsys):
    data = tmp_path / "demos.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "completion": r.completion}) + "\n" for r in RECORDS))
    teacher = tmp_path / "teacher"
    tiny_causal_lm("llama", vocab_size=len(tiny_tok)).save_pretrained(teacher)
    tiny_tok.save_pretrained(teacher)
    code = cli.main(["gkd", "--model", tiny_dir, "--teacher", str(teacher), "--data", str(data), "--max-steps", "2",
                     "--batch-size", "3", "--micro-batch-size", "3", "--max-new-tokens", "4", "--eval-fraction", "0.34",
                     "--output-dir", str(tmp_path / "runs"), "--run-name", "g"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "g" / "summary.json").read_text())
    assert summary["command"] == "gkd" and summary["steps"] == 2 and "on_policy_jsd" in summary["eval"]["after"]
    assert (tmp_path / "runs" / "g" / "checkpoints" / "final" / "config.json").exists()
    # λ = 1 (always the student's samples): prompt-only rows do; with λ < 1 they stop at row 1
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": r.prompt}) + "\n" for r in RECORDS))
    common = ["--model", tiny_dir, "--teacher", str(teacher), "--data", str(prompts), "--max-steps", "1",
              "--batch-size", "3", "--micro-batch-size", "3", "--max-new-tokens", "4", "--output-dir", str(tmp_path / "runs")]
    assert cli.main(["gkd", *common, "--lmbda", "1", "--run-name", "p"]) == 0, capsys.readouterr().err
    assert cli.main(["gkd", *common, "--run-name", "p2"]) == 2
    assert "row 1: field 'completion'" in capsys.readouterr().err
    # a teacher with another tokenizer: refused before any weights load, nothing written
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((teacher / "config.json").read_text())
    from tokenizers import Tokenizer, models

    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "x": 1}, unk_token="<unk>")),
                            unk_token="<unk>").save_pretrained(other)
    code = cli.main(["gkd", "--model", tiny_dir, "--teacher", str(other), "--data", str(data),
                     "--output-dir", str(tmp_path / "runs"), "--run-name", "bad"])
    assert code == 2 and "another tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "bad").exists()
    with pytest.raises(SystemExit):
        cli.main(["gkd", "--help"])
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--teacher", "--lmbda", "--beta", "--temperature"))
