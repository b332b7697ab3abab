"""`rlhfkit rft`: rejection-sampling fine-tuning (Llama 2's rejection sampling; RAFT, Dong et al. 2023).

Each round:
1. best-of-n: --n candidates per training prompt from the current policy, the one --reward scores
   highest kept (`generate.keep_best`, the same selection as `generate --policy best_of_n`);
2. SFT on the winners (LoRA, `trainers.sft`), the adapter merged into the policy afterwards;
3. evaluation on held-out prompts: the reward and the task's gold with 95% bootstrap CIs, the
   difference to the base policy paired by prompt, KL(policy ‖ base).

Rounds are stages (stages.json); --resume keeps finished rounds and starts the next from the last
round's saved policy (checkpoints/round-R, the newest kept; `checkpoints/final` at the end).

The helpers `start_run`, `reward_factories`, `score_all` and `evaluate_against_base` are shared
with iterate and pareto.
"""

from __future__ import annotations

import shutil
import time

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import write_jsonl
from rlhfkit.evaluation.policy_eval import base_vs_final, mean_response_tokens, sample_policy, sequence_kl_estimates
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.stats import mean_ci
from rlhfkit.feedback.labeler import judge_reward
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.models.lora import frozen_copy
from rlhfkit.pipelines.generate import keep_best
from rlhfkit.pipelines.loops_config import RFTConfig
from rlhfkit.pipelines.run_dir import RunDir, Stages
from rlhfkit.rewards.spec import build_reward
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.tasks import get_task
from rlhfkit.tasks.registry import task_gold_scorer
from rlhfkit.trainers.sft import train_sft
from rlhfkit.types import SFTRecord

GEN_BATCH = 32


def reward_factories() -> dict:
    """The prefixes `build_reward` takes besides its own: judge[:MODEL] and task:NAME."""
    return {"judge": lambda model: judge_reward(model or "smollm2-135m-instruct"), "task": task_gold_scorer}


def start_run(cfg, task_name: str):
    """(device, dtype, task) with a missing device, model or task failing before anything loads."""
    device = resolve_device(cfg.device)
    resolve_policy_path(cfg.policy)
    try:
        task = get_task(task_name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    apply_task_defaults(cfg, task)  # an unset --max-new-tokens (iterate: quickstart's option) takes the task's
    return device, resolve_precision(cfg.precision, device), task


def score_all(scorers: dict, prompts: list[str], texts: list[str]) -> dict[str, list[float]]:
    return {name: [float(x) for x in fn(list(prompts), list(texts))] for name, fn in scorers.items()}


def evaluate_against_base(base: dict, scores: dict[str, list[float]], rollouts, policy, reference, dtype,
                          samples_per_prompt: int, seed: int) -> dict:
    """`base_vs_final` of the policy's held-out scores against the base's (base: {"scores", "tokens"}),
    with KL(policy ‖ reference) from the policy's own samples (k1 and k3, nats per sequence)."""
    kl = sequence_kl_estimates(policy, rollouts, dtype, reference)
    pairs = {name: (base["scores"][name], values) for name, values in scores.items()}
    return base_vs_final(pairs, kl["k1"], (base["tokens"], mean_response_tokens(rollouts)), samples_per_prompt, seed,
                         kl_k3_final=kl["k3"])


class _RFT:
    def __init__(self, cfg: RFTConfig, run: RunDir, device, dtype, task, reward_fn):
        self.cfg, self.run, self.device, self.dtype, self.task, self.reward_fn = cfg, run, device, dtype, task, reward_fn
        self.scorers = {"reward": reward_fn, "gold": task.gold}
        k = cfg.eval_samples_per_prompt
        self.eval_prompts = [p for p in task.prompts("test", cfg.eval_prompts, seed=cfg.seed) for _ in range(k)]
        self.train_prompts = task.prompts("train", seed=cfg.seed)

    def sample(self, policy, tokenizer, prompts, what: str, seed_offset: int):
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + seed_offset)
        return sample_policy(policy, tokenizer, prompts, self.cfg.max_new_tokens, what, chat=self.task.chat,
                             compute_dtype=self.dtype, generator=gen, batch_size=GEN_BATCH)

    def round_prompts(self, r: int) -> list[str]:
        m, pool = self.cfg.prompts_per_round, self.train_prompts
        return [pool[((r - 1) * m + i) % len(pool)] for i in range(m)]


def run_rft(cfg: RFTConfig) -> dict:
    device, dtype, task = start_run(cfg, cfg.task)
    reward_fn, _ = build_reward(cfg.reward, task, device, named=reward_factories())
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    stages = Stages(run, cfg.resume)
    q = _RFT(cfg, run, device, dtype, task, reward_fn)
    done = [r for r in range(1, cfg.rounds + 1) if stages.result(f"round{r}") is not None]
    start = run.checkpoints / f"round-{done[-1]}" if done else None
    print(f"[rlhfkit] rft on {task.name}: {cfg.rounds} rounds of best-of-{cfg.n} on {cfg.prompts_per_round} prompts "
          f"against {cfg.reward}, then SFT; run folder {run.path}" + (f"; resuming after round {done[-1]}" if done else ""))
    reference, tokenizer = load_policy(cfg.policy, device=device)
    reference = frozen_copy(reference)
    policy = frozen_copy(reference) if start is None else load_policy(str(start), device=device)[0]
    base = _base_stage(q, stages, reference, tokenizer)
    rounds = []
    for r in range(1, cfg.rounds + 1):
        saved = stages.result(f"round{r}")
        if saved is None:
            policy, saved = _round(q, stages, r, policy, tokenizer, reference, base)
        rounds.append(saved)
        print(round_line(saved), flush=True)
    final = run.checkpoints / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(run.checkpoints / f"round-{cfg.rounds}", final)
    summary = {"command": "rft", "task": task.name, "policy": cfg.policy, "reward": cfg.reward, "n": cfg.n,
               "device": str(device), "precision": str(dtype).replace("torch.", ""),
               "base": base["summary"], "rounds": rounds, "checkpoint": str(final),
               "total_seconds": round(sum(r["seconds"] for r in rounds), 1)}
    run.write_summary(summary)
    run.close()
    print(rft_table(summary, run.path))
    write_report(run.path)
    return summary


def _base_stage(q: _RFT, stages: Stages, reference, tokenizer) -> dict:
    """The base policy's held-out samples and scores, once (every round is compared with them)."""
    saved = stages.result("base")
    if saved is not None:
        return saved
    stages.begin()
    texts, rollouts = q.sample(reference, tokenizer, q.eval_prompts, "evaluating base", 1)
    scores = score_all(q.scorers, q.eval_prompts, texts)
    k = q.cfg.eval_samples_per_prompt
    summary = {name: mean_ci(_per_prompt(v, k), q.cfg.seed) for name, v in scores.items()}
    base = {"texts": texts, "scores": scores, "tokens": mean_response_tokens(rollouts), "summary": summary}
    stages.finish("base", base)
    return base


def _per_prompt(values: list[float], k: int) -> list[float]:
    return [sum(values[i:i + k]) / k for i in range(0, len(values), k)]


def _round(q: _RFT, stages: Stages, r: int, policy, tokenizer, reference, base: dict):
    """One round: best-of-n winners → SFT → merged policy saved → held-out evaluation."""
    cfg, run = q.cfg, q.run
    stages.begin()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed + 100 * r)
    prompts = q.round_prompts(r)
    expanded = [p for p in prompts for _ in range(cfg.n)]
    texts, _ = q.sample(policy, tokenizer, expanded, f"round {r}: best-of-{cfg.n} candidates", 100 * r)
    winners = keep_best([{"prompt": p, "response": t} for p, t in zip(expanded, texts)], cfg.n, q.reward_fn)
    write_jsonl(run.path / f"winners_round{r}.jsonl", winners)
    records = [SFTRecord(prompt=w["prompt"], completion=w["completion"]) for w in winners if w["completion"].strip()]
    result = train_sft(policy, tokenizer, records, cfg.sft_config(q.task.chat), compute_dtype=q.dtype,
                       logger=lambda row: run.log_metrics({"stage": f"sft_round{r}", **row}))
    policy = result["policy"].merge_and_unload()
    policy.eval()
    folder = run.checkpoints / f"round-{r}"
    policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    eval_texts, rollouts = q.sample(policy, tokenizer, q.eval_prompts, f"round {r}: evaluating", 1)
    scores = score_all(q.scorers, q.eval_prompts, eval_texts)
    evaluation = evaluate_against_base(base, scores, rollouts, policy, reference, q.dtype, cfg.eval_samples_per_prompt,
                                       cfg.seed)
    run.log_samples([{"round": r, "prompt": p, "base": b, "final": t, "gold_base": gb, "gold_final": gf}
                     for p, b, t, gb, gf in zip(q.eval_prompts, base["texts"], eval_texts, base["scores"]["gold"],
                                                scores["gold"])])
    candidate_rewards = [x for w in winners for x in w["candidate_rewards"]]
    row = {"round": r, "prompts": len(prompts), "sft_examples": len(records),
           "candidate_reward_mean": sum(candidate_rewards) / len(candidate_rewards),
           "winner_reward_mean": sum(w["reward"] for w in winners) / len(winners),
           "kl_bound": winners[0]["kl_bound"], "sft_loss": result["train"], "evaluation": evaluation,
           "seconds": round(time.perf_counter() - start, 1)}
    run.log_metrics({"stage": "rft", "step": r, "reward/winner_mean": row["winner_reward_mean"],
                     "reward/candidate_mean": row["candidate_reward_mean"],
                     "eval/reward_mean": evaluation["reward"]["final"]["mean"],
                     "eval/gold_mean": evaluation["gold"]["final"]["mean"],
                     "kl/k1_seq_mean": evaluation["kl_to_reference"]["mean"]})
    stages.finish(f"round{r}", row)
    if r > 1:
        shutil.rmtree(run.checkpoints / f"round-{r - 1}", ignore_errors=True)
    return policy, row


def _ci(d: dict, fmt: str = "{:+.3f}") -> str:
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci_low'])}, {fmt.format(d['ci_high'])}]"


def round_line(row: dict) -> str:
    ev = row["evaluation"]
    return (f"[rlhfkit] round {row['round']}: winners' reward {row['winner_reward_mean']:+.3f} (candidates "
            f"{row['candidate_reward_mean']:+.3f}); held-out reward {_ci(ev['reward']['final'])}, gold "
            f"{_ci(ev['gold']['final'])}, KL to base {ev['kl_to_reference']['mean']:.2f} nats")


def rft_table(summary: dict, path) -> str:
    """The closing table: one row per round, the base first."""
    head = f"{'':>8}  {'winners (train)':>15}  {'held-out reward (95% CI)':>26}  {'gold (95% CI)':>26}  {'KL to base':>10}"
    base = summary["base"]
    lines = ["", head, f"{'base':>8}  {'':>15}  {_ci(base['reward']):>26}  {_ci(base['gold']):>26}  {'0':>10}"]
    for r in summary["rounds"]:
        ev = r["evaluation"]
        lines.append(f"{'round ' + str(r['round']):>8}  {r['winner_reward_mean']:>+15.3f}  {_ci(ev['reward']['final']):>26}  "
                     f"{_ci(ev['gold']['final']):>26}  {ev['kl_to_reference']['mean']:>10.2f}")
    last = summary["rounds"][-1]["evaluation"]["reward"]["improvement"]
    verdict = "excludes" if last["ci_low"] > 0 or last["ci_high"] < 0 else "includes"
    lines.append(f"\nlast round − base, held-out reward: {_ci(last)} (paired by prompt; the 95% CI {verdict} 0)")
    lines.append(f"run folder: {path}  (summary.json, winners_round*.jsonl, checkpoints/final, report.html)")
    return "\n".join(lines)
