"""Sampling: truncation never leaks, greedy is argmax, beam search finds the best sequence,
left padding and finished-row removal change nothing."""

import math
from types import SimpleNamespace

import pytest
import torch

from rlhfkit.generation import (
    SamplingParams,
    beam_search,
    filter_logits,
    generate,
    next_token,
    sample,
)

PROBS = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])  # sorted: 1 (0.4), 3 (0.3), 4 (0.15), 2 (0.1), 0 (0.05)


def _allowed(filtered: torch.Tensor) -> set[int]:
    return set(torch.isfinite(filtered).nonzero().flatten().tolist())


def test_top_k_and_top_p_sets_on_a_fixed_distribution():
    logits = PROBS.log()[None]
    assert _allowed(filter_logits(logits, top_k=2)[0]) == {1, 3}
    # nucleus p = 0.7: mass above token 1 is 0 < 0.7, above 3 is 0.4 < 0.7, above 4 is 0.7 -> cut
    assert _allowed(filter_logits(logits, top_p=0.7)[0]) == {1, 3}
    # p = 0.71: token 4 has 0.7 above it < 0.71 -> kept
    assert _allowed(filter_logits(logits, top_p=0.71)[0]) == {1, 3, 4}
    # a tiny p still keeps min_tokens_to_keep
    assert _allowed(filter_logits(logits, top_p=0.01)[0]) == {1}
    assert _allowed(filter_logits(logits, top_p=0.01, min_tokens_to_keep=3)[0]) == {1, 3, 4}
    # top-k then top-p compose
    assert _allowed(filter_logits(logits, top_k=3, top_p=0.5)[0]) == {1, 3}


def test_sampling_never_emits_outside_the_allowed_set():
    gen = torch.Generator().manual_seed(0)
    logits = PROBS.log()[None].repeat(4000, 1)
    for params, allowed in [
        (SamplingParams(strategy="top_k", top_k=2), {1, 3}),
        (SamplingParams(strategy="top_p", top_p=0.71), {1, 3, 4}),
        (SamplingParams(strategy="top_p", top_p=0.3, temperature=2.0), {1}),
    ]:
        tokens, logprobs = next_token(logits, params, gen)
        assert set(tokens.tolist()) == allowed
        # the returned log-prob is of the untruncated (temperature-scaled) distribution
        scaled = torch.log_softmax(PROBS.log() / params.temperature, -1)
        assert torch.allclose(logprobs, scaled[tokens])
    # frequencies follow the renormalised nucleus: 0.4/0.85, 0.3/0.85, 0.15/0.85
    tokens, _ = next_token(logits, SamplingParams(strategy="top_p", top_p=0.71), gen)
    freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
    for tok, p in [(1, 0.4 / 0.85), (3, 0.3 / 0.85), (4, 0.15 / 0.85)]:
        sd = math.sqrt(p * (1 - p) / len(tokens))
        assert abs(freq[tok].item() - p) < 4 * sd


def test_greedy_equals_stepwise_argmax(tiny_llama, tiny_tok):
    prompts = ["the movie was", "i loved it and the cast is"]
    ro = generate(tiny_llama, tiny_tok, prompts, SamplingParams(strategy="greedy", max_new_tokens=6), chat=False,
                  eos_ids=[tiny_tok.eos_token_id])
    for b, prompt in enumerate(prompts):
        ids = tiny_tok(prompt)["input_ids"]
        for t in range(int(ro.response_mask[b].sum())):
            with torch.no_grad():
                logits = tiny_llama(input_ids=torch.tensor([ids])).logits[0, -1]
            expected = int(logits.argmax())
            assert int(ro.response_ids[b, t]) == expected
            ids.append(expected)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_batched_left_padded_generation_equals_one_by_one(arch, request, tiny_tok):
    model = request.getfixturevalue(arch)
    prompts = ["the movie was", "i loved it and the cast is excellent", "what"]
    params = SamplingParams(strategy="greedy", max_new_tokens=5)
    batched = generate(model, tiny_tok, prompts, params, chat=False, eos_ids=[tiny_tok.eos_token_id])
    for b, p in enumerate(prompts):
        single = generate(model, tiny_tok, [p], params, chat=False, eos_ids=[tiny_tok.eos_token_id])
        n = int(single.response_mask[0].sum())
        assert batched.response_ids[b, :n].tolist() == single.response_ids[0, :n].tolist()
        assert torch.allclose(batched.logprobs[b, :n], single.logprobs[0, :n], atol=1e-4)


class MarkovModel(torch.nn.Module):
    """A hand-made LM: the next-token distribution depends only on the last token.
    vocab: 0 pad, 1 eos, 2 A, 3 B, 4 C, 5 start."""

    def __init__(self, table: dict[int, list[float]]):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.table = torch.full((6, 6), -1e9)
        for tok, probs in table.items():
            self.table[tok] = torch.tensor(probs).clamp(min=1e-30).log()
        self.config = SimpleNamespace(eos_token_id=1)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False, **kw):
        logits = self.table[input_ids]  # (B, L, V)
        cache = past_key_values or SimpleNamespace(batch_select_indices=lambda idx: None)
        return SimpleNamespace(logits=logits, past_key_values=cache)


def test_beam_search_finds_the_best_sequence_greedy_misses():
    # From start: A 0.6, B 0.4. After A: A, B, C one third each. After B: C 0.9, A 0.1.
    # Two tokens: best path B C has prob 0.4·0.9 = 0.36 > A·x = 0.6/3 = 0.2 (greedy's pick).
    third = 1 / 3
    model = MarkovModel({5: [0, 0, 0.6, 0.4, 0, 0], 2: [0, 0, third, third, third, 0], 3: [0, 0, 0.1, 0, 0.9, 0],
                         4: [0, 0, 0.5, 0.5, 0, 0]})
    prompt, mask = torch.tensor([[5]]), torch.ones(1, 1, dtype=torch.long)
    greedy = sample(model, prompt, mask, SamplingParams(strategy="greedy", max_new_tokens=2), eos_ids=[1], pad_id=0)
    assert greedy["response_ids"][0, 0].item() == 2  # greedy commits to A
    beam = beam_search(model, prompt, mask, SamplingParams(strategy="beam", num_beams=2, max_new_tokens=2), eos_ids=[1], pad_id=0)
    assert beam["response_ids"][0].tolist() == [3, 4]
    assert beam["logprobs"][0].sum().item() == pytest.approx(math.log(0.36), abs=1e-5)


def test_beam_search_prefers_a_finished_hypothesis_when_it_scores_better():
    # From start: eos 0.5, A 0.5; after A: A 0.5, B 0.5. With length_penalty 0 (raw sums),
    # [eos] scores log 0.5 > any two-token path (log 0.25).
    model = MarkovModel({5: [0, 0.5, 0.5, 0, 0, 0], 2: [0, 0, 0.5, 0.5, 0, 0], 3: [0, 0, 0.5, 0.5, 0, 0]})
    out = beam_search(model, torch.tensor([[5]]), torch.ones(1, 1, dtype=torch.long),
                      SamplingParams(strategy="beam", num_beams=2, max_new_tokens=3, length_penalty=0.0), [1], 0)
    assert out["response_ids"][0, 0].item() == 1 and out["finished"][0].item()


def test_sampling_stops_at_eos_and_pads_after_it():
    # start -> A always; A -> eos always; so every response is [A, eos] and the loop stops early.
    model = MarkovModel({5: [0, 0, 1, 0, 0, 0], 2: [0, 1, 0, 0, 0, 0]})
    out = sample(model, torch.tensor([[5], [5]]), torch.ones(2, 1, dtype=torch.long),
                 SamplingParams(strategy="sample", max_new_tokens=10), eos_ids=[1], pad_id=0)
    assert out["response_ids"].tolist() == [[2, 1], [2, 1]]
    assert out["finished"].tolist() == [True, True]
    assert out["response_mask"].tolist() == [[1, 1], [1, 1]]


def test_finished_rows_are_dropped_without_changing_the_others():
    # row 0's start token 5 leads to eos after one token; row 1 (start 4) keeps going A B A B...
    model = MarkovModel({5: [0, 1, 0, 0, 0, 0], 4: [0, 0, 1, 0, 0, 0], 2: [0, 0, 0, 1, 0, 0], 3: [0, 0, 1, 0, 0, 0]})
    out = sample(model, torch.tensor([[5], [4]]), torch.ones(2, 1, dtype=torch.long),
                 SamplingParams(strategy="greedy", max_new_tokens=4), eos_ids=[1], pad_id=0)
    assert out["response_ids"].tolist() == [[1, 0, 0, 0], [2, 3, 2, 3]]
    assert out["response_mask"].tolist() == [[1, 0, 0, 0], [1, 1, 1, 1]]
    assert out["finished"].tolist() == [True, False]


def test_sampling_params_reject_nonsense():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(strategy="top_p", top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=0)
    with pytest.raises(ValueError, match="strategy"):
        SamplingParams(strategy="nucleus")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_decoding_passes_the_kv_cache_under_its_current_name(arch, tiny_tok, capfd):
    # transformers 5.x renamed the forward's `past_key_values` to `cache`; the old name still
    # works but prints a FutureWarning and a log line in every generating command (issue 18).
    # (MarkovModel above keeps the old name, as remote-code models do: the tests above cover it.)
    import warnings

    from rlhfkit.models.tiny import tiny_causal_lm

    model = tiny_causal_lm(arch, vocab_size=len(tiny_tok))
    ids, mask = torch.tensor([[3, 4, 5], [0, 4, 5]]), torch.tensor([[1, 1, 1], [0, 1, 1]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(model, ids, mask, SamplingParams(max_new_tokens=4), eos_ids=[1], pad_id=0)
        beam_search(model, ids, mask, SamplingParams(strategy="beam", num_beams=2, max_new_tokens=4), eos_ids=[1], pad_id=0)
    assert out["response_ids"].shape[0] == 2
    printed = [str(w.message) for w in caught] + [capfd.readouterr().err]
    assert not [m for m in printed if "past_key_values" in m or "deprecated" in m], printed
