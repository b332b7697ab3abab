"""`rlhfkit data instruct`: labelled rows -> instruction rows (the `data` group itself, with
`validate`, is built in cli/__init__.py)."""

from __future__ import annotations

import argparse
import json

from rlhfkit.config import add_config_arguments, add_config_positional, config_from_args
from rlhfkit.data.config import InstructConfig
from rlhfkit.data.instruct import write_instruct  # no torch: reads and writes text


def _cmd_data_instruct(args: argparse.Namespace) -> int:
    cfg = config_from_args(InstructConfig, args)
    summary = write_instruct(cfg.file, cfg.templates, cfg.output, cfg.templates_per_row, cfg.seed,
                             skip_invalid=cfg.skip_invalid, overwrite=cfg.overwrite)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    labels = ", ".join(f"{label} {n}" for label, n in summary["labels"].items())
    print(f"{summary['output']}: {summary['rows_written']} prompt/completion rows from {summary['rows_read']} labelled "
          f"rows ({labels}) through {summary['templates']} ({summary['template_count']} templates, "
          f"{cfg.templates_per_row or 'all'} per row)")
    for line in summary["skipped"][:20]:
        print(f"  skipped {line}")
    print(f"  train on them: rlhfkit sft --data {summary['output']}")
    return 0


def register_instruct(data_sub) -> None:
    """Add `instruct` to the `data` subcommands."""
    p = data_sub.add_parser(
        "instruct",
        help="turn labelled rows (text, label) into prompt/completion rows through instruction templates",
        description="Each labelled row goes through --templates-per-row instruction templates (a built-in set or a "
        "YAML/JSON file with {text}/{label} placeholders and a label -> words map); the output is an SFT file.",
    )
    add_config_positional(p, "file", InstructConfig)
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, InstructConfig, skip=("file",))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_data_instruct)
