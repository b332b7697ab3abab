"""`rlhfkit overopt run`: the synthetic gold–proxy study of Gao, Schulman, Hilton 2023.

1. labels: the task's gold scorer labels every pair of `label_samples_per_prompt` base-policy
   samples of each label prompt (hard labels: higher gold wins; equal gold left out);
2. proxies: one reward model per label count (nested subsets of one shuffled list of pairs),
   trained by the library's RM trainer and centred on the base samples;
3. best-of-n: one pool of `bon_pool` samples per held-out prompt; for every n the expected gold
   and proxy of the proxy's pick by the unbiased estimator (no resampling), d = sqrt(log n − (n−1)/n);
4. RL: `--algo` against each proxy at each fixed β; gold, proxy and the sampled KL(π‖π_init)
   on held-out prompts every `rl_eval_every` steps, d = sqrt(KL);
5. fits (algorithms/overopt.py) of gold and proxy recentred on the initial policy, the
   extrapolation check, the checks the study is read by, overopt.json, overopt.png, report.html.
"""

from __future__ import annotations

import math
import random
import time

import torch

from rlhfkit.algorithms.overopt import best_of_n_curve, best_of_n_kl
from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import write_jsonl
from rlhfkit.evaluation.overopt import FIT_HEADER, curve_fits, fit_rows, save_overopt_figure
from rlhfkit.evaluation.policy_eval import sample_policy, sequence_kl
from rlhfkit.evaluation.report import write_report
from rlhfkit.models import add_lora, load_policy, load_reward_model, resolve_device, resolve_precision
from rlhfkit.models.heads import reward_backbone_source
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.pipelines.overopt_config import OveroptConfig
from rlhfkit.pipelines.quickstart import StageTimer
from rlhfkit.pipelines.run_dir import RunDir, write_json_atomic
from rlhfkit.rewards.functions import reward_model_scorer
from rlhfkit.tasks import get_task
from rlhfkit.trainers.online import OnlineTrainer
from rlhfkit.trainers.reward import evaluate_pairs, train_reward_model
from rlhfkit.types import PairwiseRecord

GEN_BATCH = 32


class _Study:
    """What every stage of one study shares."""

    def __init__(self, cfg: OveroptConfig, run: RunDir, device, dtype, task):
        self.cfg, self.run, self.device, self.dtype, self.task = cfg, run, device, dtype, task
        self.timer = StageTimer()
        test = task.prompts("test", seed=cfg.seed)
        self.bon_prompts = [test[i % len(test)] for i in range(cfg.bon_prompts)]
        self.rl_eval_prompts = [test[(cfg.bon_prompts + i) % len(test)] for i in range(cfg.rl_eval_prompts)]

    def sample(self, policy, tokenizer, prompts, what: str, seed_offset: int):
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + seed_offset)
        return sample_policy(policy, tokenizer, prompts, self.cfg.max_new_tokens, what, chat=self.task.chat,
                             compute_dtype=self.dtype, generator=gen, batch_size=GEN_BATCH)


def run_overopt(cfg: OveroptConfig) -> dict:
    # a missing device, model or task fails before anything is loaded or a run folder is made
    device = resolve_device(cfg.device)
    resolve_policy_path(cfg.policy)
    reward_backbone_source(cfg.reward_backbone)
    try:
        task = get_task(cfg.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite)
    run.save_config(cfg)
    study = _Study(cfg, run, device, resolve_precision(cfg.precision, device), task)
    print(f"[rlhfkit] over-optimization study on {task.name}: proxies on {cfg.label_counts} labels, "
          f"best-of-n up to {cfg.bon_pool}, {cfg.algo} for {cfg.rl_steps} steps at β {cfg.rl_kl_coefs}; run folder {run.path}")
    with study.timer("load policy"):
        policy, tokenizer = load_policy(cfg.policy, device=device)
    with study.timer("label pairs"):
        labels = _label_pairs(study, policy, tokenizer)
    with study.timer("train proxies"):
        proxies = _train_proxies(study, labels)
    with study.timer("best-of-n sweep"):
        bon = _bon_sweep(study, policy, tokenizer, proxies)
    del policy
    result = {
        "command": "overopt", "task": task.name, "policy": cfg.policy, "reward_backbone": cfg.reward_backbone,
        "device": str(device), "precision": str(study.dtype).replace("torch.", ""),
        "labels": labels["summary"], "proxies": [p["summary"] for p in proxies], "bon": bon, "rl": [],
    }
    _write_outputs(study, result, partial=cfg.rl_steps > 0)  # a long RL sweep leaves the best-of-n results meanwhile
    if cfg.rl_steps > 0:
        with study.timer("RL sweep"):
            by_labels = {p["labels"]: p for p in proxies}
            for count in cfg.rl_proxy_counts:
                for beta in cfg.rl_kl_coefs:
                    result["rl"].append(_rl_run(study, by_labels[count], beta))
                    _write_outputs(study, result, partial=True)
    _write_outputs(study, result, partial=False)
    run.close()  # the trackers: their last rows are written
    print(study_table(result, run.path))
    write_report(run.path)
    return result


def _write_outputs(study: _Study, result: dict, partial: bool) -> None:
    """overopt.json, summary.json and overopt.png of what the study has so far (`partial` while
    RL runs are still to come)."""
    result["stage_seconds"] = dict(study.timer.seconds)
    result["total_seconds"] = round(sum(study.timer.seconds.values()), 2)
    result["partial"] = partial
    result["checks"] = study_checks(result)
    write_json_atomic(study.run.path / "overopt.json", result)
    study.run.write_summary(result)
    save_overopt_figure(result, study.run.path / "overopt.png")


def _label_pairs(study: _Study, policy, tokenizer) -> dict:
    """1. Every pair of each label prompt's base samples with different gold, the higher-gold
    sample chosen; pairs of the last rm_eval_fraction of the prompts held out."""
    cfg, task = study.cfg, study.task
    prompts = task.prompts("train", cfg.label_prompts, seed=cfg.seed)
    k = cfg.label_samples_per_prompt
    expanded = [p for p in prompts for _ in range(k)]
    texts, _ = study.sample(policy, tokenizer, expanded, "sampling label pool", 1)
    gold = task.gold(expanded, texts)
    train, held_out, ties = [], [], 0
    for j, prompt in enumerate(prompts):
        rows = range(j * k, (j + 1) * k)
        for a in rows:
            for b in rows:
                if a >= b:
                    continue
                if gold[a] == gold[b] or texts[a] == texts[b]:
                    ties += 1
                    continue
                win, lose = (a, b) if gold[a] > gold[b] else (b, a)
                pair = PairwiseRecord(prompt=prompt, chosen=texts[win], rejected=texts[lose])
                (held_out if j >= cfg.train_label_prompts else train).append(pair)
    random.Random(cfg.seed).shuffle(train)
    if len(train) < cfg.label_counts[-1]:
        print(f"[rlhfkit] warning: only {len(train)} labelled pairs ({ties} ties left out); "
              f"the proxy of {cfg.label_counts[-1]} labels gets {len(train)}")
    write_jsonl(study.run.path / "preferences.jsonl",
                [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in train])
    return {"train": train, "eval": held_out, "pool": (expanded, texts),
            "summary": {"prompts": len(prompts), "samples_per_prompt": k, "train_pairs": len(train),
                        "held_out_pairs": len(held_out), "ties_left_out": ties,
                        "base_gold_mean": sum(gold) / len(gold)}}


def _train_proxies(study: _Study, labels: dict) -> list[dict]:
    """2. One proxy per label count on the first `count` shuffled pairs, centred on the base pool."""
    cfg = study.cfg
    expanded, texts = labels["pool"]
    proxies = []
    for count in cfg.label_counts:
        rm = load_reward_model(cfg.reward_backbone, device=study.device)
        pairs = labels["train"][:count]
        train_reward_model(rm, pairs, cfg.reward_config(),
                           logger=lambda row, c=count: study.run.log_metrics({"stage": f"proxy_{c}", **row}))
        accuracy = evaluate_pairs(rm, labels["eval"])["accuracy"] if labels["eval"] else None
        offset = rm.center(list(expanded), list(texts))
        shown = "n/a" if accuracy is None else f"{accuracy:.1%}"
        print(f"[rlhfkit] proxy on {len(pairs)} labels: gold-order accuracy {shown} on {len(labels['eval'])} "
              f"held-out pairs; centred by {offset:+.3f}")
        proxies.append({"labels": count, "rm": rm, "summary": {"labels": count, "pairs_used": len(pairs),
                        "gold_order_accuracy": accuracy, "centering_offset": offset}})
    return proxies


def _bon_sweep(study: _Study, policy, tokenizer, proxies: list[dict]) -> dict:
    """3. One pool per held-out prompt; every n estimated from it for each proxy."""
    cfg, task = study.cfg, study.task
    m = cfg.bon_pool
    expanded = [p for p in study.bon_prompts for _ in range(m)]
    texts, _ = study.sample(policy, tokenizer, expanded, "sampling best-of-n pool", 2)
    gold = task.gold(expanded, texts)
    cut = math.sqrt(best_of_n_kl(cfg.bon_extrapolate_n))
    curves = []
    for proxy in proxies:
        scores = proxy["rm"].score(expanded, texts).tolist()
        pools = [(scores[i:i + m], gold[i:i + m]) for i in range(0, len(expanded), m)]
        points = best_of_n_curve(pools, cfg.bon_ns)
        curves.append({"proxy_labels": proxy["labels"], "points": points,
                       "fits": curve_fits(points, "bon", extrapolate_from=cut)})
    return {"prompts": len(study.bon_prompts), "pool": m, "ns": cfg.bon_ns, "extrapolate_from_n": cfg.bon_extrapolate_n,
            "curves": curves}


def _measure(study: _Study, policy, tokenizer, rm, step: int) -> dict:
    """Gold, proxy and KL(π‖π_init) (k1 summed per sequence, nats) on the held-out RL prompts,
    the same sampling seed at every checkpoint."""
    texts, rollouts = study.sample(policy, tokenizer, study.rl_eval_prompts, None, 3)
    prompts = study.rl_eval_prompts
    gold = study.task.gold(prompts, texts)
    proxy = rm.score(list(prompts), texts).tolist()
    kl = sum(sequence_kl(policy, rollouts, study.dtype)) / len(texts)
    return {"step": step, "kl": kl, "d": math.sqrt(max(kl, 0.0)), "gold": sum(gold) / len(gold),
            "proxy": sum(proxy) / len(proxy)}


def _rl_run(study: _Study, proxy: dict, beta: float) -> dict:
    cfg = study.cfg
    rl = cfg.rl_config(beta)
    policy, tokenizer = load_policy(cfg.policy, device=study.device)
    policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      top_layers=cfg.lora_top_layers or None)
    name = f"rl_{proxy['labels']}_beta{beta:g}"
    trainer = OnlineTrainer(policy, tokenizer, reward_model_scorer(proxy["rm"]), rl, compute_dtype=study.dtype,
                            chat=study.task.chat, gold_fn=study.task.gold,
                            logger=lambda s: study.run.log_metrics({"stage": name, **s}))
    prompts = study.task.prompts("train", seed=cfg.seed + 1)
    n = rl.prompts_per_step
    points = [_measure(study, policy, tokenizer, proxy["rm"], 0)]
    start = time.perf_counter()
    for i in range(cfg.rl_steps):
        stats = trainer.step([prompts[(i * n + j) % len(prompts)] for j in range(n)])
        if (i + 1) % cfg.rl_eval_every == 0 or i + 1 == cfg.rl_steps:
            points.append(_measure(study, policy, tokenizer, proxy["rm"], i + 1))
            p = points[-1]
            print(f"[rlhfkit] {name} step {i + 1}: KL {p['kl']:.2f}, gold {p['gold']:+.3f}, proxy {p['proxy']:+.3f} "
                  f"(train score {stats['reward/score_mean']:+.3f})", flush=True)
    middle = points[len(points) // 2]["d"] if len(points) >= 4 else None
    return {"proxy_labels": proxy["labels"], "algo": cfg.algo, "kl_coef": beta, "steps": cfg.rl_steps,
            "seconds": round(time.perf_counter() - start, 1), "points": points,
            "fits": curve_fits(points, "rl", extrapolate_from=middle)}


def _peak(points: list[dict]) -> dict:
    """The measured gold peak of a curve: its d, gold and whether it lies before the last point."""
    best = max(range(len(points)), key=lambda i: points[i]["gold"])
    last = points[-1]
    return {"d": points[best]["d"], "gold": points[best]["gold"], "inside": best < len(points) - 1,
            "gold_drop_after_peak": points[best]["gold"] - last["gold"],
            "proxy_rises_to_the_end": last["proxy"] >= max(p["proxy"] for p in points) - 1e-12}


def study_checks(result: dict) -> dict:
    """What the study is read by (issue 10's "done when"): for the smallest proxy, gold rises then
    flattens or falls while proxy keeps rising; the best-of-n fits' R²; more labels give a
    higher or later gold peak (measured best-of-n peaks, consecutive proxies)."""
    curves = result["bon"]["curves"]
    smallest = curves[0]
    gains = [p["gold"] - smallest["points"][0]["gold"] for p in smallest["points"]]
    peak = _peak(smallest["points"])
    # "flattens": the last doubling of n adds under a fifth of the gold the best point gained
    flattens = len(gains) >= 2 and (gains[-1] - gains[-2]) < 0.2 * max(max(gains), 1e-12)
    peaks = [_peak(c["points"]) for c in curves]
    later_or_higher = [b["gold"] > a["gold"] or b["d"] > a["d"] for a, b in zip(peaks, peaks[1:])]
    checks = {
        "bon_smallest_proxy": {"labels": smallest["proxy_labels"], **peak, "gold_gain_by_n": gains,
                               "gold_flattens_or_falls": peak["inside"] or flattens},
        "bon_gold_r2": {str(c["proxy_labels"]): c["fits"]["gold"].get("r2") for c in curves},
        "bon_peaks": [{"labels": c["proxy_labels"], "d": p["d"], "gold": p["gold"]} for c, p in zip(curves, peaks)],
        "more_labels_higher_or_later_peak": all(later_or_higher) if later_or_higher else None,
    }
    checks["bon_r2_at_least_0.9"] = all(r is not None and r >= 0.9 for r in checks["bon_gold_r2"].values())
    rl = [r for r in result["rl"] if r["proxy_labels"] == smallest["proxy_labels"]]
    if rl:
        checks["rl_smallest_proxy"] = [{"kl_coef": r["kl_coef"], **_peak(r["points"])} for r in rl]
    return checks


def study_table(result: dict, path) -> str:
    """The closing text of a study: each curve's fits and the checks."""
    lines = ["", " | ".join(FIT_HEADER)]
    lines += [" | ".join(row) for row in fit_rows(result)]
    c = result["checks"]
    small = c["bon_smallest_proxy"]
    lines.append(f"\nbest-of-n, smallest proxy ({small['labels']} labels): gold peaks at d {small['d']:.2f} "
                 f"({'before' if small['inside'] else 'at'} the largest n), proxy rises to the end: "
                 f"{small['proxy_rises_to_the_end']}; gold flattens or falls: {small['gold_flattens_or_falls']}")
    lines.append(f"best-of-n gold fits R² ≥ 0.9: {c['bon_r2_at_least_0.9']} ({c['bon_gold_r2']}); "
                 f"more labels → higher or later gold peak: {c['more_labels_higher_or_later_peak']}")
    for r in c.get("rl_smallest_proxy", []):
        lines.append(f"RL β={r['kl_coef']:g}, smallest proxy: gold peaks at d {r['d']:.2f} "
                     f"({'before the end' if r['inside'] else 'at the end'}), proxy rises to the end: {r['proxy_rises_to_the_end']}")
    lines.append("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in result["stage_seconds"].items())
                 + f"; total {result['total_seconds']:.0f}s")
    lines.append(f"run folder: {path}  (overopt.json, overopt.png, report.html, metrics.jsonl)")
    return "\n".join(lines)
