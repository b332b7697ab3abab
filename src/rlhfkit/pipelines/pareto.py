"""`rlhfkit pareto`: the Pareto front of a reward mix.

1. the objectives: each --objectives entry is a reward spec (gold, length=-1, a reward model, a
   Python function …), every one maximised; with --standardize each is divided by its standard
   deviation over the base policy's samples, so a weight means the same for each;
2. the sweep: every weight vector w of the simplex grid (`evaluation.pareto.weight_grid`) is
   optimised against Σ_j w_j·objective_j/scale_j:
   - best_of_n (default): one pool of --n base samples per held-out prompt, scored once by every
     objective; each mix picks its best candidate per prompt (the same pool for every mix, so the
     points differ only by their weights), KL ≤ log n − (n−1)/n;
   - --algo ppo|grpo|…: a LoRA policy trained for --steps against the mix, then sampled on the
     held-out prompts (KL(π‖π_ref) measured);
3. every objective's mean with a 95% bootstrap CI over the held-out prompts, the non-dominated
   points marked, pareto.json, pareto.png (one panel per pair of objectives), report.html.
"""

from __future__ import annotations

import math
import time

import torch

from rlhfkit.generation.sampling import best_of_n_kl_bound
from rlhfkit.evaluation.pareto import non_dominated, pareto_rows, save_pareto_figure, weight_grid
from rlhfkit.evaluation.policy_eval import per_prompt_means, sample_policy, sequence_kl_estimates
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.stats import mean_ci
from rlhfkit.models import add_lora, load_policy
from rlhfkit.pipelines.loops_config import ParetoConfig
from rlhfkit.pipelines.rft import reward_factories, score_all, start_run
from rlhfkit.pipelines.run_dir import RunDir, write_json_atomic
from rlhfkit.rewards.functions import WeightedSum
from rlhfkit.rewards.spec import build_reward
from rlhfkit.trainers.online import OnlineTrainer

GEN_BATCH = 32


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def run_pareto(cfg: ParetoConfig) -> dict:
    device, dtype, task = start_run(cfg, cfg.task)
    objectives = {spec: build_reward(spec, task, device, named=reward_factories())[0] for spec in cfg.objectives}
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite)
    run.save_config(cfg)
    torch.manual_seed(cfg.seed)
    prompts = task.prompts("test", cfg.eval_prompts, seed=cfg.seed)
    grid = weight_grid(len(objectives), cfg.weight_steps)
    print(f"[rlhfkit] pareto on {task.name}: {len(grid)} mixes of {', '.join(objectives)} by {cfg.algo}, "
          f"{len(prompts)} held-out prompts; run folder {run.path}")
    start = time.perf_counter()
    policy, tokenizer = load_policy(cfg.policy, device=device)
    gen = dict(chat=task.chat, compute_dtype=dtype, batch_size=GEN_BATCH)

    def sample(model, expanded, what, seed_offset):
        generator = torch.Generator(device=device).manual_seed(cfg.seed + seed_offset)
        return sample_policy(model, tokenizer, expanded, cfg.max_new_tokens, what, generator=generator, **gen)

    k = cfg.n if cfg.algo == "best_of_n" else 1
    expanded = [p for p in prompts for _ in range(k)]
    texts, _ = sample(policy, expanded, f"base samples ({k} per prompt)", 1)
    base_scores = score_all(objectives, expanded, texts)
    scales = {name: (_std(v) or 1.0) if cfg.standardize else 1.0 for name, v in base_scores.items()}
    base = {name: mean_ci(per_prompt_means(v, k), cfg.seed) for name, v in base_scores.items()}
    if cfg.algo == "best_of_n":
        points = [_bon_point(w, base_scores, scales, cfg) for w in grid]
    else:
        points = [_rl_point(w, objectives, scales, cfg, task, device, dtype, run, prompts, sample) for w in grid]
    front = non_dominated([[p["objectives"][name]["mean"] for name in objectives] for p in points])
    for p, flag in zip(points, front):
        p["non_dominated"] = flag
    result = {"command": "pareto", "task": task.name, "policy": cfg.policy, "algo": cfg.algo,
              "objectives": list(objectives), "scales": scales, "standardize": cfg.standardize,
              "eval_prompts": len(prompts), "n": cfg.n if cfg.algo == "best_of_n" else None,
              "base": base, "points": points, "front_size": sum(front),
              "total_seconds": round(time.perf_counter() - start, 1)}
    write_json_atomic(run.path / "pareto.json", result)
    run.write_summary(result)
    save_pareto_figure(result, run.path / "pareto.png")
    run.close()
    print(pareto_table(result, run.path))
    write_report(run.path)
    return result


def _weights(w: tuple[float, ...], names) -> dict[str, float]:
    return dict(zip(names, w))


def _bon_point(w: tuple[float, ...], scores: dict[str, list[float]], scales: dict[str, float], cfg: ParetoConfig) -> dict:
    """The mix w's best-of-n: per prompt, the candidate with the highest Σ_j w_j·s_j/scale_j (the
    first on ties), and every objective's per-prompt value of that candidate."""
    names, n = list(scores), cfg.n
    mix = [sum(wj * scores[name][i] / scales[name] for wj, name in zip(w, names)) for i in range(len(scores[names[0]]))]
    picks = [max(range(start, start + n), key=lambda i: (mix[i], -i)) for start in range(0, len(mix), n)]
    return {"weights": _weights(w, names),
            "objectives": {name: mean_ci([scores[name][i] for i in picks], cfg.seed) for name in names},
            "kl": best_of_n_kl_bound(n), "kl_is_bound": True}


def _rl_point(w, objectives: dict, scales: dict, cfg: ParetoConfig, task, device, dtype, run: RunDir, prompts, sample) -> dict:
    """The mix w optimised by --algo: a fresh LoRA policy trained --steps against the weighted
    (scaled) objectives, sampled once per held-out prompt, every objective and the KL measured."""
    names = list(objectives)
    tag = "_".join(f"{x:g}" for x in w)
    mix = WeightedSum(dict(objectives), {name: wj / scales[name] for wj, name in zip(w, names)})
    policy, tokenizer = load_policy(cfg.policy, device=device)
    policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      top_layers=cfg.lora_top_layers or None)
    trainer = OnlineTrainer(policy, tokenizer, mix, cfg.rl_config(list(w)), compute_dtype=dtype, chat=task.chat,
                            logger=lambda s: run.log_metrics({"stage": f"{cfg.algo}_{tag}", **s,
                                                              **{f"reward/{k}": v for k, v in mix.last_components.items()}}))
    trainer.train(task.prompts("train", seed=cfg.seed + 1))
    texts, rollouts = sample(policy, list(prompts), f"evaluating mix {tag}", 2)
    scores = score_all(objectives, list(prompts), texts)
    kl = sequence_kl_estimates(policy, rollouts, dtype)
    return {"weights": _weights(w, names), "objectives": {name: mean_ci(v, cfg.seed) for name, v in scores.items()},
            "kl": sum(kl["k1"]) / len(texts), "kl_k3": sum(kl["k3"]) / len(texts), "kl_is_bound": False}


def pareto_table(result: dict, path) -> str:
    header, rows = pareto_rows(result)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["", "  ".join(h.ljust(wd) for h, wd in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(wd) for c, wd in zip(row, widths)) for row in rows]
    scales = ", ".join(f"{k} {v:.3g}" for k, v in result["scales"].items())
    lines.append(f"\n{result['front_size']} of {len(result['points'])} mixes are non-dominated"
                 + (f"; objectives divided by their base std ({scales}) before mixing" if result["standardize"] else ""))
    lines.append(f"run folder: {path}  (pareto.json, pareto.png, report.html)")
    return "\n".join(lines)
