"""`ChatOpenAI` with a leaner streaming path: raw SSE bytes to chunk dicts, no SDK models.

Why: the `openai` SDK builds a pydantic model for every streamed chunk (about 100 µs of CPU
each), which `ChatOpenAI` then dumps straight back into a dict, and it bounds each chunk
with `asyncio.wait_for` (a new task per chunk). This class keeps everything that gives the
stream its meaning — the SDK for the request itself (auth, retries, status errors), and
LangChain's own `_convert_chunk_to_generation_chunk` for every chunk (content, tool-call
chunks, usage, finish reasons, logprobs) and its callbacks — and replaces only the per-chunk
parse: `orjson` on each SSE `data:` payload, one reschedulable deadline for the chunk timeout.
Anything unusual (structured output, the Responses API, response headers) takes the parent's
path unchanged.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, cast

import httpx2
import openai
import orjson
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from pydantic import Field, PrivateAttr

from chainserve.chains.models.output_cap import (
    OutputBudget,
    capped,
    delta_text,
    generation_text,
    length_chunk,
    length_generation,
    trimmed_chunk,
    trimmed_generation,
)
from chainserve.chains.models.retry_notice import announce_sdk_retries
from chainserve.chains.models.stream_options import (
    drop_stream_options,
    refuses_stream_options,
    takes_stream_options,
)
from chainserve.chains.models.text_lane import stream_text
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.models.upstream_openai import WireStream, back_off, open_stream
from chainserve.chains.models.upstream_sse import (
    DEFAULT_MAX_EVENT_BYTES,
    EventTooLargeError,
    UpstreamIncompleteError,
    UpstreamUnreadableError,
    sse_events,
)

__all__ = ["StreamlinedChatOpenAI", "sse_events"]

_DONE = b"[DONE]"


class StreamlinedChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` whose Chat Completions stream skips the SDK's per-chunk models, and, given an
    `upstream_client`, the SDK's per-request transform and httpx's per-read layers too."""

    upstream_client: UpstreamClient | None = Field(default=None, exclude=True)
    """Where requests go when nothing needs the SDK's HTTP stack (see `_wire_url`)."""
    first_chunk_timeout: float | None = Field(default=None, exclude=True)
    """Seconds from sending the request to the first parsed chunk (None: `stream_chunk_timeout`
    applies from the start, as in `ChatOpenAI`). A model may think a while before its first
    token, and then should not fall silent for long: two limits, not one."""
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, exclude=True)
    """The largest single SSE event accepted from the provider; a larger one fails the run
    (a provider that never ends a line would otherwise grow our buffer without bound)."""
    output_cap: int | None = Field(default=None, exclude=True)
    """The server's cap on an answer's tokens: no request or binding may ask for more, and a
    provider that sends more is cut off (`chains/models/output_cap.py`)."""
    _wire_url_cache: tuple[str | None] | None = PrivateAttr(default=None)
    _params_cache: dict[str, Any] | None = PrivateAttr(default=None)
    _ls_params_cache: dict[str, Any] | None = PrivateAttr(default=None)
    _refusing_here: set[str] = PrivateAttr(default_factory=set)

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> "StreamlinedChatOpenAI":
        """A copy whose cached per-instance values are computed again: `update` may change the
        fields they come from (pydantic would otherwise copy the caches along)."""
        copied = super().model_copy(update=update, deep=deep)
        copied._wire_url_cache = copied._params_cache = copied._ls_params_cache = None
        return copied

    def _takes_fast_path(self, payload: dict[str, Any]) -> bool:
        return not (
            "response_format" in payload
            or self._use_responses_api(payload)
            or self.include_response_headers
            or self._uses_gateway
        )

    def _stream_payload(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        request = dict(kwargs)
        request["stream"] = True
        stream_usage = self._should_stream_usage(request.pop("stream_usage", None), **request)
        if stream_usage and takes_stream_options(self._refusing(), self._upstream_key()):
            request["stream_options"] = {"include_usage": stream_usage}
        payload = self._get_request_payload(messages, stop=stop, **request)
        limits = [key for key in ("max_completion_tokens", "max_tokens") if key in payload]
        for key in limits:
            payload[key] = capped(payload[key], self.output_cap)
        if not limits and self.output_cap is not None:
            payload["max_completion_tokens"] = self.output_cap
        return payload

    def _budget(self, payload: dict[str, Any]) -> OutputBudget | None:
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return None
        return OutputBudget(limit, str(payload.get("model") or self.model_name))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        payload = self._stream_payload(messages, stop, kwargs)
        announce_sdk_retries(self.root_async_client)
        if not self._takes_fast_path({**payload, **self.model_kwargs}):
            async for chunk in self._parent_astream(payload, messages, stop, run_manager, kwargs):
                yield chunk
            return
        chunk_class: type[BaseMessageChunk] = AIMessageChunk
        async for raw in self._chunk_dicts(payload):
            generation = self._convert_chunk_to_generation_chunk(raw, chunk_class, {})
            if generation is None:
                continue
            chunk_class = generation.message.__class__
            if run_manager:
                logprobs = (generation.generation_info or {}).get("logprobs")
                await run_manager.on_llm_new_token(
                    generation.text, chunk=generation, logprobs=logprobs
                )
            yield generation

    async def _parent_astream(
        self,
        payload: dict[str, Any],
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[ChatGenerationChunk]:
        """`ChatOpenAI`'s own stream (structured output, the Responses API), under the cap."""
        for key in ("max_tokens", "max_completion_tokens"):
            if key in kwargs:
                kwargs[key] = capped(kwargs[key], self.output_cap)
        budget = self._budget(payload)
        # The SDK's decoder swallows [DONE], so here a finish reason is what marks a complete
        # answer; the Responses API has end events of its own, left to the parent.
        finished = self._use_responses_api({**payload, **self.model_kwargs})
        parent = cast(
            AsyncGenerator[ChatGenerationChunk],
            super()._astream(messages, stop, run_manager, **kwargs),
        )
        async with contextlib.aclosing(parent) as chunks:
            async for chunk in chunks:
                finished = finished or bool((chunk.generation_info or {}).get("finish_reason"))
                if (
                    budget is None
                    or (fits := await budget.overdraft(generation_text(chunk))) is None
                ):
                    yield chunk
                    continue
                budget.log_cut()
                if (head := trimmed_generation(chunk, fits)) is not None:
                    yield head
                yield length_generation()
                return
        if not finished:
            url = f"{self.root_async_client.base_url}chat/completions"
            raise UpstreamIncompleteError(httpx2.Request("POST", url))

    async def astream_text(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """The text of each streamed chunk, as `astream` would give it; see
        `chains/models/text_lane.py` for when this skips the per-token message objects, and why
        that is safe."""
        async for text in stream_text(self, input, config, stop=stop, **kwargs):
            yield text

    def _lane_invocation_params(self) -> dict[str, Any]:
        """`_get_invocation_params(stop=None)`, computed once: it depends only on this instance's
        fields (configurable changes build a new instance), and it runs `inspect.signature`."""
        if self._params_cache is None:
            self._params_cache = self._get_invocation_params(stop=None)
        return dict(self._params_cache)

    def _lane_ls_params(self) -> dict[str, Any]:
        """`_get_ls_params_with_defaults(stop=None)`, computed once for the same reason."""
        if self._ls_params_cache is None:
            self._ls_params_cache = dict(self._get_ls_params_with_defaults(stop=None))
        return dict(self._ls_params_cache)

    def _upstream_key(self) -> str:
        return str(self.root_async_client.base_url)

    def _refusing(self) -> set[str]:
        """Base URLs known to refuse `stream_options`: the app's pool keeps them for every
        model it serves; a model without one keeps its own."""
        if self.upstream_client is not None:
            return self.upstream_client.refusing_stream_options
        return self._refusing_here

    async def _chunk_dicts(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The provider's chunks; sent again once without `stream_options` if the provider
        refuses that field (`chains/models/stream_options.py`)."""
        announce_sdk_retries(self.root_async_client)  # the text lane comes here directly
        try:
            async with contextlib.aclosing(self._chunk_dicts_retried(payload)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except openai.APIStatusError as exc:
            if "stream_options" not in payload or not refuses_stream_options(exc):
                raise
            # Refused at the opening, so nothing was yielded: the same request, without it.
            drop_stream_options(self._refusing(), self._upstream_key())
            without = {k: v for k, v in payload.items() if k != "stream_options"}
            async with contextlib.aclosing(self._chunk_dicts_retried(without)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def _chunk_dicts_retried(self, payload: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """The provider's chunks as dicts, through the lean client or the SDK's.

        A stream that breaks or times out before its first chunk is sent again (up to the
        client's `max_retries`, with its backoff): nothing has reached the caller yet, and each
        attempt gets the whole first-token timeout. Failing to open (the response head) is
        retried by the opening itself. After the first chunk a failure is final, since a retry
        would repeat what was already sent."""
        client = self.root_async_client
        budget = self._budget(payload)
        for attempt in range(client.max_retries + 1):
            progress = _Progress()
            try:
                async with contextlib.aclosing(self._chunk_dicts_once(payload, progress)) as once:
                    async for chunk in once:
                        if not progress.chunks and carries_output(chunk):
                            progress.chunks = 1
                        if (
                            budget is None
                            or (fits := await budget.overdraft(delta_text(chunk))) is None
                        ):
                            yield chunk
                            continue
                        budget.log_cut()  # closing `once` hangs up on the provider
                        if (head := trimmed_chunk(chunk, fits)) is not None:
                            yield head
                        yield length_chunk()
                        return
                return
            except (openai.APIConnectionError, TimeoutError) as exc:
                # Opening a stream has its own retries (the SDK's, or `open_stream`'s, which
                # honour Retry-After); a failure while opening is final here, or the two
                # budgets would multiply. Retried here: a stream that opened, then broke or
                # went silent before its first chunk.
                if progress.chunks or not progress.opened or attempt == client.max_retries:
                    raise
                why = f"{type(exc).__name__} before the first chunk"
                await back_off(client, client.max_retries - attempt, None, why)

    async def _chunk_dicts_once(
        self, payload: dict[str, Any], progress: "_Progress"
    ) -> AsyncGenerator[dict[str, Any]]:
        deadline = _ChunkDeadline(self.stream_chunk_timeout or None, self.first_chunk_timeout)
        upstream, url = self.upstream_client, self._wire_url()
        body = _wire_body(payload) if url else None
        try:
            if upstream is not None and url is not None and body is not None:
                async with deadline.bounding():
                    wire = await open_stream(self.root_async_client, upstream, url, body)
                body = None  # sent: not worth holding for the length of the stream
                progress.opened = True
                try:
                    blocks = _wire_blocks(wire, deadline)
                    async for chunk in _parsed(
                        blocks, deadline, wire.request, self.max_event_bytes
                    ):
                        yield chunk
                finally:
                    wire.close()
                return
            async with contextlib.AsyncExitStack() as stack:
                opening = self.async_client.with_streaming_response.create(**payload)
                async with deadline.bounding():
                    response = await stack.enter_async_context(opening)
                http = response.http_response
                progress.opened = True
                blocks = _bytes(http, deadline)
                parsed = _parsed(blocks, deadline, lambda: http.request, self.max_event_bytes)
                async for chunk in parsed:
                    yield chunk
        except openai.BadRequestError as exc:
            from langchain_openai.chat_models.base import _handle_openai_bad_request

            _handle_openai_bad_request(exc)
        except openai.APIError as exc:
            if isinstance(exc, openai.APIConnectionError):
                raise  # the caller may retry it (before the first chunk)
            from langchain_openai.chat_models.base import _handle_openai_api_error

            _handle_openai_api_error(exc)

    def _wire_url(self) -> str | None:
        """The Chat Completions URL when the lean client can send this model's requests exactly
        as the SDK would: a static API key (no token provider, workload identity or provider
        runtime), no default query, and no proxy configured for the URL. Else None.

        Decided once per model instance: its client and settings do not change after
        construction (`configurable_fields` builds a new instance instead)."""
        if self._wire_url_cache is None:
            self._wire_url_cache = (self._find_wire_url(),)
        return self._wire_url_cache[0]

    def _find_wire_url(self) -> str | None:
        if self.upstream_client is None:
            return None
        client = self.root_async_client
        try:
            if (
                any(
                    getattr(client, name, _MISSING) is not None
                    for name in (
                        "_provider_runtime",
                        "_workload_identity_auth",
                        "_api_key_provider",
                    )
                )
                or client.default_query
            ):
                return None
            url = f"{client.base_url}chat/completions"
            http = client._client
            if http._transport_for_url(httpx2.URL(url)) is not http._transport:
                return None  # a proxy (or a custom mount) applies
        except AttributeError:  # an SDK whose internals moved: stay on its own path
            return None
        return url if url.startswith(("http://", "https://")) else None


_MISSING = object()


async def _parsed(
    blocks: AsyncIterator[bytes],
    deadline: "_ChunkDeadline",
    request: Callable[[], httpx2.Request],
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> AsyncIterator[dict[str, Any]]:
    """Chunk dicts from SSE bytes; an error the provider sends mid-stream raises as the SDK's,
    and so does a body that is not an event stream or that ends before the answer does."""
    finished = False
    events = 0
    try:
        async for event, data in sse_events(blocks, max_event_bytes):
            events += 1
            if data == _DONE:
                return
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamUnreadableError(
                    "The model provider sent a stream event that is not JSON.", request()
                ) from None
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") or event == b"error":
                _raise_stream_error(chunk, request())
            if event:
                continue  # named events belong to other APIs; the SDK skips them too
            if not deadline.waiting_for_first or carries_output(chunk):
                deadline.restart()  # a role-only opening chunk is not the first token
            if not finished:
                finished = any(
                    isinstance(c, dict) and c.get("finish_reason")
                    for c in chunk.get("choices") or ()
                )
            yield chunk
    except EventTooLargeError as exc:
        raise UpstreamUnreadableError(str(exc), request()) from None
    if not events:
        raise UpstreamUnreadableError(
            "The model provider's response is not an event stream.", request()
        )
    if not finished:
        raise UpstreamIncompleteError(request())


def _wire_body(payload: dict[str, Any]) -> bytes | None:
    """The JSON the SDK would send for `payload`, or None if only the SDK can send it."""
    if payload.keys() & {"extra_headers", "extra_query", "timeout"}:
        return None
    body = dict(payload)
    extra = body.pop("extra_body", None)
    if isinstance(extra, dict):
        body.update(extra)
    elif extra is not None:
        return None
    try:
        return orjson.dumps(body)
    except TypeError:
        return None


def carries_output(chunk: dict[str, Any]) -> bool:
    """Whether a chunk is (or ends) the answer: content, a tool call, a finish reason or
    usage. The role-only chunk providers open with is not, so it neither counts as the first
    token nor stops a retry."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            return True
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or any(
            value for key, value in delta.items() if key != "role"
        ):
            return True
    return False


class _Progress:
    """How far one attempt got: whether the stream opened, and whether any chunk carried
    output (`chunks` is 1 from then on)."""

    def __init__(self) -> None:
        self.opened = False
        self.chunks = 0


class _ChunkDeadline:
    """The chunk timeouts without a task per chunk: a deadline for the first parsed chunk,
    then one reset by each parsed chunk (keepalive comments do not count), checked around each
    socket read only.

    The check must not span a `yield`: LangChain pulls each chunk in a fresh task, and an
    `asyncio.timeout` entered in one task cannot cancel the next.
    """

    def __init__(self, seconds: float | None, first: float | None = None) -> None:
        self.seconds = seconds
        self.waiting_for_first = True
        self.at: float | None = None
        limit = first if first is not None else seconds
        if limit:
            self.at = asyncio.get_running_loop().time() + limit
        self.current = limit

    def restart(self) -> None:
        self.waiting_for_first = False
        self.current = self.seconds
        self.at = asyncio.get_running_loop().time() + self.seconds if self.seconds else None

    @contextlib.asynccontextmanager
    async def bounding(self) -> AsyncIterator[None]:
        """Opening the stream (the response head, the SDK's retries) counts towards the first
        chunk's deadline: a provider that sends no head is as silent as one that sends no token."""
        try:
            async with asyncio.timeout_at(self.at):
                yield
        except TimeoutError:
            raise TimeoutError(self.message()) from None

    def message(self) -> str:
        if self.waiting_for_first:
            return f"no first token from the model provider within {self.current:g}s"
        return f"no streamed chunk from the model provider for {self.current:g}s"


def _raise_stream_error(chunk: dict[str, Any], request: httpx2.Request) -> None:
    """An error the provider sent inside the stream, raised as the SDK raises it."""
    error = chunk.get("error", chunk)
    message = error.get("message") if isinstance(error, dict) else str(error)
    raise openai.APIError(message or "An error occurred during streaming", request, body=error)


async def _bytes(response: Any, deadline: _ChunkDeadline) -> AsyncIterator[bytes]:
    """The body, read under the chunk deadline; a broken connection raises as the SDK does."""
    blocks = response.aiter_bytes().__aiter__()
    while True:
        try:
            async with asyncio.timeout_at(deadline.at):
                block = await blocks.__anext__()
        except StopAsyncIteration:
            return
        except httpx2.TransportError as exc:
            raise openai.APIConnectionError(request=response.request) from exc
        except TimeoutError:
            raise TimeoutError(deadline.message()) from None
        yield block


async def _wire_blocks(response: WireStream, deadline: "_ChunkDeadline") -> AsyncIterator[bytes]:
    """The body from the lean client, under the chunk deadline (one timer per wait at most)."""
    while True:
        try:
            block = await response.read(deadline.at)
        except TimeoutError:
            raise TimeoutError(deadline.message()) from None
        if not block:
            return
        yield block
