"""Each speed-up of the online hot path against the slower path it replaces (same numbers,
same gradients), on tiny random models built in code."""

import copy

import pytest
import torch

from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online import OnlineTrainer, PassPlan, pass_plan
from tests.test_online import PROMPTS, good_fraction


def _trainer(model, tok, plan: PassPlan | None = None, **kw):
    base = dict(steps=1, batch_size=8, mini_batch_size=8, micro_batch_size=8, ppo_epochs=1, learning_rate=1e-2,
                max_new_tokens=6, target_kl=None, seed=0)
    cfg = RLConfig(**{**base, **kw})
    trainer = OnlineTrainer(model, tok, good_fraction, cfg, reference=frozen_copy(model), chat=False)
    if plan is not None:
        trainer.plan = plan  # the general path: a no-grad π_old pass (and the anchor pass) before the update
    # plain SGD with lr 1: the parameter change is the gradient itself
    trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)
    return trainer


def _flat(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.trainable])


@pytest.mark.parametrize("algo,beta", [("grpo", 0.04), ("rloo", 0.05), ("reinforce", 0.05), ("grpo", 0.0)])
def test_single_update_without_the_old_pass_equals_the_general_path(tiny_llama, tiny_tok, algo, beta):
    group = 4 if algo in ("grpo", "rloo") else 1
    runs = []
    for plan in (None, PassPlan(single_update_rows=0, anchor=True)):
        trainer = _trainer(copy.deepcopy(tiny_llama), tiny_tok, plan, algo=algo, group_size=group, init_kl_coef=beta)
        assert (trainer.plan.single_update_rows > 0) == (plan is None)
        stats = trainer.step(PROMPTS[: 8 // group])
        runs.append((trainer, stats))
    (fast, fast_stats), (full, full_stats) = runs
    start = torch.cat([p.detach().flatten() for p in tiny_llama.parameters()])
    assert (_flat(full) - start).abs().max() > 1e-4  # the step moved the weights
    assert torch.allclose(_flat(fast), _flat(full), atol=1e-6), (_flat(fast) - _flat(full)).abs().max()
    for name in ("loss/policy", "policy/entropy", "advantages/mean", "reward/shaped_return_mean", "policy/grad_norm"):
        assert fast_stats[name] == pytest.approx(full_stats[name], abs=1e-5), name
    if beta > 0:
        assert fast_stats["kl/k1_seq_mean"] == pytest.approx(full_stats["kl/k1_seq_mean"], abs=1e-6)
    # both paths leave the same scored rollout behind
    for field in ("old_logprobs", "unmasked_logprobs", "entropy", "kl", "token_rewards"):
        assert torch.allclose(getattr(fast.last_scored, field), getattr(full.last_scored, field), atol=1e-5), field
    # and draw the same random numbers, so the next rollouts match too
    assert torch.equal(fast.generator.get_state(), full.generator.get_state())


def test_beta_zero_skips_the_anchor_pass_and_logs_no_kl(tiny_llama, tiny_tok):
    with_anchor = _trainer(copy.deepcopy(tiny_llama), tiny_tok, PassPlan(single_update_rows=8, anchor=True),
                           algo="grpo", group_size=4, init_kl_coef=0.0)
    without = _trainer(copy.deepcopy(tiny_llama), tiny_tok, algo="grpo", group_size=4, init_kl_coef=0.0)
    assert not without.plan.anchor
    a, b = with_anchor.step(PROMPTS[:2]), without.step(PROMPTS[:2])
    assert torch.allclose(_flat(with_anchor), _flat(without), atol=1e-6)
    assert "kl/k1_seq_mean" in a and "kl/k1_seq_mean" not in b and "kl/k3_seq_mean" not in b
    assert without.last_scored.anchor_logprobs is None


def test_the_plan_keeps_the_old_pass_where_it_is_needed():
    def plan(**kw):
        base = dict(batch_size=8, mini_batch_size=8, micro_batch_size=8, target_kl=None)
        cfg = RLConfig(**{**base, **kw})
        return pass_plan(cfg, cfg.uses_value_head, cfg.algo == "nlpo")

    assert plan(algo="grpo", ppo_epochs=1).single_update_rows == 8
    assert plan(algo="grpo", ppo_epochs=2).single_update_rows == 0  # the second epoch is off-policy
    assert plan(algo="ppo", ppo_epochs=1).single_update_rows == 0  # GAE needs V_old first
    assert plan(algo="nlpo", ppo_epochs=1).single_update_rows == 0
    assert plan(algo="grpo", ppo_epochs=1, micro_batch_size=4).single_update_rows == 4  # batches of ≤ 4 rows only
    assert plan(algo="grpo", init_kl_coef=0.0).anchor is False
    assert plan(algo="grpo", init_kl_coef=0.0, target_kl=1.0, kl_controller="ziegler").anchor is True  # adaptive β needs the KL


# -- generation: preallocated KV cache, one prefill per distinct prompt ------------------------


def test_preallocated_layer_matches_concatenation():
    from rlhfkit.generation.sampling import preallocated_layer_class

    layer = preallocated_layer_class()(capacity=3)
    a, b, c = (torch.randn(2, 4, n, 8) for n in (2, 1, 2))  # the third update outgrows the capacity
    for step in (a, b, c):
        keys, values = layer.update(step, -step)
    assert torch.equal(keys, torch.cat([a, b, c], dim=2)) and torch.equal(values, -keys)
    assert layer.get_seq_length() == 5 and layer.get_mask_sizes(1) == (6, 0)
    layer.batch_select_indices(torch.tensor([1, 1, 0]))  # repeats too (a shared prefill's expansion)
    assert torch.equal(layer.keys, torch.cat([a, b, c], dim=2)[[1, 1, 0]])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_sampled_logprobs_equal_a_full_forward_with_repeated_and_padded_prompts(arch, tiny_tok):
    """The sampler's per-token log-probs (shared prefill, preallocated cache, finished rows
    dropped) equal those of one uncached forward over [prompt | response]."""
    from rlhfkit.generation.sampling import SamplingParams, generate
    from rlhfkit.models.forward import response_forward
    from rlhfkit.models.tiny import tiny_causal_lm

    model = tiny_causal_lm(arch, vocab_size=len(tiny_tok))
    prompts = ["the movie was"] * 4 + ["what is two plus two equals"] * 4 + ["i"]
    ro = generate(model, tiny_tok, prompts, SamplingParams(max_new_tokens=12), chat=False,
                  generator=torch.Generator().manual_seed(3))
    assert ro.finished.any() and ro.response_mask.sum(1).min() < ro.response_mask.shape[1]  # some rows were dropped early
    with torch.no_grad():
        full = response_forward(model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    assert torch.allclose(ro.logprobs, full.logprobs, atol=1e-5), (ro.logprobs - full.logprobs).abs().max()


def test_fused_gelu_computes_the_same_function(tiny_tok):
    from rlhfkit.models.kernels import fuse_activations
    from rlhfkit.models.tiny import tiny_causal_lm

    model = tiny_causal_lm("gpt2", vocab_size=len(tiny_tok), layers=2)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert fuse_activations(model) == 2  # one activation per GPT-2 block
        after = model(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-5)
    assert fuse_activations(tiny_causal_lm("llama", vocab_size=len(tiny_tok))) == 0  # SiLU is already one kernel


# -- chosen-token log-probs: chunked logsumexp with a recomputing backward ---------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_logprobs_equal_log_softmax_gather_values_and_gradients(dtype):
    from rlhfkit.algorithms.logprobs import selected_token_logprobs, selected_token_logprobs_and_entropy

    # 7 × 10000 values per row: the chunks hold 3 rows, so B = 5 spans two chunks, one partial
    z = (torch.randn(5, 7, 10000) * 3).to(dtype).requires_grad_(True)
    ids = torch.randint(0, 10000, (5, 7))
    weights = torch.randn(5, 7)
    reference_z = z.detach().float().requires_grad_(True)
    reference = torch.log_softmax(reference_z, -1).gather(-1, ids[..., None]).squeeze(-1)
    (reference * weights).sum().backward()
    ours, entropy = selected_token_logprobs_and_entropy(z, ids)
    (ours * weights).sum().backward()
    assert ours.dtype == torch.float32 and z.grad.dtype == dtype
    assert torch.allclose(ours, reference, atol=1e-4)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(z.grad.float(), reference_z.grad, atol=tol), (z.grad.float() - reference_z.grad).abs().max()
    p = torch.softmax(reference_z.detach(), -1)
    assert torch.allclose(entropy, -(p * p.log()).sum(-1), atol=1e-4)
    assert not entropy.requires_grad
    assert torch.allclose(selected_token_logprobs(z, ids), ours)


def test_chunked_logprobs_of_a_hand_computed_distribution():
    from rlhfkit.algorithms.logprobs import selected_token_logprobs_and_entropy

    # logits (0, ln 3): p = (1/4, 3/4); log p_1 = ln 3/4; H = −(¼ ln ¼ + ¾ ln ¾) = 0.5623 nats
    z = torch.tensor([[[0.0, float(torch.log(torch.tensor(3.0)))]]])
    logp, entropy = selected_token_logprobs_and_entropy(z, torch.tensor([[1]]))
    assert logp.item() == pytest.approx(-0.2876821, abs=1e-6)
    assert entropy.item() == pytest.approx(0.5623351, abs=1e-6)


# -- the training forward: logits only at response positions, each distinct prompt once --------


def _forward_and_grads(model, batch, monkeypatch, fast: bool, value_head=None, action_mask=None):
    from rlhfkit.models.forward import response_forward

    monkeypatch.setenv("RLHFKIT_FAST_PATHS", "1" if fast else "0")
    model.zero_grad(set_to_none=True)
    if value_head is not None:
        value_head.zero_grad(set_to_none=True)
    out = response_forward(model, *batch, value_head=value_head, with_entropy=True, action_mask=action_mask)
    weights = torch.linspace(-1.0, 2.0, out.logprobs.numel()).view_as(out.logprobs)
    loss = (out.logprobs * weights).sum() + 0.3 * out.unmasked_logprobs.sum()
    if out.values is not None:
        loss = loss + (out.values * weights).sum()
    loss.backward()
    params = list(model.parameters()) + (list(value_head.parameters()) if value_head is not None else [])
    grads = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
    return out, grads


def _batch(tok, prompts, responses):
    from rlhfkit.data.collators import collate_prompt_responses

    ids = lambda texts: [tok(t, add_special_tokens=False)["input_ids"] for t in texts]  # noqa: E731
    b = collate_prompt_responses(ids(prompts), ids(responses), tok.pad_token_id, torch.device("cpu"))
    return b["prompt_ids"], b["prompt_mask"], b["response_ids"], b["response_mask"]


# rows 0-2 share a prompt, rows 3-4 another (left-padded shorter), row 5 is alone; the responses
# differ in length (right padding), one is a single token
SHARED = (["the movie was"] * 3 + ["i"] * 2 + ["what is two plus two"],
          ["good and fun", "bad", "a b c d e f", "yes", "no no", "four"])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("prompts,responses", [SHARED, (["a", "b c", "the movie"], ["x y", "z", "good fun"])],
                         ids=["repeated-prompts", "distinct-prompts"])
def test_fast_forward_equals_the_plain_forward_values_and_gradients(arch, prompts, responses, tiny_tok, monkeypatch):
    """The fast paths (boolean logits_to_keep; with repeated prompts one prompt pass whose KV
    cache is expanded) give the plain full-forward path's log-probs, entropy, values, NLPO
    masked log-probs and parameter gradients."""
    from rlhfkit.models.heads import ValueHead
    from rlhfkit.models.tiny import tiny_causal_lm

    model = tiny_causal_lm(arch, vocab_size=len(tiny_tok))
    hidden = getattr(model.config, "hidden_size", None) or model.config.n_embd
    head = ValueHead(hidden)
    batch = _batch(tiny_tok, prompts, responses)
    B, T = batch[2].shape
    allowed = torch.rand(B, T, len(tiny_tok), generator=torch.Generator().manual_seed(0)) < 0.5
    allowed.scatter_(-1, batch[2].unsqueeze(-1), True)  # the taken token is always allowed
    fast, fast_grads = _forward_and_grads(model, batch, monkeypatch, True, head, allowed)
    plain, plain_grads = _forward_and_grads(model, batch, monkeypatch, False, head, allowed)
    assert plain.logprobs.abs().sum() > 0 and not torch.equal(plain.logprobs, plain.unmasked_logprobs)
    for name in ("logprobs", "unmasked_logprobs", "entropy", "values"):
        a, b = getattr(fast, name), getattr(plain, name)
        assert torch.allclose(a, b, atol=1e-5), (name, (a - b).abs().max())
    assert torch.equal(fast.logprobs == 0, batch[3] == 0)  # 0 exactly on padding
    assert torch.allclose(fast_grads, plain_grads, atol=1e-5), (fast_grads - plain_grads).abs().max()


def test_shared_prompt_forward_runs_each_distinct_prompt_once(tiny_tok, monkeypatch):
    from rlhfkit.models.forward import response_forward
    from rlhfkit.models.tiny import tiny_causal_lm

    model = tiny_causal_lm("llama", vocab_size=len(tiny_tok))
    batch = _batch(tiny_tok, *SHARED)
    rows = []
    model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape), with_kwargs=True)
    monkeypatch.setenv("RLHFKIT_FAST_PATHS", "1")
    response_forward(model, *batch)
    P, T = batch[0].shape[1], batch[2].shape[1]
    assert rows == [(3, P), (6, T - 1)]  # 3 distinct prompts; responses without their last token
