"""`rlhfkit bench` (argparse only at module level: --help stays instant)."""

from __future__ import annotations

from rlhfkit.config import add_config_command
from rlhfkit.pipelines.bench_config import BenchConfig


def register(subparsers) -> None:
    add_config_command(
        subparsers, "bench", BenchConfig, "rlhfkit.pipelines.bench:run_bench",
        help="the GRUE-style table: tasks × methods at one sample budget, gold ± 95%% CI and each task's metrics",
        description="Runs `compare` on every task (--preset quick|full, or custom with compare's flags) and writes "
        "bench.json, report.html and a Markdown table (rows: methods; columns: tasks).",
    )
