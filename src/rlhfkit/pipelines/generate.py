"""`rlhfkit generate`: sample responses for a prompt file and write JSONL."""

from __future__ import annotations

import time

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import load_records, write_jsonl
from rlhfkit.generation.backends import HFBackend, make_backend
from rlhfkit.generation.sampling import SamplingParams, best_of_n_kl_bound
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import load_tokenizer
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import GenerationConfig
from rlhfkit.rewards.python import PromptColumns
from rlhfkit.rewards.spec import build_reward
from rlhfkit.tasks import get_task
from rlhfkit.tasks.registry import task_gold_scorer


def _load_prompts(spec: str, skip_invalid: bool, limit: int) -> tuple[list[str], PromptColumns, bool | None, object]:
    """The prompts, their other columns (a task's answers or references; a file's columns),
    whether to use the chat template by default (a task's choice; for files, None: when the
    tokenizer has one), and the task (None for a file)."""
    if spec.startswith("task:"):
        try:
            task = get_task(spec[5:])
        except ValueError as err:
            raise ConfigError(str(err)) from None
        prompts, columns, chat = task.prompts("test"), task.columns, task.chat
    else:
        task = None
        result = load_records(spec, "prompt", skip_invalid=skip_invalid)
        if result.skipped:
            print(f"[rlhfkit] {spec}: skipped {len(result.skipped)} bad rows; first: {result.skipped[0]}")
        prompts = [r.prompt for r in result.records]
        columns, chat = PromptColumns({"prompt": r.prompt, **r.meta} for r in result.records), None
    return (prompts[:limit] if limit else prompts), columns, chat, task


def keep_best(rows: list[dict], n: int, reward) -> list[dict]:
    """Best-of-n from `rows` (n consecutive candidates per prompt): the row the reward scores
    highest (the first on ties), with every candidate's reward and the KL bound. Each winner also
    carries its response as `completion`, so the file is SFT data as it stands (rejection-sampling
    fine-tuning: `rlhfkit sft --data best.jsonl`)."""
    scores = torch.tensor([float(s) for s in reward([r["prompt"] for r in rows], [r["response"] for r in rows])],
                          dtype=torch.float64).view(-1, n)  # (prompts, n)
    bound = best_of_n_kl_bound(n)
    return [rows[i * n + int(j)] | {"completion": rows[i * n + int(j)]["response"], "reward": float(scores[i, j]), "candidate_rewards": scores[i].tolist(),
                                    "best_of": n, "kl_bound": bound}
            for i, j in enumerate(scores.argmax(dim=1).tolist())]


def run_generate(cfg: GenerationConfig) -> list[dict]:
    device = resolve_device(cfg.device)
    prompts, columns, chat_default, task = _load_prompts(cfg.prompts, cfg.skip_invalid, cfg.limit)
    apply_task_defaults(cfg, task, fallback=64)
    dtype = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    reward = None
    if cfg.reward:
        reward, _ = build_reward(cfg.reward, device=device, named={"task": task_gold_scorer}, columns=columns)
    params = SamplingParams(
        strategy=cfg.strategy, temperature=cfg.temperature, top_k=cfg.top_k if cfg.strategy in ("top_k",) else 0,
        top_p=cfg.top_p if cfg.strategy == "top_p" else 1.0, num_beams=cfg.num_beams,
        length_penalty=cfg.length_penalty, max_new_tokens=cfg.max_new_tokens,
    )
    chat = {"auto": chat_default, "yes": True, "no": False}[cfg.chat]
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    if cfg.rollout_backend == "hf":
        model, tokenizer = load_policy(cfg.model, device=device)
        backend = HFBackend(model, tokenizer, dtype, generator)
    else:  # openai: the server holds the model; vllm: loads it itself (and needs the tokenizer here)
        tokenizer = load_tokenizer(cfg.model) if cfg.rollout_backend == "vllm" else None
        backend = make_backend(cfg, cfg.model, tokenizer=tokenizer, device=device, seed=cfg.seed)
    start = time.perf_counter()
    expanded = [p for p in prompts for _ in range(cfg.n)]
    progress = "best-of-n" if cfg.policy == "best_of_n" else "generating"
    rows = backend.responses(expanded, params, chat, batch_size=cfg.batch_size, progress=progress, seed=cfg.seed)
    if reward is not None and cfg.policy == "sample":  # every response scored: offline RL data (rlhfkit ilql)
        scores = reward([r["prompt"] for r in rows], [r["response"] for r in rows])
        rows = [r | {"reward": float(s)} for r, s in zip(rows, scores)]
    elif reward is not None:
        rows = keep_best(rows, cfg.n, reward)
        print(f"[rlhfkit] best-of-{cfg.n}: KL to the sampling policy ≤ log n − (n−1)/n = "
              f"{best_of_n_kl_bound(cfg.n):.3f} nats")
    write_jsonl(cfg.output, rows)
    elapsed = time.perf_counter() - start
    print(f"[rlhfkit] wrote {len(rows)} responses to {cfg.output} in {elapsed:.1f}s")
    return rows
