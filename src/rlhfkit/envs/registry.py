"""The built-in environments by name, and user environments named on the command line as
`my_module:MyEnv` or `path/to/file.py:MyEnv`. Every mistake (no such module, file, class, or a
class without reset/step) is one ConfigError line."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from rlhfkit.config import ConfigError
from rlhfkit.envs.calculator import CalculatorEnv
from rlhfkit.envs.dialogue import DialogueEnv

BUILTIN_ENVS = {"calculator": CalculatorEnv, "dialogue": DialogueEnv}


def _module(source: str, spec: str):
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"--env {spec}: no file {source}")
        name = f"rlhfkit_user_env_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's file failed to import: say where, in one line
            raise ConfigError(f"--env {spec}: importing {source} failed: {type(err).__name__}: {err}") from None
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as err:
        raise ConfigError(f"--env {spec}: no module named {err.name!r} (give module:Class or file.py:Class)") from None


def load_env_class(spec: str) -> type:
    """The environment class named by `spec`: a built-in name, `module:Class` or `file.py:Class`."""
    if spec in BUILTIN_ENVS:
        return BUILTIN_ENVS[spec]
    if ":" not in spec:
        raise ConfigError(f"--env {spec!r}: not a built-in environment ({', '.join(BUILTIN_ENVS)}); "
                          "a user environment is module:Class or file.py:Class")
    source, _, class_name = spec.rpartition(":")
    cls = getattr(_module(source, spec), class_name, None)
    if cls is None:
        raise ConfigError(f"--env {spec}: {source} has no {class_name!r}")
    if not inspect.isclass(cls):
        raise ConfigError(f"--env {spec}: {class_name} is not a class")
    missing = [m for m in ("reset", "step") if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"--env {spec}: {class_name} has no {' or '.join(missing)} method "
                          "(an environment needs reset(row) -> messages and step(text) -> (messages, reward, done))")
    return cls


def env_rows(cls: type, split: str) -> list[dict] | None:
    """The environment's own rows of `split`, or None when it has none (it then needs --prompts)."""
    rows_fn = getattr(cls(), "rows", None)
    if rows_fn is None:
        return None
    try:
        return list(rows_fn(split))
    except NotImplementedError:
        return None
