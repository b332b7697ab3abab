"""Batched sampling with the KV cache: greedy, temperature, top-k, top-p, beam search, best-of-n.

May import torch, transformers and `rlhfkit.models`/`types`/`algorithms`; not trainers or cli.
Names are loaded lazily so that `rlhfkit.pipelines.config` (used by the CLI parser) does not
pull in torch.
"""

_SAMPLING = {
    "NucleusMasker", "SamplingParams", "beam_search", "best_of_n", "best_of_n_kl_bound", "decode_responses",
    "filter_logits", "generate", "generate_batched", "next_token", "sample",
}

__all__ = sorted(_SAMPLING)


def __getattr__(name: str):
    if name in _SAMPLING:
        # lazy: `rlhfkit --help` imports this package's config users without loading torch
        from rlhfkit.generation import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module 'rlhfkit.generation' has no attribute {name!r}")
