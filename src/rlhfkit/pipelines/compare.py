"""`rlhfkit compare`: several alignment methods on one built-in task at matched sample budgets.

Every training method may draw `sample_budget` samples from its policy: the online methods as
steps × batch, DPO as pairs sampled from the base policy (2 per pair) and labelled by the gold
scorer, ILQL as responses sampled from the base policy (one each) and scored by the gold scorer,
learnt offline. Best-of-n costs n samples per query at inference and nothing in training. Each trained
policy is then sampled once per held-out prompt, and the table reports gold reward ± 95% CI,
KL to the reference (best-of-n: the bound log n − (n−1)/n; ILQL: its perturbed-logit decoding
against the base model), distinct-2 and wall time.

Each method is a stage of the run (stages.json) on its own seed: with --resume the finished
methods' rows and samples are kept and the unfinished one continues from its checkpoint
(checkpoints/<method>/).
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
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.config import OFFLINE_METHODS, CompareConfig
from rlhfkit.pipelines.run_dir import RunDir, Stages
from rlhfkit.tasks import get_task
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.config import ALGORITHMS, DPOConfig, ILQLConfig
from rlhfkit.trainers.dpo import train_dpo
from rlhfkit.trainers.ilql import train_ilql
from rlhfkit.trainers.online import kl_control_summary
from rlhfkit.trainers.online_dpo import make_online_trainer
from rlhfkit.types import PairwiseRecord, ScoredRecord


def _online(cfg: CompareConfig, method: str, task, device, dtype, train_prompts, log, checkpointer: Checkpointer):
    policy, tokenizer = load_policy(cfg.policy, device=device)
    policy = add_lora(policy)
    rl = cfg.rl_config(method)
    trainer = make_online_trainer(policy, tokenizer, task.gold, rl, compute_dtype=dtype, chat=task.chat,
                                  logger=lambda s: log({"method": method, **s}))
    if cfg.resume:
        trainer.load_checkpoint(checkpointer)
    history = trainer.train(train_prompts, checkpointer=checkpointer)
    return policy, tokenizer, rl.steps * rl.batch_size, lambda held_out_kl: kl_control_summary(trainer, history, held_out_kl)


def _dpo(cfg: CompareConfig, task, device, dtype, train_prompts, log, checkpointer: Checkpointer, loss: str = "dpo"):
    """An offline preference method (dpo, or the reference-free simpo, orpo, cpo with their published
    defaults) on pairs of base-policy samples labelled by the gold scorer."""
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
    dpo_cfg = DPOConfig(data="(in memory)", loss=loss, epochs=2, batch_size=16, micro_batch_size=16,
                        learning_rate=cfg.dpo_learning_rate, max_grad_norm=cfg.max_grad_norm, lora=True, seed=cfg.seed, save_merged=False,
                        chat="yes" if task.chat else "no", max_prompt_tokens=64, max_response_tokens=cfg.max_new_tokens + 4)
    result = train_dpo(policy, tokenizer, pairs, dpo_cfg, logger=lambda s: log({"method": loss, **s}), compute_dtype=dtype,
                       checkpointer=checkpointer, resume=cfg.resume)
    return result["policy"], tokenizer, len(texts)


def _ilql(cfg: CompareConfig, task, device, dtype, train_prompts, log, checkpointer: Checkpointer):
    """ILQL on `sample_budget` base-policy samples (one per training prompt, cycling), each scored
    by the gold scorer — the reward the online methods optimise. trlx's defaults except the target
    heads: its α = 0.001 every 5 steps would move them about 1% in compare's few dozen steps (the
    decoding would be the behaviour-cloned LM alone), so here α = 0.1 after every step."""
    policy, tokenizer = load_policy(cfg.policy, device=device)
    prompts = [train_prompts[i % len(train_prompts)] for i in range(cfg.sample_budget)]
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    texts, _ = sample_policy(policy, tokenizer, prompts, cfg.max_new_tokens, "sampling ILQL data", chat=task.chat,
                             compute_dtype=dtype, generator=gen)
    records = [ScoredRecord(p, t, float(g)) for p, t, g in zip(prompts, texts, task.gold(prompts, texts))]
    ilql_cfg = ILQLConfig(data="(in memory)", epochs=2, batch_size=16, micro_batch_size=16,
                          learning_rate=cfg.ilql_learning_rate, max_grad_norm=cfg.max_grad_norm, lora=True, seed=cfg.seed,
                          save_merged=False, alpha=0.1, steps_for_target_q_sync=1, chat="yes" if task.chat else "no",
                          max_prompt_tokens=64, max_response_tokens=cfg.max_new_tokens + 4)
    result = train_ilql(policy, tokenizer, records, ilql_cfg, logger=lambda s: log({"method": "ilql", **s}),
                        compute_dtype=dtype, checkpointer=checkpointer, resume=cfg.resume)
    return result["policy"], tokenizer, len(texts)


def run_compare(cfg: CompareConfig) -> dict:
    device = resolve_device(cfg.device)  # a missing device, model or task fails before a run folder is made
    resolve_policy_path(cfg.policy)
    try:
        task = get_task(cfg.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    apply_task_defaults(cfg, task)
    run = RunDir(cfg.output_dir, cfg.run_name, overwrite=cfg.overwrite, resume=cfg.resume)
    run.save_config(cfg)
    stages = Stages(run, cfg.resume)
    if stages.done:
        print(f"[rlhfkit] resuming: finished methods kept ({', '.join(stages.done)})")
    dtype = resolve_precision(cfg.precision, device)
    train_prompts = task.prompts("train", seed=cfg.seed)
    eval_prompts = task.prompts("test", cfg.eval_prompts, seed=cfg.seed)
    rows = []
    texts_by_method: dict[str, list[str]] = {}
    base = None
    for index, method in enumerate(["base", *cfg.methods]):
        saved = stages.result(method)
        if saved is None:
            checkpointer = run.checkpointer(cfg.checkpoint_every, method, stages.start_sizes())
            if checkpointer.latest() is None:
                stages.begin()  # else its checkpoint cuts the logs back to where it was written
            torch.manual_seed(cfg.seed + index)  # each method on its own seed: a resumed run equals the whole one
            if base is None:
                base, tokenizer = load_policy(cfg.policy, device=device)
            start = time.perf_counter()
            saved = _method(cfg, method, task, device, dtype, train_prompts, eval_prompts, run, base, tokenizer,
                            checkpointer)
            saved["row"]["seconds"] = round(time.perf_counter() - start, 1)
            row = saved["row"]
            if "kl_is_bound" not in row:
                run.log_metrics({"stage": "compare", **row})
                print(f"[rlhfkit] {row['method']}: gold {row['gold']['mean']:+.3f}, "
                      f"KL {format_kl(row['kl_to_reference'], row['kl_k3_to_reference'])}, {row['seconds']:.0f}s")
            stages.finish(method, saved)
        rows.append(saved["row"])
        texts_by_method[saved["row"]["method"]] = saved["texts"]
    return _summarise(cfg, run, task, device, dtype, eval_prompts, rows, texts_by_method)


def _method(cfg: CompareConfig, method: str, task, device, dtype, train_prompts, eval_prompts, run: RunDir, base,
            tokenizer, checkpointer: Checkpointer) -> dict:
    """Train (or build) one method's policy and evaluate it: {"row": its table row, "texts": its samples}."""
    scorers = {"gold": task.gold}

    def evaluate(name, policy, tokenizer, samples, has_adapter=True, reference=None):
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        texts, rollouts = sample_policy(policy, tokenizer, eval_prompts, cfg.max_new_tokens, f"evaluating {name}",
                                        chat=task.chat, compute_dtype=dtype, generator=gen)
        metrics = evaluate_samples(eval_prompts, texts, scorers, cfg.seed)
        kl = sequence_kl_estimates(policy, rollouts, dtype, reference) if has_adapter else {"k1": [0.0], "k3": [0.0]}
        return {"row": {"method": name, **metrics, "kl_to_reference": sum(kl["k1"]) / len(kl["k1"]),
                        "kl_k3_to_reference": sum(kl["k3"]) / len(kl["k3"]), "train_samples": samples},
                "texts": texts}

    if method == "base":
        result = evaluate("base", base, tokenizer, 0, has_adapter=False)
    elif method in ALGORITHMS:
        policy, tok, samples, kl_control = _online(cfg, method, task, device, dtype, train_prompts, run.log_metrics, checkpointer)
        result = evaluate(method, policy, tok, samples)
        result["row"]["kl_control"] = kl_control(result["row"]["kl_to_reference"])
    elif method == "ilql":  # the decoding policy is no LoRA model: the base model is the reference
        trained = _ilql(cfg, task, device, dtype, train_prompts, run.log_metrics, checkpointer)
        result = evaluate(method, *trained, reference=base)
    elif method in OFFLINE_METHODS:
        result = evaluate(method, *_dpo(cfg, task, device, dtype, train_prompts, run.log_metrics, checkpointer, method))
    else:  # best_of_n: a policy built at inference time from the base model and the gold scorer
        params = SamplingParams(strategy="sample", max_new_tokens=cfg.max_new_tokens)
        texts, _ = best_of_n(base, tokenizer, eval_prompts, cfg.best_of_n, task.gold, params, chat=task.chat,
                             compute_dtype=dtype, generator=torch.Generator(device=device).manual_seed(cfg.seed + 1))
        result = {"row": {"method": f"best_of_{cfg.best_of_n}", **evaluate_samples(eval_prompts, texts, scorers, cfg.seed),
                          "kl_to_reference": best_of_n_kl_bound(cfg.best_of_n), "kl_is_bound": True, "train_samples": 0,
                          "inference_samples_per_query": cfg.best_of_n},
                  "texts": texts}
    run.log_samples([{"method": result["row"]["method"], "prompt": p, "response": r} for p, r in zip(eval_prompts, result["texts"])])
    return result


def _summarise(cfg: CompareConfig, run: RunDir, task, device, dtype, eval_prompts, rows, texts_by_method) -> dict:
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
