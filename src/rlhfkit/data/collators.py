"""Collators: typed records → token ids → padded tensors for the offline trainers.

Two steps, kept apart so that data is tokenised once and padded per batch:

- tokenise: `tokenize_sft` (an SFTRecord → `SFTExample`, ids + loss mask), `tokenize_pairs`
  (PairwiseRecords → `PairExample`s), `tokenize_unpaired` (KTO's `UnpairedText` → `UnpairedExample`);
- collate: `collate_sft` (right-padded rows, optionally packed), `collate_pairs` /
  `collate_prompt_responses` (left-padded prompts + right-padded responses, the layout of
  `rlhfkit.models.forward.response_forward`).

Prompts are formatted exactly as generation formats them (`data.chat.encode_prompts`:
the chat template with the generation prompt when the tokenizer has one), and responses are
tokenised on their own and end with EOS — the same token boundary a sampled response has.
Shapes: B batch, L sequence tokens, P prompt tokens, T response tokens.
May import torch and rlhfkit.types; never models, generation, trainers or cli.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from rlhfkit.data.schemas import DataError
from rlhfkit.data.chat import encode_prompts, uses_chat_template
from rlhfkit.types import PairwiseRecord, SFTRecord, ThumbsRecord

# ---------------------------------------------------------------------------------------------
# SFT


@dataclass
class SFTExample:
    """One tokenised demonstration, or one packed row of several.

    input_ids: token ids (L,); loss_mask: 1 on the tokens whose prediction is trained (L,);
    position_ids: only on packed rows, restarting at 0 at each example's first token (L,) —
    this is what keeps packed examples from attending to each other (see `collate_sft`).
    """

    input_ids: list[int]
    loss_mask: list[int]
    position_ids: list[int] | None = None
    truncated: bool = False


def _start_token(tokenizer) -> int:
    """The token an empty prompt is replaced by, so that the first completion token has a context."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has no BOS, EOS or pad token to start an empty prompt with")


def _end_with_eos(ids: list[int], eos_id: int | None) -> list[int]:
    """Completion ids ending at EOS: cut what follows the last EOS (a template's trailing newline),
    or append one when there is none."""
    if eos_id is None:
        return ids
    if eos_id in ids:
        return ids[: len(ids) - ids[::-1].index(eos_id)]
    return ids + [eos_id]


def _chat_split(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt text, completion text) of a chat whose last message is the assistant's answer:
    the template rendered up to the generation prompt, and the rest of the full rendering."""
    prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise DataError(
            "the chat template renders the conversation differently with and without the last answer, "
            "so the answer's tokens cannot be located; use prompt/completion rows or --chat no"
        )
    return prompt_text, full_text[len(prompt_text):]


def tokenize_sft(
    tokenizer, record: SFTRecord, chat: bool | None = None, max_length: int = 512, completion_only: bool = True
) -> SFTExample:
    """Tokenise one demonstration into [prompt | completion] with its loss mask.

    Chat rows (`messages`) always use the tokenizer's chat template; prompt/completion rows use
    it when `chat` says so (None: when the tokenizer has one), with the prompt as the user turn.
    The completion is the last assistant turn and ends with EOS. `completion_only`: the loss
    mask covers the completion; otherwise every token. Over `max_length`, the prompt loses
    tokens from the left (keeping at least one), then the completion from the right.
    """
    if record.messages or uses_chat_template(tokenizer, chat):
        if not getattr(tokenizer, "chat_template", None):
            raise DataError("chat rows (messages) need a tokenizer with a chat template; this one has none")
        messages = [{"role": m.role, "content": m.content} for m in record.messages] or [
            {"role": "user", "content": record.prompt}, {"role": "assistant", "content": record.completion}]
        prompt_text, completion_text = _chat_split(tokenizer, messages)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    else:
        completion_text = record.completion
        prompt_ids = tokenizer(record.prompt, add_special_tokens=True)["input_ids"] if record.prompt else []
    completion_ids = _end_with_eos(tokenizer(completion_text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)
    if not prompt_ids:
        prompt_ids = [_start_token(tokenizer)]
    truncated = len(prompt_ids) + len(completion_ids) > max_length
    if truncated:
        prompt_ids = prompt_ids[-max(1, max_length - len(completion_ids)):]
        completion_ids = completion_ids[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + completion_ids
    if completion_only:
        loss_mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    else:
        loss_mask = [1] * len(input_ids)
    return SFTExample(input_ids, loss_mask, truncated=truncated)


def pack_examples(examples: Sequence[SFTExample], max_length: int) -> list[SFTExample]:
    """Concatenate consecutive examples into rows of at most `max_length` tokens (greedy, in order).

    Each row's position ids restart at 0 at every example, and the first token of every example
    is taken out of the loss mask: it would otherwise be trained as the continuation of the
    previous, unrelated example.
    """
    rows: list[SFTExample] = []
    ids: list[int] = []
    mask: list[int] = []
    positions: list[int] = []
    for example in examples:
        n = len(example.input_ids)
        if n > max_length:
            raise ValueError(f"an example of {n} tokens does not fit max_length {max_length}; tokenise with the same max_length")
        if ids and len(ids) + n > max_length:
            rows.append(SFTExample(ids, mask, positions))
            ids, mask, positions = [], [], []
        ids = ids + list(example.input_ids)
        mask = mask + [0] + list(example.loss_mask[1:])
        positions = positions + list(range(n))
    if ids:
        rows.append(SFTExample(ids, mask, positions))
    return rows


def collate_sft(examples: Sequence[SFTExample], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor | None]:
    """Right-pad a batch of (possibly packed) examples.

    Returns input_ids (B, L) long, loss_mask (B, L) float, and either
    - unpacked: attention_mask (B, L) long, position_ids None (the model's default 0..L−1), or
    - packed: attention_mask None and position_ids (B, L) restarting at 0 per example (the
      padding tail numbered as one more sequence). Without a 2-D mask, transformers 5 reads
      the restarts as sequence boundaries and builds a block-diagonal causal mask, so
      packed examples do not attend to each other — provided the forward pass runs with
      `use_cache=False` (with a KV cache the packed-sequence mask is skipped). The SFT trainer
      checks the model once and warns when attention would leak.
    """
    L = max(len(e.input_ids) for e in examples)
    B = len(examples)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    loss_mask = torch.zeros(B, L)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    packed = any(e.position_ids is not None for e in examples)
    position_ids = torch.zeros(B, L, dtype=torch.long) if packed else None
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        loss_mask[i, :n] = torch.tensor(e.loss_mask, dtype=torch.float32)
        attention_mask[i, :n] = 1
        if position_ids is not None:
            own = e.position_ids if e.position_ids is not None else list(range(n))
            position_ids[i, :n] = torch.tensor(own)
            position_ids[i, n:] = torch.arange(L - n)
    return {
        "input_ids": input_ids.to(device),
        "loss_mask": loss_mask.to(device),
        "attention_mask": None if packed else attention_mask.to(device),
        "position_ids": None if position_ids is None else position_ids.to(device),
    }


# ---------------------------------------------------------------------------------------------
# Prompt + response (DPO, IPO, KTO)


@dataclass
class PairExample:
    """A tokenised preference pair: prompt (P,) as formatted for generation, both responses
    ending in EOS unless truncated, and the label μ = P(chosen ≻ rejected)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    label: float = 1.0


@dataclass(frozen=True)
class UnpairedText:
    """One KTO example before tokenising: a completion judged desirable or undesirable."""

    prompt: str
    completion: str
    desirable: bool


@dataclass
class UnpairedExample:
    """A tokenised KTO example. `partner_ids` is another example's completion: (x, y') is the
    mismatched pair whose log-ratio enters KTO's reference point z₀."""

    prompt_ids: list[int]
    completion_ids: list[int]
    desirable: bool
    partner_ids: list[int]


def tokenize_prompts(tokenizer, prompts: Sequence[str], chat: bool | None = None, max_prompt_tokens: int | None = None) -> list[list[int]]:
    """Each prompt's ids exactly as `encode_prompts` (generation) makes them, without padding.
    An empty prompt outside a chat template becomes the start token (BOS, else EOS)."""
    out = []
    for prompt in prompts:
        if not prompt and not uses_chat_template(tokenizer, chat):
            out.append([_start_token(tokenizer)])
            continue
        ids, mask = encode_prompts(tokenizer, [prompt], chat, max_prompt_tokens)
        out.append(ids[0][mask[0] > 0].tolist())
    return out


def tokenize_responses(tokenizer, responses: Sequence[str], max_response_tokens: int | None = None) -> list[list[int]]:
    """Each response's ids (no special tokens added) followed by EOS; longer than
    `max_response_tokens`, a response keeps its first tokens and gets no EOS (it did not end)."""
    eos = tokenizer.eos_token_id
    out = []
    for ids in tokenizer(list(responses), add_special_tokens=False)["input_ids"]:
        ids = list(ids) + ([] if eos is None else [eos])
        if max_response_tokens is not None and len(ids) > max_response_tokens:
            ids = ids[:max_response_tokens]
        out.append(ids)
    return out


def tokenize_pairs(tokenizer, pairs: Sequence[PairwiseRecord], chat: bool | None = None,
                   max_prompt_tokens: int | None = None, max_response_tokens: int | None = None) -> list[PairExample]:
    prompts = tokenize_prompts(tokenizer, [p.prompt for p in pairs], chat, max_prompt_tokens)
    chosen = tokenize_responses(tokenizer, [p.chosen for p in pairs], max_response_tokens)
    rejected = tokenize_responses(tokenizer, [p.rejected for p in pairs], max_response_tokens)
    return [PairExample(pr, c, r, float(p.label)) for pr, c, r, p in zip(prompts, chosen, rejected, pairs)]


def unpaired_from_pairwise(pairs: Sequence[PairwiseRecord]) -> tuple[list[UnpairedText], int]:
    """KTO examples from preference pairs: the preferred response (label > ½: chosen, < ½:
    rejected) is desirable, the other undesirable. Ties (label ½) say neither; they are left
    out and counted. Returns (examples, number of ties left out)."""
    out, ties = [], 0
    for p in pairs:
        if p.label == 0.5:
            ties += 1
            continue
        better, worse = (p.chosen, p.rejected) if p.label > 0.5 else (p.rejected, p.chosen)
        out += [UnpairedText(p.prompt, better, True), UnpairedText(p.prompt, worse, False)]
    return out, ties


def unpaired_from_thumbs(records: Sequence[ThumbsRecord]) -> list[UnpairedText]:
    """KTO examples from thumbs ratings: thumbs up is desirable, thumbs down undesirable."""
    return [UnpairedText(r.prompt, r.response, bool(r.thumbs_up)) for r in records]


def mismatched_partners(n: int, seed: int = 0) -> list[int]:
    """For each of n examples, the index of another example whose completion forms its
    mismatched pair: neighbours in a seeded shuffle (example k's partner is the next one),
    so no example is its own partner when n ≥ 2."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    partner = [0] * n
    for k, i in enumerate(order):
        partner[i] = order[(k + 1) % n]
    return partner


def tokenize_unpaired(tokenizer, examples: Sequence[UnpairedText], chat: bool | None = None,
                      max_prompt_tokens: int | None = None, max_response_tokens: int | None = None,
                      seed: int = 0) -> list[UnpairedExample]:
    prompts = tokenize_prompts(tokenizer, [e.prompt for e in examples], chat, max_prompt_tokens)
    completions = tokenize_responses(tokenizer, [e.completion for e in examples], max_response_tokens)
    partners = mismatched_partners(len(examples), seed)
    return [UnpairedExample(prompts[i], completions[i], examples[i].desirable, completions[partners[i]])
            for i in range(len(examples))]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) long ids and (B, P) long mask, each row's tokens flush right."""
    P = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), P, dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, P - len(s):] = torch.tensor(list(s))
            mask[i, P - len(s):] = 1
    return ids, mask


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) long ids and (B, T) float mask, each row's tokens flush left."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), T)
    for i, s in enumerate(sequences):
        if s:
            ids[i, : len(s)] = torch.tensor(list(s))
            mask[i, : len(s)] = 1.0
    return ids, mask


def collate_prompt_responses(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int,
                             device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """prompt_ids, prompt_mask (B, P) left-padded; response_ids, response_mask (B, T)
    right-padded — the arguments of `response_forward`, in that order."""
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    response_ids, response_mask = right_pad(responses, pad_id)
    return {"prompt_ids": prompt_ids.to(device), "prompt_mask": prompt_mask.to(device),
            "response_ids": response_ids.to(device), "response_mask": response_mask.to(device)}


def collate_pairs(examples: Sequence[PairExample], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A batch of B pairs as 2B rows for one forward pass: rows 0..B−1 are (prompt, chosen),
    rows B..2B−1 (prompt, rejected). Returns the `collate_prompt_responses` tensors (2B, ·)
    and label (B,) float."""
    prompts = [e.prompt_ids for e in examples]
    batch = collate_prompt_responses(prompts + prompts, [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples],
                                     pad_id, device)
    batch["label"] = torch.tensor([e.label for e in examples], dtype=torch.float32, device=device)
    return batch
