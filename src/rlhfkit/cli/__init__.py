"""`rlhfkit <command>`: parse options into a config dataclass, call the library, print.

Thin on purpose: no algorithm lives here. Heavy imports (torch, transformers) happen inside the
command functions so that `rlhfkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from rlhfkit.cli.processes import quiet_other_processes
from rlhfkit.config import (
    ConfigError,
    add_config_arguments,
    add_config_command,
    add_config_positional,
    config_from_args,
)
from rlhfkit.cli.data import register_instruct
from rlhfkit.data.config import ValidateConfig
from rlhfkit.data.loaders import load_records
from rlhfkit.data.schemas import DataError
from rlhfkit.generation.openai_client import EndpointError
from rlhfkit.pipelines.config import GenerationConfig, QuickstartConfig

# Rooms that define their own commands (kept import-light: argparse only at module level).
COMMAND_MODULES = [
    "rlhfkit.cli.train",  # sft, dpo, gkd, ilql
    "rlhfkit.cli.rm",  # rm
    "rlhfkit.cli.rl",  # rl, compare
    "rlhfkit.cli.feedback",  # label, feedback
    "rlhfkit.cli.gridworld",  # gridworld
    "rlhfkit.cli.eval",  # eval sample|winrate|leaderboard|metrics
    "rlhfkit.cli.report",  # report
    "rlhfkit.cli.overopt",  # overopt fit|run
    "rlhfkit.cli.tasks",  # tasks
    "rlhfkit.cli.bench",  # bench
    "rlhfkit.cli.serve",  # serve
    "rlhfkit.cli.loops",  # rft, iterate, pareto
]


def _cmd_data_validate(args: argparse.Namespace) -> int:
    cfg = config_from_args(ValidateConfig, args)
    result = load_records(cfg.file, cfg.kind, skip_invalid=cfg.skip_invalid, split=cfg.split or None)
    report = {
        "file": str(cfg.file),
        "kind": cfg.kind,
        "valid_rows": len(result.records),
        "skipped_rows": len(result.skipped),
        "unused_fields": result.unused_fields,
    }
    if args.json:
        report["skipped"] = [{"row": s.row, "field": s.field, "reason": s.reason} for s in result.skipped]
        print(json.dumps(report, indent=2))
    else:
        print(f"{cfg.file}: {len(result.records)} valid {cfg.kind} rows", end="")
        print(f", {len(result.skipped)} skipped" if result.skipped else "")
        for s in result.skipped[:20]:
            print(f"  skipped {s}")
        if len(result.skipped) > 20:
            print(f"  ... and {len(result.skipped) - 20} more")
        if result.unused_fields:
            print(f"  ignored fields ({cfg.kind} rows do not read them): "
                  + ", ".join(f"'{name}' ({n} rows)" for name, n in result.unused_fields.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhfkit",
        description="Align language models with human and AI preferences (RLHF / RLAIF), end to end.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_config_command(
        sub, "quickstart", QuickstartConfig, "rlhfkit.pipelines.quickstart:run_quickstart",
        help="the whole RLHF loop on the embedded default: sample, label, reward model, PPO, evaluate",
        description="Sample pairs from the base policy, label them with a simulated human (gold scorer), "
        "train a reward model, run PPO with LoRA against it, and compare base vs final policy on held-out prompts.",
    )
    add_config_command(
        sub, "generate", GenerationConfig, "rlhfkit.pipelines.generate:run_generate",
        help="sample responses for a file of prompts and write JSONL",
        description="Batched sampling (greedy, temperature, top-k, top-p, beam, best-of-n) with the KV cache.",
    )

    p = sub.add_parser("data", help="inspect and validate data files")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    v = data_sub.add_parser(
        "validate",
        help="check a JSONL/CSV/Parquet file or saved HF dataset against a record kind",
        description="Reads every row and reports the first bad one (file, row, field), or with "
        "--skip-invalid counts and lists the skipped rows.",
    )
    add_config_positional(v, "file", ValidateConfig)
    v.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(v, ValidateConfig, skip=("file",))
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=_cmd_data_validate)
    register_instruct(data_sub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    # Commands defined next to their room: each module exposes `register(subparsers)`.
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os
    import warnings

    # peft calls a transformers property renamed in 5.x; nothing for a user to act on.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # transformers draws a "Loading weights" bar for every model it loads (a second's flicker, read
    # through huggingface_hub's switch); our own stages have their bars. Set it to 0 to see them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # several processes (accelerate launch, torchrun): the first one prints and draws the bars
    quiet_other_processes()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, FileExistsError, FileNotFoundError) as err:
        # FileNotFoundError covers ModelNotFoundError (a model name or path that resolves to nothing)
        print(f"rlhfkit: error: {err}", file=sys.stderr)
        return 2
    except EndpointError as err:
        # an OpenAI-compatible server (--rollout-backend openai) that is down or refused a request
        print(f"rlhfkit: error: {err}", file=sys.stderr)
        return 1
    except FloatingPointError as err:
        # trainers.common.NonFiniteError: a NaN/inf reward, loss or gradient stopped training
        # before the weights were touched (not imported here: it would pull in torch)
        print(f"rlhfkit: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rlhfkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
