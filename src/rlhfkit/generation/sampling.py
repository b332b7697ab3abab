"""The decoding loops.

Shapes: B prompts, P prompt tokens (left-padded so every prompt ends at the same column and the
response starts right after it), T response tokens (right-padded after EOS), V vocabulary.

`sample` runs one prefill pass over the distinct prompts (a prompt sampled G times is prefilled
once and its KV cache expanded), then one cached step per token. The KV cache is written into
tensors allocated once for the whole response (`PreallocatedLayer`) rather than concatenated
anew at each step. Rows that have emitted EOS are dropped from the batch and the KV cache (in
groups, once they are a quarter of the batch), so a batch costs about what its unfinished rows
cost. Each step normalises only a (B, V) slice; nothing of shape (B, T, V) is ever built.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.masking import masked_logits, top_p_mask
from rlhfkit.data.chat import encode_prompts, pad_token_id
from rlhfkit.models.forward import cache_argument as _cache_argument
from rlhfkit.models.forward import returned_cache as _returned_cache
from rlhfkit.models.loading import autocast_context, eos_token_ids
from rlhfkit.types import Rollout


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token.

    strategy: "greedy" (argmax), "sample" (plain temperature sampling), "top_k", "top_p", or
    "beam". top_k / top_p also apply under "sample" when set (0 / 1.0 mean off).
    """

    strategy: str = "sample"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    length_penalty: float = 1.0
    max_new_tokens: int = 32
    min_tokens_to_keep: int = 1

    def __post_init__(self):
        if self.strategy not in ("greedy", "sample", "top_k", "top_p", "beam"):
            raise ValueError(f"strategy must be greedy, sample, top_k, top_p or beam, got {self.strategy!r}")
        if self.strategy == "top_k" and self.top_k <= 0:
            raise ValueError("strategy top_k needs top_k > 0")
        if self.strategy == "top_p" and not 0.0 < self.top_p < 1.0:
            raise ValueError("strategy top_p needs 0 < top_p < 1")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use strategy greedy for argmax), got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Set every logit outside the top-k set and outside the top-p nucleus to −inf.

    logits: (..., V). The nucleus is the smallest set of most likely tokens whose probability
    reaches `top_p`; a token is kept iff the mass of the tokens ranked above it is < top_p.
    At least `min_tokens_to_keep` tokens always survive.
    """
    out = logits
    if top_k and top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
        kth = torch.topk(out, k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        out = masked_logits(out, top_p_mask(out, top_p, min_tokens_to_keep))
    return out


def next_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row. logits: (B, V) -> (tokens (B,), logprobs (B,)).

    The log-prob returned is that of the token under softmax(logits / temperature) before
    top-k/top-p truncation — the policy's own distribution, which is what PPO's ratios and the
    KL penalty need.
    """
    logits = logits.float()
    if params.strategy == "greedy":
        logp = torch.log_softmax(logits, dim=-1)
        tokens = logp.argmax(-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
    scaled = logits / params.temperature if params.temperature != 1.0 else logits
    top_k = params.top_k if params.strategy in ("top_k", "sample") else 0
    top_p = params.top_p if params.strategy in ("top_p", "sample") else 1.0
    if not top_k and top_p == 1.0:
        # plain sampling: draw from the unnormalised weights exp(z − max z) and take the
        # log-prob of the drawn token as z_a − max z − log Σ weights (no (B, V) log-softmax)
        peak = scaled.max(-1, keepdim=True).values  # (B, 1)
        weights = (scaled - peak).exp_()  # (B, V)
        tokens, total = _inverse_cdf_sample(weights, generator, with_total=True)
        chosen = scaled.gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, chosen - peak.squeeze(-1) - total.log()
    logp = torch.log_softmax(scaled, dim=-1)
    probs = torch.softmax(filter_logits(scaled, top_k, top_p, params.min_tokens_to_keep), dim=-1)
    tokens = _inverse_cdf_sample(probs, generator)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def _inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator | None, with_total: bool = False):
    """One draw per row of (B, V) `probs` (or any non-negative weights: the CDF is scaled by its
    last value) by inverting the CDF with a single uniform per row. Returns tokens (B,), and with
    `with_total` also the row sums of the weights (B,).

    Exact like torch.multinomial, but it needs B random numbers instead of B·V (multinomial and
    the exponential race cost ~24 ms per step on a 49k vocabulary on CPU; this ~2 ms). With
    right=True a zero-probability token is never picked: its CDF value equals its predecessor's.
    """
    cdf = probs.cumsum(-1)  # (B, V)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)
    return (tokens, cdf[:, -1]) if with_total else tokens


def _cached_step(model, cache, **inputs):
    """One forward pass that reads and extends the KV cache `cache`."""
    return model(**inputs, **{_cache_argument(model): cache}, use_cache=True)


class NucleusMasker:
    """NLPO's action mask (Ramamurthy et al. 2022): at each step, the top-p nucleus of a frozen
    *masking policy* run in lock-step with the sampler (its own KV cache), plus `keep_ids`
    (special tokens) that are always allowed. Produces (B, V) bool masks."""

    def __init__(self, mask_model, top_p: float = 0.9, min_tokens_to_keep: int = 100, keep_ids: Sequence[int] = ()):
        self.model, self.top_p, self.min_keep, self.keep_ids = mask_model, top_p, min_tokens_to_keep, list(keep_ids)
        self.cache = None

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        mask = top_p_mask(logits, self.top_p, self.min_keep)
        if self.keep_ids:
            mask[:, self.keep_ids] = True
        return mask

    def prefill(self, ids, attn, positions) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1)
        self.cache = _returned_cache(out)
        return self._mask(out.logits[:, -1])

    def advance(self, token, attn, positions) -> torch.Tensor:
        out = _cached_step(self.model, self.cache, input_ids=token[:, None], attention_mask=attn,
                           position_ids=positions[:, None])
        return self._mask(out.logits[:, -1])

    def select(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)


@functools.cache
def preallocated_layer_class():
    """`PreallocatedLayer`, a subclass of transformers' `DynamicLayer` (built on first use:
    transformers is imported lazily everywhere in rlhfkit)."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """One layer's KV cache kept in (B, heads, capacity, head_dim) tensors allocated once and
        filled in place, exposing the filled part as `keys` / `values` views.

        transformers' `DynamicLayer` concatenates the whole cache with each new token: on CPU every
        step then allocates and copies the full cache of every layer (two thirds of a decode step's
        time on a small model). Built by `_new_cache` from a `DynamicLayer` (whose interface it
        keeps: update, get_seq_length, get_mask_sizes, batch_select_indices, …)."""

        is_sliding = False
        is_compileable = False
        is_croppable = True

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            end = self.length + key_states.shape[-2]
            if not self.is_initialized or end > self._k.shape[2]:
                size = max(end, self.capacity, 2 * self.length)  # beyond the capacity: doubling
                k = key_states.new_empty(*key_states.shape[:2], size, key_states.shape[-1])
                v = value_states.new_empty(*value_states.shape[:2], size, value_states.shape[-1])
                if self.is_initialized:
                    k[:, :, : self.length], v[:, :, : self.length] = self.keys, self.values
                self._k, self._v, self.is_initialized = k, v, True
                self.device = k.device
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def get_max_length(self) -> int:
            return -1

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.length + query_length, 0

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            """Keep (or repeat) the rows `indices` of the batch."""
            if self.is_initialized:
                self._k, self._v = self._k[indices], self._v[indices]
                self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:
                self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
                self._views()

        def crop(self, max_length: int) -> None:
            self.length = max_length if max_length >= 0 else self.length + max_length
            if self.is_initialized:
                self._views()

        def reset(self) -> None:
            self.length = 0
            if self.is_initialized:
                self._views()

    return PreallocatedLayer


def _new_cache(model, capacity: int):
    """transformers' `DynamicCache` for this model with each plain full-attention layer replaced
    by a `PreallocatedLayer` (`preallocated_layer_class`) of `capacity` positions; None (the model makes its own cache) for
    models whose config transformers cannot build a cache from (remote code, older releases)."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001 - any model transformers cannot build a cache for
        return None
    if not getattr(cache, "layers", None):
        return None
    layer_class = preallocated_layer_class()
    cache.layers = [layer_class(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded mask: 0 at the first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _prefill(model, prompt_ids: torch.Tensor, attn: torch.Tensor):
    """One pass over the left-padded prompts: (KV cache, last-position logits (B, V), positions (B, P))."""
    positions = _positions(attn)
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1)
    return _returned_cache(out), out.logits[:, -1], positions


def _shared_prefill(model, prompt_ids: torch.Tensor, attn: torch.Tensor, max_new_tokens: int):
    """`_prefill` over the distinct rows of (prompt_ids, attn) only, the KV cache and logits then
    expanded to every row (a prompt sampled G times costs one prefill row, not G), into a
    preallocated cache of P + max_new_tokens positions."""
    rows = torch.cat([prompt_ids, attn], dim=1)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    cache = _new_cache(model, prompt_ids.shape[1] + max_new_tokens)
    P = prompt_ids.shape[1]
    shared = unique.shape[0] < rows.shape[0]
    ids, mask = (unique[:, :P], unique[:, P:]) if shared else (prompt_ids, attn)
    positions = _positions(mask)
    kwargs = {_cache_argument(model): cache} if cache is not None else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs)
    cache, logits = _returned_cache(out), out.logits[:, -1]
    if shared:
        cache.batch_select_indices(inverse)
        logits = logits[inverse]
    return cache, logits, _positions(attn)


def _trimmed(length: int, **columns: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The (B, T_max, ...) buffers cut to the `length` steps actually taken (None entries dropped)."""
    return {name: value[:, :length] for name, value in columns.items() if value is not None}


@torch.no_grad()
def sample(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    params: SamplingParams,
    eos_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator | None = None,
    masker: NucleusMasker | None = None,
) -> dict[str, torch.Tensor]:
    """Sample one response per (left-padded) prompt with the KV cache.

    prompt_ids, prompt_mask: (B, P). Returns response_ids (B, T) right-padded with `pad_id`,
    response_mask (B, T) float (EOS included), logprobs (B, T) (0 on padding) and finished
    (B,) bool, with T ≤ max_new_tokens the longest response. With a `masker` (NLPO), tokens are
    drawn from the policy renormalised over each step's mask, `logprobs` are of that masked
    distribution, and the masks come back as action_mask (B, T, V) bool.
    """
    if params.strategy == "beam":
        raise ValueError("use beam_search() for strategy 'beam'")
    device = prompt_ids.device
    B = prompt_ids.shape[0]
    T = params.max_new_tokens
    eos = torch.tensor(list(eos_ids), device=device)
    tokens_out = torch.full((B, T), pad_id, dtype=torch.long, device=device)
    logprobs_out = torch.zeros(B, T, device=device)
    mask_out = torch.zeros(B, T, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)

    attn = prompt_mask.long()
    cache, logits, positions = _shared_prefill(model, prompt_ids, attn, T)  # logits (B, V)
    next_pos = positions[:, -1] + 1  # (B,)
    rows = torch.arange(B, device=device)  # which original rows are still generating
    action_masks = None
    if masker is not None:
        step_mask = masker.prefill(prompt_ids, attn, positions)
        action_masks = torch.ones(B, T, logits.shape[-1], dtype=torch.bool, device=device)
    alive = torch.ones(B, dtype=torch.bool, device=device)  # rows of the current batch still generating
    length = 0
    for t in range(T):
        if masker is not None:
            action_masks[rows[alive], t] = step_mask[alive]
            logits = masked_logits(logits, step_mask)
        token, logprob = next_token(logits, params, generator)
        live_rows = rows[alive]
        tokens_out[live_rows, t] = token[alive]
        logprobs_out[live_rows, t] = logprob[alive]
        mask_out[live_rows, t] = 1.0
        length = t + 1
        done = torch.isin(token, eos) & alive
        finished[rows[done]] = True
        alive = alive & ~done
        if t == T - 1 or not bool(alive.any()):
            break
        # Drop finished rows from the batch and the KV cache once they are a quarter of it:
        # compacting costs a copy of the whole cache, so it is batched rather than done per row.
        n_dead = int((~alive).sum())
        if n_dead and n_dead * 4 >= len(alive):
            keep = alive.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            if masker is not None:
                masker.select(keep)
            attn, next_pos, token, rows, alive = attn[keep], next_pos[keep], token[keep], rows[keep], alive[keep]
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=1)
        out = _cached_step(model, cache, input_ids=token[:, None], attention_mask=attn, position_ids=next_pos[:, None])
        logits = out.logits[:, -1]
        if masker is not None:
            step_mask = masker.advance(token, attn, next_pos)
        next_pos = next_pos + 1
    return {**_trimmed(length, response_ids=tokens_out, response_mask=mask_out, logprobs=logprobs_out,
                       action_mask=action_masks), "finished": finished}


@torch.no_grad()
def beam_search(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    params: SamplingParams,
    eos_ids: Sequence[int],
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """Beam search with `params.num_beams` beams per prompt and the KV cache.

    A hypothesis's score is its summed log-prob divided by length**length_penalty. Returns the
    best hypothesis per prompt: response_ids (B, T), response_mask (B, T), logprobs (B, T) (the
    per-token log-probs along the chosen path), finished (B,), and scores (B,).
    """
    device = prompt_ids.device
    B, nb, T = prompt_ids.shape[0], params.num_beams, params.max_new_tokens
    eos = set(int(i) for i in eos_ids)
    attn = prompt_mask.long().repeat_interleave(nb, 0)  # (B*nb, P)
    ids = prompt_ids.repeat_interleave(nb, 0)
    cache, last_logits, positions = _prefill(model, ids, attn)
    logp = torch.log_softmax(last_logits.float(), dim=-1)  # (B*nb, V)
    V = logp.shape[-1]
    next_pos = positions[:, -1] + 1
    beam_scores = torch.full((B, nb), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: expand only the first
    seqs = torch.zeros(B * nb, 0, dtype=torch.long, device=device)
    seq_logps = torch.zeros(B * nb, 0, device=device)
    finished: list[list[tuple[float, list[int], list[float], bool]]] = [[] for _ in range(B)]

    def normalised(total: float, length: int) -> float:
        return total / (length ** params.length_penalty)

    for t in range(T):
        candidates = (beam_scores.view(-1, 1) + logp).view(B, nb * V)
        top_scores, top_idx = torch.topk(candidates, 2 * nb, dim=-1)  # (B, 2nb)
        new_beam_src, new_tokens, new_scores = _select_beams(
            top_scores, top_idx, nb, V, eos, pad_id,
            lambda src, token, score: (normalised(score, t + 1), seqs[src].tolist() + [token],
                                       seq_logps[src].tolist() + [float(logp[src, token])], True),
            finished)
        src_idx = torch.tensor(new_beam_src, device=device)
        token_t = torch.tensor(new_tokens, device=device)
        beam_scores = torch.tensor(new_scores, device=device).view(B, nb)
        seq_logps = torch.cat([seq_logps[src_idx], logp[src_idx, token_t].unsqueeze(1)], dim=1)
        seqs = torch.cat([seqs[src_idx], token_t[:, None]], dim=1)
        done = all(
            len(finished[b]) >= nb and max(f[0] for f in finished[b]) >= normalised(float(beam_scores[b].max()), t + 1)
            for b in range(B)
        )
        if done or t == T - 1:
            break
        cache.batch_select_indices(src_idx)
        attn = torch.cat([attn[src_idx], attn.new_ones(B * nb, 1)], dim=1)
        next_pos = next_pos[src_idx]
        out = _cached_step(model, cache, input_ids=token_t[:, None], attention_mask=attn, position_ids=next_pos[:, None])
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        next_pos = next_pos + 1

    best = _best_hypotheses(finished, beam_scores, seqs, seq_logps, lambda score: normalised(score, seqs.shape[1]))
    return _hypotheses_as_tensors(best, pad_id, device)


def _select_beams(top_scores, top_idx, nb: int, V: int, eos: set[int], pad_id: int, hypothesis, finished):
    """For each prompt, walk its 2·nb best (beam, token) candidates: those ending in EOS become
    finished hypotheses (`hypothesis(src, token, score)`), the first nb others the next beams;
    prompts with fewer live candidates are padded with dead (−inf) beams.
    Returns (source beam rows, tokens, scores), each of length B·nb."""
    new_beam_src, new_tokens, new_scores = [], [], []
    for b in range(top_scores.shape[0]):
        chosen = 0
        for score, idx in zip(top_scores[b].tolist(), top_idx[b].tolist()):
            if score == float("-inf"):
                break
            src, token = b * nb + idx // V, idx % V
            if token in eos:
                finished[b].append(hypothesis(src, token, score))
                continue
            if chosen < nb:
                new_beam_src.append(src)
                new_tokens.append(token)
                new_scores.append(score)
                chosen += 1
        pad = nb - chosen
        new_beam_src += [b * nb] * pad
        new_tokens += [pad_id] * pad
        new_scores += [float("-inf")] * pad
    return new_beam_src, new_tokens, new_scores


def _best_hypotheses(finished, beam_scores, seqs, seq_logps, normalised_at_limit):
    """The best hypothesis per prompt; unfinished beams compete too when the length limit is hit."""
    B, nb = beam_scores.shape
    best: list[tuple[float, list[int], list[float], bool]] = []
    for b in range(B):
        pool = list(finished[b])
        for j in range(nb):
            score = float(beam_scores[b, j])
            if score > float("-inf"):
                pool.append((normalised_at_limit(score), seqs[b * nb + j].tolist(), seq_logps[b * nb + j].tolist(), False))
        best.append(max(pool, key=lambda h: h[0]))
    return best


def _hypotheses_as_tensors(best, pad_id: int, device) -> dict[str, torch.Tensor]:
    """(score, path, path log-probs, finished) per prompt as right-padded (B, T) tensors."""
    B = len(best)
    length = max(len(h[1]) for h in best)
    response_ids = torch.full((B, length), pad_id, dtype=torch.long, device=device)
    response_mask = torch.zeros(B, length, device=device)
    logprobs = torch.zeros(B, length, device=device)
    for b, (_, path, path_lp, _) in enumerate(best):
        response_ids[b, : len(path)] = torch.tensor(path, device=device)
        response_mask[b, : len(path)] = 1.0
        logprobs[b, : len(path)] = torch.tensor(path_lp, device=device)
    return {
        "response_ids": response_ids,
        "response_mask": response_mask,
        "logprobs": logprobs,
        "finished": torch.tensor([h[3] for h in best], device=device),
        "scores": torch.tensor([h[0] for h in best], device=device),
    }


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Text of each response without padding and special tokens (EOS included)."""
    return [
        tokenizer.decode(row[m > 0].tolist(), skip_special_tokens=True).strip()
        for row, m in zip(response_ids.cpu(), response_mask.cpu())
    ]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    params: SamplingParams,
    eos_ids: Sequence[int] | None = None,
    chat: bool | None = None,
    max_prompt_tokens: int | None = None,
    generator: torch.Generator | None = None,
    compute_dtype: torch.dtype = torch.float32,
    masker: NucleusMasker | None = None,
) -> Rollout:
    """Sample (or beam-search) one response per prompt as one batch. Returns a `Rollout`
    (with `action_mask` (B, T, V) when an NLPO `masker` restricts the actions)."""
    device = next(model.parameters()).device
    eos_ids = list(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer)
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, chat, max_prompt_tokens, device)
    was_training = model.training
    model.eval()
    with autocast_context(device, compute_dtype):
        if params.strategy == "beam":
            out = beam_search(model, prompt_ids, prompt_mask, params, eos_ids, pad_id)
        else:
            out = sample(model, prompt_ids, prompt_mask, params, eos_ids, pad_id, generator, masker)
    model.train(was_training)
    return Rollout(
        action_mask=out.get("action_mask"),
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=out["response_ids"],
        response_mask=out["response_mask"],
        logprobs=out["logprobs"],
        prompts=list(prompts),
        responses=decode_responses(tokenizer, out["response_ids"], out["response_mask"]),
        finished=out["finished"],
    )


def generate_batched(model, tokenizer, prompts: Sequence[str], params: SamplingParams, batch_size: int = 32,
                     progress: str | None = None, **kwargs) -> list[Rollout]:
    """`generate` over many prompts in batches of `batch_size`, with an optional progress bar."""
    from tqdm.auto import tqdm

    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    bar = tqdm(batches, desc=progress, disable=progress is None, unit="batch", dynamic_ncols=True)
    return [generate(model, tokenizer, batch, params, **kwargs) for batch in bar]


def best_of_n(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int,
    reward_fn: Callable[[list[str], list[str]], Sequence[float]],
    params: SamplingParams,
    batch_size: int = 32,
    **kwargs,
) -> tuple[list[str], torch.Tensor]:
    """Sample n responses per prompt and keep the one `reward_fn(prompts, responses)` scores best.

    Returns (best responses, scores (len(prompts), n)). Its KL to the sampling policy is at most
    log n − (n − 1)/n nats (REFERENCES.md, overoptimization).
    """
    if n < 1:
        raise ValueError("best-of-n needs n >= 1")
    expanded = [p for p in prompts for _ in range(n)]
    rollouts = generate_batched(model, tokenizer, expanded, params, batch_size=batch_size, **kwargs)
    responses = [r for ro in rollouts for r in ro.responses]
    scores = torch.tensor([float(s) for s in reward_fn(expanded, responses)], dtype=torch.float64).view(len(prompts), n)
    best = scores.argmax(dim=1)
    return [responses[i * n + int(j)] for i, j in enumerate(best)], scores


def best_of_n_kl_bound(n: int) -> float:
    """log n − (n − 1)/n: the KL (nats) of best-of-n to its base policy (exact without ties)."""
    return math.log(n) - (n - 1) / n
