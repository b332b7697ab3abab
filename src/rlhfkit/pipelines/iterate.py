"""`rlhfkit iterate`: iterated online RLHF (Bai et al. 2022, "iterated online RLHF"; Gao et al. 2023
§4.3 predict k rounds raise gold at the same distance from the initial policy).

Round r = 1 … --rounds, each a row of quickstart's stages with the policy carried over:
1. sample two responses for each of --rm-prompts new training prompts from the current policy;
2. label them (iterate_labels.py: simulated human, AI judge, or the feedback app), and measure the
   reward model the policy was trained on so far against these fresh labels (its accuracy on
   the new policy's samples: how far the policy has moved from what the RM knows);
3. train a reward model afresh on every label so far (quickstart's trainer; centred on the base
   policy's samples of round 1, so proxy 0 = the initial policy); held-out: the fresh pairs'
   held-out share;
4. continue PPO from the last policy for --ppo-steps (one trainer across rounds: its optimiser,
   value head and KL controller carry over), the KL anchored to the initial policy or to the
   previous round's final policy (--anchor);
5. evaluate on held-out prompts: gold and proxy (this round's RM) with 95% CIs against the initial
   policy, KL to the initial policy.

Every stage of every round is recorded in stages.json; --resume keeps finished stages (the policy
comes back from the last finished PPO stage's checkpoint) and continues an unfinished PPO stage
from its own latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil

from rlhfkit.evaluation.policy_eval import sample_policy
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.reward_eval import gold_order_accuracy
from rlhfkit.models import add_lora, load_policy, load_reward_model
from rlhfkit.models.heads import reward_backbone_source
from rlhfkit.models.lora import reference_forward
from rlhfkit.pipelines.iterate_labels import label_round
from rlhfkit.pipelines.loops_config import IterateConfig
from rlhfkit.pipelines.quickstart import _Run, _train_reward_model
from rlhfkit.pipelines.rft import evaluate_against_base, score_all, start_run
from rlhfkit.pipelines.run_dir import RunDir, Stages
from rlhfkit.rewards.functions import reward_model_scorer
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary
from rlhfkit.trainers.reward import evaluate_pairs
from rlhfkit.types import PairwiseRecord


def _pairs_from(saved: list[dict]) -> list[tuple[PairwiseRecord, tuple[float, float]]]:
    return [(PairwiseRecord(**p["record"]), tuple(p["gold"])) for p in saved]


def _pairs_to(pairs) -> list[dict]:
    return [{"record": dataclasses.asdict(r), "gold": list(g)} for r, g in pairs]


def run_iterate(cfg: IterateConfig) -> dict:
    device, dtype, task = start_run(cfg, cfg.task)
    reward_backbone_source(cfg.reward_backbone)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    q = _Run(cfg, run, Stages(run, cfg.resume), device, dtype, task)
    print(f"[rlhfkit] iterate on {task.name}: {cfg.rounds} rounds of {cfg.rm_prompts} pairs ({cfg.labeler} labels) "
          f"→ reward model → {cfg.ppo_steps} PPO steps, KL anchor {cfg.anchor}; run folder {run.path}")
    if q.stages.done:
        print(f"[rlhfkit] resuming: finished stages kept ({', '.join(q.stages.done)})")
    policy, tokenizer = load_policy(cfg.policy, device=device)
    policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      top_layers=cfg.lora_top_layers or None)
    trainer = OnlineTrainer(policy, tokenizer, None, cfg.ppo_config(), compute_dtype=dtype, chat=task.chat,
                            gold_fn=task.gold, logger=None)
    last_rl = max([r for r in range(1, cfg.rounds + 1) if q.stages.result(f"round{r}_ppo") is not None], default=0)
    if last_rl:  # the policy as the last finished PPO stage left it (the logs stay as they are)
        trainer.load_checkpoint(Checkpointer(run.checkpoints / f"ppo_round{last_rl}", logs=[]))
    base = _base_stage(q, policy, tokenizer)
    rm, rounds, all_train = None, [], []
    if last_rl or q.stages.result("round1_reward_model") is not None:
        rm = load_reward_model(str(run.path / "reward_model"), device=device)
    for r in range(1, cfg.rounds + 1):
        row = q.stages.result(f"round{r}")
        labels = _labels_stage(q, r, policy, tokenizer, rm)
        all_train += labels["train"]
        if row is None:
            rm, rm_summary = _rm_stage(q, r, labels, all_train, base, rm)
            _ppo_stage(q, r, trainer, rm)
            row = _evaluate_round(q, r, policy, tokenizer, rm, base, labels, rm_summary, len(all_train))
        rounds.append(row)
        print(round_line(row), flush=True)
    trainer.save(run.checkpoints / "final")
    summary = {"command": "iterate", "task": task.name, "policy": cfg.policy, "labeler": cfg.labeler,
               "anchor": cfg.anchor, "device": str(device), "precision": str(dtype).replace("torch.", ""),
               "rounds": rounds, "base": base["summary"],
               "kl_control": kl_control_summary(trainer, trainer.history, rounds[-1]["kl_to_initial"]["mean"]),
               "total_seconds": round(sum(q.timer.seconds.values()), 1), "stage_seconds": q.timer.seconds}
    run.write_summary(summary)
    run.close()
    print(iterate_table(summary, run.path))
    write_report(run.path)
    return summary


def _base_stage(q: _Run, policy, tokenizer) -> dict:
    """The initial policy's held-out samples (the adapter disabled) and their gold, once."""
    saved = q.stages.result("base")
    if saved is not None:
        return saved
    cfg = q.cfg
    q.stages.begin()
    q.seed_stage(7)
    expanded = [p for p in q.task.prompts("test", cfg.eval_prompts, seed=cfg.seed) for _ in range(cfg.eval_samples_per_prompt)]
    with q.timer("evaluate base"), reference_forward(policy, None) as base_model:
        texts, rollouts = sample_policy(base_model, tokenizer, expanded, cfg.max_new_tokens, "evaluating base", **q.gen_kwargs())
    gold = q.task.gold(expanded, texts)
    tokens = sum(float(ro.response_mask.sum()) for ro in rollouts) / len(texts)
    base = {"prompts": expanded, "texts": texts, "gold": gold, "tokens": tokens,
            "summary": {"gold_mean": sum(gold) / len(gold), "response_tokens": tokens}}
    q.stages.finish("base", base)
    return base


def _labels_stage(q: _Run, r: int, policy, tokenizer, rm) -> dict:
    """1–2 of round r: pairs from the current policy on new prompts, labelled; the RM in use
    (None in round 1) measured on all of them."""
    saved = q.stages.result(f"round{r}_labels")
    if saved is not None:
        return {**saved, "train": _pairs_from(saved["train"]), "eval": _pairs_from(saved["eval"])}
    cfg = q.cfg
    q.stages.begin()
    q.seed_stage(10 * r)
    pool = q.task.prompts("train", seed=cfg.seed)
    prompts = [pool[((r - 1) * cfg.rm_prompts + i) % len(pool)] for i in range(cfg.rm_prompts)]
    doubled = [p for p in prompts for _ in range(2)]
    with q.timer(f"round {r}: sample pairs"):
        responses, _ = sample_policy(policy, tokenizer, doubled, cfg.max_new_tokens, f"round {r}: sampling pairs",
                                     **q.gen_kwargs())
    with q.timer(f"round {r}: label pairs"):
        labels = label_round(q, r, prompts, responses)
    fresh = labels["train"] + labels["eval"]
    old = None
    if rm is not None and fresh:
        old = {"accuracy_vs_labels": evaluate_pairs(rm, [p for p, _ in fresh])["accuracy"],
               "accuracy_vs_gold_order": gold_order_accuracy(rm, fresh)}
    result = {"prompts": prompts, "responses": responses, "summary": labels["summary"], "previous_rm_on_fresh": old,
              "train": _pairs_to(labels["train"]), "eval": _pairs_to(labels["eval"])}
    q.stages.finish(f"round{r}_labels", result)
    return {**result, "train": labels["train"], "eval": labels["eval"]}


def _rm_stage(q: _Run, r: int, labels: dict, all_train: list, base: dict, rm):
    """3 of round r: a reward model trained afresh on every label so far (held out: this round's
    held-out pairs), centred on the initial policy's pair samples (round 1's)."""
    saved = q.stages.result(f"round{r}_reward_model")
    if saved is not None:
        return load_reward_model(str(q.run.path / "reward_model"), device=q.device), saved
    first = labels if r == 1 else q.stages.result("round1_labels")
    with q.timer(f"round {r}: train reward model"):
        sizes = q.stages.begin()
        q.seed_stage(10 * r + 1)
        checkpointer = q.run.checkpointer(q.cfg.checkpoint_every, f"reward_model_round{r}", sizes)
        rm, summary = _train_reward_model(q, {"train": all_train, "eval": labels["eval"]}, first["prompts"],
                                          first["responses"], checkpointer)
    summary = {**summary, "train_pairs": len(all_train)}
    q.stages.finish(f"round{r}_reward_model", summary)
    shutil.rmtree(checkpointer.folder, ignore_errors=True)  # the reward model itself is in reward_model/
    return rm, summary


def _ppo_stage(q: _Run, r: int, trainer: OnlineTrainer, rm) -> None:
    """4 of round r: PPO continues from the last policy against this round's RM, up to step
    r·ppo_steps; with --anchor previous the KL anchor becomes the policy as the round starts."""
    if q.stages.result(f"round{r}_ppo") is not None:
        return
    cfg = q.cfg
    sizes = q.stages.begin()
    q.seed_stage(10 * r + 2)
    trainer.generator = q.generator
    trainer.reward_fn = reward_model_scorer(rm)
    trainer.cfg = dataclasses.replace(trainer.cfg, steps=r * cfg.ppo_steps)
    trainer.logger = lambda s: q.run.log_metrics({"stage": f"ppo_round{r}", "round": r, **s})
    if trainer.anchor is not None:
        trainer.anchor.load_state_dict(trainer.policy.state_dict())
    checkpointer = q.run.checkpointer(cfg.checkpoint_every, f"ppo_round{r}", sizes)
    if cfg.resume:
        trainer.load_checkpoint(checkpointer)  # an unfinished PPO stage of this round: from its checkpoint
    with q.timer(f"round {r}: PPO"):
        trainer.train(q.task.prompts("train", seed=cfg.seed + 1), checkpointer=checkpointer)
    q.stages.finish(f"round{r}_ppo", {"steps": trainer.step_count, "kl_coef": trainer.kl_ctl.value})
    if r > 1:
        shutil.rmtree(q.run.checkpoints / f"ppo_round{r - 1}", ignore_errors=True)


def _evaluate_round(q: _Run, r: int, policy, tokenizer, rm, base: dict, labels: dict, rm_summary: dict,
                    labels_used: int) -> dict:
    """5 of round r: gold and proxy against the initial policy with CIs, KL to the initial policy."""
    cfg = q.cfg
    q.stages.begin()
    q.seed_stage(7)  # every round is sampled with the base's seed: the differences are the policy's
    prompts = base["prompts"]
    with q.timer(f"round {r}: evaluate"):
        texts, rollouts = sample_policy(policy, tokenizer, prompts, cfg.max_new_tokens, f"round {r}: evaluating",
                                        **q.gen_kwargs())
        scorers = {"gold": q.task.gold, "proxy": reward_model_scorer(rm)}
        scores = score_all(scorers, prompts, texts)
        base_scores = {"gold": base["gold"], "proxy": score_all({"proxy": scorers["proxy"]}, prompts, base["texts"])["proxy"]}
        evaluation = evaluate_against_base({"scores": base_scores, "tokens": base["tokens"]}, scores, rollouts, policy,
                                           None, q.dtype, cfg.eval_samples_per_prompt, cfg.seed)
    q.run.log_samples([{"round": r, "prompt": p, "base": b, "final": t, "gold_base": gb, "gold_final": gf}
                       for p, b, t, gb, gf in zip(prompts, base["texts"], texts, base["gold"], scores["gold"])])
    row = {"round": r, "new_labels": labels["summary"]["train"] + labels["summary"]["eval"],
           "labels_used": labels_used, "labels_agree_with_gold": labels["summary"]["labels_agree_with_gold"],
           "previous_rm_on_fresh": labels["previous_rm_on_fresh"], "reward_model": rm_summary,
           "gold": evaluation["gold"], "proxy": evaluation["proxy"], "kl_to_initial": evaluation["kl_to_reference"],
           "kl_k3_to_initial": evaluation["kl_k3_to_reference"], "response_length": evaluation["response_length"],
           "ppo_steps_total": r * cfg.ppo_steps}
    q.run.log_metrics({"stage": "iterate", "step": r, "eval/gold_mean": row["gold"]["final"]["mean"],
                       "eval/proxy_mean": row["proxy"]["final"]["mean"], "kl/k1_seq_mean": row["kl_to_initial"]["mean"],
                       "rm/fresh_accuracy": (row["previous_rm_on_fresh"] or {}).get("accuracy_vs_labels"),
                       "labels_used": labels_used})
    q.stages.finish(f"round{r}", row)
    return row


def _ci(d: dict, fmt: str = "{:+.3f}") -> str:
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci_low'])}, {fmt.format(d['ci_high'])}]"


def _pct(x) -> str:
    """A share as a percentage; '-' for none, or NaN (no hard label to be right about: all ties)."""
    return f"{x:.1%}" if isinstance(x, (int, float)) and x == x else "-"


def round_line(row: dict) -> str:
    old = row["previous_rm_on_fresh"] or {}
    return (f"[rlhfkit] round {row['round']}: gold {_ci(row['gold']['final'])}, proxy {_ci(row['proxy']['final'])}, "
            f"KL to initial {row['kl_to_initial']['mean']:.2f} nats; {row['labels_used']} labels used; "
            f"previous RM on the fresh pairs {_pct(old.get('accuracy_vs_labels'))}")


def iterate_table(summary: dict, path) -> str:
    """One row per round: gold and proxy (95% CI), KL to the initial policy, RM accuracies, labels."""
    head = (f"{'':>7}  {'gold (95% CI)':>24}  {'proxy (95% CI)':>24}  {'KL to initial':>13}  "
            f"{'old RM on fresh':>15}  {'new RM held-out':>15}  {'labels used':>11}")
    lines = ["", head, f"{'base':>7}  {summary['base']['gold_mean']:>+24.3f}  {'-':>24}  {'0':>13}"]
    for r in summary["rounds"]:
        old = (r["previous_rm_on_fresh"] or {}).get("accuracy_vs_labels")
        lines.append(f"{'round ' + str(r['round']):>7}  {_ci(r['gold']['final']):>24}  {_ci(r['proxy']['final']):>24}  "
                     f"{r['kl_to_initial']['mean']:>13.2f}  {_pct(old):>15}  "
                     f"{_pct(r['reward_model'].get('eval_accuracy_vs_labels')):>15}  {r['labels_used']:>11}")
    last = summary["rounds"][-1]["gold"]["improvement"]
    lines.append(f"\nlast round − base, gold: {_ci(last)} (paired by prompt)")
    lines.append(f"run folder: {path}  (summary.json, labels_round*.jsonl, stages.json, checkpoints/final, report.html)")
    return "\n".join(lines)
