"""`rlhfkit report RUN_DIR`: (re)build a run folder's report.html (argparse only at module level)."""

from __future__ import annotations

from rlhfkit.evaluation.report import build_report


def _cmd_report(args) -> int:
    for folder in args.run_dir:
        print(f"[rlhfkit] report: {build_report(folder)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="(re)build report.html of run folders, also of a run still in progress",
        description="Read a run folder's config.yaml, metrics.jsonl, summary.json and samples and write one "
        "self-contained report.html (plots embedded, also saved under plots/) that opens offline.")
    p.add_argument("run_dir", nargs="+", help="run folder(s), e.g. runs/quickstart")
    p.set_defaults(func=_cmd_report)
