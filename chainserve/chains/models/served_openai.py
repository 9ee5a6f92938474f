"""A user's own `ChatOpenAI`, rebuilt as the streamlined subclass with the same field values.

Why: the user's instance parses every streamed chunk into the SDK's pydantic models and
sends its requests through langchain-openai's process-wide default HTTP client (one per
event loop it first met, so a second app in the same process fails with "Event loop is
closed"). The rebuilt model keeps every field the user set (model, key, base URL, timeouts,
retries, `model_kwargs`, callbacks, tags, ...), so its requests, its callbacks and its
traces are the same; it only streams on the lean path (`streamlined_openai.py`) and, unless
the user gave it an HTTP client or a proxy of their own, on the server's connection pool.
The server's cap on output tokens applies to it as to the server's own model, and a stream that
ends before its finish reason (or is not an event stream at all) fails the run with a typed error
instead of passing for a complete, shorter answer.

Traces name it `ChatOpenAI` and it serialises as `ChatOpenAI`: it is the user's model.
"""

from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.runnables.configurable import (
    RunnableConfigurableAlternatives,
    RunnableConfigurableFields,
)
from langchain_openai import ChatOpenAI

from chainserve.chains.models.factory import ModelConfig
from chainserve.chains.models.streaming import is_plain_binding
from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI

_CLIENTS = frozenset({"client", "async_client", "root_client", "root_async_client"})
"""Built from the other fields by `ChatOpenAI`'s validator; the rebuilt model builds its own."""

_MAX_WRAPPERS = 8


class ServedChatOpenAI(StreamlinedChatOpenAI):
    """A user's `ChatOpenAI` as the server runs it; see the module docstring."""

    @classmethod
    def lc_id(cls) -> list[str]:
        return ChatOpenAI.lc_id()

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return super().get_name(suffix, name=name or self.name or ChatOpenAI.__name__)


def served_chat_openai(model: ChatOpenAI, config: ModelConfig) -> ServedChatOpenAI:
    """`model` with the same field values, streamed lean; see the module docstring."""
    # Only the fields set on the user's instance (by them or by its validator): LangChain reads
    # "set" as "explicit" (an explicit `streaming=False` turns streaming off), so passing the
    # defaults too would change what the model does.
    values = {name: getattr(model, name) for name in model.model_fields_set - _CLIENTS}
    own_client = model.http_async_client is not None or bool(model.openai_proxy)
    if not own_client:
        values["http_async_client"] = config.http_client
    return ServedChatOpenAI(
        **values,
        upstream_client=None if own_client else config.upstream_client,
        output_cap=config.max_output_tokens,
        max_event_bytes=config.max_upstream_event_bytes,
    )


def served_models(step: Runnable[Any, Any], config: ModelConfig) -> Runnable[Any, Any]:
    """`step` with each exact `ChatOpenAI` in it (behind exact bindings and configurable
    wrappers) rebuilt by `served_chat_openai`; every other runnable kept as it is."""
    return _served(step, config, _MAX_WRAPPERS)


def _served(step: Runnable[Any, Any], config: ModelConfig, depth: int) -> Runnable[Any, Any]:
    if depth == 0:
        return step
    if type(step) is ChatOpenAI:  # exact: a subclass may stream or request differently
        return served_chat_openai(step, config)
    if is_plain_binding(step):
        return step.model_copy(update={"bound": _served(step.bound, config, depth - 1)})
    if isinstance(step, RunnableConfigurableFields):
        return step.model_copy(update={"default": _served(step.default, config, depth - 1)})
    if isinstance(step, RunnableConfigurableAlternatives):
        alternatives = {
            key: _served(value, config, depth - 1) if isinstance(value, Runnable) else value
            for key, value in step.alternatives.items()
        }
        return step.model_copy(
            update={
                "default": _served(step.default, config, depth - 1),
                "alternatives": alternatives,
            }
        )
    return step
