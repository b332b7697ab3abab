"""`rlhfkit overopt fit | run`: reward over-optimization (Gao et al. 2023). argparse only at
module level: --help stays instant."""

from __future__ import annotations

import argparse
import json

from rlhfkit.config import add_config_command
from rlhfkit.pipelines.overopt_config import OveroptConfig

OVEROPT_EPILOG = """\
examples:
  rlhfkit overopt fit --points points.jsonl --form bon        # rows {"d": 0.8, "score": 0.31} or {"kl": 2.1, "score": ...}
  rlhfkit overopt run --label-counts 100,400 --rl-steps 12    # the synthetic gold–proxy study on the embedded default
"""


def _cmd_fit(args: argparse.Namespace) -> int:
    # function-local: evaluation.overopt imports algorithms/, hence torch (kept off the --help path)
    from rlhfkit.evaluation.overopt import fit_points, load_points

    d, score = load_points(args.points)
    result = fit_points(d, score, args.form)
    keys = ("alpha", "beta", "r2", "d_peak", "score_peak")
    if args.json:
        print(json.dumps({**{k: result[k] for k in keys}, "form": args.form, "n_points": result["n_points"],
                          "recentred_by": result["recentred_by"]}))
        return 0
    shape = "d(α − βd)" if args.form == "bon" else "d(α − β log d)"
    peak = "no peak (β ≤ 0: the fitted score keeps rising)" if result["d_peak"] is None else (
        f"peak at d* = {result['d_peak']:.3f} (KL {result['d_peak'] ** 2:.3f} nats), R* = {result['score_peak']:.4f}")
    print(f"R(d) = {shape} on {result['n_points']} points (scores recentred by {result['recentred_by']:+.4f}): "
          f"α = {result['alpha']:.4f}, β = {result['beta']:.4f}, R² = {result['r2']:.4f}; {peak}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "overopt", help="reward over-optimization: fit Gao et al.'s forms, or run the synthetic gold–proxy study",
        description="Gold and proxy reward against d = sqrt(KL) for best-of-n and RL, fitted with "
        "R(d) = d(α − βd) (best-of-n) and R(d) = d(α − β log d) (RL).",
        epilog=OVEROPT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="overopt_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    fit = sub.add_parser(
        "fit", help="least-squares fit of a functional form to your (d or kl, score) points",
        description="Reads rows with `d` (= sqrt(KL)) or `kl` (nats), and `score`; scores are recentred on the "
        "mean score of the rows at d = 0 when there are any. Prints alpha, beta, r2, d_peak, score_peak.")
    fit.add_argument("--points", required=True, help="JSONL/JSON/CSV/Parquet file of points")
    fit.add_argument("--form", required=True, choices=["bon", "rl"], help="bon: d(α − βd); rl: d(α − β log d)")
    fit.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    fit.set_defaults(func=_cmd_fit)
    add_config_command(
        sub, "run", OveroptConfig, "rlhfkit.pipelines.overopt:run_overopt",
        help="the synthetic gold–proxy study: proxies on several label counts, best-of-n and RL sweeps, fits",
        description="The task's gold scorer labels pairs of base-policy samples (higher gold wins); a proxy reward "
        "model is trained on each label count; best-of-n (one pool per prompt, unbiased estimator) and RL against "
        "each proxy are measured in gold, proxy and KL; writes overopt.json, overopt.png and report.html.")
