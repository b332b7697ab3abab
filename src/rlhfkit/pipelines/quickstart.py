"""`rlhfkit quickstart`: the whole RLHF loop on a built-in task with the embedded defaults.

1. sample two responses per prompt from the base policy;
2. label each pair with the task's gold scorer acting as a simulated, noisy human;
3. train a pairwise reward model and measure its held-out accuracy;
4. run PPO (LoRA, value head, GAE, clipped objective, adaptive k1 KL penalty) against the RM;
5. evaluate base vs final on held-out prompts (gold and proxy reward with 95% bootstrap CIs,
   KL to the reference, samples side by side);
6. write runs/<name>/ and print a summary table.

With --resume, finished stages (pairs, reward model, PPO) are read back from the run folder
(stages.json, reward_model/, checkpoints/ppo/) and the unfinished one continues from its latest
checkpoint; each stage draws from its own seed, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import write_jsonl
from rlhfkit.evaluation.policy_eval import (
    base_vs_final,
    mean_response_tokens,
    sample_policy,
    sequence_kl_estimates,
)
from rlhfkit.evaluation.reward_eval import gold_order_accuracy
from rlhfkit.evaluation.tables import kl_control_line, quickstart_table
from rlhfkit.feedback.simulated import simulated_human_labels
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.winrate import format_win_rate_line, score_win_rate
from rlhfkit.models import (
    add_lora,
    load_policy,
    load_reward_model,
    resolve_device,
    resolve_precision,
)
from rlhfkit.models.heads import reward_backbone_source
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.models.lora import reference_forward
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import QuickstartConfig
from rlhfkit.pipelines.run_dir import RunDir, Stages
from rlhfkit.rewards.functions import reward_model_scorer
from rlhfkit.tasks import get_task
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.distributed import process_device
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary
from rlhfkit.trainers.reward import train_reward_model
from rlhfkit.types import PairwiseRecord

GEN_BATCH = 32


class StageTimer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        print(f"[rlhfkit] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)


@dataclass
class _Run:
    """What every stage of one quickstart run shares."""

    cfg: QuickstartConfig
    run: RunDir
    stages: Stages
    device: torch.device
    dtype: torch.dtype
    task: object
    generator: torch.Generator | None = None
    timer: StageTimer = field(default_factory=StageTimer)

    def gen_kwargs(self) -> dict:
        return dict(chat=self.task.chat, generator=self.generator, compute_dtype=self.dtype, batch_size=GEN_BATCH)

    def seed_stage(self, offset: int) -> None:
        """Each stage draws from its own seed, so a resumed run that skips finished stages
        continues with the random numbers the uninterrupted run used."""
        random.seed(self.cfg.seed + offset)
        torch.manual_seed(self.cfg.seed + offset)
        self.generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed + offset)


def run_quickstart(cfg: QuickstartConfig) -> dict:
    # a missing device, model or task fails before anything is loaded or a run folder is made
    device = process_device(resolve_device(cfg.device))  # several GPU processes: each its own GPU
    resolve_policy_path(cfg.policy)
    reward_backbone_source(cfg.reward_backbone)
    try:
        task = get_task(cfg.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    apply_task_defaults(cfg, task)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    q = _Run(cfg, run, Stages(run, cfg.resume), device, resolve_precision(cfg.precision, device), task)
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(q.dtype).replace('torch.', '')}  task {q.task.name}")
    if q.stages.done:
        print(f"[rlhfkit] resuming: finished stages kept ({', '.join(q.stages.done)})")
    with q.timer("load policy"):
        policy, tokenizer = load_policy(cfg.policy, device=device)
    prompts, responses, pairs = _pairs_stage(q, policy, tokenizer)
    rm, rm_summary = _reward_model_stage(q, pairs, prompts, responses)
    with q.timer("PPO"):
        policy, trainer, history = _ppo(q, policy, tokenizer, rm)
    with q.timer("evaluate"):
        q.stages.begin()
        q.seed_stage(3)
        evaluation, examples, n_eval_prompts, win_rate = _evaluate(q, policy, tokenizer, rm)
    summary = {
        "task": q.task.name, "policy": cfg.policy, "reward_backbone": cfg.reward_backbone,
        "device": str(device), "precision": str(q.dtype).replace("torch.", ""),
        "pairs": pairs["summary"], "reward_model": rm_summary,
        "ppo": {"steps": len(history), "final_kl_coef": trainer.kl_ctl.value,
                "first_score": history[0]["reward/score_mean"], "last_score": history[-1]["reward/score_mean"]},
        "evaluation": evaluation,
        "kl_control": kl_control_summary(trainer, history, evaluation["kl_to_reference"]["mean"]),
        "eval_prompts": n_eval_prompts, "eval_samples_per_prompt": cfg.eval_samples_per_prompt,
        "stage_seconds": q.timer.seconds,
        "total_seconds": round(sum(q.timer.seconds.values()), 2),
        "gold_improved": evaluation["gold"]["improvement"]["ci_low"] > 0,
        "win_rate": win_rate,
    }
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    print(quickstart_table(summary, run.path, examples))
    print(kl_control_line(summary["kl_control"]))
    print(format_win_rate_line(summary["win_rate"]))
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        write_report(run.path)
    return summary


def _pairs_stage(q: _Run, policy, tokenizer) -> tuple[list[str], list[str], dict]:
    """1–2, or their saved result when a resumed run finished them."""
    saved = q.stages.result("pairs")
    if saved is not None:
        q.timer.seconds.update(saved["seconds"])
        split = {part: [(PairwiseRecord(**p["record"]), tuple(p["gold"])) for p in saved[part]] for part in ("train", "eval")}
        return saved["prompts"], saved["responses"], {**split, "summary": saved["summary"]}
    q.stages.begin()
    q.seed_stage(0)
    with q.timer("sample pairs"):
        prompts, responses = _sample_pairs(q, policy, tokenizer)
    with q.timer("label pairs"):
        pairs = _label_pairs(q, prompts, responses)
    q.stages.finish("pairs", {
        "prompts": prompts, "responses": responses, "summary": pairs["summary"],
        "seconds": {k: q.timer.seconds[k] for k in ("sample pairs", "label pairs")},
        **{part: [{"record": dataclasses.asdict(r), "gold": list(g)} for r, g in pairs[part]] for part in ("train", "eval")},
    })
    return prompts, responses, pairs


def _reward_model_stage(q: _Run, pairs: dict, prompts: list[str], responses: list[str]):
    """3, or the saved reward model when a resumed run finished it (an unfinished one resumes
    from its checkpoint)."""
    saved = q.stages.result("reward_model")
    if saved is not None:
        q.timer.seconds["train reward model"] = saved["seconds"]
        return load_reward_model(str(q.run.path / "reward_model"), device=q.device), saved["summary"]
    with q.timer("train reward model"):
        sizes = q.stages.start_sizes()  # the checkpointer cuts the logs back to its checkpoint or to these
        q.seed_stage(1)
        rm, rm_summary = _train_reward_model(q, pairs, prompts, responses, q.run.checkpointer(q.cfg.checkpoint_every, "reward_model", sizes))
    q.stages.finish("reward_model", {"summary": rm_summary, "seconds": q.timer.seconds["train reward model"]})
    return rm, rm_summary


def _sample_pairs(q: _Run, policy, tokenizer) -> tuple[list[str], list[str]]:
    """1. Two responses per training prompt from the base policy (adjacent in `responses`)."""
    prompts = q.task.prompts("train", q.cfg.rm_prompts, seed=q.cfg.seed)
    doubled = [p for p in prompts for _ in range(2)]
    responses, _ = sample_policy(policy, tokenizer, doubled, q.cfg.max_new_tokens, "sampling pairs", **q.gen_kwargs())
    return prompts, responses


def _label_pairs(q: _Run, prompts: list[str], responses: list[str], seed: int | None = None,
                 filename: str = "preferences.jsonl") -> dict:
    """2. Label each pair with the gold scorer acting as a simulated, noisy human; hold some out.
    (`rlhfkit iterate` labels each round with its own seed into its own file.)"""
    cfg = q.cfg
    doubled = [p for p in prompts for _ in range(2)]
    gold = q.task.gold(doubled, responses)
    labelled, identical = simulated_human_labels(
        prompts, responses[0::2], responses[1::2], gold[0::2], gold[1::2], cfg.label_temperature,
        random.Random(cfg.seed if seed is None else seed))
    return split_labelled(q, labelled, identical, filename)


def split_labelled(q: _Run, labelled: list, identical: int, filename: str = "preferences.jsonl") -> dict:
    """Labelled pairs [(record, (gold of chosen, gold of rejected))] written to `filename` and split:
    the first rm_eval_fraction held out for the reward model's accuracy."""
    cfg = q.cfg
    if q.run.writer:
        write_jsonl(q.run.path / filename, [
            {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "label": p.label, "gold_chosen": g[0],
             "gold_rejected": g[1]} for p, g in labelled])
    n_eval = max(1, int(len(labelled) * cfg.rm_eval_fraction))
    eval_set, train_set = labelled[:n_eval], labelled[n_eval:]
    agreement = sum(g[0] >= g[1] for _, g in labelled) / max(len(labelled), 1)
    print(f"[rlhfkit] {len(labelled)} pairs ({identical} identical pairs left out); "
          f"simulated labels agree with the gold order on {agreement:.0%}")
    return {"train": train_set, "eval": eval_set,
            "summary": {"train": len(train_set), "eval": len(eval_set), "identical_left_out": identical,
                        "labels_agree_with_gold": agreement}}


def _train_reward_model(q: _Run, pairs: dict, prompts: list[str], responses: list[str], checkpointer: Checkpointer):
    """3. A Bradley–Terry reward model on the labelled pairs, centred so base responses score 0."""
    cfg = q.cfg
    rm = load_reward_model(cfg.reward_backbone, device=q.device)
    metrics = train_reward_model(rm, [p for p, _ in pairs["train"]], cfg.reward_config(), [p for p, _ in pairs["eval"]],
                                 logger=q.run.log_metrics, checkpointer=checkpointer, resume=cfg.resume)
    gold_accuracy = gold_order_accuracy(rm, pairs["eval"])
    offset = rm.center([p for p in prompts for _ in range(2)], responses)
    if q.run.writer:
        rm.save(q.run.path / "reward_model")
    print(f"[rlhfkit] reward model: held-out accuracy {metrics['accuracy']:.1%} vs labels, "
          f"{gold_accuracy:.1%} vs gold order ({len(pairs['eval'])} pairs); centred by {offset:+.3f}")
    return rm, {"eval_accuracy_vs_labels": metrics.get("accuracy"), "eval_loss": metrics.get("loss"),
                "eval_accuracy_vs_gold_order": gold_accuracy, "centering_offset": offset}


def _ppo(q: _Run, policy, tokenizer, rm):
    """4. PPO with a LoRA adapter against the learned reward (the task's gold is only logged).
    A resumed run continues from PPO's latest checkpoint (when PPO had finished, its last)."""
    cfg = q.cfg
    # no cutting back here: the checkpointer cuts the logs to its checkpoint (or, without one, to the stage's start)
    sizes = q.stages.start_sizes()
    q.seed_stage(2)
    policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      top_layers=cfg.lora_top_layers or None)
    trainer = OnlineTrainer(policy, tokenizer, reward_model_scorer(rm), cfg.ppo_config(), compute_dtype=q.dtype,
                            chat=q.task.chat, gold_fn=q.task.gold, logger=lambda s: q.run.log_metrics({"stage": "ppo", **s}))
    if trainer.dist.world == 1:  # several processes: each keeps its own sampling generator
        trainer.generator = q.generator
    checkpointer = q.run.checkpointer(cfg.checkpoint_every, "ppo", sizes)
    if cfg.resume:
        trainer.load_checkpoint(checkpointer)
    history = trainer.train(q.task.prompts("train", seed=cfg.seed + 1), checkpointer=checkpointer)
    if q.run.writer:
        trainer.save(q.run.checkpoints / "final")
    q.stages.finish("ppo", {"steps": trainer.step_count})
    return policy, trainer, history


def _evaluate(q: _Run, policy, tokenizer, rm):
    """5. Base vs final on held-out prompts: gold and proxy with CIs, KL, samples side by side."""
    cfg, task = q.cfg, q.task
    k = cfg.eval_samples_per_prompt
    expanded = [p for p in task.prompts("test", cfg.eval_prompts, seed=cfg.seed) for _ in range(k)]
    with reference_forward(policy, None) as base:
        base_text, base_ro = sample_policy(base, tokenizer, expanded, cfg.max_new_tokens, "evaluating base", **q.gen_kwargs())
    final_text, final_ro = sample_policy(policy, tokenizer, expanded, cfg.max_new_tokens, "evaluating final", **q.gen_kwargs())
    scores = {
        "gold": (task.gold(expanded, base_text), task.gold(expanded, final_text)),
        "proxy": (rm.score(expanded, base_text).tolist(), rm.score(expanded, final_text).tolist()),
    }
    kl_final = sequence_kl_estimates(policy, final_ro, q.dtype)
    evaluation = base_vs_final(scores, kl_final["k1"], (mean_response_tokens(base_ro), mean_response_tokens(final_ro)), k,
                               cfg.seed, kl_k3_final=kl_final["k3"])
    q.run.log_samples([
        {"prompt": p, "base": bt, "final": ft, "gold_base": gb, "gold_final": gf, "proxy_base": pb, "proxy_final": pf}
        for p, bt, ft, gb, gf, pb, pf in zip(expanded, base_text, final_text, *scores["gold"], *scores["proxy"])
    ])
    examples = list(zip(expanded, base_text, final_text, *scores["gold"]))[:: max(1, k)][:4]
    win_rate = score_win_rate(expanded, final_text, base_text, scores["gold"][1], scores["gold"][0],
                              "final", "base", "gold", seed=cfg.seed)
    return evaluation, examples, len(expanded) // k, win_rate
