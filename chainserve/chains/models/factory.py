"""The one model factory: `ChatOpenAI` when an upstream is configured, else the offline model."""

import enum
import functools
from dataclasses import dataclass, field
from typing import Annotated, Literal

import httpx2
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import ConfigurableField, Runnable
from pydantic import Field, SecretStr

from chainserve.chains.models.knobbed_model import KnobbedChatModel
from chainserve.chains.models.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.retrieval.retrievers import Retrieval

Provider = Literal["openai", "offline"]

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]

MODEL_KEY = "model"
TEMPERATURE_KEY = "temperature"
MAX_TOKENS_KEY = "max_tokens"


@dataclass(frozen=True)
class ModelConfig:
    """Everything a chain needs to build its model; filled from the app's settings."""

    model: str = "gpt-4o-mini"
    temperature: float = 0.7
    api_key: str | None = None
    base_url: str | None = None
    allowed_models: tuple[str, ...] = ()
    """Models a request may switch to, besides `model`."""
    timeout: float | None = 60.0
    """Seconds any one read or write of the provider's HTTP exchange may take."""
    connect_timeout: float | None = 10.0
    first_token_timeout: float | None = 60.0
    """Seconds from sending a request to its first streamed chunk."""
    token_timeout: float | None = 30.0
    """Seconds between streamed chunks (the provider's keepalive comments do not count)."""
    max_retries: int = 2
    max_upstream_event_bytes: int = 4 * 1024 * 1024
    """The largest single SSE event read from the provider; a larger one fails the run."""
    max_output_tokens: int | None = None
    """The most tokens one answer may have, asked of the provider; None: the provider's own."""
    offline_delay: float = 0.015
    http_client: httpx2.AsyncClient | None = field(default=None, compare=False, repr=False)
    """Connection pool for the upstream, owned (and closed) by whoever serves the chains."""
    upstream_client: UpstreamClient | None = field(default=None, compare=False, repr=False)
    """The lean HTTP client for streamed completions (`chains/models/upstream_client.py`), owned
    like `http_client`; without it every request goes through the SDK's httpx stack."""
    retrieval: Retrieval | None = field(default=None, compare=False, repr=False)
    """The document store and embeddings retrieval chains search (owned like `http_client`);
    without it those chains are not served."""

    @property
    def provider(self) -> Provider:
        return "openai" if self.api_key or self.base_url else "offline"

    @property
    def default_model(self) -> str:
        return self.model if self.provider == "openai" else OFFLINE_MODEL_NAME

    @property
    def model_choices(self) -> tuple[str, ...]:
        """The per-request `model` options; the offline model has only itself to offer."""
        if self.provider == "offline":
            return (OFFLINE_MODEL_NAME,)
        extra = tuple(m for m in self.allowed_models if m != self.model)
        return (self.model, *extra)


@dataclass(frozen=True)
class ModelInfo:
    """What is answering: shown by /health, the startup log and every stream's metadata."""

    provider: str
    """`openai` or `offline` for the server's model; a user's model says its own (`ls_provider`)."""
    name: str
    choices: tuple[str, ...] = field(default=())


def describe_model(config: ModelConfig) -> ModelInfo:
    return ModelInfo(config.provider, config.default_model, config.model_choices)


def _build_base_model(config: ModelConfig) -> BaseChatModel:
    if config.provider == "offline":
        return OfflineChatModel(
            model=OFFLINE_MODEL_NAME,
            temperature=config.temperature,
            delay=config.offline_delay,
            max_tokens=config.max_output_tokens,
        )
    # Imported here so the offline path never pays for (or depends on) the OpenAI client.
    from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI

    return StreamlinedChatOpenAI(
        model=config.model,
        temperature=config.temperature,
        # OpenAI-compatible servers (vLLM, Ollama, llama.cpp) often need no key, but the
        # client refuses to start without one.
        api_key=SecretStr(config.api_key or "not-needed"),
        base_url=config.base_url,
        stream_usage=True,
        # Explicit on purpose: `configurable_fields` rebuilds the model from its field values,
        # and an explicit `streaming=False` in that rebuild disables token streaming.
        streaming=True,
        timeout=httpx2.Timeout(config.timeout, connect=config.connect_timeout),
        stream_chunk_timeout=config.token_timeout,
        first_chunk_timeout=config.first_token_timeout,
        max_retries=config.max_retries,
        # langchain-openai sends this as `max_completion_tokens` (OpenAI's current name).
        max_tokens=config.max_output_tokens,
        output_cap=config.max_output_tokens,
        http_async_client=config.http_client,
        upstream_client=config.upstream_client,
        max_event_bytes=config.max_upstream_event_bytes,
    )


def _max_tokens_description(cap: int | None) -> str:
    limit = f", at most {cap} (the server's cap)" if cap else ""
    return f"The most tokens the answer may have{limit}."


def build_model(config: ModelConfig) -> Runnable[LanguageModelInput, BaseMessage]:
    """Build the chat model with `model`, `temperature` and `max_tokens` switchable per request
    (`max_tokens` only below the server's cap)."""
    # `configurable_fields(**fields)`, keeping its knobs through `bind_tools` and
    # `with_structured_output` (`knobbed_model.py`).
    fields = _knobs(config.model_choices, config.max_output_tokens)
    return KnobbedChatModel(default=_build_base_model(config), fields=fields)


@functools.cache
def _knobs(choices: tuple[str, ...], cap: int | None) -> dict[str, ConfigurableField]:
    """The knobs, one set per configuration: a chain that builds several models (parallel
    branches, a router) declares each knob once only if its specs are the same objects."""
    # An Enum annotation (not ConfigurableFieldSingleOption) so the model is rebuilt only
    # when a request actually sets a key, and schemas still list the allowed names.
    models = enum.Enum("Model", {name: name for name in choices})  # type: ignore[misc]
    return {
        "model_name": ConfigurableField(
            id=MODEL_KEY,
            name="Model",
            description="Which model answers this request.",
            annotation=models,
        ),
        "temperature": ConfigurableField(
            id=TEMPERATURE_KEY,
            name="Temperature",
            description="Sampling temperature, 0 to 2.",
            annotation=Temperature,
        ),
        "max_tokens": ConfigurableField(
            id=MAX_TOKENS_KEY,
            name="Max output tokens",
            description=_max_tokens_description(cap),
            annotation=Annotated[int, Field(ge=1, le=cap)],
        ),
    }
