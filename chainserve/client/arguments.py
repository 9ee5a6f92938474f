"""What the user types as values: `--input` JSON and `--config key=value`, typed by the chain's
schema so `collection=2024` stays the string a string key expects."""

import json
import math
from collections.abc import Iterable
from typing import Any

from chainserve.client.http_client import ClientError

NUMBERS = ("number", "integer")


class NotFiniteError(ValueError):
    """NaN or an infinity: Python reads them, but they are not JSON and no server takes them."""


def _finite(raw: str) -> float:
    number = float(raw)
    if not math.isfinite(number):
        raise NotFiniteError(raw)
    return number


def _constant(raw: str) -> Any:
    raise NotFiniteError(raw)


def loads_finite(raw: str) -> Any:
    """`json.loads` refusing NaN, Infinity and numbers too large for a float (`1e999`)."""
    return json.loads(raw, parse_float=_finite, parse_constant=_constant)


def parse_input(raw: str) -> Any:
    """The `--input` JSON, or a ClientError saying what is wrong with it."""
    try:
        return loads_finite(raw)
    except NotFiniteError as exc:
        raise ClientError(f"--input has {exc}, which is not a finite number") from None
    except ValueError as exc:
        raise ClientError(f"--input is not JSON: {exc}") from None


def schema_types(keys: Iterable[Any] | None) -> dict[str, str]:
    """The JSON type of each configurable key a chain lists (GET /chains), where it has one."""
    types: dict[str, str] = {}
    for key in keys or ():
        schema = key.get("schema") if isinstance(key, dict) else None
        if not isinstance(schema, dict):
            continue
        named = {schema.get("type")} if "type" in schema else {
            option.get("type") for option in schema.get("anyOf", []) if isinstance(option, dict)
        }  # fmt: skip
        named.discard("null")  # an optional key takes its other type
        if len(named) == 1 and isinstance(kind := named.pop(), str):
            types[str(key.get("id"))] = kind
    return types


def parse_config(pairs: list[str], keys: Iterable[Any] | None = None) -> dict[str, Any]:
    """`key=value` pairs as `configurable`. A key the chain declares a string keeps its text,
    a number key takes a number, any other declared type JSON; an undeclared key's value is
    JSON when it parses (numbers, true), else the text."""
    types = schema_types(keys)
    configurable: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--config takes key=value, not {pair!r}")
        configurable[key] = _config_value(key, raw, types.get(key))
    return configurable


def _config_value(key: str, raw: str, kind: str | None) -> Any:
    if kind == "string":
        return raw
    try:
        value = loads_finite(raw)
    except NotFiniteError:
        raise ClientError(f"--config {key}={raw}: not a finite number") from None
    except ValueError:
        if kind is None:
            return raw
        raise ClientError(f"--config {key} takes {_a(kind)}, not {raw!r}") from None
    if kind in NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ClientError(f"--config {key} takes {_a(kind)}, not {raw!r}")
    return value


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"
