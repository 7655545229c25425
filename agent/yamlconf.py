"""Load YAML into a pydantic model; errors name the file, line and field.

Shared by config.yaml and the dialplans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid; the message lists every problem."""


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _lines(value, (*path, k), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def load_yaml(path: Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse a YAML file; return the data and a map from field path to line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:  # found by tests/test_fuzz.py
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is {data_byte(exc)})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def validate(model: type[M], data: Any, path: Path, lines: dict[tuple[Any, ...], int] | None = None) -> M:
    """Validate data against a model; raise ConfigError naming file:line and field."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _nearest_line(loc, lines or {})
            field = ".".join(str(p) for p in loc) or "(top level)"
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {field}: {err['msg']}")
        raise ConfigError("\n".join(problems)) from None


def load_model(model: type[M], path: Path) -> M:
    """Read, parse and validate one YAML file."""
    data, lines = load_yaml(path)
    return validate(model, data, path, lines)


def _nearest_line(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    # A missing field has no line of its own: point at its parent.
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def data_byte(exc: UnicodeDecodeError) -> str:
    return f"0x{exc.object[exc.start]:02x}" if exc.start < len(exc.object) else "cut short"
