"""Config of `rlhfkit bench` (no torch here): compare's options, over several tasks, with presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from rlhfkit.config import ConfigError
from rlhfkit.pipelines.config import CompareConfig

# What a preset sets (it wins over the flags of the same names; --preset custom takes the flags).
PRESETS: dict[str, dict] = {
    # sized for a laptop CPU with the embedded SmolLM2-135M
    "quick": dict(methods=["ppo", "grpo", "dpo", "best_of_n"], sample_budget=64, batch_size=16,
                  eval_prompts=24, best_of_n=4, ppo_epochs=2),
    "full": dict(methods=["ppo", "reinforce", "rloo", "grpo", "nlpo", "dpo", "best_of_n"], sample_budget=768,
                 batch_size=32, eval_prompts=128, best_of_n=16, ppo_epochs=2),
}


@dataclass
class BenchConfig(CompareConfig):
    """`rlhfkit bench`: `compare` on every task (tasks × methods at one sample budget), then one
    table of gold ± 95% CI per cell with each task's metrics: bench.json and report.html."""

    help_terms: ClassVar[dict[str, str]] = {
        **CompareConfig.help_terms, "task_gold": "unused: see --tasks",
    }

    tasks: list[str] = field(default_factory=lambda: ["sentiment", "summarize", "concepts", "arithmetic"])
    """tasks (the columns of the table): built-in names or task .yaml files"""
    preset: Literal["quick", "full", "custom"] = "quick"
    """quick (ppo, grpo, dpo, best-of-4; 64 samples; 24 prompts) or full (all seven methods; 768 samples; 128 prompts) set the methods, budget, batch and evaluation size and use each task's max_new_tokens; custom takes those flags as given"""
    run_name: str = "bench"

    def __post_init__(self):
        if self.preset != "custom":
            for name, value in PRESETS[self.preset].items():
                setattr(self, name, list(value) if isinstance(value, list) else value)
        if not self.tasks:
            raise ConfigError("--tasks is empty: name at least one task (see `rlhfkit tasks`)")
        super().__post_init__()
