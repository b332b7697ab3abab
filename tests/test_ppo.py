"""PPO on tiny random models: learning, invariances, and NaN safety."""

import copy

import pytest
import torch

from rlhfkit.models.lora import add_lora, frozen_copy, reference_forward
from rlhfkit.models.forward import response_forward
from rlhfkit.trainers.config import PPOConfig
from rlhfkit.trainers.ppo import NonFiniteError, PPOTrainer
from rlhfkit.config import ConfigError

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]


POSITIVE = {"good", "great", "excellent", "wonderful", "fine", "best", "happy", "love", "loved", "fun"}


def good_fraction(prompts, completions, **_):
    """A programmatic reward: the share of words in the response that are positive words
    (10 of the tiny tokenizer's ~67 tokens, so a random policy scores about 0.15)."""
    return [sum(w in POSITIVE for w in c.split()) / max(len(c.split()), 1) for c in completions]


def _cfg(**kw):
    base = dict(steps=1, batch_size=8, mini_batch_size=8, micro_batch_size=8, ppo_epochs=1, learning_rate=1e-2,
                max_new_tokens=6, init_kl_coef=0.01, target_kl=None, seed=0)
    base.update(kw)
    return PPOConfig(**base)


def _mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.parametrize("use_lora", [False, True])
def test_reward_rises_on_a_tiny_model(tiny_llama, tiny_tok, use_lora):
    if use_lora:
        policy, reference = add_lora(tiny_llama, r=8, alpha=16), None
    else:
        policy, reference = tiny_llama, frozen_copy(tiny_llama)
    trainer = PPOTrainer(policy, tiny_tok, good_fraction, _cfg(steps=40, batch_size=16, mini_batch_size=8, ppo_epochs=2,
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
        trainer = PPOTrainer(model, tiny_tok, good_fraction, _cfg(micro_batch_size=micro), reference=frozen_copy(tiny_llama), chat=False)
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
    trainer = PPOTrainer(policy, tiny_tok, good_fraction, _cfg(learning_rate=5e-2), chat=False)
    trainer.step(PROMPTS * 2)  # the adapter now differs from zero
    ro = trainer.last_rollout
    args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    with torch.no_grad():
        with reference_forward(policy, None) as ref:
            disabled = response_forward(ref, *args)["logprobs"]
        expected = response_forward(original, *args)["logprobs"]
        adapted = response_forward(policy, *args)["logprobs"]
    assert torch.allclose(disabled, expected, atol=1e-6)
    assert not torch.allclose(adapted, expected, atol=1e-4)


def test_first_epoch_ratio_is_one_and_kl_starts_at_zero(tiny_llama, tiny_tok):
    trainer = PPOTrainer(add_lora(tiny_llama), tiny_tok, good_fraction, _cfg(), chat=False)
    stats = trainer.step(PROMPTS * 2)
    assert stats["kl/k1_seq_mean"] == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0: π = π_ref at the start
    assert stats["policy/approx_kl"] == pytest.approx(0.0, abs=1e-6)  # one mini-batch: π = π_old when the loss is taken


def test_nan_reward_stops_before_touching_weights(tiny_llama, tiny_tok):
    def broken(prompts, completions, **_):
        return [float("nan")] * len(completions)

    trainer = PPOTrainer(tiny_llama, tiny_tok, broken, _cfg(), reference=frozen_copy(tiny_llama), chat=False)
    before = [p.detach().clone() for p in trainer.trainable]
    with pytest.raises(NonFiniteError, match="reward is not finite"):
        trainer.step(PROMPTS * 2)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.trainable))


def test_config_checks_explain_themselves():
    with pytest.raises(ConfigError, match="batch_size \\(10\\) must be a multiple of mini_batch_size \\(4\\)"):
        PPOConfig(batch_size=10, mini_batch_size=4, micro_batch_size=4)
    with pytest.raises(ConfigError, match="micro_batch_size"):
        PPOConfig(batch_size=8, mini_batch_size=8, micro_batch_size=3)
