"""Config dataclasses -> command-line options and YAML files, and the pieces configs are made of.

Each command has one flat dataclass, composed by inheritance from small pieces (`RunOptions`,
`ComputeOptions`, `LoRAOptions`, `OptimizerOptions`, ...) so that each field is declared once. A
field's docstring (the string literal right under it) is its `--help` text, so nothing is
documented twice. Where a command says a generic docstring differently, class attributes fill
it in (the two mappings are merged over the MRO, subclasses winning):

- `help_terms`: `{name}` placeholders in docstrings, e.g. "random seed for {seeded}";
- `help_defaults`: what "(default: ...)" says for a derived default, e.g. run_name's
  "sft-<date>-<time>" (`{default}` in it stands for the field's default value);
- `defaults_by`: a `DefaultsBy` table of defaults chosen by another option (RLConfig's per
  --algo defaults); the config fills the fields left None from it, and --help shows each row.

A piece that sets `help_group` lists its fields under that heading of --help; the fields of the
others stand in the command's own group. A config overrides a piece's default by declaring the
field again with only a new default (no docstring): the docstring stays the piece's. Another
config built from a config's fields (quickstart's RLConfig) is made by `derive_config`.

- `limits`: the range of each numeric field, e.g. `{"batch_size": ">= 1", "top_p": "(0, 1]"}`,
  declared by the piece that declares the field. `build_config` and `derive_config` check every
  value against it before the config is made (so before any model loads, and before a
  `__post_init__` could divide by a zero); the error states the range.

Values are layered: dataclass default < `--config file.yaml` < explicit command-line flags.
Derived values and the checks that involve several fields live in the dataclass's
`__post_init__`, which raises `ConfigError` with a sentence a person can act on.

This module must not import torch or anything heavy: `rlhfkit --help` has to be instant.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.util
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is wrong; the message says which one and what to do."""


def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field to the docstring written under it in the class body (the most
    derived class that documents it wins), with the `{name}` placeholders of `help_terms` filled."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    terms = class_mapping(cls, "help_terms")

    def fill(name: str, doc: str) -> str:
        def term(match: re.Match) -> str:
            if match[1] not in terms:
                raise KeyError(f"{cls.__name__}.{name}: its docstring names {{{match[1]}}}, which no help_terms fills")
            return terms[match[1]]

        return _TERM.sub(term, doc)

    return {name: fill(name, doc) for name, doc in docs.items()}


_TERM = re.compile(r"\{(\w+)\}")


def _body_docs(body: list[ast.stmt]) -> dict[str, str]:
    """{field: docstring} of the `name: type = value` lines of a class body followed by a string."""
    docs = {}
    for node, nxt in zip(body, body[1:] + [None]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@functools.cache
def _module_class_docs(module_name: str) -> dict[str, dict[str, str]]:
    """Each top-level class's field docstrings, from one parse of its module (a config is made of
    ~10 pieces; `inspect.getsource` of each would parse the module again, slowing `--help`)."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    except (OSError, TypeError, KeyError):
        return {}
    return {node.name: _body_docs(node.body) for node in tree.body if isinstance(node, ast.ClassDef)}


def _own_field_docs(klass: type) -> dict[str, str]:
    docs = _module_class_docs(klass.__module__).get(klass.__qualname__)
    if docs is not None:
        return docs
    try:  # a class defined inside a function
        return _body_docs(ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body)  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return {}


def class_mapping(cls: type, name: str) -> dict[str, Any]:
    """The class-level mapping `name` (help_terms, help_defaults) merged over the MRO, subclasses winning."""
    merged: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get(name, {}))
    return merged


@dataclass(frozen=True)
class DefaultsBy:
    """Defaults of some fields chosen by the value of another option: `table[value][field]`
    (RLConfig: `DefaultsBy("algo", ALGO_DEFAULTS)`). `fill` sets each of those fields that is
    still None; `describe` is its --help text, every row's value."""

    option: str
    table: Mapping[Any, Mapping[str, Any]]

    def fill(self, cfg: Any) -> None:
        row = self.table[getattr(cfg, self.option)]
        for name, value in row.items():
            if getattr(cfg, name) is None:
                setattr(cfg, name, value)

    def fields(self) -> set[str]:
        return {name for row in self.table.values() for name in row}

    def describe(self, name: str) -> str:
        """e.g. "(default per --algo: 0.05 for ppo, nlpo; 0.04 for grpo)": choices grouped by value."""
        flag = "--" + self.option.replace("_", "-")
        by_value: dict[Any, list[str]] = {}
        for choice, row in self.table.items():
            label = (flag if choice else f"--no-{flag[2:]}") if isinstance(choice, bool) else str(choice)
            by_value.setdefault((type(row[name]), row[name]), []).append(label)
        shown = [f"{_show(value)} for {', '.join(labels)}" for (_, value), labels in by_value.items()]
        return f"(default per {flag}: {'; '.join(shown)})"


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_LIMIT = re.compile(r"^\s*(?:(>=|>|<=|<)\s*(-?[\d.e+-]+)|([\[(])\s*(-?[\d.e+-]+)\s*,\s*(-?[\d.e+-]+|inf)\s*([\])]))\s*$")


def _within(value: float, limit: str) -> bool:
    """Whether `value` satisfies `limit` (">= 1", "> 0", "[0, 1)", "(0, 1]" ...). NaN satisfies none."""
    match = _LIMIT.match(limit)
    if match is None:
        raise ValueError(f"malformed limit {limit!r}")
    op, bound, left, low, high, right = match.groups()
    if op:
        b = float(bound)
        return {">=": value >= b, ">": value > b, "<=": value <= b, "<": value < b}[op]
    lo, hi = float(low), float(high)
    return (value >= lo if left == "[" else value > lo) and (value <= hi if right == "]" else value < hi)


def _describe_limit(limit: str) -> str:
    return f"lie in {limit.strip()}" if limit.strip()[0] in "[(" else f"be {limit.strip()}"


def check_limits(cls: type, values: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first value of `values` outside its field's `limits` (None
    means unset and is not checked; a value that is not a number fails too)."""
    limits = class_mapping(cls, "limits")
    for name, value in values.items():
        limit = limits.get(name)
        if limit is None or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{flag} must be a number, got {value!r}")
        if not _within(value, limit):
            raise ConfigError(f"{flag} must {_describe_limit(limit)}, got {value}")


def default_help(cls: type, f: dataclasses.Field) -> str:
    """The "(default: ...)" that --help shows for field `f` of `cls`."""
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
    )
    texts = class_mapping(cls, "help_defaults")
    if f.name in texts:
        return f"(default: {texts[f.name].replace('{default}', _show(default))})"
    by = getattr(cls, "defaults_by", None)
    if by is not None and f.name in by.fields():
        return by.describe(f.name)
    return f"(default: {default!r})"


def _declared_by(cls: type, name: str) -> tuple[int, type]:
    """(MRO position, class) of the most basic class that declares field `name`: its docstring and
    --help group are that class's, even where a subclass only gives it another default."""
    for position in range(len(cls.__mro__) - 1, -1, -1):
        klass = cls.__mro__[position]
        if name in inspect.get_annotations(klass):
            return position, klass
    return 0, cls


def _resolve_type(tp: Any) -> tuple[Any, bool]:
    """Return (base type, is_optional) for a field annotation such as `int | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_list(item_type: type):
    def parse(text: str) -> list:
        return [item_type(x.strip()) for x in text.split(",") if x.strip()]

    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one `--field-name` option per field of dataclass `cls` (defaults left as None so
    that we can tell which flags were given and layer them over a YAML file). The command's own
    fields come first, under "<cls> options", the most derived class's first; then each piece's
    `help_group`, basic fields first (device before precision)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    own = f"{cls.__name__} options"
    groups: dict[str, list] = {own: []}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        position, klass = _declared_by(cls, f.name)
        title = klass.__dict__.get("help_group", own)
        groups.setdefault(title, []).append((position if title == own else -position, f))

    def rank(title: str) -> int:  # the command's group, then the pieces' in MRO order
        return -1 if title == own else min(-key for key, _ in groups[title])

    for title in sorted(groups, key=rank):
        group = parser.add_argument_group(title)
        for _, f in sorted(groups[title], key=lambda entry: entry[0]):  # stable: declaration order in a class
            _add_argument(group, f, hints[f.name], docs.get(f.name, ""), default_help(cls, f))


def add_config_positional(parser: argparse.ArgumentParser, name: str, cls: type) -> None:
    """A positional argument for field `name` of `cls` that a --config file may give instead (the
    config's own check says when neither did)."""
    parser.add_argument(name, nargs="?", default=None, help=field_docs(cls).get(name, "").replace("%", "%%"))


def _add_argument(group, f: dataclasses.Field, annotation: Any, doc: str, default_text: str) -> None:
    tp, _ = _resolve_type(annotation)
    help_text = f"{doc} {default_text}" if doc else default_text
    kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text.replace("%", "%%")}
    literal_args = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif literal_args:
        kwargs["choices"] = list(literal_args)
        kwargs["type"] = type(literal_args[0])
    elif typing.get_origin(tp) in (list, tuple):
        item = (typing.get_args(tp) or (str,))[0]
        kwargs["type"] = _parse_list(item)
        kwargs["metavar"] = "A,B,..."
    elif tp in (int, float, str):
        kwargs["type"] = tp
    else:
        kwargs["type"] = str
    group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def add_config_command(subparsers, name: str, cls: type, run: str, **parser_kwargs) -> argparse.ArgumentParser:
    """A command whose options are the fields of dataclass `cls`, plus `--config FILE.yaml`.

    `run` is "module:function"; the module is imported only when the command runs (so
    `rlhfkit --help` stays free of torch) and the function is called with the built config.
    Errors are turned into one-line messages by `rlhfkit.cli.main`.
    """
    import importlib

    parser = subparsers.add_parser(name, **parser_kwargs)
    parser.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(parser, cls)

    def handler(args: argparse.Namespace) -> int:
        module, function = run.split(":")
        getattr(importlib.import_module(module), function)(config_from_args(cls, args))
        return 0

    parser.set_defaults(func=handler)
    return parser


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values at the top level")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[T], yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Instantiate `cls` from defaults < YAML < overrides (None values in overrides are ignored)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if yaml_path:
        data = load_yaml(yaml_path)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{yaml_path}: unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known options are: {', '.join(sorted(names))}"
            )
        values.update(data)
    for key, value in (overrides or {}).items():
        if key in names and value is not None:
            values[key] = value
    check_limits(cls, values)
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{cls.__name__}: {err}") from None


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    return build_config(cls, getattr(args, "config", None), vars(args))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def derive_config(cls: type[T], source: Any, **overrides: Any) -> T:
    """Build dataclass `cls` from the fields of config `source` that have the same name (both
    inherit them from the same piece, e.g. quickstart's KL options are RLConfig's), then
    `overrides` for what `source` names or derives differently. `cls` checks the result as usual."""
    shared = {f.name for f in dataclasses.fields(source) if f.init}
    values = {f.name: getattr(source, f.name) for f in dataclasses.fields(cls) if f.init and f.name in shared}  # type: ignore[arg-type]
    values.update(overrides)
    check_limits(cls, values)
    return cls(**values)


# --- pieces shared by the commands' configs ----------------------------------------------------
# Each field is declared once here (or in the room whose configs alone use it); a command's
# config inherits the pieces it needs. The `{terms}` in the docstrings are filled per command.


@dataclass
class RunOptions:
    """The run folder: runs/<name>/ with config.yaml, metrics.jsonl, summary.json, checkpoints/."""

    help_group: ClassVar[str] = "run folder"

    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = ""
    """this run's folder name under output_dir"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    report_to: str = "none"
    """where the training metrics go besides metrics.jsonl (as TRL's report_to): none, tensorboard (event files in <run>/tensorboard), wandb (offline, in <run>/wandb; needs the 'wandb' extra), or a comma list such as tensorboard,wandb"""


TRACKERS: tuple[str, ...] = ("tensorboard", "wandb")
"""The trackers --report-to names; `none` (alone) turns them off."""


def parse_report_to(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The trackers of a --report-to value ("none", "tensorboard", "tensorboard,wandb" or a YAML
    list), each at most once. Raises ConfigError for an unknown name, for "none" beside a
    tracker, and for a tracker whose package is not installed (checked without importing it)."""
    names = [value] if isinstance(value, str) or value is None else list(value)
    parts = [part.strip() for name in names for part in str(name or "none").split(",") if part.strip()]
    unknown = [part for part in parts if part not in (*TRACKERS, "none")]
    if unknown:
        raise ConfigError(f"--report-to: unknown tracker {', '.join(map(repr, unknown))}; "
                          f"choose none or any of {', '.join(TRACKERS)} (comma-separated)")
    if "none" in parts and len(parts) > 1:
        raise ConfigError(f"--report-to: 'none' cannot stand beside a tracker (got {','.join(parts)})")
    chosen = tuple(dict.fromkeys(part for part in parts if part != "none"))
    packages = {"tensorboard": ("tensorboard", "pip install tensorboard"),
                "wandb": ("wandb", "pip install -e '.[wandb]' (rlhfkit's optional extra; W&B runs offline, in the run folder)")}
    for tracker in chosen:
        package, how = packages[tracker]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"--report-to {tracker} needs the {package} package, which is not installed: {how}")
    return chosen


@dataclass
class ResumeOptions:
    """Checkpoints a killed run continues from (trainers/checkpoint.py)."""

    help_group: ClassVar[str] = "run folder"
    help_terms: ClassVar[dict[str, str]] = {"resumed": "from its latest checkpoint"}
    limits: ClassVar[dict[str, str]] = {"checkpoint_every": ">= 0"}

    resume: bool = False
    """continue the run in its existing folder {resumed}"""
    checkpoint_every: int = 10
    """save a resumable checkpoint every N optimiser steps (0: only when training ends)"""


@dataclass
class DeviceOptions:
    """Where the models run."""

    help_group: ClassVar[str] = "device"
    help_terms: ClassVar[dict[str, str]] = {"models": "the models"}

    device: str = "auto"
    """device of {models}: cpu, cuda, cuda:N, or auto"""


@dataclass
class ComputeOptions(DeviceOptions):
    """Where the models run, and in which precision they compute."""

    help_group: ClassVar[str] = "device"

    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision of {models}: auto picks bf16 where the hardware has it (CUDA, AVX512-BF16 CPUs)"""


@dataclass
class SeedOptions:
    """The random seed."""

    help_terms: ClassVar[dict[str, str]] = {"seeded": "the whole run"}

    seed: int = 0
    """random seed for {seeded}"""


@dataclass
class SkipInvalidOptions:
    """What to do with a bad input row."""

    skip_invalid: bool = False
    """skip bad input rows (counted and reported) instead of stopping at the first"""


@dataclass
class DataFileOptions(SkipInvalidOptions):
    """A training file, and a held-out file or share of it."""

    help_group: ClassVar[str] = "data"
    help_terms: ClassVar[dict[str, str]] = {"held_out": "chosen at random"}
    limits: ClassVar[dict[str, str]] = {"eval_fraction": "[0, 1)"}

    data: str = ""
    """training file (JSONL, JSON, CSV, Parquet or a folder saved by `datasets`) of {rows}"""
    eval_data: str = ""
    """held-out file of the same kind of rows for evaluation (empty: --eval-fraction decides)"""
    eval_fraction: float = 0.0
    """without --eval-data: hold out this share of the training rows for evaluation, {held_out} (0: no evaluation)"""


@dataclass
class ChatOptions:
    """Whether text goes through the tokenizer's chat template."""

    help_terms: ClassVar[dict[str, str]] = {"chat_text": "prompts", "chat_auto": "when the tokenizer has one"}

    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap {chat_text} in the tokenizer's chat template (auto: {chat_auto})"""


@dataclass
class ModelOptions:
    """The model a command trains or samples."""

    model: str = "smollm2-135m-instruct"
    """{model_role}: the embedded default, an HF id, a local folder or a .gguf file"""


@dataclass
class LoRAAdapterOptions:
    """The shape of a LoRA adapter."""

    help_group: ClassVar[str] = "LoRA"
    limits: ClassVar[dict[str, str]] = {"lora_r": ">= 1", "lora_alpha": "> 0", "lora_dropout": "[0, 1)", "lora_top_layers": ">= 0"}

    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA α (scale α/r)"""
    lora_dropout: float = 0.0
    """dropout on the LoRA path"""
    lora_top_layers: int = 0
    """put LoRA only in the last N blocks (0: all blocks)"""


@dataclass
class LoRAOptions(LoRAAdapterOptions):
    """A LoRA adapter, or full fine-tuning."""

    help_group: ClassVar[str] = "LoRA"

    lora: bool = True
    """train a LoRA adapter (where a reference model is needed, it is the adapter-disabled base: no second copy); --no-lora trains every weight"""


@dataclass
class OptimizerOptions:
    """AdamW's step size and the gradient clip."""

    help_group: ClassVar[str] = "optimiser"
    help_terms: ClassVar[dict[str, str]] = {"trained": "the trained weights"}
    limits: ClassVar[dict[str, str]] = {"learning_rate": "> 0", "max_grad_norm": "> 0"}

    learning_rate: float = 3e-4
    """AdamW learning rate of {trained}"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""


@dataclass
class AdamWOptions(OptimizerOptions):
    """The optimiser, with weight decay."""

    help_group: ClassVar[str] = "optimiser"
    limits: ClassVar[dict[str, str]] = {"weight_decay": ">= 0"}

    weight_decay: float = 0.0
    """AdamW weight decay"""


@dataclass
class RolloutBackendOptions:
    """Where responses are sampled: our own sampler (hf), any OpenAI-compatible server (openai:
    `rlhfkit serve`, vLLM, llama.cpp), or a colocated vLLM engine (vllm, GPU only)."""

    help_group: ClassVar[str] = "rollout backend"
    help_terms: ClassVar[dict[str, str]] = {"backend_model": "the model name sent to the server: --model"}
    limits: ClassVar[dict[str, str]] = {"request_timeout": "> 0", "vllm_gpu_memory_utilization": "(0, 1]"}

    rollout_backend: Literal["hf", "openai", "vllm"] = "hf"
    """hf: the project's sampler in this process; openai: POST to --base-url ({backend_model}; prompts go to /v1/chat/completions unless the chat template is off, then to /v1/completions); vllm: a vLLM engine in this process (needs the vllm package and a CUDA GPU)"""
    base_url: str = ""
    """openai backend: the server's API root, e.g. http://127.0.0.1:8000/v1 (`rlhfkit serve`, `vllm serve`)"""
    request_timeout: float = 300.0
    """openai backend: seconds to wait for one reply"""
    vllm_gpu_memory_utilization: float = 0.3
    """vllm backend: share of the GPU's memory the colocated engine may take (the trainer needs the rest)"""

    def check_rollout_backend(self) -> None:
        """The backend's own checks, made before any model loads."""
        if self.rollout_backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("--rollout-backend openai needs --base-url http://HOST:PORT/v1 (e.g. of `rlhfkit serve`), "
                              f"got {self.base_url!r}")
        if self.base_url and self.rollout_backend != "openai":
            raise ConfigError(f"--base-url is for --rollout-backend openai (the backend is {self.rollout_backend})")
