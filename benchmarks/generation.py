"""Rollout generation: rlhfkit's sampler vs `transformers` `generate` (what TRL's PPO/GRPO/RLOO
trainers call), side by side in one run on the same model, prompts and settings.

    .venv/bin/python benchmarks/generation.py [--batch 32] [--new-tokens 32] [--repeats 3] [--group 1]
    .venv/bin/python benchmarks/generation.py --model bench-gpt2 --batch 64 --new-tokens 48 --group 8

`--model bench-gpt2` is the tiny GPT-2 of benchmarks/vs_trl.py (built in code, random init);
`--group G` samples each of batch / G prompts G times, as a GRPO/RLOO rollout does.

Prints seconds per batch for both and the ratio (>1 means rlhfkit is faster). Both sample at
temperature 1 with the KV cache and stop at EOS; both run under the same precision.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

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
    parser.add_argument("--group", type=int, default=1, help="samples per distinct prompt")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device("auto")
    dtype = resolve_precision(args.precision, device)
    if args.model == "bench-gpt2":
        sys.path.insert(0, str(Path(__file__).parent))
        import vs_trl

        model, tok = vs_trl.build_model().eval(), vs_trl.build_tokenizer()
        distinct = vs_trl.prompts(args.batch // args.group)
    else:
        model, tok = load_policy(args.model, device=device)
        distinct = get_task("sentiment").prompts("test", args.batch // args.group)
    prompts = [p for p in distinct for _ in range(args.group)]
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

    runners = {"rlhfkit": ours, "transformers.generate": hf}
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    tokens = {name: [] for name in runners}
    for fn in runners.values():
        fn()  # warm-up
    for _ in range(args.repeats):  # interleaved, so drift in the machine's speed hits both alike
        for name, fn in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            tokens[name].append(fn())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"model {args.model}, batch {args.batch} ({args.group} per prompt), {args.new_tokens} new tokens, {device}, "
          f"{str(dtype).replace('torch.', '')}, {torch.get_num_threads()} threads, median of {args.repeats}")
    med = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runners}
    for name, (sec, cpu_sec) in med.items():
        print(f"  {name:24s} {sec:7.2f} s/batch (CPU {cpu_sec:.2f} s)   {statistics.mean(tokens[name]) / sec:8.1f} tokens/s")
    hf_name = "transformers.generate"
    print(f"  speed ratio (transformers / rlhfkit time): {med[hf_name][0] / med['rlhfkit'][0]:.2f}x wall, "
          f"{med[hf_name][1] / med['rlhfkit'][1]:.2f}x CPU")

if __name__ == "__main__":
    main()
