"""SFT: collator masks, packing without cross-example attention, accumulation invariance,
learning a fixed completion, NaN safety, and the `rlhfkit sft` command on a tiny model."""

import copy
import json

import pytest
import torch

from rlhfkit import cli
from rlhfkit.algorithms.preference import sft_loss
from rlhfkit.config import ConfigError
from rlhfkit.data.collators import collate_sft, pack_examples, tokenize_sft
from rlhfkit.generation.sampling import SamplingParams, generate
from rlhfkit.trainers.common import NonFiniteError
from rlhfkit.trainers.config import SFTConfig
from rlhfkit.trainers.sft import SFTTrainer, packing_attends_across_examples, train_sft
from rlhfkit.types import Message, SFTRecord


@pytest.fixture(autouse=True)
def _offline_commands_registered(monkeypatch):
    # `rlhfkit sft` is registered through cli.COMMAND_MODULES; make sure it is during the
    # tests even before the entry is added there (a no-op once it is).
    if "rlhfkit.cli.train" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ["rlhfkit.cli.train"])


def _ids(tok, text, special=False):
    return tok(text, add_special_tokens=special)["input_ids"]


def _cfg(**kw):
    base = dict(lora=False, learning_rate=1e-2, batch_size=4, micro_batch_size=4, epochs=1, chat="no",
                lr_scheduler="constant", max_length=32)
    base.update(kw)
    return SFTConfig(**base)


# --- collator ------------------------------------------------------------------------------


def test_prompt_completion_mask_covers_the_completion_and_eos(tiny_tok):
    example = tokenize_sft(tiny_tok, SFTRecord(prompt="the movie was", completion="good ."), chat=False)
    prompt, completion = _ids(tiny_tok, "the movie was", special=True), _ids(tiny_tok, "good .")
    assert example.input_ids == prompt + completion + [tiny_tok.eos_token_id]
    assert example.loss_mask == [0] * len(prompt) + [1] * (len(completion) + 1)
    everything = tokenize_sft(tiny_tok, SFTRecord(prompt="the movie was", completion="good ."), chat=False, completion_only=False)
    assert everything.loss_mask == [1] * len(everything.input_ids)


def test_chat_rows_train_only_the_last_assistant_turn(tiny_tok):
    # the tiny template renders "<|user|> the movie <|assistant|>" + " was good " for the answer
    record = SFTRecord(messages=(Message("user", "the movie"), Message("assistant", "was good")))
    example = tokenize_sft(tiny_tok, record)
    trained = [t for t, m in zip(example.input_ids, example.loss_mask) if m]
    assert trained == _ids(tiny_tok, "was good") + [tiny_tok.eos_token_id]
    prompt = [t for t, m in zip(example.input_ids, example.loss_mask) if not m]
    assert prompt == _ids(tiny_tok, "<|user|> the movie <|assistant|>")


def test_truncation_keeps_the_completion_and_at_least_one_prompt_token(tiny_tok):
    example = tokenize_sft(tiny_tok, SFTRecord(prompt="one two three four", completion="five six"), chat=False, max_length=5)
    # completion = five six <eos> (3 tokens), so 2 prompt tokens survive, taken from the end
    assert example.truncated
    assert example.input_ids == _ids(tiny_tok, "three four five six") + [tiny_tok.eos_token_id]
    assert example.loss_mask == [0, 0, 1, 1, 1]


def test_packing_masks_and_positions(tiny_tok):
    examples = [tokenize_sft(tiny_tok, SFTRecord(prompt=p, completion=c), chat=False, completion_only=False)
                for p, c in [("one", "two"), ("three four", "five"), ("six", "seven eight")]]
    lengths = [len(e.input_ids) for e in examples]  # 3, 4, 4 (each ends with EOS)
    assert lengths == [3, 4, 4]
    rows = pack_examples(examples, max_length=8)
    # greedy in order: [3 + 4] then [4]
    assert [len(r.input_ids) for r in rows] == [7, 4]
    assert rows[0].input_ids == examples[0].input_ids + examples[1].input_ids
    assert rows[0].position_ids == [0, 1, 2, 0, 1, 2, 3]
    # all-token loss, but never on an example's first token: it does not follow from the previous example
    assert rows[0].loss_mask == [0, 1, 1, 0, 1, 1, 1]
    batch = collate_sft(rows, pad_id=tiny_tok.pad_token_id)
    assert batch["attention_mask"] is None  # packed rows are separated by their position ids
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 0, 1, 2]  # padding tail: its own block
    assert batch["loss_mask"][1].tolist() == [0, 1, 1, 1, 0, 0, 0]


def test_packed_examples_do_not_attend_to_each_other(tiny_llama, tiny_tok):
    records = [SFTRecord(prompt=p, completion=c) for p, c in [("the movie was", "good ."), ("i loved it", "what a wonderful film ."),
                                                              ("the cast is", "excellent")]]
    examples = [tokenize_sft(tiny_tok, r, chat=False) for r in records]
    rows = pack_examples(examples, max_length=64)
    assert len(rows) == 1
    packed = collate_sft(rows, tiny_tok.pad_token_id)
    plain = collate_sft(examples, tiny_tok.pad_token_id)
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers skips the packed-sequence mask
        packed_logits = tiny_llama(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        plain_logits = tiny_llama(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
    start = 0
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        assert torch.allclose(packed_logits[start : start + n], plain_logits[i, :n], atol=1e-5)
        start += n
    # so the packed loss (completion tokens only) equals the unpacked one
    packed_loss, _ = sft_loss(packed_logits[None], packed["input_ids"], packed["loss_mask"])
    plain_loss, _ = sft_loss(plain_logits, plain["input_ids"], plain["loss_mask"])
    assert packed_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)
    assert not packing_attends_across_examples(tiny_llama)


def test_the_packing_check_notices_a_model_that_attends_across_examples(tiny_llama):
    class IgnoresPositions(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, position_ids=None, use_cache=False):
            return self.model(input_ids=input_ids, use_cache=use_cache)

        def get_input_embeddings(self):
            return self.model.get_input_embeddings()

    assert packing_attends_across_examples(IgnoresPositions(tiny_llama))


# --- trainer -------------------------------------------------------------------------------


def _sft_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gradient_accumulation_equals_the_full_batch(tiny_llama, tiny_tok):
    records = [SFTRecord(prompt=p, completion=c) for p, c in [
        ("the movie was", "good ."), ("i loved it", "what a wonderful film , great acting ."), ("one", "two"),
        ("the cast is", "excellent and fun")]]
    examples = [tokenize_sft(tiny_tok, r, chat=False) for r in records]
    results = []
    for micro in (4, 1):
        model = copy.deepcopy(tiny_llama)
        trainer = SFTTrainer(model, tiny_tok, _cfg(micro_batch_size=micro), total_steps=1)
        # SGD with lr 1: the parameter change is the gradient itself (Adam's first step is ±lr)
        trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)
        trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
        trainer.step(examples)
        results.append(_sft_params(model))
    start = _sft_params(tiny_llama)
    assert (results[0] - start).abs().max() > 1e-3
    assert torch.allclose(results[0], results[1], atol=1e-6), (results[0] - results[1]).abs().max()


def test_sft_learns_a_fixed_completion(tiny_llama, tiny_tok):
    prompts = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
    records = [SFTRecord(prompt=p, completion="a wonderful film .") for p in prompts]
    result = train_sft(tiny_llama, tiny_tok, records * 2, _cfg(epochs=12), eval_records=records[:2], progress=False)
    assert result["train"]["last_loss"] < 0.1 < 2.0 < result["train"]["first_loss"]
    assert result["eval"]["after"]["loss"] < result["eval"]["before"]["loss"] / 10
    assert result["eval"]["after"]["perplexity"] < 1.2
    rollout = generate(result["policy"], tiny_tok, prompts, SamplingParams(strategy="greedy", max_new_tokens=8), chat=False)
    assert rollout.responses == ["a wonderful film ."] * 4
    assert bool(rollout.finished.all())  # it learned to stop, too


def test_lora_sft_trains_only_the_adapter(tiny_llama, tiny_tok):
    base = copy.deepcopy(tiny_llama)
    records = [SFTRecord(prompt="the movie was", completion="good .")] * 4
    result = train_sft(tiny_llama, tiny_tok, records, _cfg(lora=True, lora_r=4, lora_alpha=8, learning_rate=5e-2, epochs=3),
                       progress=False)
    assert result["train"]["last_loss"] < result["train"]["first_loss"]
    policy = result["policy"]
    with policy.disable_adapter(), torch.no_grad():
        ids = torch.tensor([_ids(tiny_tok, "the movie was good")])
        assert torch.allclose(policy(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-6)


def test_non_finite_loss_stops_before_the_weights_change(tiny_llama, tiny_tok):
    with torch.no_grad():
        tiny_llama.model.norm.weight[0] = float("nan")
    trainer = SFTTrainer(tiny_llama, tiny_tok, _cfg(), total_steps=1)
    before = [p.detach().clone() for p in trainer.trainable]
    example = tokenize_sft(tiny_tok, SFTRecord(prompt="the movie was", completion="good ."), chat=False)
    with pytest.raises(NonFiniteError, match="SFT loss is not finite"):
        trainer.step([example])
    assert all(torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in zip(before, trainer.trainable))


def test_config_checks_explain_themselves():
    with pytest.raises(ConfigError, match=r"batch_size \(6\) must be a multiple of micro_batch_size \(4\)"):
        SFTConfig(batch_size=6, micro_batch_size=4)
    with pytest.raises(ConfigError, match="either eval_data"):
        SFTConfig(eval_data="x.jsonl", eval_fraction=0.1)
    assert SFTConfig().learning_rate == 2e-4 and SFTConfig(lora=False).learning_rate == 2e-5


# --- command line --------------------------------------------------------------------------


def _save_tiny(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


def test_sft_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sft", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--loss-on {completion,all}" in out and "--packing" in out and "--eval-fraction" in out


def test_sft_command_writes_a_run_folder(tmp_path, tiny_llama, tiny_tok, capsys):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    data = tmp_path / "demos.jsonl"
    rows = [{"prompt": "the movie was", "completion": "good ."},
            {"messages": [{"role": "user", "content": "i loved it"}, {"role": "assistant", "content": "great acting ."}]}] * 4
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = cli.main(["sft", "--data", str(data), "--model", str(model), "--eval-fraction", "0.25", "--epochs", "2",
                     "--batch-size", "2", "--micro-batch-size", "1", "--learning-rate", "0.02", "--packing",
                     "--output-dir", str(tmp_path / "runs"), "--run-name", "s", "--precision", "fp32", "--lora-r", "4"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "s"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] >= 2 and summary["eval"]["after"]["loss"] < summary["eval"]["before"]["loss"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {m["stage"] for m in metrics} == {"sft", "sft_eval"}
    assert "packing: true" in (run / "config.yaml").read_text()
    # the merged checkpoint loads as an ordinary model with the real loading code
    from rlhfkit.models import load_policy

    loaded, _ = load_policy(str(run / "checkpoints" / "final"))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in tiny_llama.parameters())


def test_sft_bad_data_file_names_file_row_and_field(tmp_path, capsys):
    data = tmp_path / "demos.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": "q", "completion": 3}\n')
    assert cli.main(["sft", "--data", str(data), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "demos.jsonl: row 2: field 'completion': expected text" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing written before the data is known to be good
    assert cli.main(["sft"]) == 2
    assert "--data is required" in capsys.readouterr().err
