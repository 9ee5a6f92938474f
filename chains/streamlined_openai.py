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
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import orjson
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

_DONE = b"[DONE]"


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """Yield `(event, data)` for each SSE event in a byte stream (event is b"" when unnamed)."""
    pending = b""
    event = b""
    data: list[bytes] = []
    async for block in chunks:
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = b"", []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip()
    # An event cut off before its blank line is never dispatched (SSE spec, end of stream).


class StreamlinedChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` whose Chat Completions stream skips the SDK's per-chunk models."""

    def _takes_fast_path(self, payload: dict[str, Any]) -> bool:
        return not (
            "response_format" in payload
            or self._use_responses_api(payload)
            or self.include_response_headers
            or self._uses_gateway
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = dict(kwargs)
        request["stream"] = True
        stream_usage = self._should_stream_usage(request.pop("stream_usage", None), **request)
        if stream_usage:
            request["stream_options"] = {"include_usage": stream_usage}
        payload = self._get_request_payload(messages, stop=stop, **request)
        if not self._takes_fast_path({**payload, **self.model_kwargs}):
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        try:
            async with self.async_client.with_streaming_response.create(**payload) as response:
                async for chunk in self._chunks(response.http_response, run_manager):
                    yield chunk
        except openai.BadRequestError as exc:
            from langchain_openai.chat_models.base import _handle_openai_bad_request

            _handle_openai_bad_request(exc)
        except openai.APIError as exc:
            from langchain_openai.chat_models.base import _handle_openai_api_error

            _handle_openai_api_error(exc)

    async def _chunks(
        self, response: Any, run_manager: AsyncCallbackManagerForLLMRun | None
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunk_class: type[BaseMessageChunk] = AIMessageChunk
        deadline = _ChunkDeadline(self.stream_chunk_timeout or None)
        async for event, data in sse_events(_bytes(response, deadline)):
            if data == _DONE:
                break
            chunk = orjson.loads(data)
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") or event == b"error":
                _raise_stream_error(chunk, response)
            if event:
                continue  # named events belong to other APIs; the SDK skips them too
            generation = self._convert_chunk_to_generation_chunk(chunk, chunk_class, {})
            deadline.restart()
            if generation is None:
                continue
            chunk_class = generation.message.__class__
            if run_manager:
                logprobs = (generation.generation_info or {}).get("logprobs")
                await run_manager.on_llm_new_token(
                    generation.text, chunk=generation, logprobs=logprobs
                )
            yield generation


class _ChunkDeadline:
    """`stream_chunk_timeout` without a task per chunk: a deadline reset by each parsed
    chunk (keepalive comments do not count) and checked around each socket read only.

    The check must not span a `yield`: LangChain pulls each chunk in a fresh task, and an
    `asyncio.timeout` entered in one task cannot cancel the next.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at: float | None = None
        self.restart()

    def restart(self) -> None:
        if self.seconds:
            self.at = asyncio.get_running_loop().time() + self.seconds


def _raise_stream_error(chunk: dict[str, Any], response: Any) -> None:
    """An error the provider sent inside the stream, raised as the SDK raises it."""
    error = chunk.get("error", chunk)
    message = error.get("message") if isinstance(error, dict) else str(error)
    raise openai.APIError(
        message or "An error occurred during streaming", response.request, body=error
    )


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
            raise TimeoutError(
                f"no streamed chunk from the model provider for {deadline.seconds:.0f}s"
            ) from None
        yield block
