"""Reading one configuration value: each parser names the key and the legal values when it refuses."""

from __future__ import annotations

import re
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


def typed(cls, values: dict[str, Any]):
    """``cls`` built from ``values`` read by each field's type (int, float, bool; the rest as given)."""
    from dataclasses import fields

    out = {}
    hints = {f.name: str(f.type) for f in fields(cls)}
    for k, v in values.items():
        hint = hints[k]
        if hint.startswith("int"):
            v = integer(k, v)
        elif hint.startswith("float"):
            v = number(k, v)
        elif hint.startswith("bool"):
            v = boolean(k, v)
        out[k] = v
    return cls(**out)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ConfigError(f"run name {name!r} is not legal: 1-64 letters, digits, '.', '_' or '-', starting with "
                          "a letter or digit")
    return name
