"""The tables runs print: quickstart's base-vs-final summary, compare's method table, rl's
before/after block. Each takes what the run writes to summary.json and returns text."""

from __future__ import annotations


def format_ci(e: dict) -> str:
    """{"mean", "ci_low", "ci_high"} as `+0.123 [+0.100, +0.150]`."""
    return f"{e['mean']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"


def format_kl(k1: float, k3: float | None = None, bound: bool = False) -> str:
    """KL to the reference in nats, named by its estimator: `k1 0.52`; a negative sampled k1
    (the per-sample estimate is unbiased but not a KL) gets the never-negative k3 beside it:
    `k1 -0.08 (k3 0.01)`; best-of-n's analytic bound log n − (n−1)/n: `≤ 2.08 (bound)`."""
    if bound:
        return f"≤ {k1:.2f} (bound)"
    text = f"k1 {k1:.2f}"
    return f"{text} (k3 {k3:.2f})" if k3 is not None and k1 < 0 else text


def format_kl_ci(e: dict, k3: dict | None = None) -> str:
    """A KL mean with its 95% CI, named by estimator: `k1 0.52 [0.40, 0.61]`, and the k3 mean
    beside a negative k1 mean."""
    text = f"k1 {e['mean']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]"
    return f"{text} (k3 {k3['mean']:.2f})" if k3 is not None and e["mean"] < 0 else text


def quickstart_table(summary: dict, path, examples) -> str:
    """Gold and proxy reward of base vs final with CIs, KL, lengths, RM accuracy, stage times,
    the verdict, and `examples` = [(prompt, base, final, gold_base, gold_final)] side by side."""
    ev = summary["evaluation"]
    rows = [
        ("gold reward (VADER)" if summary["task"] == "sentiment" else "gold reward", ev["gold"]),
        ("proxy reward (RM)", ev["proxy"]),
    ]
    lines = ["", f"{'':24s} {'base':>24s} {'final':>24s} {'final − base':>24s}"]
    for name, e in rows:
        lines.append(f"{name:24s} {format_ci(e['base']):>24s} {format_ci(e['final']):>24s} {format_ci(e['improvement']):>24s}")
    kl = format_kl_ci(ev["kl_to_reference"], ev.get("kl_k3_to_reference"))
    lines.append(f"{'KL to reference (nats)':24s} {'0':>24s} {kl:>24s}")
    lines.append(f"{'response tokens':24s} {ev['response_length']['base']:>24.1f} {ev['response_length']['final']:>24.1f}")
    rm = summary["reward_model"]
    lines.append(f"\nreward model held-out accuracy: {rm['eval_accuracy_vs_labels']:.1%} (labels), "
                 f"{rm['eval_accuracy_vs_gold_order']:.1%} (gold order)")
    lines.append("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in summary["stage_seconds"].items())
                 + f"; total {summary['total_seconds']:.0f}s")
    verdict = "beats" if summary["gold_improved"] else "does NOT beat"
    lines.append(f"final policy {verdict} the base policy on gold reward (95% CI of the difference "
                 f"{'excludes' if summary['gold_improved'] else 'includes'} 0)")
    lines.append("\nsamples (base → final):")
    for prompt, b, f, gb, gf in examples:
        lines.append(f"  {prompt}\n    base  [{gb:+.2f}] {b}\n    final [{gf:+.2f}] {f}")
    lines.append(f"\nrun folder: {path}  (summary.json, metrics.jsonl, samples.jsonl, checkpoints/final)")
    return "\n".join(lines)


def compare_table(rows: list[dict]) -> str:
    """The markdown table of `rlhfkit compare`: one row per method."""
    lines = ["| method | gold reward (95% CI) | KL to ref (nats) | distinct-2 | train samples | wall time (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        kl = format_kl(r["kl_to_reference"], r.get("kl_k3_to_reference"), bound=r.get("kl_is_bound", False))
        samples = f"{r['train_samples']}" + (f" (+{r['inference_samples_per_query']}/query)" if "inference_samples_per_query" in r else "")
        lines.append(f"| {r['method']} | {format_ci(r['gold'])} | {kl} | {r['distinct_2']:.3f} | {samples} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def before_after_table(summary: dict, path) -> str:
    """`rlhfkit rl`'s closing block: reward (and gold) before and after training, distinct-2, KL."""
    before, after = summary.get("before"), summary.get("after")
    lines = []
    if after:
        lines.append(f"\n{'':16s} {'before':>24s} {'after':>24s}")
        for key in ("reward", "gold"):
            if key in after:
                lines.append(f"{key:16s} {format_ci(before[key]) if before else '':>24s} {format_ci(after[key]):>24s}")
        lines.append(f"{'distinct-2':16s} {before['distinct_2'] if before else float('nan'):>24.3f} {after['distinct_2']:>24.3f}")
        kl = format_kl(after["kl_to_reference"], after.get("kl_k3_to_reference"))
        lines.append(f"{'KL to reference':16s} {'0':>24s} {kl:>24s}")
    lines.append(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f}s; run folder {path}")
    return "\n".join(lines)


def kl_control_line(block: dict) -> str:
    """One line from a run's `kl_control` block (trainers.online.kl_control_summary)."""
    def nats(x):
        return "n/a" if x is None else f"{x:.2f}"

    where = "held-out" if block.get("achieved_held_out") is not None else f"last {block['achieved_train_steps']} steps"
    coef = f"β {block['initial_coef']:.3g} → {block['final_coef']:.3g}"
    if block.get("target") is None:
        return f"KL control: fixed {coef}; KL {nats(block['achieved'])} nats ({where})"
    verdict = "within" if block["within_25pct"] else "OUTSIDE"
    return (f"KL control ({block['controller']}): target {block['target']:.2f} nats, achieved {nats(block['achieved'])} "
            f"({where}; training {nats(block['achieved_train'])}), {verdict} ±25%; {coef}")
