"""`rlhfkit serve MODEL`: an OpenAI-compatible server for a local model (generation/serve.py).

Thin: argparse and the torch-free config only at module level, so `rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse

from rlhfkit.config import add_config_arguments, add_config_positional, config_from_args
from rlhfkit.generation.config import ServeConfig

EPILOG = """\
endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions,
POST /v1/load_weights {"path": FOLDER} (serve the weights saved there; RL with
--rollout-backend openai pushes its policy this way after each update), GET /health.

examples:
  rlhfkit serve --port 8000
  curl -s http://127.0.0.1:8000/v1/completions -d '{"prompt": "The movie was", "max_tokens": 8, "temperature": 0}'
  rlhfkit generate --prompts task:sentiment --rollout-backend openai --base-url http://127.0.0.1:8000/v1
  rlhfkit label --pairs pairs.jsonl --judge http://127.0.0.1:8000/v1
"""


def _run(args: argparse.Namespace) -> int:
    # torch loads only when the server starts
    from rlhfkit.generation.serve import run_serve

    run_serve(config_from_args(ServeConfig, args))
    return 0


def register(subparsers) -> None:
    """Add `serve` to the top-level `rlhfkit` subparsers."""
    parser = subparsers.add_parser(
        "serve", help="an OpenAI-compatible HTTP server for a local model (completions, chat, logprobs, weight reload)",
        description="Serve MODEL on the project's sampler with OpenAI's /v1/completions and /v1/chat/completions "
        "(log-probs included), so the judge, evaluation and the openai rollout backend can use it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_positional(parser, "model", ServeConfig)
    parser.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(parser, ServeConfig, skip=("model",))
    parser.set_defaults(func=_run)
