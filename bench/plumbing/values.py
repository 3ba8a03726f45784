"""Reading one configuration value: each parser names the key and the legal values when it refuses."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from bench import ConfigError


def split(value: Any) -> list:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def name_list(key: str, value: Any, legal: list[str]) -> tuple[str, ...]:
    names = [str(n) for n in split(value)]
    if not names:
        raise ConfigError(f"{key} must name at least one of: {', '.join(legal)}")
    bad = [n for n in names if n not in legal]
    if bad:
        raise ConfigError(f"unknown {key[:-1]} {', '.join(map(repr, bad))}; legal values: {', '.join(legal)}")
    return tuple(dict.fromkeys(names))


def integer(key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {n}")
    return n


def number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def positive(obj: Any, *names: str, allow_none: bool = False) -> None:
    for name in names:
        v = getattr(obj, name)
        if v is None and allow_none:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def one_of(key: str, value: Any, legal: tuple[str, ...]) -> None:
    if value not in legal:
        raise ConfigError(f"{key} must be one of {', '.join(legal)}; got {value!r}")


def read_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` (a command-line string or a TOML value) as the annotation ``hint`` asks: int, float,
    bool, str, Path, an optional one (None stays None), or a tuple of one of these (a comma-separated
    string or a list); any other type as given (its dataclass validates it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return None if value is None else read_value(key, value, inner[0])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple(read_value(key, v, args[0]) for v in split(value))
    if hint is int:
        return integer(key, value)
    if hint is float:
        return number(key, value)
    if hint is bool:
        return boolean(key, value)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key} must be a folder path (a string), got {value!r}")
        return Path(value)
    if hint is str:
        return value if isinstance(value, str) else str(value)
    return value


def read_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` read by the annotations of ``cls``'s fields (``read_value``)."""
    hints = typing.get_type_hints(cls)
    return {k: read_value(k, v, hints[k]) for k, v in values.items()}


def typed(cls, values: dict[str, Any]):
    """``cls`` built from ``values`` read by its fields' annotations; its own checks then run."""
    return cls(**read_fields(cls, values))


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ConfigError(f"run name {name!r} is not legal: 1-64 letters, digits, '.', '_' or '-', starting with "
                          "a letter or digit")
    return name
