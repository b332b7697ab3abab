"""Tiny random-init models and a tokenizer trained in code, for tests and quick experiments.

`tiny_tokenizer()` trains a word-level tokenizer on a small built-in corpus (no download);
`tiny_causal_lm("llama" | "gpt2")` builds a randomly initialised model of a few hundred
thousand parameters over that vocabulary.
"""

from __future__ import annotations

import torch

_CORPUS = """
the movie was good . the movie was bad . i loved it . i hated it . great acting and a fine story .
terrible plot , boring and slow . what a wonderful film . an awful waste of time . the cast is
excellent . the ending is weak . happy sad love hate best worst fun dull bright dark yes no
one two three four five six seven eight nine ten plus minus equals answer question what is
""".split()

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<|user|>", "<|assistant|>"]
_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def tiny_tokenizer():
    """A word-level tokenizer (whitespace + punctuation split) with ~80 words and special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL, min_frequency=1)
    tok.train_from_iterator([" ".join(_CORPUS)], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
    )
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def tiny_causal_lm(arch: str = "llama", vocab_size: int | None = None, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A random-init causal LM of the given architecture ("llama" or "gpt2"), float32, eval mode.

    Weights start with std 0.1 (not the usual 0.02): at this width 0.02 gives logits within
    about ±0.6, a nearly uniform policy that adapters on the blocks alone can hardly sharpen."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=False, initializer_range=0.1,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.1,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"tiny model architecture must be 'llama' or 'gpt2', got {arch!r}")
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    return model.eval()
