"""Stream a chat model's text without a message object per token, when nobody listens to tokens.

Why: `BaseChatModel.astream` turns every streamed token into an `AIMessageChunk` inside a
`ChatGenerationChunk` (two validated pydantic models, ≈ 2 KiB), hands it to every callback
handler, and keeps all of them until the call ends so it can merge them for `on_llm_end`.
For a chain whose output is text, that is most of the CPU per token above the HTTP layers,
the bulk of the memory of an open stream, and what makes garbage collection slow.

What stays exactly as `astream` does it: the callback manager is configured the same way and
gets the same `on_chat_model_start`, and `on_llm_end` (or `on_llm_error`) with the same merged
generation: content, usage, finish reason, model name, tool-call chunks and logprobs.
Every chunk that carries anything but plain content (the role chunk, tool calls, the finish
reason, logprobs, usage) is still converted by LangChain's own code; consecutive plain-content
deltas are kept as strings and merged into one chunk, which is what merging them one by one
would give (their only other field, `model_provider`, is the same on each).
What is skipped is `on_llm_new_token`, and only when no handler overrides it: a tracer
(LangSmith or any `BaseTracer`), `astream_events`/`astream_log`, or a user's callback that
wants tokens sends the call through `astream` unchanged, as do a rate limiter and
`output_version="v1"`.
"""

from collections.abc import AsyncIterator
from typing import Any, Protocol

from langchain_core.callbacks import AsyncCallbackManager, Callbacks
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models._utils import (
    _filter_invocation_params_for_tracing,
    _normalize_messages,
)
from langchain_core.language_models.chat_models import (
    _format_for_tracing,
    _gen_info_and_msg_metadata,
    _generate_response_from_error,
)
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk, LLMResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks
from langchain_core.prompt_values import PromptValue
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.utils.utils import LC_ID_PREFIX

from chainserve.chains.models.listeners import wants_tokens


class LaneModel(Protocol):
    """What the lane needs of its model (`StreamlinedChatOpenAI` is one): LangChain's own
    chat-model plumbing, plus the model's request payload and its provider's raw chunks."""

    @property
    def callbacks(self) -> Callbacks: ...
    @property
    def verbose(self) -> bool: ...
    @property
    def tags(self) -> list[str] | None: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...
    @property
    def rate_limiter(self) -> BaseRateLimiter | None: ...
    @property
    def output_version(self) -> str | None: ...
    @property
    def model_kwargs(self) -> dict[str, Any]: ...
    @property
    def _serialized(self) -> dict[str, Any]: ...

    def _convert_input(self, model_input: LanguageModelInput) -> PromptValue: ...
    def _should_stream(
        self, *, async_api: bool, run_manager: Any = None, **kwargs: Any
    ) -> bool: ...
    def _lane_invocation_params(self) -> dict[str, Any]: ...
    def _lane_ls_params(self) -> dict[str, Any]: ...
    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]: ...
    def _get_ls_params_with_defaults(self, stop: list[str] | None = None, **kwargs: Any) -> Any: ...
    def _stream_payload(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]: ...
    def _takes_fast_path(self, payload: dict[str, Any]) -> bool: ...
    def _chunk_dicts(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...
    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None: ...
    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]: ...


def _plain_text(chunk: dict[str, Any]) -> str | None:
    """The content of a chunk that carries nothing but content, else None."""
    if chunk.get("usage") or chunk.get("type") is not None:
        return None
    choices = chunk.get("choices")
    if not choices:
        return None
    choice = choices[0]
    delta = choice.get("delta")
    if not delta or choice.get("finish_reason") or choice.get("logprobs"):
        return None
    content = delta.get("content")
    if not isinstance(content, str) or delta.get("id") is not None:
        return None
    if delta.get("role") not in (None, "assistant"):
        return None
    if delta.get("function_call") or delta.get("tool_calls"):
        return None
    return content


_JOIN_EVERY = 64

# `astream` pops these from the call's arguments into the run's options; left to it.
_STRUCTURED_OUTPUT_KEYS = {"ls_structured_output_format", "structured_output_format"}


class _Merged:
    """What `on_llm_end` needs, kept small: converted chunks plus runs of plain text."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.chunks: list[ChatGenerationChunk] = []
        self.texts: list[str] = []

    def add_text(self, text: str) -> None:
        texts = self.texts
        texts.append(text)
        if len(texts) >= _JOIN_EVERY:
            # A token's text as its own str costs ~55 bytes of overhead; joined, one byte a char.
            self.texts = ["".join(texts)]

    def add(self, chunk: ChatGenerationChunk) -> None:
        self._flush()
        self._adopt(chunk)

    def _adopt(self, chunk: ChatGenerationChunk) -> None:
        # What BaseChatModel.astream does to every chunk before keeping it.
        if chunk.message.id is None:
            chunk.message.id = self.run_id
        chunk.message.response_metadata = _gen_info_and_msg_metadata(chunk)
        self.chunks.append(chunk)

    def _flush(self) -> None:
        if self.texts:
            message = AIMessageChunk(
                content="".join(self.texts), response_metadata={"model_provider": "openai"}
            )
            self._adopt(ChatGenerationChunk(message=message))
            self.texts = []

    def generation(self) -> ChatGenerationChunk | None:
        self._flush()
        return merge_chat_generation_chunks(self.chunks)


async def stream_text(
    model: LaneModel,
    input: LanguageModelInput,
    config: RunnableConfig | None,
    *,
    stop: list[str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[str]:
    """`model.astream(input, config, stop=stop, **kwargs)`, each chunk's text; see the module
    docstring. `stop` and `kwargs` are what a `.bind(...)` adds to every call."""
    if kwargs.keys() & _STRUCTURED_OUTPUT_KEYS:
        async for message in model.astream(input, config, stop=stop, **kwargs):
            yield message.text
        return
    config = ensure_config(config)
    messages = model._convert_input(input).to_messages()
    if stop is None and not kwargs:
        params, ls_params = model._lane_invocation_params(), model._lane_ls_params()
    else:
        params = model._get_invocation_params(stop=stop, **kwargs)
        ls_params = model._get_ls_params_with_defaults(stop=stop, **kwargs)
    manager = AsyncCallbackManager.configure(
        config.get("callbacks"),
        model.callbacks,
        model.verbose,
        config.get("tags"),
        model.tags,
        {**(config.get("metadata") or {}), **ls_params},
        model.metadata,
        langsmith_inheritable_metadata=_filter_invocation_params_for_tracing(params),
    )
    payload = model._stream_payload(_normalize_messages(messages), stop, dict(kwargs))
    if (
        any(wants_tokens(handler) for handler in manager.handlers)
        or model.rate_limiter is not None
        or model.output_version == "v1"
        or not model._should_stream(async_api=True, **{**kwargs, "stream": True})
        or not model._takes_fast_path({**payload, **model.model_kwargs})
    ):
        async for message in model.astream(input, config, stop=stop, **kwargs):
            yield message.text
        return
    (run_manager,) = await manager.on_chat_model_start(
        model._serialized,
        [_format_for_tracing(messages)],
        invocation_params=params,
        options={"stop": stop, **{key: params[key] for key in kwargs if key in params}},
        name=config.get("run_name"),
        run_id=config.pop("run_id", None),
        batch_size=1,
    )
    merged = _Merged(f"{LC_ID_PREFIX}-{run_manager.run_id}")
    chunk_class: type[BaseMessageChunk] = AIMessageChunk
    yielded = False
    try:
        async for chunk in model._chunk_dicts(payload):
            text = _plain_text(chunk) if chunk_class is AIMessageChunk else None
            if text is not None:
                merged.add_text(text)
            else:
                generation = model._convert_chunk_to_generation_chunk(chunk, chunk_class, {})
                if generation is None:
                    continue
                chunk_class = generation.message.__class__
                merged.add(generation)
                text = generation.message.text
            yield text
            yielded = True
        if yielded:
            yield ""  # astream's closing empty chunk (chunk_position="last")
    except BaseException as exc:
        partial = merged.generation()
        errors = _generate_response_from_error(exc)
        generations = [[partial], errors] if partial else [errors]
        await run_manager.on_llm_error(exc, response=LLMResult(generations=generations))
        raise
    generation = merged.generation()
    if generation is None:
        error = ValueError("No generation chunks were returned")
        await run_manager.on_llm_error(error, response=LLMResult(generations=[]))
        raise error
    await run_manager.on_llm_end(LLMResult(generations=[[generation]]))
