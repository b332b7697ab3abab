"""`rlhfkit quickstart`: the whole RLHF loop on a built-in task with the embedded defaults.

1. sample two responses per prompt from the base policy;
2. label each pair with the task's gold scorer acting as a simulated, noisy human;
3. train a pairwise reward model and measure its held-out accuracy;
4. run PPO (LoRA, value head, GAE, clipped objective, adaptive k1 KL penalty) against the RM;
5. evaluate base vs final on held-out prompts (gold and proxy reward with 95% bootstrap CIs,
   KL to the reference, samples side by side);
6. write runs/<name>/ and print a summary table.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager

import torch

from rlhfkit.algorithms import concordance
from rlhfkit.evaluation.policy_eval import sample_policy, sequence_kl
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.stats import mean_ci, paired_mean_ci
from rlhfkit.evaluation.winrate import format_win_rate_line, score_win_rate
from rlhfkit.models import (
    add_lora,
    load_policy,
    load_reward_model,
    resolve_device,
    resolve_precision,
)
from rlhfkit.models.lora import reference_forward
from rlhfkit.pipelines.config import QuickstartConfig
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.rewards.functions import reward_model_scorer
from rlhfkit.tasks import get_task
from rlhfkit.trainers.online import OnlineTrainer
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


def simulated_human_labels(prompts, responses_a, responses_b, gold_a, gold_b, temperature: float, rng: random.Random):
    """Bradley–Terry choices from gold scores: a is preferred with probability
    σ((gold_a − gold_b) / temperature), so near-ties are coin flips, like people's labels.
    Returns (pairs, number of identical-response pairs left out)."""
    pairs, identical = [], 0
    for prompt, a, b, ga, gb in zip(prompts, responses_a, responses_b, gold_a, gold_b):
        if a.strip() == b.strip():
            identical += 1
            continue
        p_a = 1.0 / (1.0 + math.exp(-(ga - gb) / temperature))
        a_wins = rng.random() < p_a
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append((PairwiseRecord(prompt=prompt, chosen=chosen, rejected=rejected), (ga, gb) if a_wins else (gb, ga)))
    return pairs, identical


def gold_order_accuracy(rm, pairs_with_gold) -> float:
    """How often the RM ranks the higher-gold response of a pair first (equal-gold pairs are no
    comparison): `algorithms.concordance` with one group per pair."""
    prompts = [p.prompt for p, _ in pairs_with_gold] * 2
    texts = [p.chosen for p, _ in pairs_with_gold] + [p.rejected for p, _ in pairs_with_gold]
    gold = torch.tensor([g[0] for _, g in pairs_with_gold] + [g[1] for _, g in pairs_with_gold])
    groups = torch.arange(len(pairs_with_gold)).repeat(2)
    accuracy, _ = concordance(rm.score(prompts, texts), gold, groups)
    return float(accuracy)


def _fmt_ci(mean: float, ci_low: float, ci_high: float) -> str:
    return f"{mean:+.3f} [{ci_low:+.3f}, {ci_high:+.3f}]"


def run_quickstart(cfg: QuickstartConfig) -> dict:
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite)
    run.save_config(cfg)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    task = get_task(cfg.task)
    timer = StageTimer()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    gen_kwargs = dict(chat=task.chat, generator=generator, compute_dtype=dtype, batch_size=GEN_BATCH)
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(dtype).replace('torch.', '')}  task {task.name}")

    with timer("load policy"):
        policy, tokenizer = load_policy(cfg.policy, device=device)

    # 1. sample two responses per prompt from the base policy
    with timer("sample pairs"):
        prompts = task.prompts("train", cfg.rm_prompts, seed=cfg.seed)
        doubled = [p for p in prompts for _ in range(2)]
        responses, _ = sample_policy(policy, tokenizer, doubled, cfg.max_new_tokens, "sampling pairs", **gen_kwargs)

    # 2. label each pair with the gold scorer acting as a simulated human
    with timer("label pairs"):
        gold = task.gold(doubled, responses)
        labelled, identical = simulated_human_labels(
            prompts, responses[0::2], responses[1::2], gold[0::2], gold[1::2], cfg.label_temperature, rng)
        run_pairs = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "gold_chosen": g[0], "gold_rejected": g[1]}
                     for p, g in labelled]
        from rlhfkit.data.loaders import write_jsonl

        write_jsonl(run.path / "preferences.jsonl", run_pairs)
        n_eval = max(1, int(len(labelled) * cfg.rm_eval_fraction))
        eval_set, train_set = labelled[:n_eval], labelled[n_eval:]
        label_agreement = sum(g[0] >= g[1] for _, g in labelled) / max(len(labelled), 1)
        print(f"[rlhfkit] {len(labelled)} pairs ({identical} identical pairs left out); "
              f"simulated labels agree with the gold order on {label_agreement:.0%}")

    # 3. reward model
    with timer("train reward model"):
        rm = load_reward_model(cfg.reward_backbone, device=device)
        rm_metrics = train_reward_model(rm, [p for p, _ in train_set], cfg.reward_config(), [p for p, _ in eval_set],
                                        logger=run.log_metrics)
        rm_gold_acc = gold_order_accuracy(rm, eval_set)
        offset = rm.center(doubled, responses)  # base-policy responses score 0 on average
        rm.save(run.path / "reward_model")
        print(f"[rlhfkit] reward model: held-out accuracy {rm_metrics['accuracy']:.1%} vs labels, "
              f"{rm_gold_acc:.1%} vs gold order ({len(eval_set)} pairs); centred by {offset:+.3f}")

    # 4. PPO against the learned reward
    with timer("PPO"):
        policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, top_layers=cfg.lora_top_layers or None)
        trainer = OnlineTrainer(
            policy, tokenizer, reward_model_scorer(rm), cfg.ppo_config(), compute_dtype=dtype, chat=task.chat,
            gold_fn=task.gold, logger=lambda s: run.log_metrics({"stage": "ppo", **s}),
        )
        trainer.generator = generator
        history = trainer.train(task.prompts("train", seed=cfg.seed + 1))
        trainer.save(run.checkpoints / "final")

    # 5. evaluate base vs final on held-out prompts
    with timer("evaluate"):
        eval_prompts = task.prompts("test", cfg.eval_prompts, seed=cfg.seed)
        k = cfg.eval_samples_per_prompt
        expanded = [p for p in eval_prompts for _ in range(k)]
        with reference_forward(policy, None) as base:
            base_text, base_ro = sample_policy(base, tokenizer, expanded, cfg.max_new_tokens, "evaluating base", **gen_kwargs)
        final_text, final_ro = sample_policy(policy, tokenizer, expanded, cfg.max_new_tokens, "evaluating final", **gen_kwargs)
        scores = {
            "gold": (task.gold(expanded, base_text), task.gold(expanded, final_text)),
            "proxy": (rm.score(expanded, base_text).tolist(), rm.score(expanded, final_text).tolist()),
        }
        kl_final = sequence_kl(policy, final_ro, dtype)

        def per_prompt(values):
            return [sum(values[i * k:(i + 1) * k]) / k for i in range(len(eval_prompts))]

        evaluation = {}
        for name, (base_vals, final_vals) in scores.items():
            b, f = per_prompt(base_vals), per_prompt(final_vals)
            evaluation[name] = {"base": mean_ci(b, cfg.seed), "final": mean_ci(f, cfg.seed),
                                "improvement": paired_mean_ci(f, b, cfg.seed)}
        evaluation["kl_to_reference"] = mean_ci(kl_final, cfg.seed)
        evaluation["response_length"] = {
            "base": sum(float(ro.response_mask.sum()) for ro in base_ro) / len(expanded),
            "final": sum(float(ro.response_mask.sum()) for ro in final_ro) / len(expanded),
        }
        run.log_samples([
            {"prompt": p, "base": bt, "final": ft, "gold_base": gb, "gold_final": gf, "proxy_base": pb, "proxy_final": pf}
            for p, bt, ft, gb, gf, pb, pf in zip(expanded, base_text, final_text, *scores["gold"], *scores["proxy"])
        ])

    # 6. summary
    summary = {
        "task": task.name,
        "policy": cfg.policy,
        "reward_backbone": cfg.reward_backbone,
        "device": str(device),
        "precision": str(dtype).replace("torch.", ""),
        "pairs": {"train": len(train_set), "eval": len(eval_set), "identical_left_out": identical,
                  "labels_agree_with_gold": label_agreement},
        "reward_model": {"eval_accuracy_vs_labels": rm_metrics.get("accuracy"), "eval_loss": rm_metrics.get("loss"),
                         "eval_accuracy_vs_gold_order": rm_gold_acc, "centering_offset": offset},
        "ppo": {"steps": len(history), "final_kl_coef": trainer.kl_ctl.value,
                "first_score": history[0]["reward/score_mean"], "last_score": history[-1]["reward/score_mean"]},
        "evaluation": evaluation,
        "eval_prompts": len(eval_prompts),
        "eval_samples_per_prompt": k,
        "stage_seconds": timer.seconds,
        "total_seconds": round(sum(timer.seconds.values()), 2),
        "gold_improved": evaluation["gold"]["improvement"]["ci_low"] > 0,
    }
    summary["win_rate"] = score_win_rate(expanded, final_text, base_text, scores["gold"][1], scores["gold"][0],
                                         "final", "base", "gold", seed=cfg.seed)
    run.write_summary(summary)
    print_summary(summary, run.path, list(zip(expanded, base_text, final_text, *scores["gold"]))[:: max(1, k)][:4])
    print(format_win_rate_line(summary["win_rate"]))
    write_report(run.path)
    return summary


def print_summary(summary: dict, path, examples) -> None:
    ev = summary["evaluation"]
    rows = [
        ("gold reward (VADER)" if summary["task"] == "sentiment" else "gold reward", ev["gold"]),
        ("proxy reward (RM)", ev["proxy"]),
    ]
    print()
    print(f"{'':24s} {'base':>24s} {'final':>24s} {'final − base':>24s}")
    for name, e in rows:
        print(f"{name:24s} {_fmt_ci(**e['base']):>24s} {_fmt_ci(**e['final']):>24s} {_fmt_ci(**e['improvement']):>24s}")
    kl = ev["kl_to_reference"]
    print(f"{'KL to reference (nats)':24s} {'0':>24s} {_fmt_ci(kl['mean'], kl['ci_low'], kl['ci_high']):>24s}")
    print(f"{'response tokens':24s} {ev['response_length']['base']:>24.1f} {ev['response_length']['final']:>24.1f}")
    rm = summary["reward_model"]
    print(f"\nreward model held-out accuracy: {rm['eval_accuracy_vs_labels']:.1%} (labels), "
          f"{rm['eval_accuracy_vs_gold_order']:.1%} (gold order)")
    print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in summary["stage_seconds"].items())
          + f"; total {summary['total_seconds']:.0f}s")
    verdict = "beats" if summary["gold_improved"] else "does NOT beat"
    print(f"final policy {verdict} the base policy on gold reward (95% CI of the difference "
          f"{'excludes' if summary['gold_improved'] else 'includes'} 0)")
    print("\nsamples (base → final):")
    for prompt, b, f, gb, gf in examples:
        print(f"  {prompt}\n    base  [{gb:+.2f}] {b}\n    final [{gf:+.2f}] {f}")
    print(f"\nrun folder: {path}  (summary.json, metrics.jsonl, samples.jsonl, checkpoints/final)")
