"""Per-request `config`: only the keys a chain declares configurable, nothing else.

This is the security boundary that keeps a request from pointing the model at another
`base_url` or swapping in its own `api_key`: anything not enumerated is refused with 400
before the chain is touched.
"""

import enum
import functools
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import TypeAdapter, ValidationError

from chainserve.chains import RegisteredChain

PASS_THROUGH_KEYS = ("tags", "metadata", "run_name")
"""Top-level config keys that only label a run (traces, logs) and so are safe to accept."""


class ConfigError(Exception):
    """The request's config asks for something not allowed (400) or of the wrong type (422)."""

    def __init__(
        self, status: int, message: str, loc: tuple[str | int, ...] = (), reason: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.loc = loc
        self.reason = reason or message
        """The message without the path, for a validation error that carries `loc` beside it."""


def _check_labels(config: dict[str, Any]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    if "tags" in config:
        tags = config["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(
                422, "config.tags must be a list of strings", ("config", "tags"),
                "must be a list of strings",
            )  # fmt: skip
        labels["tags"] = tags
    if "metadata" in config:
        if not isinstance(config["metadata"], dict):
            raise ConfigError(
                422,
                "config.metadata must be an object",
                ("config", "metadata"),
                "must be an object",
            )
        labels["metadata"] = config["metadata"]
    if "run_name" in config:
        if not isinstance(config["run_name"], str):
            raise ConfigError(
                422, "config.run_name must be a string", ("config", "run_name"), "must be a string"
            )
        labels["run_name"] = config["run_name"]
    return labels


@functools.cache
def value_adapter(annotation: Any) -> TypeAdapter[Any]:
    """One compiled validator per knob type, not one per request."""
    return TypeAdapter(annotation)


def _check_value(chain: RegisteredChain, key: str, value: Any) -> Any:
    spec = chain.configurable[key]
    try:
        checked = value_adapter(spec.annotation).validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ConfigError(
            422, f"config.configurable.{key}: {problem}", ("config", "configurable", key), problem
        ) from None
    # LangChain looks options up by their string key, not by the Enum it generates.
    return checked.value if isinstance(checked, enum.Enum) else checked


def validate_config(chain: RegisteredChain, config: Any) -> RunnableConfig:
    """Check a request's config against the chain's allow-list and return a safe copy."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(422, "config must be an object", ("config",), "must be an object")
    allowed_keys = ", ".join(sorted(chain.configurable))
    unknown = sorted(set(config) - {"configurable", *PASS_THROUGH_KEYS})
    if unknown:
        raise ConfigError(
            400,
            f"config.{unknown[0]} cannot be set per request; allowed: configurable "
            f"({allowed_keys}), {', '.join(PASS_THROUGH_KEYS)}",
        )
    configurable = config.get("configurable") or {}
    if not isinstance(configurable, dict):
        raise ConfigError(
            422,
            "config.configurable must be an object",
            ("config", "configurable"),
            "must be an object",
        )
    for key in sorted(configurable):
        if key not in chain.configurable:
            raise ConfigError(
                400,
                f"config.configurable.{key} cannot be set per request; "
                f"chain {chain.name!r} accepts: {allowed_keys}",
            )
    checked = {key: _check_value(chain, key, value) for key, value in configurable.items()}
    result: RunnableConfig = {**_check_labels(config)}  # type: ignore[typeddict-item]
    if checked:
        result["configurable"] = checked
    return result


def chosen_model(chain: RegisteredChain, config: RunnableConfig, default: str) -> str:
    """The model name this run will use, for the metadata event."""
    value = config.get("configurable", {}).get("model")
    return str(value) if value is not None else default
