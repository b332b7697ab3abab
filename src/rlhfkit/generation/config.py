"""Config of `rlhfkit serve` (torch-free: the CLI parser imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rlhfkit.config import ComputeOptions, ConfigError


@dataclass
class ServeConfig(ComputeOptions):
    """An OpenAI-compatible HTTP server (/v1/models, /v1/completions, /v1/chat/completions,
    /v1/load_weights) for a local model, on the project's sampler."""

    help_terms: ClassVar[dict[str, str]] = {"models": "the served model"}
    help_defaults: ClassVar[dict[str, str]] = {"served_model_name": "MODEL as given"}
    limits: ClassVar[dict[str, str]] = {"port": "[0, 65535]", "max_tokens": ">= 1", "max_batch": ">= 1"}

    model: str = "smollm2-135m-instruct"
    """model to serve: the embedded default, an HF id, a local folder, a .gguf file or an rlhfkit checkpoint"""
    host: str = "127.0.0.1"
    """address to listen on (127.0.0.1: this machine only; the server has no authentication)"""
    port: int = 8000
    """port to listen on (0: any free port, printed at start)"""
    served_model_name: str = ""
    """the model id that /v1/models lists and requests name"""
    max_tokens: int = 512
    """most tokens one completion may ask for (also the default max_tokens of chat requests; completions default to 16, as OpenAI's)"""
    max_batch: int = 64
    """most sequences (prompts × n) sampled in one batch; larger requests are split"""
    access_log: bool = False
    """print one line per request on stderr"""

    def __post_init__(self):
        if not self.model:
            raise ConfigError("give the MODEL to serve (the embedded default, a folder, an HF id or a .gguf file)")
