"""`rlhfkit rl --env NAME`: online RL on multi-turn episodes with an environment (envs/), with
the same run folder as `rlhfkit rl`: held-out episodes played by the base and the final policy
(return, success, tool use with 95% CIs; KL on the policy's own tokens), transcripts in
samples.jsonl, the report's Episodes section."""

from __future__ import annotations

import time

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import load_records
from rlhfkit.envs import env_rows, load_env_class
from rlhfkit.evaluation.episodes import episode_kl, episode_sample_rows, episodes_table, evaluate_episodes, play
from rlhfkit.evaluation.report import write_report
from rlhfkit.models import resolve_device, resolve_precision
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.models.lora import reference_forward
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import RLRunConfig
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary


def env_task_rows(cfg: RLRunConfig, env_class) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): a prompt file's rows (its other columns kept), else the
    environment's own train/test rows."""
    if cfg.prompts:
        rows = [{"prompt": r.prompt, **r.meta} for r in load_records(cfg.prompts, "prompt").records]
        n_eval = min(cfg.eval_prompts, len(rows) // 5)
        return rows[n_eval:], rows[:n_eval]
    train = env_rows(env_class, "train")
    if train is None:
        raise ConfigError(f"--env {cfg.env}: the environment has no rows(split) of its own; give --prompts FILE")
    test = env_rows(env_class, "test") or []
    if not train:
        raise ConfigError(f"--env {cfg.env}: the environment's rows('train') is empty")
    return train, test[: cfg.eval_prompts]


# the algorithms whose rollouts may be episodes (NLPO masks sampling steps, ReMax needs a greedy
# rollout, DAPO refills batches and online DPO samples pairs: single-turn only for now)
ENV_ALGOS = ("ppo", "reinforce", "rloo", "grpo", "reinforce_pp", "dr_grpo")
ENV_TURN_TOKENS = 24  # new tokens per policy turn when --max-new-tokens is not given


def episode_limits(cfg: RLRunConfig, env_class) -> tuple[int, int]:
    return (cfg.max_turns or getattr(env_class, "max_turns", 4), cfg.episode_tokens or getattr(env_class, "max_tokens", 192))


def _evaluate(policy, tokenizer, reference, env_class, rows, cfg, limits, dtype, chat, device, label: str, base: bool):
    """Held-out episodes of the base (adapter off / reference) or the trained policy, and their numbers."""
    kwargs = dict(chat=chat, compute_dtype=dtype, generator=torch.Generator(device=device).manual_seed(cfg.seed + 7))
    print(f"[rlhfkit] {label}: {len(rows)} held-out episodes")
    if base:
        with reference_forward(policy, reference) as model:
            rollouts = play(model, tokenizer, env_class, rows, cfg.max_new_tokens, limits, **kwargs)
        return rollouts, evaluate_episodes(rollouts, cfg.seed)
    rollouts = play(policy, tokenizer, env_class, rows, cfg.max_new_tokens, limits, **kwargs)
    result = evaluate_episodes(rollouts, cfg.seed)
    kl = episode_kl(policy, rollouts, dtype, reference)
    result["kl_to_reference"] = sum(kl["k1"]) / max(len(kl["k1"]), 1)
    result["kl_k3_to_reference"] = sum(kl["k3"]) / max(len(kl["k3"]), 1)
    return rollouts, result


def run_env_rl(cfg: RLRunConfig) -> dict:
    # the rl pipeline's helpers (imported here: pipelines.rl dispatches to this module)
    from rlhfkit.pipelines.rl import _resume, _trainable_policy

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    resolve_policy_path(cfg.policy)
    env_class = load_env_class(cfg.env)
    if cfg.algo not in ENV_ALGOS:
        raise ConfigError(f"--env works with --algo {', '.join(ENV_ALGOS)}; not {cfg.algo}")
    apply_task_defaults(cfg, None, fallback=ENV_TURN_TOKENS)  # an unset --max-new-tokens: per policy turn
    if cfg.rollout_backend != "hf":
        raise ConfigError(f"--env episodes are played by rlhfkit's own sampler; --rollout-backend {cfg.rollout_backend} "
                          "serves single-turn rollouts only")
    if cfg.reward_granularity == "token" and cfg.algo not in ("ppo", "reinforce", "reinforce_pp"):
        raise ConfigError(f"--reward-granularity token needs --algo ppo, reinforce or reinforce_pp (not {cfg.algo})")
    train_rows, eval_rows = env_task_rows(cfg, env_class)
    limits = episode_limits(cfg, env_class)
    run = RunDir(cfg.output_dir, cfg.run_name or f"{cfg.algo}-{cfg.env.rpartition(':')[2]}-{time.strftime('%Y%m%d-%H%M%S')}",
                 overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    dtype = resolve_precision(cfg.precision, device)
    chat = {"yes": True, "no": False, "auto": None}[cfg.chat]
    policy, tokenizer, reference = _trainable_policy(cfg, device)
    trainer = OnlineTrainer(policy, tokenizer, None, cfg, reference=reference, compute_dtype=dtype, chat=chat,
                            logger=lambda stats: run.log_metrics({"stage": "rl", **stats}), env=env_class,
                            episode=limits, reward_granularity=cfg.reward_granularity)
    checkpointer = run.checkpointer(cfg.checkpoint_every)
    summary: dict = {"algo": cfg.algo, "policy": cfg.policy, "env": cfg.env, "max_turns": limits[0],
                     "episode_tokens": limits[1], "reward_granularity": cfg.reward_granularity}
    base_rollouts = None
    if cfg.resume:
        summary["before"], _ = _resume(trainer, checkpointer, run)
    print(f"[rlhfkit] {cfg.algo} on {cfg.env}: {len(train_rows)} rows, {cfg.prompts_per_step} rows × {cfg.group_size} "
          f"episodes per step, ≤ {limits[0]} turns and {limits[1]} tokens each; run folder {run.path}")
    evaluate = dict(tokenizer=tokenizer, reference=reference, env_class=env_class, rows=eval_rows, cfg=cfg, limits=limits, dtype=dtype,
                    chat=chat, device=device)
    if eval_rows and trainer.step_count == 0:
        base_rollouts, summary["before"] = _evaluate(policy, label="evaluating base", base=True, **evaluate)
        checkpointer.save_extra("before", {"summary": summary["before"], "base_texts": []})
    start = time.perf_counter()
    history = trainer.train(train_rows, checkpointer=checkpointer)
    summary["train_seconds"] = round(time.perf_counter() - start, 2)
    trainer.save(run.checkpoints / "final")
    if eval_rows:
        final_rollouts, summary["after"] = _evaluate(policy, label="evaluating final", base=False, **evaluate)
        run.log_samples(episode_sample_rows(base_rollouts, final_rollouts))
    summary["steps"] = trainer.step_count
    summary["last_step"] = history[-1] if history else None
    summary["kl_control"] = kl_control_summary(trainer, history, summary.get("after", {}).get("kl_to_reference"))
    run.write_summary(summary)
    run.close()
    print(episodes_table(summary, run.path))
    write_report(run.path)
    return summary
