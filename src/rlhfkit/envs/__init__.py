"""Multi-turn environments: an episode is the policy talking to a simulated user or a tool
(base.py: the interface); built-ins `calculator` and `dialogue`; user classes by
`module:Class` or `file.py:Class` (registry.py)."""

from rlhfkit.envs.base import Environment, StepResult, as_step_result
from rlhfkit.envs.registry import BUILTIN_ENVS, env_rows, load_env_class

__all__ = ["BUILTIN_ENVS", "Environment", "StepResult", "as_step_result", "env_rows", "load_env_class"]
