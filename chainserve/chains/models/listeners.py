"""Which LangChain callback handlers listen to what, so work nobody receives can be skipped.

LangChain calls every handler for every event; a handler that does not override an event's
method receives a no-op. Skipping the work behind an event (building a message per token, a
child run for the prompt) is invisible exactly when every handler would have received a no-op.
Handlers of `astream_events`/`astream_log` (`_StreamingCallbackHandler`, recognised by its
`tap_output_aiter`) and every tracer override these methods, so they always get the full path.
"""

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.callbacks.base import (
    CallbackManagerMixin,
    ChainManagerMixin,
    LLMManagerMixin,
)


def _overrides(handler: Any, method: str, *no_ops: Any) -> bool:
    return getattr(type(handler), method, None) not in no_ops


def wants_tokens(handler: Any) -> bool:
    """Whether a handler does anything with `on_llm_new_token`."""
    if getattr(handler, "ignore_llm", False):
        return False
    if hasattr(handler, "tap_output_aiter"):
        return True
    no_ops = (LLMManagerMixin.on_llm_new_token, AsyncCallbackHandler.on_llm_new_token)
    return _overrides(handler, "on_llm_new_token", *no_ops)


def wants_chain_runs(handler: Any) -> bool:
    """Whether a handler does anything with a chain run's start, end or error."""
    if getattr(handler, "ignore_chain", False):
        return False
    if hasattr(handler, "tap_output_aiter"):
        return True
    no_ops = {
        "on_chain_start": (
            CallbackManagerMixin.on_chain_start,
            AsyncCallbackHandler.on_chain_start,
        ),
        "on_chain_end": (ChainManagerMixin.on_chain_end, AsyncCallbackHandler.on_chain_end),
        "on_chain_error": (ChainManagerMixin.on_chain_error, AsyncCallbackHandler.on_chain_error),
    }
    return any(_overrides(handler, method, *defaults) for method, defaults in no_ops.items())
