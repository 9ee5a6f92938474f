"""Bounds on LangServe's `batch`: one request must not fan out into unbounded upstream calls.

A batch is many runs in one request, so it is held to what those runs would be held to one
by one: at most `CHAINSERVE_MAX_BATCH_INPUTS` inputs, each input counted as a request against
the caller's per-minute limit, and no more of them at once than the caller has stream slots
free, `CHAINSERVE_MAX_BATCH_CONCURRENCY`, and the client's own `max_concurrency` allow.
LangServe itself drops the client's `max_concurrency` and starts every input at once.
"""

import contextvars
import json
import re
from typing import Any

from fastapi.exceptions import RequestValidationError

from chainserve.api.errors.typed import RequestError

BATCH_PATH = re.compile(r"^/langserve/[^/]+(?:/c/[^/]+)?/batch\n?\Z")
BATCH_SLOTS = "chainserve_batch_slots"
"""`scope["state"]` key: how many stream slots the limits middleware holds for this batch."""

BATCH_CONCURRENCY: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "chainserve_batch_concurrency", default=None
)
"""Set while a batch request is served: how many of its inputs may run at once."""


def check_batch_size(inputs: list[Any], max_inputs: int) -> None:
    """Refuse a batch of more than `max_inputs` inputs before any of them runs."""
    if len(inputs) > max_inputs:
        raise RequestError(
            413,
            "batch_too_large",
            f"a batch may hold at most {max_inputs} inputs (CHAINSERVE_MAX_BATCH_INPUTS); "
            f"this one has {len(inputs)}: split it",
        )


def batch_inputs(body: bytes | None) -> int:
    """How many inputs a batch body holds (1 for a body that is not a batch at all: the
    route answers that with its own error)."""
    try:
        parsed = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return 1
    inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
    return max(1, len(inputs)) if isinstance(inputs, list) else 1


def client_concurrency(config: Any) -> int | None:
    """The lowest `max_concurrency` a batch's config (one, or one per input) asks for."""
    configs = config if isinstance(config, list) else [config]
    asked: list[int] = []
    for index, one in enumerate(configs):
        if not isinstance(one, dict) or one.get("max_concurrency") is None:
            continue
        value = one["max_concurrency"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            where = ("body", "config", *((index,) if isinstance(config, list) else ()))
            error = {
                "type": "greater_than_equal",
                "loc": (*where, "max_concurrency"),
                "msg": "max_concurrency must be a whole number, 1 or more",
            }
            raise RequestValidationError([error])
        asked.append(value)
    return min(asked) if asked else None


def batch_concurrency(server_max: int, config: Any, slots: int | None) -> int:
    """How many of a batch's inputs may run at once: the least of what the server, the
    client and the caller's free stream slots allow."""
    limits = [server_max, client_concurrency(config), slots]
    return min(limit for limit in limits if limit is not None)
