"""The online RL family on tiny random models: learning, invariances, and NaN safety."""

import copy
import math

import pytest
import torch

from rlhfkit.algorithms import kl_k3
from rlhfkit.config import ConfigError
from rlhfkit.models.forward import response_forward
from rlhfkit.models.lora import add_lora, frozen_copy, reference_forward
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.common import NonFiniteError
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online import KL_PLACEMENTS, OnlineTrainer

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]


POSITIVE = {"good", "great", "excellent", "wonderful", "fine", "best", "happy", "love", "loved", "fun"}


def good_fraction(prompts, completions, **_):
    """A programmatic reward: the share of words in the response that are positive words
    (10 of the tiny tokenizer's ~67 tokens, so a random policy scores about 0.15)."""
    return [sum(w in POSITIVE for w in c.split()) / max(len(c.split()), 1) for c in completions]


def _cfg(**kw):
    base = dict(algo="ppo", steps=1, batch_size=8, mini_batch_size=8, micro_batch_size=8, ppo_epochs=1, learning_rate=1e-2,
                max_new_tokens=6, init_kl_coef=0.01, target_kl=None, seed=0)
    base.update(kw)
    return RLConfig(**base)


def _mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.parametrize("use_lora", [False, True])
def test_reward_rises_on_a_tiny_model(tiny_llama, tiny_tok, use_lora):
    if use_lora:
        policy, reference = add_lora(tiny_llama, r=8, alpha=16), None
    else:
        policy, reference = tiny_llama, frozen_copy(tiny_llama)
    trainer = OnlineTrainer(policy, tiny_tok, good_fraction, _cfg(steps=40, batch_size=16, mini_batch_size=8, ppo_epochs=2,
                         learning_rate=5e-2 if use_lora else 1e-2), reference=reference, chat=False)
    history = trainer.train(PROMPTS, progress=False)
    first, last = _mean([h["reward/score_mean"] for h in history[:5]]), _mean([h["reward/score_mean"] for h in history[-5:]])
    assert first < 0.3  # about 10 positive words among ~67 tokens at random init
    assert last > first + 0.3, (first, last)
    assert history[-1]["kl/k1_seq_mean"] > 0  # it moved away from the reference to get there
    for h in history:
        assert all(v == v for v in h.values())  # no NaN anywhere in the logs


def test_gradient_accumulation_equals_full_batch(tiny_llama, tiny_tok):
    results = []
    for micro in (8, 2):
        model = copy.deepcopy(tiny_llama)
        trainer = OnlineTrainer(model, tiny_tok, good_fraction, _cfg(micro_batch_size=micro), reference=frozen_copy(tiny_llama), chat=False)
        # plain SGD with lr 1 turns the parameter change into the gradient itself (Adam's first
        # step would be ±lr whatever the gradient's size, hiding differences)
        trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=1.0)
        trainer.step(PROMPTS * 2)
        results.append(torch.cat([p.detach().flatten() for p in trainer.trainable]))
    start = torch.cat([p.detach().flatten() for p in tiny_llama.parameters()] + [torch.zeros(33)])  # + value head
    assert (results[0] - start).abs().max() > 1e-3  # the step did change the weights
    assert torch.allclose(results[0], results[1], atol=1e-6), (results[0] - results[1]).abs().max()


def test_lora_disabled_forward_equals_the_reference(tiny_llama, tiny_tok):
    original = copy.deepcopy(tiny_llama)
    policy = add_lora(tiny_llama, r=4, alpha=8)
    trainer = OnlineTrainer(policy, tiny_tok, good_fraction, _cfg(learning_rate=5e-2), chat=False)
    trainer.step(PROMPTS * 2)  # the adapter now differs from zero
    ro = trainer.last_rollout
    args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    with torch.no_grad():
        with reference_forward(policy, None) as ref:
            disabled = response_forward(ref, *args).logprobs
        expected = response_forward(original, *args).logprobs
        adapted = response_forward(policy, *args).logprobs
    assert torch.allclose(disabled, expected, atol=1e-6)
    assert not torch.allclose(adapted, expected, atol=1e-4)


def test_kl_to_the_adapter_disabled_base_starts_at_zero(tiny_llama, tiny_tok):
    trainer = OnlineTrainer(add_lora(tiny_llama), tiny_tok, good_fraction, _cfg(), chat=False)
    stats = trainer.step(PROMPTS * 2)
    assert stats["kl/k1_seq_mean"] == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0: π = π_ref at the start


def _logprobs_by_hand(model, ro) -> torch.Tensor:
    """log π(a_t | s_t) of every real response token of the rollout, row after row, from one
    unpadded forward per row and a log-softmax written out: z_a − (max z + log Σ_v exp(z_v − max z))."""
    out = []
    for b in range(len(ro.prompt_ids)):
        prompt = ro.prompt_ids[b][ro.prompt_mask[b] > 0]
        response = ro.response_ids[b][ro.response_mask[b] > 0]
        with torch.no_grad():
            logits = model(input_ids=torch.cat([prompt, response])[None]).logits[0].double()  # (P+T, V)
        for t, token in enumerate(response.tolist()):
            z = logits[len(prompt) - 1 + t]  # the position before response token t predicts it
            top = z.max()
            out.append(z[token] - (top + torch.log(torch.exp(z - top).sum())))
    return torch.stack(out)


def test_approx_kl_k3_is_k3_of_the_moved_policy_against_the_sampler(tiny_llama, tiny_tok):
    # Two epochs over one mini-batch (one micro-batch): epoch 1 takes its loss at θ0 = π_old
    # (every ratio 1, k3 = 0), epoch 2 at θ1, the weights after the first optimiser step. The
    # logged stat is the mean over the two: (0 + k3(θ1 ‖ θ0))/2, with k3 = exp(lr) − 1 − lr,
    # lr = log π_old − log π_θ1 per token, averaged over the real tokens (REFERENCES.md, KL).
    original = copy.deepcopy(tiny_llama)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, _cfg(ppo_epochs=2), reference=frozen_copy(tiny_llama), chat=False)
    after_steps = []
    take_step = trainer.optimizer.step

    def step_and_keep_the_weights(*args, **kwargs):
        result = take_step(*args, **kwargs)
        after_steps.append(copy.deepcopy(trainer.policy))
        return result

    trainer.optimizer.step = step_and_keep_the_weights
    stats = trainer.step(PROMPTS * 2)
    assert len(after_steps) == 2
    lr = _logprobs_by_hand(original, trainer.last_rollout) - _logprobs_by_hand(after_steps[0], trainer.last_rollout)
    k3 = float((torch.exp(lr) - 1 - lr).mean())
    assert k3 > 0.05  # the first step moved the policy (lr = 1e-2 on a tiny model moves it far)
    assert stats["policy/approx_kl_k3"] == pytest.approx(k3 / 2, rel=1e-4)
    # the other direction, k3 of θ0 against θ1 (exp(−lr) − 1 + lr), is a different number here
    assert float((torch.exp(-lr) - 1 + lr).mean()) / 2 != pytest.approx(stats["policy/approx_kl_k3"], rel=0.05)


def test_nan_reward_stops_before_touching_weights(tiny_llama, tiny_tok):
    def broken(prompts, completions, **_):
        return [float("nan")] * len(completions)

    trainer = OnlineTrainer(tiny_llama, tiny_tok, broken, _cfg(), reference=frozen_copy(tiny_llama), chat=False)
    before = [p.detach().clone() for p in trainer.trainable]
    with pytest.raises(NonFiniteError, match="reward is not finite"):
        trainer.step(PROMPTS * 2)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.trainable))


def test_config_checks_explain_themselves():
    with pytest.raises(ConfigError, match="batch_size \\(10\\) must be a multiple of mini_batch_size \\(4\\)"):
        RLConfig(batch_size=10, mini_batch_size=4, micro_batch_size=4)
    with pytest.raises(ConfigError, match="micro_batch_size"):
        RLConfig(batch_size=8, mini_batch_size=8, micro_batch_size=3)


@pytest.mark.parametrize(
    "algo, extra",
    [
        ("reinforce", {}),
        ("reinforce", {"baseline": "value"}),
        ("rloo", {"group_size": 4}),
        ("grpo", {"group_size": 4}),
        ("reinforce_pp", {}),
        ("remax", {}),
        ("nlpo", {"nlpo_top_p": 0.9, "nlpo_min_tokens": 5, "nlpo_refresh": 5, "ppo_epochs": 2}),
    ],
)
def test_every_algorithm_raises_the_reward(tiny_llama, tiny_tok, algo, extra):
    cfg = _cfg(algo=algo, steps=40, batch_size=16, mini_batch_size=8, learning_rate=1e-2, **extra)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    first, last = _mean([h["reward/score_mean"] for h in history[:5]]), _mean([h["reward/score_mean"] for h in history[-5:]])
    assert last > first + 0.25, (algo, first, last)


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.trainable])


def test_nlpo_with_p_one_is_exactly_ppo(tiny_llama, tiny_tok):
    results = []
    for algo in ("ppo", "nlpo"):
        model = copy.deepcopy(tiny_llama)
        trainer = OnlineTrainer(model, tiny_tok, good_fraction, _cfg(algo=algo, steps=3, nlpo_top_p=1.0, ppo_epochs=2, mini_batch_size=4, micro_batch_size=4),
                                reference=frozen_copy(tiny_llama), chat=False)
        history = trainer.train(PROMPTS, progress=False)
        results.append((_params(trainer), [h["reward/score_mean"] for h in history]))
    assert results[0][1] == results[1][1]
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)


def test_nlpo_samples_only_inside_the_masking_policys_nucleus(tiny_llama, tiny_tok):
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, _cfg(algo="nlpo", nlpo_top_p=0.3, nlpo_min_tokens=2),
                            reference=frozen_copy(tiny_llama), chat=False)
    stats = trainer.step(PROMPTS * 2)
    ro = trainer.last_rollout
    chosen_allowed = ro.action_mask.gather(-1, ro.response_ids.unsqueeze(-1)).squeeze(-1)
    assert chosen_allowed[ro.response_mask > 0].all()
    assert 2 <= stats["nlpo/mask_size_mean"] < len(tiny_tok)


def test_previous_policy_anchor_refreshed_every_step_gives_zero_kl(tiny_llama, tiny_tok):
    # anchor_refresh = 1: at each rollout the anchor is the policy that samples, so log π − log π_prev = 0
    cfg = _cfg(kl_anchor="previous", anchor_refresh=1, steps=3)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    assert all(abs(h["kl/k1_seq_mean"]) < 1e-5 for h in history)
    # with a 10-step refresh the policy drifts from the anchor after the first update
    trainer2 = OnlineTrainer(copy.deepcopy(tiny_llama), tiny_tok, good_fraction, _cfg(kl_anchor="previous", anchor_refresh=10, steps=3),
                             reference=frozen_copy(tiny_llama), chat=False)
    assert abs(trainer2.train(PROMPTS, progress=False)[-1]["kl/k1_seq_mean"]) > 1e-3


def test_kl_in_the_loss_with_k3_and_in_the_reward_with_k2(tiny_llama, tiny_tok):
    histories = {}
    for name, extra in {"loss_k3": {"kl_in": "loss", "kl_estimator": "k3"}, "reward_k2": {"kl_estimator": "k2"}}.items():
        trainer = OnlineTrainer(copy.deepcopy(tiny_llama), tiny_tok, good_fraction, _cfg(steps=3, init_kl_coef=0.5, **extra),
                                reference=frozen_copy(tiny_llama), chat=False)
        histories[name] = trainer.train(PROMPTS, progress=False)
        assert all(math.isfinite(h["loss/policy"]) for h in histories[name])
    # KL in the loss: the shaped return is the score alone at every step
    assert all(h["reward/shaped_return_mean"] == pytest.approx(h["reward/score_mean"]) for h in histories["loss_k3"])
    # KL in the reward (k2 ≥ 0): once the policy has moved, the shaped return is below the score
    later = histories["reward_k2"][-1]
    assert later["reward/shaped_return_mean"] < later["reward/score_mean"]


def test_kl_placements_put_the_penalty_in_one_place_only():
    per_token = torch.tensor([[1.0, 2.0]])
    logprobs, anchor = torch.log(torch.tensor([[0.5, 0.25]])), torch.log(torch.tensor([[0.25, 0.25]]))
    in_reward, in_loss = KL_PLACEMENTS["reward"], KL_PLACEMENTS["loss"]
    # in the reward: the token rewards get −β·kl (β passed on), the loss is left alone
    assert in_reward.reward_coef(0.5) == 0.5
    assert torch.equal(in_reward.add_to_loss(per_token, kl_k3, logprobs, anchor, 0.5), per_token)
    # in the loss: no KL in the rewards; + β·k3 per token, lr = log π_ref − log π = [log ½, 0],
    # k3 = [½ − 1 − log ½, 0] = [0.193147, 0], β = 0.5 -> [1 + 0.096574, 2]
    assert in_loss.reward_coef(0.5) == 0.0
    assert in_loss.add_to_loss(per_token, kl_k3, logprobs, anchor, 0.5).tolist()[0] == pytest.approx([1.096574, 2.0], abs=1e-6)


def test_resume_equals_no_interruption(tmp_path, tiny_llama, tiny_tok):
    cfg = _cfg(steps=4, target_kl=1.0, kl_horizon=100)
    straight = OnlineTrainer(copy.deepcopy(tiny_llama), tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    straight.train(PROMPTS, progress=False)
    first = OnlineTrainer(copy.deepcopy(tiny_llama), tiny_tok, good_fraction, _cfg(steps=2, target_kl=1.0, kl_horizon=100),
                          reference=frozen_copy(tiny_llama), chat=False)
    first.train(PROMPTS, progress=False)
    first.save_checkpoint(Checkpointer(tmp_path / "ckpt"))
    resumed = OnlineTrainer(copy.deepcopy(tiny_llama), tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    assert resumed.load_checkpoint(Checkpointer(tmp_path / "ckpt"))
    resumed.train(PROMPTS, progress=False)
    assert resumed.step_count == straight.step_count == 4
    assert resumed.kl_ctl.value == pytest.approx(straight.kl_ctl.value)
    assert torch.allclose(_params(resumed), _params(straight), atol=1e-6)


def test_running_score_normalisation_hand_values(tiny_llama, tiny_tok):
    # batches [1, 3] then [5, 7]: running mean 4 and population variance of {1,3,5,7} = 20/4 = 5
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, _cfg(score_norm="running"), reference=frozen_copy(tiny_llama))
    assert trainer._shape_scores(torch.tensor([1.0, 3.0]), None).tolist() == pytest.approx([-1.0, 1.0])
    second = trainer._shape_scores(torch.tensor([5.0, 7.0]), None)
    assert second.tolist() == pytest.approx([1 / math.sqrt(5), 3 / math.sqrt(5)], abs=1e-6)
    # missing-EOS penalty and clipping
    trainer2 = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, _cfg(score_clip=1.0, missing_eos_penalty=0.5), reference=frozen_copy(tiny_llama))
    assert trainer2._shape_scores(torch.tensor([3.0, -0.2]), torch.tensor([False, True])).tolist() == pytest.approx([0.5, -0.2])


def test_ppo_ptx_raises_the_likelihood_of_the_ptx_data(tiny_llama, tiny_tok):
    from rlhfkit.types import SFTRecord

    data = [SFTRecord(prompt="the movie was", completion="excellent and fun")]

    def zero(prompts, completions, **_):
        return [0.0] * len(completions)

    trainer = OnlineTrainer(tiny_llama, tiny_tok, zero, _cfg(steps=15, ptx_coef=1.0, ptx_data="(in memory)", ptx_batch_size=2),
                            reference=frozen_copy(tiny_llama), chat=False, ptx_examples=data)
    history = trainer.train(PROMPTS, progress=False)
    assert history[-1]["loss/ptx"] < 0.5 * history[0]["loss/ptx"]


def test_ppo_ptx_reads_chat_rows_too(tiny_llama, tiny_tok):
    # chat-style SFT rows (messages) go through the same collator as `rlhfkit sft`
    from rlhfkit.types import Message, SFTRecord

    data = [SFTRecord(messages=(Message("user", "what is two plus two"), Message("assistant", "four")))]

    def zero(prompts, completions, **_):
        return [0.0] * len(completions)

    trainer = OnlineTrainer(tiny_llama, tiny_tok, zero, _cfg(steps=15, ptx_coef=1.0, ptx_data="(in memory)", ptx_batch_size=2),
                            reference=frozen_copy(tiny_llama), chat=False, ptx_examples=data)
    history = trainer.train(PROMPTS, progress=False)
    assert history[-1]["loss/ptx"] < 0.5 * history[0]["loss/ptx"]
