"""Config of `rlhfkit generate` (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import ConfigError


@dataclass
class GenerationConfig:
    """Sample responses for a file of prompts."""

    model: str = "smollm2-135m-instruct"
    """the embedded default, an HF id, a local folder or a .gguf file"""
    prompts: str = ""
    """prompt file (JSONL/CSV/Parquet/saved dataset with a 'prompt' column), or task:NAME for a built-in task's test prompts"""
    output: str = "generations.jsonl"
    """where to write one JSON line per response"""
    strategy: Literal["greedy", "sample", "top_k", "top_p", "beam"] = "top_p"
    """how to pick tokens"""
    temperature: float = 1.0
    """softmax temperature (sampling strategies)"""
    top_k: int = 50
    """keep the k most likely tokens (strategy top_k)"""
    top_p: float = 0.9
    """keep the smallest set of tokens with this much probability (strategy top_p)"""
    num_beams: int = 4
    """beams per prompt (strategy beam)"""
    length_penalty: float = 1.0
    """beam score = summed log-prob / length**length_penalty"""
    max_new_tokens: int = 64
    """longest response"""
    policy: Literal["sample", "best_of_n"] = "sample"
    """sample: the model itself; best_of_n: draw --n candidates per prompt and keep the one --reward scores best"""
    n: int = 1
    """responses per prompt (policy sample), or candidates per prompt (policy best_of_n)"""
    reward: str = ""
    """reward for best_of_n: vader, length, task:NAME (a task's gold scorer), a saved reward-model folder, or a weighted mix 'A=1,B=0.5'"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap prompts in the model's chat template (auto: when it has one)"""
    batch_size: int = 16
    """prompts per generation batch"""
    limit: int = 0
    """use only the first N prompts (0: all)"""
    seed: int = 0
    """random seed"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision"""
    skip_invalid: bool = False
    """skip bad prompt rows (reported) instead of stopping"""

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("--prompts is required: a prompt file, or task:sentiment for built-in prompts")
        if self.policy == "best_of_n" and not self.reward:
            raise ConfigError("--policy best_of_n needs --reward (vader, task:NAME, a saved reward-model folder, or a mix)")
        if self.n < 1:
            raise ConfigError("--n must be at least 1")
