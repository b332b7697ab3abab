"""How prompts become token ids: the chat template (when the tokenizer has one, or when asked),
left padding, and the one rule for which id pads a batch.

Generation, the offline collators, the AI labeler and the trainers all format prompts through
this module, so a prompt has the same token boundary wherever it is used.
Shapes: B prompts, P prompt tokens. May import torch and `rlhfkit.types` only.
"""

from __future__ import annotations

from typing import Sequence

import torch


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its EOS, else 0. Padded
    positions are always masked out, so the choice never changes a result; it only has to be
    one valid id, chosen the same way everywhere."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def uses_chat_template(tokenizer, chat: bool | None) -> bool:
    """chat=None: use the template when the tokenizer has one; True: insist on it; False: plain text."""
    if chat is None:
        return bool(getattr(tokenizer, "chat_template", None))
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat formatting requested but the tokenizer has no chat template")
    return chat


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool | None = None, max_prompt_tokens: int | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise prompts, left-padded. chat=None: use the chat template when the tokenizer has one.

    Returns prompt_ids, prompt_mask: (B, P). Over-long prompts keep their last tokens.
    """
    if uses_chat_template(tokenizer, chat):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        add_special = False
    else:
        texts, add_special = list(prompts), True
    encoded = [tokenizer(t, add_special_tokens=add_special)["input_ids"] for t in texts]
    if max_prompt_tokens:
        encoded = [e[-max_prompt_tokens:] for e in encoded]
    if any(len(e) == 0 for e in encoded):
        raise ValueError("a prompt tokenised to zero tokens; give every prompt some text")
    P = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), P), pad_token_id(tokenizer), dtype=torch.long)
    mask = torch.zeros(len(encoded), P, dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, P - len(e):] = torch.tensor(e)
        mask[i, P - len(e):] = 1
    return ids.to(device), mask.to(device)
