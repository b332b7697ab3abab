"""Rollout generation: rlhfkit's sampler vs `transformers` `generate` (what TRL's PPO/GRPO/RLOO
trainers call), side by side in one run on the same model, prompts and settings.

    .venv/bin/python benchmarks/generation.py [--batch 32] [--new-tokens 32] [--repeats 3]

Prints seconds per batch for both and the ratio (>1 means rlhfkit is faster). Both sample at
temperature 1 with the KV cache and stop at EOS; both run under the same precision.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlhfkit.data.chat import encode_prompts
from rlhfkit.generation.sampling import SamplingParams, generate
from rlhfkit.models import eos_token_ids, load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import autocast_context
from rlhfkit.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    device = resolve_device("auto")
    dtype = resolve_precision(args.precision, device)
    model, tok = load_policy(args.model, device=device)
    prompts = get_task("sentiment").prompts("test", args.batch)
    eos = eos_token_ids(model, tok)
    params = SamplingParams(strategy="sample", max_new_tokens=args.new_tokens)

    def ours():
        return generate(model, tok, prompts, params, chat=False, compute_dtype=dtype,
                        generator=torch.Generator(device=device).manual_seed(0)).response_mask.sum().item()

    def hf():
        ids, mask = encode_prompts(tok, prompts, chat=False, device=device)
        torch.manual_seed(0)
        with torch.no_grad(), autocast_context(device, dtype):
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                 max_new_tokens=args.new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id)
        new = out[:, ids.shape[1]:]
        return int((new != tok.pad_token_id).sum())

    results = {}
    for name, fn in (("rlhfkit", ours), ("transformers.generate", hf)):
        fn()  # warm-up
        times, tokens = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tokens.append(fn())
            times.append(time.perf_counter() - start)
        results[name] = (statistics.median(times), statistics.mean(tokens))
    print(f"model {args.model}, batch {args.batch}, {args.new_tokens} new tokens, {device}, {str(dtype).replace('torch.', '')}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for name, (sec, tokens) in results.items():
        print(f"  {name:24s} {sec:7.2f} s/batch   {tokens / sec:8.1f} tokens/s")
    ratio = results["transformers.generate"][0] / results["rlhfkit"][0]
    print(f"  speed ratio (transformers / rlhfkit time): {ratio:.2f}x")


if __name__ == "__main__":
    main()
