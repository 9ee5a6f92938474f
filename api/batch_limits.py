"""Bounds on LangServe's `batch`: one request must not fan out into unbounded upstream calls."""

from typing import Any

from api.errors import RequestError


def check_batch_size(inputs: list[Any], max_inputs: int) -> None:
    """Refuse a batch of more than `max_inputs` inputs before any of them runs."""
    if len(inputs) > max_inputs:
        raise RequestError(
            413,
            "batch_too_large",
            f"a batch may hold at most {max_inputs} inputs (CHAINSERVE_MAX_BATCH_INPUTS); "
            f"this one has {len(inputs)}: split it",
        )
