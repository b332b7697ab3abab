"""`rlhfkit rl`: build the policy, reward and prompts from a config, train with `OnlineTrainer`,
evaluate before/after on held-out prompts, and leave a resumable run folder."""

from __future__ import annotations

import time

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import load_records
from rlhfkit.evaluation.policy_eval import evaluate_samples, sample_policy, sequence_kl_estimates
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.tables import before_after_table, kl_control_line
from rlhfkit.feedback.labeler import judge_reward
from rlhfkit.generation.backends import make_backend
from rlhfkit.models import add_lora, load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.models.lora import frozen_copy, reference_forward
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import RLRunConfig
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.rewards.python import PromptColumns
from rlhfkit.rewards.spec import build_reward
from rlhfkit.tasks import get_task
from rlhfkit.tasks.registry import task_gold_scorer
from rlhfkit.trainers.distributed import process_device
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary
from rlhfkit.trainers.online_dpo import make_online_trainer


def _prompts(cfg: RLRunConfig, task) -> tuple[list[str], list[str], PromptColumns | None]:
    """(training prompts, held-out prompts, the file's other columns for Python rewards)."""
    if not cfg.prompts:
        return task.prompts("train", seed=cfg.seed), task.prompts("test", seed=cfg.seed)[: cfg.eval_prompts], None

    records = load_records(cfg.prompts, "prompt").records
    prompts = [r.prompt for r in records]
    n_eval = min(cfg.eval_prompts, len(prompts) // 5)
    return prompts[n_eval:], prompts[:n_eval], PromptColumns({"prompt": r.prompt, **r.meta} for r in records)


def _judge_factory(model: str):
    """`--reward judge[:MODEL]`: direct RLAIF with an LM judge (default: the embedded SmolLM2)."""
    return judge_reward(model or "smollm2-135m-instruct")


def _trainable_policy(cfg: RLRunConfig, device):
    """The policy to train and its frozen reference: with LoRA the adapter-disabled model is the
    reference (None here); without, a frozen full copy."""
    policy, tokenizer = load_policy(cfg.policy, device=device)
    if cfg.lora:
        return add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                        top_layers=cfg.lora_top_layers or None), tokenizer, None
    reference = frozen_copy(policy)
    policy.requires_grad_(True)
    return policy, tokenizer, reference


def _resume(trainer: OnlineTrainer, checkpointer, run: RunDir) -> tuple[dict | None, list[str]]:
    """Load the latest checkpoint; the base evaluation saved beside it (summary, base texts)."""
    if not trainer.load_checkpoint(checkpointer):
        print(f"[rlhfkit] no checkpoint in {run.checkpoints} yet: starting at step 0")
        return None, []
    before = checkpointer.load_extra("before") or {}
    print(f"[rlhfkit] resumed {run.path} at step {trainer.step_count}")
    return before.get("summary"), before.get("base_texts", [])


def _device_and_task(cfg: RLRunConfig):
    """(device, task), checked before a run folder is made (a missing device, a wrong model name,
    an unknown task); an unset --max-new-tokens takes the task's."""
    if cfg.reward_granularity == "token" and cfg.algo not in ("ppo", "reinforce", "reinforce_pp"):
        raise ConfigError(f"--reward-granularity token needs --algo ppo, reinforce or reinforce_pp (not {cfg.algo})")
    torch.manual_seed(cfg.seed)
    device = process_device(resolve_device(cfg.device))
    resolve_policy_path(cfg.policy)
    try:
        task = get_task(cfg.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    apply_task_defaults(cfg, task)
    return device, task


def _print_round(stats: dict) -> None:
    """Iterative DPO (--dpo-rounds): one line per round, above the progress bar."""
    if "iterative_dpo/round" in stats:
        from tqdm.auto import tqdm  # the bar's own writer (loaded with the trainer already)

        win = stats.get("iterative_dpo/chosen_win_rate")
        tqdm.write(f"[rlhfkit] round {stats['iterative_dpo/round']:.0f}: sample reward {stats['reward/score_mean']:+.3f}, "
                   f"chosen win rate {'-' if win is None else f'{win:.1%}'}, "
                   f"KL to initial {stats['iterative_dpo/kl_k1_to_initial']:.2f} nats")


def run_rl(cfg: RLRunConfig) -> dict:
    if cfg.env:
        # multi-turn episodes have their own flow (imported here: it imports this module's helpers)
        from rlhfkit.pipelines.env_rl import run_env_rl

        return run_env_rl(cfg)
    device, task = _device_and_task(cfg)
    # prompts and reward before the run folder: a bad file or reward leaves nothing behind
    train_prompts, eval_prompts, columns = _prompts(cfg, task)
    reward_fn, weights = build_reward(cfg.reward, task, device, columns=columns,
                                      named={"judge": _judge_factory, "task": task_gold_scorer})
    name = cfg.run_name or f"{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir(cfg.output_dir, name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    dtype = resolve_precision(cfg.precision, device)
    chat = {"yes": True, "no": False, "auto": task.chat if not cfg.prompts else None}[cfg.chat]
    ptx_examples = None
    if cfg.ptx_coef > 0:
        ptx_examples = load_records(cfg.ptx_data, "sft").records
    policy, tokenizer, reference = _trainable_policy(cfg, device)
    # the task's gold score is evaluated next to the reward unless it is the reward, and logged
    # during training unless the reward's parts (logged as reward/<part>) already hold it
    gold_names = {"gold", f"task:{task.name}"}
    eval_gold = not cfg.prompts and cfg.reward not in gold_names
    gold_fn = task.gold if eval_gold and not gold_names & set(weights) else None

    def log(stats: dict) -> None:
        components = {f"reward/{k}": v for k, v in reward_fn.last_components.items()} if len(weights) > 1 else {}
        run.log_metrics({"stage": "rl", **stats, **components})
        _print_round(stats)

    backend = None  # hf: the trainer samples the policy itself
    if cfg.rollout_backend != "hf":
        backend = make_backend(cfg, cfg.policy, tokenizer=tokenizer, device=device, seed=cfg.seed)
    trainer = make_online_trainer(policy, tokenizer, reward_fn, cfg, reference=reference, compute_dtype=dtype, chat=chat,
                                  gold_fn=gold_fn, logger=log, ptx_examples=ptx_examples, rollout_backend=backend,
                                  importance_cap=cfg.importance_cap, reward_granularity=cfg.reward_granularity)
    checkpointer = run.checkpointer(cfg.checkpoint_every)
    summary: dict = {"algo": cfg.algo, "policy": cfg.policy, "reward": cfg.reward}
    base_texts: list[str] = []
    if cfg.resume:
        summary["before"], base_texts = _resume(trainer, checkpointer, run)
    print(f"[rlhfkit] {cfg.algo} on {len(train_prompts)} prompts, {cfg.prompts_per_step} prompts × {cfg.group_size} "
          f"samples per step, reward {cfg.reward}; run folder {run.path}")
    scorers = {"reward": reward_fn, **({"gold": task.gold} if eval_gold else {})}

    def gen_kwargs() -> dict:  # base and final draw from the same seed (and a resumed run as the whole one)
        return dict(chat=chat, compute_dtype=dtype, batch_size=32, generator=torch.Generator(device=device).manual_seed(cfg.seed + 7))

    if eval_prompts and trainer.step_count == 0:
        with reference_forward(policy, reference) as base:
            base_texts, _ = sample_policy(base, tokenizer, eval_prompts, cfg.max_new_tokens, "evaluating base", **gen_kwargs())
        summary["before"] = evaluate_samples(eval_prompts, base_texts, scorers, cfg.seed)
        checkpointer.save_extra("before", {"summary": summary["before"], "base_texts": base_texts})
    start = time.perf_counter()
    history = trainer.train(train_prompts, checkpointer=checkpointer)
    summary["train_seconds"] = round(time.perf_counter() - start, 2)
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        trainer.save(run.checkpoints / "final")
    if eval_prompts:
        texts, rollouts = sample_policy(policy, tokenizer, eval_prompts, cfg.max_new_tokens, "evaluating final", **gen_kwargs())
        summary["after"] = evaluate_samples(eval_prompts, texts, scorers, cfg.seed)
        kl = sequence_kl_estimates(policy, rollouts, dtype, reference)
        summary["after"]["kl_to_reference"] = sum(kl["k1"]) / len(texts)
        summary["after"]["kl_k3_to_reference"] = sum(kl["k3"]) / len(texts)
        run.log_samples([{"prompt": p, "response": r, **({"base": b} if b is not None else {})}
                         for p, r, b in zip(eval_prompts, texts, base_texts or [None] * len(texts))])
    summary["steps"] = trainer.step_count
    summary["last_step"] = history[-1] if history else None
    summary["kl_control"] = kl_control_summary(trainer, history, summary.get("after", {}).get("kl_to_reference"))
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    print(before_after_table(summary, run.path))
    print(kl_control_line(summary["kl_control"]))
    if run.writer:
        write_report(run.path)
    return summary


