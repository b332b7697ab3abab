"""DPO / IPO / KTO on tiny random models: learning, invariances (accumulation, precomputed vs
live reference), data conversion, NaN safety, and the `rlhfkit dpo` command."""

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch

from rlhfkit import cli
from rlhfkit.config import ConfigError
from rlhfkit.data.collators import (
    UnpairedText,
    collate_pairs,
    mismatched_partners,
    tokenize_pairs,
    unpaired_from_pairwise,
    unpaired_from_thumbs,
)
from rlhfkit.models.lora import add_lora
from rlhfkit.trainers.common import NonFiniteError
from rlhfkit.trainers.config import DPOConfig
from rlhfkit.trainers.dpo import DPOTrainer, _examples, train_dpo
from rlhfkit.types import PairwiseRecord, ThumbsRecord

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
# chosen: praise; rejected: complaints (different lengths, so padding is exercised)
PAIRS = [
    PairwiseRecord(p, chosen, rejected)
    for p, chosen, rejected in zip(PROMPTS, ["good .", "great acting and a fine story .", "four", "excellent"],
                                   ["bad , boring and slow .", "awful", "five six", "terrible plot ."])
]


@pytest.fixture(autouse=True)
def _offline_commands_registered(monkeypatch):
    # `rlhfkit dpo` is registered through cli.COMMAND_MODULES; a no-op once the entry is there.
    if "rlhfkit.cli.train" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ["rlhfkit.cli.train"])


def _cfg(**kw):
    base = dict(lora=False, learning_rate=5e-3, batch_size=8, micro_batch_size=8, max_steps=1, chat="no",
                lr_scheduler="constant", max_response_tokens=16)
    base.update(kw)
    return DPOConfig(**base)


def _flat(params):
    return torch.cat([p.detach().flatten() for p in params])


# --- data ----------------------------------------------------------------------------------


def test_pairs_collate_to_prompt_left_padded_and_responses_right_padded(tiny_tok):
    examples = tokenize_pairs(tiny_tok, PAIRS[:2], chat=False)
    eos, pad = tiny_tok.eos_token_id, tiny_tok.pad_token_id
    assert examples[0].chosen_ids == tiny_tok("good .", add_special_tokens=False)["input_ids"] + [eos]
    batch = collate_pairs(examples, pad)
    # rows: chosen 0, chosen 1, rejected 0, rejected 1; prompts repeated
    assert batch["prompt_ids"].shape[0] == batch["response_ids"].shape[0] == 4
    assert batch["prompt_ids"][0].tolist()[-3:] == tiny_tok("the movie was")["input_ids"]
    assert batch["prompt_mask"][0].tolist() == [1, 1, 1] and batch["prompt_ids"][2].tolist() == batch["prompt_ids"][0].tolist()
    # words + EOS: "good ." 3, "great acting and a fine story ." 8, "bad , boring and slow ." 7, "awful" 2
    assert batch["response_mask"].sum(1).tolist() == [3, 8, 7, 2]
    assert batch["response_ids"][3].tolist() == tiny_tok("awful", add_special_tokens=False)["input_ids"] + [eos] + [pad] * 6
    assert batch["label"].tolist() == [1.0, 1.0]


def test_kto_examples_from_pairs_and_thumbs():
    pairs = [PairwiseRecord("p", "a", "b"), PairwiseRecord("q", "c", "d", label=0.2), PairwiseRecord("r", "e", "f", label=0.5)]
    texts, ties = unpaired_from_pairwise(pairs)
    # label > ½: chosen desirable; label < ½: rejected is the better one; ties say neither
    assert texts == [UnpairedText("p", "a", True), UnpairedText("p", "b", False),
                     UnpairedText("q", "d", True), UnpairedText("q", "c", False)]
    assert ties == 1
    thumbs = unpaired_from_thumbs([ThumbsRecord("p", "x", True), ThumbsRecord("p", "y", False)])
    assert [t.desirable for t in thumbs] == [True, False]
    partners = mismatched_partners(7, seed=3)
    assert sorted(partners) == list(range(7)) and all(partners[i] != i for i in range(7))


# --- invariances ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_gradient_accumulation_equals_the_full_batch(tiny_llama, tiny_tok, loss):
    data = PAIRS * 2 if loss == "dpo" else PAIRS  # KTO: 8 unpaired examples from 4 pairs
    # A sharper reference than the policy (logits × 3) gives arbitrary completions lower
    # reference log-probs, so KTO's z₀ (a mean log-ratio on mismatched pairs) is clearly > 0 and
    # must be the same whole-batch value for every micro-batch.
    reference = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        reference.lm_head.weight.mul_(3.0)
    results = []
    for micro in (8, 2):
        model = copy.deepcopy(tiny_llama)
        cfg = _cfg(loss=loss, micro_batch_size=micro)
        examples, _ = _examples(tiny_tok, data, cfg)
        trainer = DPOTrainer(model, tiny_tok, cfg, total_steps=1, reference=reference)
        items = trainer.prepare(examples)
        # SGD with lr 1: the parameter change is the gradient itself (Adam's first step is ±lr)
        trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)
        trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
        stats = trainer.step(items)
        results.append(_flat(model.parameters()))
    if loss == "kto":
        assert stats["kl/z0"] > 1.0
    assert (results[0] - _flat(tiny_llama.parameters())).abs().max() > 1e-3
    assert torch.allclose(results[0], results[1], atol=1e-5), (results[0] - results[1]).abs().max()


@pytest.mark.parametrize("use_lora", [False, True])
def test_precomputed_reference_equals_live(tiny_llama, tiny_tok, use_lora):
    results, refs = [], []
    for precompute in (True, False):
        torch.manual_seed(0)
        model = copy.deepcopy(tiny_llama)
        policy = add_lora(model, r=4, alpha=8) if use_lora else model
        cfg = _cfg(precompute_ref=precompute, micro_batch_size=2, learning_rate=5e-2 if use_lora else 5e-3)
        examples, _ = _examples(tiny_tok, PAIRS * 2, cfg)
        trainer = DPOTrainer(policy, tiny_tok, cfg, total_steps=3)
        items = trainer.prepare(examples)
        assert all((it.ref_logps is not None) == precompute for it in items)
        if precompute:
            refs.append(torch.tensor([it.ref_logps for it in items]))
        for _ in range(3):
            stats = trainer.step(items)
        # live reference after training: the adapter-disabled base (LoRA) or the frozen copy
        if not precompute:
            refs.append(torch.cat([trainer.reference_logps([it.example for it in items[i : i + 2]]) for i in range(0, 8, 2)]))
        results.append((_flat(p for p in policy.parameters() if p.requires_grad), stats))
    assert torch.allclose(refs[0], refs[1], atol=1e-5), (refs[0] - refs[1]).abs().max()
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert results[0][1]["loss"] == pytest.approx(results[1][1]["loss"], abs=1e-5)


class _BigramLM(torch.nn.Module):
    """A causal LM whose logits at every position are the row of a fixed table for the token
    there, so the log-prob of each response token can be written down without our code:
    log π(a_t | s_t) = log-softmax(table[previous token])[a_t]. It honours `logits_to_keep`
    as a Hugging Face model does and ignores the mask and positions (a bigram needs neither)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())

    def forward(self, input_ids, logits_to_keep=0, **_):
        logits = self.table[input_ids]  # (B, L, V)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def _bigram_logp_by_hand(table: list[list[float]], prompt: list[int], response: list[int]) -> float:
    """Σ_t log π(a_t | a_{t−1}) with the log-softmax written out: z_a − (m + log Σ_v exp(z_v − m))."""
    total, previous = 0.0, prompt[-1]
    for token in response:
        z = table[previous]
        m = max(z)
        total += z[token] - (m + math.log(sum(math.exp(v - m) for v in z)))
        previous = token
    return total


def test_reference_log_probs_are_the_initial_policy_s(tiny_tok):
    # precompute_ref with no reference model: the stored log-probs are the untouched policy's,
    # summed over each response (EOS included) and conditioned on the last prompt token only
    table = torch.randn(len(tiny_tok), len(tiny_tok), generator=torch.Generator().manual_seed(0)) * 2.0
    cfg = _cfg(micro_batch_size=2)  # two micro-batches, so prompts and responses get padded
    examples, _ = _examples(tiny_tok, PAIRS, cfg)
    trainer = DPOTrainer(_BigramLM(table), tiny_tok, cfg, total_steps=1)
    stored = [it.ref_logps for it in trainer.prepare(examples)]
    rows = table.tolist()
    expected = [(_bigram_logp_by_hand(rows, e.prompt_ids, e.chosen_ids), _bigram_logp_by_hand(rows, e.prompt_ids, e.rejected_ids))
                for e in examples]
    assert [len(e.prompt_ids) for e in examples] == [3, 3, 5, 3]  # "what is two plus two" pads "the cast is"
    for (chosen, rejected), (want_chosen, want_rejected) in zip(stored, expected):
        assert chosen == pytest.approx(want_chosen, abs=1e-4) and rejected == pytest.approx(want_rejected, abs=1e-4)
    assert len({round(c, 3) for c, _ in stored}) == len(stored)  # the four responses really differ


# --- learning ------------------------------------------------------------------------------


@pytest.mark.parametrize("loss, use_lora", [("dpo", False), ("dpo", True), ("ipo", False), ("kto", False), ("kto", True)])
def test_preference_training_raises_implicit_reward_accuracy(tiny_llama, tiny_tok, loss, use_lora):
    cfg = _cfg(loss=loss, lora=use_lora, lora_r=8, lora_alpha=16, learning_rate=2e-2 if use_lora else 5e-3,
               max_steps=20, micro_batch_size=4)
    held_out = [PairwiseRecord("i hated it", "what a wonderful film .", "an awful waste of time .")]
    result = train_dpo(tiny_llama, tiny_tok, PAIRS * 2, cfg, eval_data=PAIRS + held_out, progress=False)
    before, after = result["eval"]["before"], result["eval"]["after"]
    # π = π_ref at the start: every implicit reward is 0
    assert before["rewards/margin"] == pytest.approx(0.0, abs=1e-5)
    assert after["rewards/accuracy"] == 1.0
    assert after["rewards/margin"] > 0.3  # β·h averaged over the pairs
    if loss == "ipo":  # IPO holds h near 1/(2τ) = 5, i.e. β·h near 0.5, where DPO keeps pushing
        assert after["rewards/margin"] < 0.75
    assert after["rewards/chosen"] > 0 > after["rewards/rejected"]
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert all(v == v for h in result["history"] for v in h.values() if isinstance(v, float))  # no NaN


def test_ipo_averages_log_ratios_per_token_by_default(tiny_llama, tiny_tok):
    """The trainer's IPO loss against h worked out here from a plain forward pass of each model:
    per-token means by default (PAIRS have completions of 3 and 7, 8 and 2, ... tokens, so the two
    forms differ), sums with ipo_logratio="sum"."""
    reference = copy.deepcopy(tiny_llama)
    with torch.no_grad():  # a reference that differs from the policy, so that h ≠ 0
        reference.lm_head.weight.mul_(1.5)

    def token_logprobs(model, prompt_ids, response_ids):
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)  # (P+T−1, V)
        return logp[len(prompt_ids) - 1:].gather(-1, torch.tensor(response_ids)[:, None])[:, 0]  # (T,)

    tau, losses = 0.1, {}
    for mode, reduce in [("mean", torch.mean), ("sum", torch.sum)]:
        cfg = _cfg(loss="ipo", tau=tau, ipo_logratio=mode, precompute_ref=False)
        assert DPOConfig().ipo_logratio == "mean"
        examples, _ = _examples(tiny_tok, PAIRS, cfg)
        trainer = DPOTrainer(tiny_llama, tiny_tok, cfg, total_steps=1, reference=reference)
        got = trainer.evaluate(trainer.prepare(examples))["loss"]
        expected = 0.0
        for e in examples:
            ratio = {side: reduce(token_logprobs(tiny_llama, e.prompt_ids, ids) - token_logprobs(reference, e.prompt_ids, ids))
                     for side, ids in (("chosen", e.chosen_ids), ("rejected", e.rejected_ids))}
            expected += float((ratio["chosen"] - ratio["rejected"] - 1 / (2 * tau)) ** 2) / len(examples)
        assert got == pytest.approx(expected, rel=1e-4), mode
        losses[mode] = got
    assert abs(losses["mean"] - losses["sum"]) > 1.0  # the two forms are told apart


def test_soft_labels_and_thumbs_data_train(tiny_llama, tiny_tok):
    soft = [PairwiseRecord(p.prompt, p.chosen, p.rejected, label=0.8) for p in PAIRS]
    result = train_dpo(copy.deepcopy(tiny_llama), tiny_tok, soft, _cfg(batch_size=4, micro_batch_size=4, max_steps=3),
                       progress=False)
    assert result["train"]["last"]["rewards/margin"] > 0
    thumbs = [ThumbsRecord(p.prompt, p.chosen, True) for p in PAIRS] + [ThumbsRecord(p.prompt, p.rejected, False) for p in PAIRS]
    result = train_dpo(tiny_llama, tiny_tok, thumbs, _cfg(loss="kto", max_steps=10), eval_data=thumbs, progress=False)
    assert result["data"]["train"] == {"desirable": 4, "undesirable": 4}
    assert result["eval"]["after"]["rewards/margin"] > result["eval"]["before"]["rewards/margin"] + 0.1
    with pytest.raises(Exception, match="Thumbs data work with --loss kto"):
        train_dpo(tiny_llama, tiny_tok, thumbs, _cfg(loss="dpo"), progress=False)


def test_non_finite_loss_stops_before_the_weights_change(tiny_llama, tiny_tok):
    cfg = _cfg(precompute_ref=False)
    examples, _ = _examples(tiny_tok, PAIRS, cfg)
    trainer = DPOTrainer(tiny_llama, tiny_tok, cfg, total_steps=1)
    items = trainer.prepare(examples)
    with torch.no_grad():
        tiny_llama.lm_head.weight[0, 0] = float("inf")
    before = [p.detach().clone() for p in trainer.trainable]
    with pytest.raises(NonFiniteError, match="DPO loss is not finite"):
        trainer.step(items)
    assert all(torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in zip(before, trainer.trainable))


def test_config_checks_explain_themselves():
    with pytest.raises(ConfigError, match=r"batch_size \(8\) must be a multiple of micro_batch_size \(3\)"):
        DPOConfig(batch_size=8, micro_batch_size=3)
    with pytest.raises(ConfigError, match="beta and tau must be positive"):
        DPOConfig(beta=0)
    assert DPOConfig().beta == 0.1 and DPOConfig().precompute_ref


# --- command line --------------------------------------------------------------------------


def _save_tiny(tmp_path, tiny_llama, tiny_tok):
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dpo_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["dpo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--loss {dpo,ipo,kto,orpo,simpo,cpo}" in out and "--precompute-ref" in out and "--beta" in out


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_dpo_command_writes_a_run_folder(tmp_path, tiny_llama, tiny_tok, capsys, loss):
    model = _save_tiny(tmp_path, tiny_llama, tiny_tok)
    if loss == "dpo":
        data = _write(tmp_path / "prefs.jsonl", [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in PAIRS] * 2)
    else:
        data = _write(tmp_path / "thumbs.jsonl", [{"prompt": p.prompt, "response": r, "thumbs_up": up}
                                                  for p in PAIRS for r, up in ((p.chosen, True), (p.rejected, False))])
    code = cli.main(["dpo", "--loss", loss, "--data", str(data), "--model", str(model), "--eval-fraction", "0.25",
                     "--max-steps", "4", "--batch-size", "4", "--micro-batch-size", "2", "--learning-rate", "0.05",
                     "--chat", "no", "--output-dir", str(tmp_path / "runs"), "--run-name", "d", "--precision", "fp32",
                     "--lora-r", "4", "--no-save-merged"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "d"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["loss"] == loss and summary["eval"] is not None
    stages = {json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert stages == {loss, f"{loss}_eval"}
    assert (run / "checkpoints" / "final" / "adapter_config.json").exists()  # --no-save-merged: the adapter alone
    assert f"loss: {loss}" in (run / "config.yaml").read_text()


def test_dpo_bad_data_gives_one_line_errors(tmp_path, capsys):
    data = _write(tmp_path / "prefs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                             {"prompt": "p", "chosen": "a", "rejected": "b", "label": 2}])
    assert cli.main(["dpo", "--data", str(data), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "prefs.jsonl: row 2: field 'label': must lie in [0.0, 1.0], got 2.0" in err and err.count("\n") == 1
    thumbs = _write(tmp_path / "thumbs.jsonl", [{"prompt": "p", "response": "a", "thumbs_up": True}])
    assert cli.main(["dpo", "--data", str(thumbs), "--output-dir", str(tmp_path / "runs")]) == 2
    assert "those train with --loss kto" in capsys.readouterr().err
    assert cli.main(["dpo", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
