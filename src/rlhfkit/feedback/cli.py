"""`rlhfkit label` and `rlhfkit feedback ...`: AI labels and the human feedback web app.

Thin: parsing and printing only. Only argparse is imported at module level so that
`rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add `label` and `feedback` (serve, add-annotator, import, export, stats) to `rlhfkit`."""
    label = subparsers.add_parser(
        "label",
        help="AI labeler (RLAIF): soft preference labels for pairs from a judge LM",
        description="Label pairs with a judge language model (work in progress).",
    )
    label.set_defaults(func=_not_ready)
    feedback = subparsers.add_parser("feedback", help="human feedback web app: serve, annotators, import, export")
    feedback.set_defaults(func=lambda args: (feedback.print_help(), 2)[1])


def _not_ready(args: argparse.Namespace) -> int:
    from rlhfkit.config import ConfigError

    raise ConfigError("this command is not implemented yet")
