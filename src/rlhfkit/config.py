"""Config dataclasses -> command-line options and YAML files.

Each command has one flat dataclass. A field's docstring (the string literal right under it) is
its `--help` text, so nothing is documented twice. Values are layered: dataclass default <
`--config file.yaml` < explicit command-line flags. Derived values and checks live in the
dataclass's `__post_init__`, which raises `ConfigError` with a sentence a person can act on.

This module must not import torch or anything heavy: `rlhfkit --help` has to be instant.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is wrong; the message says which one and what to do."""


def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field to the docstring written under it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
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
    that we can tell which flags were given and layer them over a YAML file)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _resolve_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = docs.get(f.name, "")
        help_text = f"{help_text} (default: {default!r})" if help_text else f"(default: {default!r})"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
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
        group.add_argument(flag, **kwargs)


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
