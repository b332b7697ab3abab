"""`rlhfkit compare`: several alignment methods on one built-in task at matched sample budgets.

Every training method may draw `sample_budget` samples from its policy: the online methods as
steps × batch, DPO as pairs sampled from the base policy (2 per pair) and labelled by the gold
scorer. Best-of-n costs n samples per query at inference and nothing in training. Each trained
policy is then sampled once per held-out prompt, and the table reports gold reward ± 95% CI,
KL to the reference (best-of-n: the bound log n − (n−1)/n), distinct-2 and wall time.
"""

from __future__ import annotations

import time

import torch

from rlhfkit.config import ConfigError
from rlhfkit.evaluation.leaderboard import format_leaderboard, gold_rankings
from rlhfkit.evaluation.policy_eval import evaluate_samples, sample_policy, sequence_kl_estimates
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.tables import compare_table, format_kl, kl_control_line
from rlhfkit.evaluation.winrate import format_win_rate_line
from rlhfkit.generation.sampling import SamplingParams, best_of_n, best_of_n_kl_bound
from rlhfkit.models import add_lora, load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.pipelines.config import CompareConfig
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.tasks import get_task
from rlhfkit.trainers.config import ALGORITHMS, DPOConfig
from rlhfkit.trainers.dpo import train_dpo
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary
from rlhfkit.types import PairwiseRecord


def _online(cfg: CompareConfig, method: str, task, device, dtype, train_prompts, log):
    policy, tokenizer = load_policy(cfg.policy, device=device)
    policy = add_lora(policy)
    rl = cfg.rl_config(method)
    trainer = OnlineTrainer(policy, tokenizer, task.gold, rl, compute_dtype=dtype, chat=task.chat,
                            logger=lambda s: log({"method": method, **s}))
    history = trainer.train(train_prompts)
    return policy, tokenizer, rl.steps * rl.batch_size, lambda held_out_kl: kl_control_summary(trainer, history, held_out_kl)


def _dpo(cfg: CompareConfig, task, device, dtype, train_prompts, log):
    policy, tokenizer = load_policy(cfg.policy, device=device)
    n_pairs = cfg.sample_budget // 2
    prompts = [p for p in train_prompts[:n_pairs] for _ in range(2)]
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    texts, _ = sample_policy(policy, tokenizer, prompts, cfg.max_new_tokens, "sampling DPO pairs", chat=task.chat,
                             compute_dtype=dtype, generator=gen)
    gold = task.gold(prompts, texts)
    pairs = []
    for i in range(0, len(texts), 2):
        if gold[i] != gold[i + 1] and texts[i] != texts[i + 1]:
            win, lose = (i, i + 1) if gold[i] > gold[i + 1] else (i + 1, i)
            pairs.append(PairwiseRecord(prompt=prompts[i], chosen=texts[win], rejected=texts[lose]))
    dpo_cfg = DPOConfig(data="(in memory)", loss="dpo", epochs=2, batch_size=16, micro_batch_size=16,
                        learning_rate=cfg.dpo_learning_rate, max_grad_norm=cfg.max_grad_norm, lora=True, seed=cfg.seed, save_merged=False,
                        chat="yes" if task.chat else "no", max_prompt_tokens=64, max_response_tokens=cfg.max_new_tokens + 4)
    result = train_dpo(policy, tokenizer, pairs, dpo_cfg, logger=lambda s: log({"method": "dpo", **s}), compute_dtype=dtype)
    return result["policy"], tokenizer, len(texts)


def run_compare(cfg: CompareConfig) -> dict:
    device = resolve_device(cfg.device)  # a missing device, model or task fails before a run folder is made
    resolve_policy_path(cfg.policy)
    try:
        task = get_task(cfg.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    torch.manual_seed(cfg.seed)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite)
    run.save_config(cfg)
    dtype = resolve_precision(cfg.precision, device)
    train_prompts = task.prompts("train", seed=cfg.seed)
    eval_prompts = task.prompts("test", cfg.eval_prompts, seed=cfg.seed)
    scorers = {"gold": task.gold}
    rows = []
    texts_by_method: dict[str, list[str]] = {}

    def evaluate(name, policy, tokenizer, seconds, samples, has_adapter=True):
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        texts, rollouts = sample_policy(policy, tokenizer, eval_prompts, cfg.max_new_tokens, f"evaluating {name}",
                                        chat=task.chat, compute_dtype=dtype, generator=gen)
        metrics = evaluate_samples(eval_prompts, texts, scorers, cfg.seed)
        kl = sequence_kl_estimates(policy, rollouts, dtype) if has_adapter else {"k1": [0.0], "k3": [0.0]}
        row = {"method": name, **metrics, "kl_to_reference": sum(kl["k1"]) / len(kl["k1"]),
               "kl_k3_to_reference": sum(kl["k3"]) / len(kl["k3"]), "train_samples": samples, "seconds": round(seconds, 1)}
        rows.append(row)
        texts_by_method[name] = texts
        run.log_samples([{"method": name, "prompt": p, "response": r} for p, r in zip(eval_prompts, texts)])
        run.log_metrics({"stage": "compare", **row})
        print(f"[rlhfkit] {name}: gold {metrics['gold']['mean']:+.3f}, "
              f"KL {format_kl(row['kl_to_reference'], row['kl_k3_to_reference'])}, {seconds:.0f}s")

    base, tokenizer = load_policy(cfg.policy, device=device)
    evaluate("base", base, tokenizer, 0.0, 0, has_adapter=False)
    for method in cfg.methods:
        start = time.perf_counter()
        if method in ALGORITHMS:
            policy, tok, samples, kl_control = _online(cfg, method, task, device, dtype, train_prompts, run.log_metrics)
            evaluate(method, policy, tok, time.perf_counter() - start, samples)
            rows[-1]["kl_control"] = kl_control(rows[-1]["kl_to_reference"])
        elif method == "dpo":
            policy, tok, samples = _dpo(cfg, task, device, dtype, train_prompts, run.log_metrics)
            evaluate("dpo", policy, tok, time.perf_counter() - start, samples)
        else:  # best_of_n: a policy built at inference time from the base model and the gold scorer
            params = SamplingParams(strategy="sample", max_new_tokens=cfg.max_new_tokens)
            texts, _ = best_of_n(base, tokenizer, eval_prompts, cfg.best_of_n, task.gold, params, chat=task.chat,
                                 compute_dtype=dtype, generator=torch.Generator(device=device).manual_seed(cfg.seed + 1))
            metrics = evaluate_samples(eval_prompts, texts, scorers, cfg.seed)
            row = {"method": f"best_of_{cfg.best_of_n}", **metrics, "kl_to_reference": best_of_n_kl_bound(cfg.best_of_n),
                   "kl_is_bound": True, "train_samples": 0, "inference_samples_per_query": cfg.best_of_n,
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            texts_by_method[row["method"]] = texts
            run.log_samples([{"method": row["method"], "prompt": p, "response": r} for p, r in zip(eval_prompts, texts)])
    summary = {"task": task.name, "policy": cfg.policy, "sample_budget": cfg.sample_budget, "eval_prompts": len(eval_prompts),
               "device": str(device), "precision": str(dtype).replace("torch.", ""), "rows": rows,
               **gold_rankings(eval_prompts, texts_by_method, task.gold, cfg.seed)}
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    print()
    print(compare_table(rows))
    print("\n".join(f"{r['method']}: {kl_control_line(r['kl_control'])}" for r in rows if "kl_control" in r))
    print()
    print("\n".join(format_win_rate_line(w) for w in summary["win_rates"]))
    if summary["leaderboard"]:
        board = summary["leaderboard"]
        print(f"\nleaderboard of every method ({board['judge']} judge, {board['battles']} battles): Bradley–Terry "
              f"ratings on the Elo scale with {board['bootstrap_resamples']}-resample bootstrap 95% CIs")
        print(format_leaderboard(board))
    print(f"\nrun folder: {run.path}")
    write_report(run.path)
    return summary


