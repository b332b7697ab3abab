"""Reward functions written in Python and named on the command line: `module:function` or
`path/to/file.py:function`.

They follow TRL's convention, `fn(prompts, completions, **columns) -> list[float]`: one number
per completion; `columns` are the prompts' other dataset columns, each a list aligned with
`completions` (a function that declares no `**kwargs` gets only the columns it names). Every
mistake a user can make here — a module that is not there, a missing function, a wrong return
length or type, a NaN — becomes one sentence naming the reward (a `ConfigError`, or a
`FloatingPointError` for non-finite values, which the CLI prints as `rlhfkit: error: …`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from rlhfkit.config import ConfigError


class RewardError(ConfigError):
    """A reward function broke its contract (wrong length, not numbers)."""


class PromptColumns:
    """The extra columns of each prompt (everything but `prompt`), looked up by prompt text.

    Rollouts carry prompts, not row numbers, so a reward function's columns are found again
    by the prompt: two rows with the same prompt but different columns are ambiguous, and a
    lookup of such a prompt says so."""

    def __init__(self, rows: Iterable[dict]):
        self._by_prompt: dict[str, dict] = {}
        self._ambiguous: set[str] = set()
        for row in rows:
            prompt, extra = row["prompt"], {k: v for k, v in row.items() if k != "prompt"}
            if prompt in self._by_prompt and self._by_prompt[prompt] != extra:
                self._ambiguous.add(prompt)
            self._by_prompt[prompt] = extra

    def __len__(self) -> int:
        return len(self._by_prompt)

    def names(self) -> list[str]:
        return sorted({name for extra in self._by_prompt.values() for name in extra})

    def get(self, prompt: str) -> dict | None:
        if prompt in self._ambiguous:
            raise RewardError(f"prompt {prompt!r:.80} appears in several rows with different columns; "
                              "a reward function cannot tell which row a completion belongs to")
        return self._by_prompt.get(prompt)

    def lookup(self, prompts: Sequence[str]) -> dict[str, list]:
        """{column: [value of each prompt]}; None where a prompt lacks the column (or is unknown)."""
        rows = [self.get(p) or {} for p in prompts]
        names = sorted({name for row in rows for name in row})
        return {name: [row.get(name) for row in rows] for name in names}


def with_columns(columns: PromptColumns | None, prompts: Sequence[str], given: dict) -> dict:
    """The columns of `prompts` from the table, overridden by those passed in the call."""
    found = columns.lookup(prompts) if columns is not None else {}
    return {**found, **given}


def is_python_spec(name: str) -> bool:
    """`module:function`, `package.module:function` or `path/file.py:function`."""
    module, sep, function = name.rpartition(":")
    if not sep or not module or not function.isidentifier():
        return False
    return module.endswith(".py") or all(part.isidentifier() for part in module.split("."))


def _import_file(spec: str, path: Path):
    if not path.is_file():
        raise ConfigError(f"reward '{spec}': no such file {path}")
    name = f"rlhfkit_reward_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        raise ConfigError(f"reward '{spec}': {path} line {err.lineno}: {err.msg}") from None
    except Exception as err:  # the user's module failed while importing: say which and why, in one line
        sys.modules.pop(name, None)
        raise ConfigError(f"reward '{spec}': importing {path} failed: {type(err).__name__}: {err}") from None
    return module


def _import_module(spec: str, module_name: str):
    # the current folder first, as `python -c "import mod"` would (the console script's sys.path lacks it)
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ConfigError(f"reward '{spec}': no module named '{module_name}' (looked in the current folder "
                              "and the installed packages; for a file write path/to/file.py:function)") from None
        raise ConfigError(f"reward '{spec}': importing '{module_name}' failed: {err}") from None
    except SyntaxError as err:
        raise ConfigError(f"reward '{spec}': {err.filename} line {err.lineno}: {err.msg}") from None
    except Exception as err:  # the user's module failed while importing: say which and why, in one line
        raise ConfigError(f"reward '{spec}': importing '{module_name}' failed: {type(err).__name__}: {err}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())


def _find_function(spec: str, module, where: str, function_name: str) -> Callable:
    if not hasattr(module, function_name):
        defined = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(function_name, defined, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else (f" (it defines: {', '.join(sorted(defined)[:8])})"
                                                                if defined else "")
        raise ConfigError(f"reward '{spec}': {where} has no function '{function_name}'{hint}")
    function = getattr(module, function_name)
    if not callable(function):
        raise ConfigError(f"reward '{spec}': '{function_name}' in {where} is a {type(function).__name__}, not a function")
    return function


def _accepted_columns(spec: str, function: Callable) -> tuple[bool, set[str], set[str]]:
    """(takes **kwargs, the column names it declares, the columns it requires)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: pass everything
        return True, set(), set()
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise ConfigError(f"reward '{spec}': the function must take (prompts, completions, **columns); "
                          f"it takes ({', '.join(p.name for p in params)})")
    first_two = {id(p) for p in positional[:2]}
    rest = [p for p in params if id(p) not in first_two and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    return var_kw, {p.name for p in rest}, {p.name for p in rest if p.default is p.empty}


def checked_scores(name: str, values: Any, prompts: Sequence[str], n: int) -> list[float]:
    """`values` as n finite floats, or one sentence saying what is wrong with them."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise RewardError(f"reward '{name}' returned {type(values).__name__}; expected a list of {n} numbers, "
                          "one per completion")
    if hasattr(values, "tolist"):  # a tensor or an array
        values = values.tolist()
    if len(values) != n:
        raise RewardError(f"reward '{name}' returned {len(values)} values for {n} completions (one number per completion)")
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RewardError(f"reward '{name}' returned {value!r:.40} for completion {i}; expected a number") from None
        if not math.isfinite(number):
            raise FloatingPointError(f"reward '{name}' returned {number} for completion {i} of {n} "
                                     f"(prompt {prompts[i]!r:.60}); rewards must be finite numbers")
        out.append(number)
    return out


@dataclass
class PythonReward:
    """A user's `fn(prompts, completions, **columns)`, given the prompts' columns and checked."""

    spec: str
    function: Callable
    columns: PromptColumns | None = None
    takes_any: bool = True
    declared: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        given = with_columns(self.columns, prompts, columns)
        missing = [name for name in sorted(self.required) if name not in given]
        if missing:
            have = ", ".join(sorted(given)) or "none"
            raise RewardError(f"reward '{self.spec}' needs the column '{missing[0]}', which the prompts do not have "
                              f"(their columns: {have})")
        kwargs = given if self.takes_any else {k: v for k, v in given.items() if k in self.declared}
        values = self.function(list(prompts), list(completions), **kwargs)
        return checked_scores(self.spec, values, prompts, len(completions))


def load_python_reward(spec: str, columns: PromptColumns | None = None) -> PythonReward:
    """Import `module:function` or `file.py:function` (the file's folder relative to the current one)."""
    module_name, _, function_name = spec.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        module, where = _import_file(spec, path), str(path)
    else:
        module, where = _import_module(spec, module_name), f"module '{module_name}'"
    function = _find_function(spec, module, where, function_name)
    takes_any, declared, required = _accepted_columns(spec, function)
    return PythonReward(spec, function, columns, takes_any, declared, required)
