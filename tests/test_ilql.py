"""ILQL (Snell et al. 2022; trlx's settings): the losses worked by hand, the Polyak update, the
perturbed decoding, learning on a tiny model, the saved policy, the CLI and compare."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlhfkit import cli
from rlhfkit.algorithms.ilql import (
    EXCLUDED_LOGIT,
    cql_term,
    expectile_loss,
    ilql_loss,
    perturbed_logits,
    polyak_update,
    q_targets,
    terminal_rewards,
)
from rlhfkit.config import ConfigError
from rlhfkit.trainers.config import ILQLConfig
from rlhfkit.types import ScoredRecord

# -- the math, by hand -------------------------------------------------------------------------


def test_expectile_loss_on_three_values():
    # |τ − 1[u < 0]|·u² with τ = 0.7 (ILQL Eq. 3): u = 2 → 0.7·4 = 2.8; u = −1 → 0.3·1 = 0.3;
    # u = 0.5 → 0.7·0.25 = 0.175
    out = expectile_loss(torch.tensor([2.0, -1.0, 0.5]), tau=0.7)
    assert out.tolist() == pytest.approx([2.8, 0.3, 0.175])


def test_bellman_targets_put_the_score_on_the_last_token_and_stop_at_the_end():
    # row 0: two real tokens, score 1, V(s_0) = 0.5, V(s_1) = 0.8, γ = 0.9:
    #   r = (0, 1); y_0 = 0 + 0.9·V(s_1) = 0.72; y_1 = 1 + 0.9·0 (terminal) = 1
    # row 1: one real token then padding, score 2, V = (0.3, 5.0 on padding):
    #   r = (2, 0); y_0 = 2 + 0.9·0 (the padding's V is no next state) = 2; y_1 = 0 (padding)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rewards = terminal_rewards(torch.tensor([1.0, 2.0]), mask)
    assert rewards.tolist() == [[0.0, 1.0], [2.0, 0.0]]
    values = torch.tensor([[0.5, 0.8], [0.3, 5.0]], requires_grad=True)
    y = q_targets(rewards, values, mask, gamma=0.9)
    assert y.flatten().tolist() == pytest.approx([0.72, 1.0, 2.0, 0.0]) and not y.requires_grad


def test_cql_term_on_a_two_step_example():
    # step 0: Q = (0, 0, 0), action 0: logsumexp = ln 3 = 1.098612, minus Q(a) = 0 → 1.098612
    # step 1: Q = (1, 2, 3), action 2: logsumexp = 3 + ln(1 + e^−1 + e^−2) = 3.407606, minus 3 → 0.407606
    # mean over the two real tokens: 0.753109
    q = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]])
    assert float(cql_term(q, torch.tensor([[0, 2]]), torch.ones(1, 2))) == pytest.approx(0.753109, abs=1e-5)


def _two_step(values):
    q = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]])  # Q taken: (0, 3); the target heads equal it
    return dict(q_all=[q], target_q_taken=[torch.tensor([[0.0, 3.0]])], values=values, action_logprobs=torch.tensor([[-1.0, -2.0]]),
                actions=torch.tensor([[0, 2]]), scores=torch.tensor([1.0]), mask=torch.ones(1, 2), gamma=0.9, tau=0.7)


def test_ilql_loss_on_a_two_step_example():
    # y = (0.72, 1) as above (V = (0.5, 0.8), score 1, γ 0.9); Q taken = (0, 3):
    #   L_Q = ((0 − 0.72)² + (3 − 1)²)/2 = (0.5184 + 4)/2 = 2.2592
    #   u = Q̂ − V = (−0.5, 2.2): L_V = (0.3·0.25 + 0.7·4.84)/2 = (0.075 + 3.388)/2 = 1.7315
    #   L_CQL = 0.753109; L_AWAC (β_awac 0: weight 1) = (1 + 2)/2 = 1.5
    #   total = 2.2592 + 1.7315 + 0.1·0.753109 + 1·1.5 = 5.566011
    values = torch.tensor([[0.5, 0.8]], requires_grad=True)
    loss, stats = ilql_loss(**_two_step(values), cql_scale=0.1, awac_scale=1.0)
    assert float(stats["loss/q"]) == pytest.approx(2.2592) and float(stats["loss/v"]) == pytest.approx(1.7315)
    assert float(stats["loss/awac"]) == pytest.approx(1.5) and float(loss.detach()) == pytest.approx(5.566011, abs=1e-5)
    # V learns from the expectile term alone (the Q targets are detached):
    # ∂L_V/∂V_t = −2·w_t·u_t / 2 = (−0.3·(−0.5), −0.7·2.2) = (0.15, −1.54)
    loss.backward()
    assert values.grad[0].tolist() == pytest.approx([0.15, -1.54])
    # AWAC with β_awac = 1: weights e^{−0.5} = 0.606531, e^{2.2} = 9.025013 → (0.606531·1 + 9.025013·2)/2 = 9.328279
    _, stats = ilql_loss(**_two_step(torch.tensor([[0.5, 0.8]])), awac_beta=1.0)
    assert float(stats["loss/awac"]) == pytest.approx(9.328279, abs=1e-5)


def test_twin_targets_take_the_minimum():
    # two target heads with Q taken (0, 3) and (−1, 5): the V target is their min (−1, 3);
    # u = (−1 − 0.5, 3 − 0.8) = (−1.5, 2.2): L_V = (0.3·2.25 + 0.7·4.84)/2 = (0.675 + 3.388)/2 = 2.0315
    args = _two_step(torch.tensor([[0.5, 0.8]]))
    args["target_q_taken"] = [torch.tensor([[0.0, 3.0]]), torch.tensor([[-1.0, 5.0]])]
    _, stats = ilql_loss(**args)
    assert float(stats["loss/v"]) == pytest.approx(2.0315)


def test_polyak_update_on_known_numbers():
    # α = 0.25: 0.75·1 + 0.25·3 = 1.5; 0.75·2 + 0.25·(−2) = 1.0; α = 1 copies
    target, online = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, -2.0])]
    polyak_update(target, online, alpha=0.25)
    assert target[0].tolist() == [1.5, 1.0]
    polyak_update(target, online, alpha=1.0)
    assert target[0].tolist() == [3.0, -2.0]


def test_perturbed_logits_on_a_tiny_vector():
    # π_β = softmax(0, 0, ln 2) = (1/4, 1/4, 1/2); Q = (1, 0, 0), V = 0.5, β = 2:
    # log π_β + β(Q − V) = (ln ¼ + 1, ln ¼ − 1, ln ½ − 1) = (−0.386294, −2.386294, −1.693147);
    # π ∝ π_β·e^{β(Q−V)} = (0.679570, 0.091970, 0.183940); top-2 drops token 1 →
    # (0.679570, 0.183940)/0.863510 = (0.786989, 0.213011)
    logits = torch.tensor([0.0, 0.0, math.log(2.0)])
    q, v = torch.tensor([1.0, 0.0, 0.0]), torch.tensor(0.5)
    full = perturbed_logits(logits, q, v, beta=2.0)
    assert full.tolist() == pytest.approx([-0.386294, -2.386294, -1.693147], abs=1e-5)
    cut = perturbed_logits(logits, q, v, beta=2.0, top_k=2)
    assert cut[1] == EXCLUDED_LOGIT
    assert torch.softmax(cut, -1).tolist() == pytest.approx([0.786989, 0.0, 0.213011], abs=1e-5)
    # β = 0 without a cut: the LM's own log-probs
    assert torch.allclose(perturbed_logits(logits, q, v, beta=0.0), torch.log_softmax(logits, -1))


def test_config_checks_explain_themselves():
    with pytest.raises(ConfigError, match="tau in \\(0, 1\\)"):
        ILQLConfig(tau=1.0)
    with pytest.raises(ConfigError, match="alpha must lie in \\(0, 1\\]"):
        ILQLConfig(alpha=0.0)
    cfg = ILQLConfig()
    assert (cfg.tau, cfg.gamma, cfg.cql_scale, cfg.awac_scale, cfg.alpha, cfg.steps_for_target_q_sync, cfg.beta,
            cfg.top_k) == (0.7, 0.99, 0.1, 1.0, 0.001, 5, 1.0, 20)  # trlx's default_ilql_config


# -- the policy and training on a tiny model ---------------------------------------------------

PROMPT = "the movie was"
# responses with "good" score 1, with "bad" 0 (equally many: behaviour cloning alone has no preference)
DATA = [ScoredRecord(PROMPT, "good .", 1.0), ScoredRecord(PROMPT, "bad .", 0.0)] * 8


def _first_token_probs(model, tok) -> torch.Tensor:
    from rlhfkit.data.collators import tokenize_prompts

    ids = torch.tensor([tokenize_prompts(tok, [PROMPT], False)[0]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1).logits[0, -1]
    return torch.softmax(logits.float(), -1)


def _train(lm, tok, **overrides):
    from rlhfkit.trainers.ilql import train_ilql

    # α = 1 every step: the targets follow at once on this short run; a constant 3e-3 converges here
    options = dict(data="(memory)", max_steps=120, batch_size=8, micro_batch_size=8, learning_rate=3e-3,
                   lr_scheduler="constant", alpha=1.0, steps_for_target_q_sync=1, top_k=0, chat="no", save_merged=False)
    return train_ilql(lm, tok, DATA, ILQLConfig(**{**options, **overrides}), progress=False)


def test_ilql_decoding_prefers_the_rewarded_token(tiny_llama, tiny_tok):
    good, bad = tiny_tok.convert_tokens_to_ids("good"), tiny_tok.convert_tokens_to_ids("bad")
    base = _first_token_probs(tiny_llama, tiny_tok)
    result = _train(tiny_llama, tiny_tok)
    policy = result["policy"]
    ilql = _first_token_probs(policy, tiny_tok)
    policy.beta = 0.0  # the same trained LM without the perturbation: behaviour cloning alone
    cloned = _first_token_probs(policy, tiny_tok)
    assert ilql[good] > base[good]
    assert ilql[good] > ilql[bad]  # Q − V reverses what cloning alone leaves (here bad ahead)
    assert ilql[good] / (ilql[good] + ilql[bad]) > cloned[good] / (cloned[good] + cloned[bad])
    assert result["train"]["last"]["loss/q"] < result["train"]["first"]["loss/q"]


def test_target_q_of_the_taken_actions_equals_the_full_heads_gathered(tiny_tok):
    from rlhfkit.models.ilql import ILQLHeads

    heads = ILQLHeads(8, len(tiny_tok))
    for q in heads.target_q_heads:
        torch.nn.init.normal_(q.weight)
        torch.nn.init.normal_(q.bias)
    hidden, actions = torch.randn(2, 3, 8), torch.randint(len(tiny_tok), (2, 3))
    for taken, full in zip(heads.target_q_taken(hidden, actions), heads.target_q_values(hidden)):
        assert torch.allclose(taken, full.gather(-1, actions.unsqueeze(-1)).squeeze(-1), atol=1e-5)


def test_sampled_log_probs_equal_the_full_forward_of_the_policy(tiny_llama, tiny_tok):
    # the KV-cached sampler and one full pass see the same perturbed, top-k-cut distribution
    from rlhfkit.generation.sampling import SamplingParams, generate
    from rlhfkit.models.forward import response_forward
    from rlhfkit.models.ilql import ILQLHeads, ILQLPolicy

    heads = ILQLHeads(tiny_llama.config.hidden_size, tiny_llama.config.vocab_size)
    torch.nn.init.normal_(heads.target_q_heads[0].weight, std=0.5)  # a perturbation that matters
    policy = ILQLPolicy(tiny_llama, heads, beta=2.0, top_k=5)
    rollout = generate(policy, tiny_tok, [PROMPT, "i loved it"], SamplingParams(max_new_tokens=5), chat=False,
                       generator=torch.Generator().manual_seed(0))
    full = response_forward(policy, rollout.prompt_ids, rollout.prompt_mask, rollout.response_ids, rollout.response_mask)
    assert torch.allclose(full.logprobs, rollout.logprobs, atol=1e-5)
    assert torch.isfinite(full.logprobs).all()


def test_a_saved_ilql_run_loads_back_as_the_same_policy(tmp_path, tiny_llama, tiny_tok):
    from rlhfkit.models import load_policy
    from rlhfkit.models.ilql import ILQLPolicy, save_ilql
    from rlhfkit.trainers.common import save_final

    result = _train(tiny_llama, tiny_tok, max_steps=5, beta=3.0, top_k=7)
    expected = _first_token_probs(result["policy"], tiny_tok)
    folder = tmp_path / "final"
    save_final(result["lm"], tiny_tok, folder, ILQLConfig(save_merged=True))
    save_ilql(folder, result["heads"], 3.0, 7)
    loaded, _ = load_policy(str(folder))
    assert isinstance(loaded, ILQLPolicy) and (loaded.beta, loaded.top_k) == (3.0, 7)
    assert torch.allclose(_first_token_probs(loaded, tiny_tok), expected, atol=1e-5)


# -- the command and compare -------------------------------------------------------------------


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ilql_command_writes_a_run_that_generate_samples(tmp_path, tiny_dir, capsys):
    rows = [{"prompt": PROMPT, "completion": "good .", "score": 1}, {"prompt": PROMPT, "response": "bad .", "reward": 0}] * 4
    data = _write(tmp_path / "scored.jsonl", rows)
    runs = tmp_path / "runs"
    assert cli.main(["ilql", "--data", str(data), "--model", tiny_dir, "--max-steps", "3", "--batch-size", "4",
                     "--micro-batch-size", "2", "--eval-fraction", "0.25", "--chat", "no", "--precision", "fp32",
                     "--output-dir", str(runs), "--run-name", "q"]) == 0, capsys.readouterr().err
    summary = json.loads((runs / "q" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["decoding"] == {"beta": 1.0, "top_k": 20}
    assert summary["eval"] is not None and summary["data"]["train"] == 6
    stages = {json.loads(line)["stage"] for line in (runs / "q" / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"ilql", "ilql_eval"}
    final = runs / "q" / "checkpoints" / "final"
    assert (final / "rlhfkit_ilql.json").exists() and (final / "config.json").exists()
    # the saved run decodes wherever a model is loaded by path; with --reward every response is
    # scored, and that file is ILQL data as it stands
    out = tmp_path / "gen.jsonl"
    assert cli.main(["generate", "--model", str(final), "--prompts", "task:sentiment", "--limit", "2", "--n", "2",
                     "--max-new-tokens", "3", "--reward", "length", "--output", str(out), "--precision", "fp32"]) == 0
    generated = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(generated) == 4 and all(isinstance(r["reward"], float) for r in generated)
    assert cli.main(["ilql", "--data", str(out), "--model", tiny_dir, "--max-steps", "1", "--precision", "fp32",
                     "--output-dir", str(runs), "--run-name", "from-generate"]) == 0
    # eval sample reads a run folder as its final checkpoint: the ILQL policy beside the base
    assert cli.main(["eval", "sample", "--policies", f"base={tiny_dir},ilql={runs / 'q'}", "--n-prompts", "2",
                     "--max-new-tokens", "3", "--output-dir", str(runs), "--run-name", "e", "--precision", "fp32"]) == 0


def test_scored_rows_read_the_columns_other_commands_write():
    from pathlib import Path

    from rlhfkit.data.loaders import load_records

    # rating rows (prompt, response, rating) are scored rows too
    ratings = load_records(Path(__file__).parents[1] / "examples" / "ratings.jsonl", "scored").records
    assert len(ratings) == 120 and all(1 <= r.score <= 10 for r in ratings)


def test_ilql_bad_data_gives_one_line_errors_before_a_run_starts(tmp_path, tiny_dir, capsys):
    runs = tmp_path / "runs"
    common = ["ilql", "--model", tiny_dir, "--output-dir", str(runs)]
    missing = _write(tmp_path / "scored.jsonl", [{"prompt": "p", "completion": "a", "score": 1},
                                                 {"prompt": "p", "completion": "b"}])
    assert cli.main([*common, "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "scored.jsonl: row 2: field 'score': missing" in err and err.count("\n") == 1
    not_a_number = _write(tmp_path / "text.jsonl", [{"prompt": "p", "response": "a", "reward": "high"}])
    assert cli.main([*common, "--data", str(not_a_number)]) == 2
    assert "text.jsonl: row 1: field 'reward': expected a number, got 'high'" in capsys.readouterr().err
    no_text = _write(tmp_path / "empty.jsonl", [{"prompt": "p", "score": 0.5}])
    assert cli.main([*common, "--data", str(no_text)]) == 2
    assert "empty.jsonl: row 1: field 'completion': missing" in capsys.readouterr().err
    assert not runs.exists()


def test_compare_runs_ilql_at_the_same_budget(tmp_path, tiny_dir, capsys):
    assert cli.main(["compare", "--policy", tiny_dir, "--methods", "ilql", "--sample-budget", "8", "--batch-size", "4",
                     "--eval-prompts", "4", "--max-new-tokens", "4", "--output-dir", str(tmp_path),
                     "--precision", "fp32"]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == ["base", "ilql"]
    row = summary["rows"][1]
    assert row["train_samples"] == 8 and math.isfinite(row["kl_to_reference"]) and row["kl_k3_to_reference"] >= 0
    assert "| ilql |" in capsys.readouterr().out


def test_resume_equals_an_uninterrupted_run(tmp_path, tiny_tok):
    # the target heads are state too: a resumed run must restore them with the adapter and online heads
    from rlhfkit.models.tiny import tiny_causal_lm
    from rlhfkit.trainers.checkpoint import Checkpointer

    def train(steps, folder, resume=False):
        from rlhfkit.trainers.ilql import train_ilql

        lm = tiny_causal_lm("llama", vocab_size=len(tiny_tok))
        cfg = ILQLConfig(data="(memory)", max_steps=steps, batch_size=4, micro_batch_size=2, learning_rate=3e-3,
                         lr_scheduler="constant", alpha=0.5, steps_for_target_q_sync=1, chat="no")
        return train_ilql(lm, tiny_tok, DATA, cfg, progress=False, checkpointer=Checkpointer(folder, every=2),
                          resume=resume)["heads"].state_dict()

    whole = train(4, tmp_path / "a")
    train(2, tmp_path / "b")
    resumed = train(4, tmp_path / "b", resume=True)
    assert whole.keys() == resumed.keys()
    assert all(torch.allclose(whole[k], resumed[k]) for k in whole)
    # and the targets did move over those steps (else the check above would say little about them)
    assert not torch.equal(whole["target_q_heads.0.weight"], train(1, tmp_path / "c")["target_q_heads.0.weight"])
