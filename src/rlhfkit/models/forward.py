"""Batched forward passes over prompt + response that return only what training needs."""

from __future__ import annotations

import inspect
import os

import torch

from rlhfkit.algorithms.logprobs import selected_token_logprobs, selected_token_logprobs_and_entropy
from rlhfkit.algorithms.masking import masked_logits
from rlhfkit.types import ForwardOutput

__all__ = ["ForwardOutput", "cache_argument", "fast_paths_enabled", "response_forward", "returned_cache", "trim_padding"]

# KV-cache argument names, by model class (see `cache_argument`).
_CACHE_ARGUMENT: dict[type, str] = {}


def cache_argument(model) -> str:
    """The name this model's forward gives its KV cache: `cache` in transformers 5.x (where
    `past_key_values` still works but warns, until 5.40), `past_key_values` in older releases
    and in remote-code models. Read from the forward's signature once per model class."""
    base = getattr(model, "module", model)  # DDP / accelerate wrappers
    base = base.get_base_model() if hasattr(base, "get_base_model") else base  # peft
    key = type(base)
    if key not in _CACHE_ARGUMENT:
        params = inspect.signature(base.forward).parameters
        _CACHE_ARGUMENT[key] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_ARGUMENT[key]


def returned_cache(out):
    """The KV cache of a forward's output (`out.cache` in transformers 5.x; reading the old
    `past_key_values` name there warns)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def fast_paths_enabled() -> bool:
    """False when RLHFKIT_FAST_PATHS=0: the speed-ups of issue 12 that this flag guards (response-
    position logits, the shared DPO prompt) fall back to their plain paths, which compute the same
    numbers. Only for measuring them side by side (benchmarks/); not a user setting."""
    return os.environ.get("RLHFKIT_FAST_PATHS", "1") != "0"


def _boolean_logits_to_keep() -> bool:
    """Whether this transformers slices hidden states with a boolean (B, L) `logits_to_keep`
    (its `slice_logits_to_keep`, 5.x), returning logits of the True positions only, (N, V)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


_BOOLEAN_KEEP = _boolean_logits_to_keep()


def _fast(model) -> bool:
    """The fast paths need transformers' own model classes (boolean `logits_to_keep`, a KV cache
    that can be indexed by row); any other module (wrappers aside) takes the plain path."""
    if not (_BOOLEAN_KEEP and fast_paths_enabled()):
        return False
    from transformers import PreTrainedModel

    base = getattr(model, "module", model)  # DDP / accelerate wrappers
    base = base.get_base_model() if hasattr(base, "get_base_model") else base  # peft
    return isinstance(base, PreTrainedModel)


def trim_padding(prompt_ids, prompt_mask, response_ids, response_mask):
    """Drop prompt columns that are padding in every row (left) and response columns that are
    padding in every row (right): the forward pass then costs what the longest row costs."""
    keep_p = prompt_mask.bool().any(0).nonzero()
    first = int(keep_p[0]) if len(keep_p) else 0
    keep_r = response_mask.bool().any(0).nonzero()
    last = int(keep_r[-1]) + 1 if len(keep_r) else 1
    return prompt_ids[:, first:], prompt_mask[:, first:], response_ids[:, :last], response_mask[:, :last]


class _Plain:
    """Logits (B, T, V) at every response column; `gather` and `place` are the identity / × mask."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def place(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class _Flat:
    """Logits (N, V) at the N positions that predict a real response token, in the order of the
    (B, T) mask's True places, row-major — or with `split`, those of columns [0, split) first and
    then those of [split, T) (the shared-prompt path: column 0 comes from the prompt pass, the
    rest from the continuation)."""

    def __init__(self, mask: torch.Tensor, split: int = 0):
        self.mask, self.split = mask, split

    def _parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x[:, : self.split], x[:, self.split:]] if self.split else [x]

    def gather(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, ...) -> (N, ...)
        return torch.cat([part[m] for part, m in zip(self._parts(x), self._parts(self.mask))])

    def place(self, x: torch.Tensor) -> torch.Tensor:  # (N,) -> (B, T), 0 on padding
        masks = self._parts(self.mask)
        pieces = torch.split(x, [int(m.sum()) for m in masks])
        return torch.cat([_scatter(piece, m) for piece, m in zip(pieces, masks)], dim=1)


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) values at the True places of the (B, T) mask, row-major -> (B, T), 0 elsewhere."""
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


def _one_pass(model, prompt_ids, prompt_mask, response_ids, response_mask, want_hidden: bool):
    """(logits, layout, last hidden states (B, T, H) before each response token or None) of one
    pass over [prompt | response]. The fast path passes a boolean `logits_to_keep`, so the LM
    head runs on the N positions predicting real response tokens only — none for padding or the
    prompt, no slice of the logits whose backward fills a (B, T+1, V) zero tensor, a contiguous
    input to the head."""
    T = response_ids.shape[1]
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P+T)
    attention = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    mask = response_mask.bool()
    fast = _fast(model)
    if fast:
        keep = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
        keep[:, -T - 1 : -1] = mask  # position P−1+t predicts response token t
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False,
                logits_to_keep=keep if fast else T + 1, output_hidden_states=want_hidden)
    hidden = out.hidden_states[-1][:, -(T + 1):-1] if want_hidden else None
    return (out.logits, _Flat(mask), hidden) if fast else (out.logits[:, :-1], _Plain(mask), hidden)


def _distinct_prompts(prompt_ids, prompt_mask):
    """(distinct rows of [ids | mask] (U, 2P), inverse (B,): row b's prompt is distinct row inverse[b])."""
    rows = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    return torch.unique(rows, dim=0, return_inverse=True)


def _shared_prompt_pass(model, distinct, inverse, prompt_mask, response_ids, response_mask, want_hidden: bool):
    """The same as `_one_pass` for a batch whose B rows hold only U < B distinct prompts (GRPO's
    G samples of a prompt, DPO's chosen and rejected): each prompt is forwarded once, with grad,
    its KV cache and last-position logits (which predict response token 0) expanded to its rows by
    indexing, whose backward sums the rows' gradients into the prompt's; then one pass over
    response tokens 0..T−2 (each predicting the next) on top of that cache. The last response
    token is only a target, so no position is computed for it."""
    P, T = prompt_mask.shape[1], response_ids.shape[1]
    ids, mask_p = distinct[:, :P], distinct[:, P:].long()
    first = model(input_ids=ids, attention_mask=mask_p, position_ids=(mask_p.cumsum(-1) - 1).clamp(min=0),
                  use_cache=True, logits_to_keep=1, output_hidden_states=want_hidden)
    cache = returned_cache(first)
    cache.batch_select_indices(inverse)
    mask = response_mask.bool()
    attention = torch.cat([prompt_mask.long(), response_mask[:, :-1].long()], dim=1)  # (B, P+T−1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, P:]
    rest = model(input_ids=response_ids[:, :-1], attention_mask=attention, position_ids=positions, use_cache=True,
                 logits_to_keep=mask[:, 1:], output_hidden_states=want_hidden, **{cache_argument(model): cache})
    logits = torch.cat([first.logits[:, -1][inverse][mask[:, 0]], rest.logits])  # (N, V)
    hidden = None
    if want_hidden:
        hidden = torch.cat([first.hidden_states[-1][:, -1:][inverse], rest.hidden_states[-1]], dim=1)
    return logits, _Flat(mask, split=1), hidden


def _response_logits(model, prompt_ids, prompt_mask, response_ids, response_mask, want_hidden: bool):
    """Logits at the response positions with their layout (`_Plain` or `_Flat`), and the hidden
    states before each response token when asked: through `_shared_prompt_pass` when prompts
    repeat, else `_one_pass`."""
    if response_ids.shape[1] > 1 and _fast(model):
        distinct, inverse = _distinct_prompts(prompt_ids, prompt_mask)
        if distinct.shape[0] < prompt_ids.shape[0]:
            return _shared_prompt_pass(model, distinct, inverse, prompt_mask, response_ids, response_mask, want_hidden)
    return _one_pass(model, prompt_ids, prompt_mask, response_ids, response_mask, want_hidden)


def response_forward(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    value_head=None,
    with_entropy: bool = False,
    action_mask: torch.Tensor | None = None,
) -> ForwardOutput:
    """One pass of `model` over [prompt | response].

    prompt_*: (B, P) left-padded; response_*: (B, T) right-padded. The LM head runs only at the
    positions that predict a real response token (`_response_logits`), and only the chosen
    tokens' log-probs are kept (chunked logsumexp, `selected_token_logprobs`). Returns a
    `ForwardOutput` of (B, T) tensors, 0 on padding: logprobs in nats, and when asked values
    V(s_t) from `value_head` on the last hidden state and entropy.
    With an NLPO `action_mask` (B, T, V) bool, `logprobs` are of the policy renormalised over
    the allowed tokens and `unmasked_logprobs` of the policy itself (what the KL penalty uses);
    without one both fields hold the same tensor.
    """
    logits, layout, hidden = _response_logits(model, prompt_ids, prompt_mask, response_ids, response_mask,
                                              value_head is not None)
    targets = layout.gather(response_ids)
    entropy = None
    if with_entropy:
        unmasked, entropy = selected_token_logprobs_and_entropy(logits, targets)
        entropy = layout.place(entropy)
    else:
        unmasked = selected_token_logprobs(logits, targets)
    unmasked = layout.place(unmasked)
    logprobs = unmasked
    if action_mask is not None:
        allowed = layout.gather(action_mask)
        logprobs = layout.place(selected_token_logprobs(masked_logits(logits.float(), allowed), targets))
    values = None
    if value_head is not None:
        values = value_head(hidden).float() * response_mask.to(torch.float32)  # V(s_t) from the state before token t
    return ForwardOutput(logprobs=logprobs, unmasked_logprobs=unmasked, values=values, entropy=entropy)
