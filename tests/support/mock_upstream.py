"""Scriptable OpenAI-compatible server on loopback, so tests drive real clients over sockets."""

from __future__ import annotations

import array
import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any, Self, TypeVar

_T = TypeVar("_T")
_Headers = dict[str, str] | None
_MODEL = "gpt-mock"
EMBEDDING_DIMENSIONS = 8
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Script:
    """One scripted reply; a dataclass so tests can derive variants with dataclasses.replace."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    delay: float = 0.0
    first_delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    hold_after: int | None = None
    usage: dict[str, Any] | None = None
    finish_reason: str | None = "stop"
    """None: no chunk ever carries a finish reason (a stream cut short looks like this)."""
    send_done: bool = True
    """False: no `data: [DONE]` (many providers omit it; with no finish reason, a cut-off)."""
    close_delimited: bool = False
    """The body is delimited by closing the connection (no chunked framing), as some servers
    and proxies do; the end of the body is then indistinguishable from a dropped connection."""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    """Tool calls after the content, each `{"id", "name", "arguments"}` (arguments a JSON
    string), streamed as OpenAI does: id and name first, then the arguments in small pieces."""
    raw_body: bytes | None = None
    """Sent as the whole 200 body instead of a stream (an HTML error page, random bytes, an
    enormous line); `headers` give its content type."""


@dataclass
class RecordedRequest:
    """What the mock saw and did, so tests assert on upstream behaviour instead of guessing."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float
    connection_id: int = 0
    chunks_sent: int = 0
    completed: bool = False
    disconnected_at: float | None = None
    ended_at: float | None = None
    """When the mock was done with the request (answered, failed or hung up on)."""


class _Conn:
    """Owns the read buffer, so the hang-up watcher can read without losing pipelined bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ident: int):
        self.reader, self.writer, self.ident = reader, writer, ident
        self.buf = bytearray()
        self.gone = asyncio.Event()
        self.gone_at: float | None = None

    async def read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if not await self._fill():
                return None
        request_line, *lines = self.buf[:end].decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        size = int(headers.get("content-length", "0"))
        while len(self.buf) < size:
            if not await self._fill():
                return None
        body = bytes(self.buf[:size])
        del self.buf[:size]
        return method, target.split("?")[0], headers, body

    async def _fill(self) -> bool:
        try:
            data = await self.reader.read(65536)
        except OSError:
            data = b""
        self.buf += data
        return bool(data)

    async def watch(self) -> None:
        """Runs while a response is in flight: EOF is the only prompt hang-up signal TCP gives."""
        while await self._fill():
            pass
        self.mark_gone()

    close_after = False
    """Set by a close-delimited response: the body ends when the connection does."""

    def mark_gone(self) -> None:
        self.gone_at = self.gone_at or time.monotonic()
        self.gone.set()

    async def send(self, data: bytes, record: Callable[[], None] | None = None) -> bool:
        """Records before writing (so no client sees bytes the record lacks), drains after."""
        if not self.gone.is_set():
            if record is not None:
                record()
            try:
                self.writer.write(data)
                await self.writer.drain()
            except OSError:
                self.mark_gone()
        return not self.gone.is_set()

    async def pause(self, seconds: float | None, until: asyncio.Event | None = None) -> bool:
        """A sleep that a hang-up (or `until`) cuts short; False means the client is gone."""
        if until is None and seconds is not None and seconds <= 0:
            return not self.gone.is_set()
        waiters = {asyncio.ensure_future(e.wait()) for e in (self.gone, until) if e is not None}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return not self.gone.is_set()


def _reason(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase
    return "Unknown"


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _sse(payload: object, chunked: bool = True) -> bytes:
    """Frames one SSE message as one HTTP chunk, so each message is its own write."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if not chunked:
        return b"data: %s\n\n" % data
    return b"%x\r\ndata: %s\n\n\r\n" % (len(data) + 8, data)


def _error_body(status: int, message: str | None, code: str | None = "") -> dict[str, Any]:
    fallback = ("server_error" if status >= 500 else "api_error", None)
    kind, default_code = _ERROR_KINDS.get(status, fallback)
    return {
        "error": {
            "message": message or f"Mock upstream error: {status} {_reason(status)}",
            "type": kind,
            "param": None,
            "code": default_code if code == "" else code,
        }
    }


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def embedding_for(value: object, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The mock's vector for one input (a string, or a list of token ids): a unit vector seeded
    by the input's hash, in float32 precision so the float and base64 formats agree exactly."""
    raw = value.encode() if isinstance(value, str) else json.dumps(value).encode()
    rng = random.Random(hashlib.sha256(raw).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return array.array("f", [v / norm for v in values]).tolist()


def _embedding_inputs(body: Any) -> list[object] | None:
    """The inputs of an embeddings request, as the API reads `input`; None if malformed."""
    given = body.get("input") if isinstance(body, dict) else None
    if isinstance(given, str):
        return [given]
    if not isinstance(given, list) or not given:
        return None
    if all(isinstance(item, int) for item in given):
        return [given]  # one text as token ids
    return list(given)


def _usage(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    if script.usage is not None:
        return script.usage
    prompt = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else [content]:
            text = part.get("text") if isinstance(part, dict) else part
            prompt += len(text.split()) if isinstance(text, str) else 0
    done = len(script.chunks)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


class MockUpstream:
    """Real HTTP/1.1 server with its own thread and loop, so any test (sync or async) can use it."""

    def __init__(self) -> None:
        self.default_script = Script()
        self.script_for: Callable[[Any], Script | None] | None = None
        """Picks a request's script from its JSON body (before the queue); None falls through."""
        self.embedding_dimensions = EMBEDDING_DIMENSIONS
        """Length of the /v1/embeddings vectors when a request does not ask for `dimensions`."""
        self._queue: collections.deque[Script] = collections.deque()
        self._embedding_queue: collections.deque[Script] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._open: dict[int, RecordedRequest | None] = {}
        self._conns: dict[int, _Conn] = {}  # touched only on the mock's loop
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._startup_error: BaseException | None = None
        self._port = 0
        self._ids = itertools.count(1)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._ready.clear()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="mock-upstream", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(5.0) or self._startup_error is not None:
            raise RuntimeError("mock upstream failed to start") from self._startup_error

    def stop(self) -> None:
        """Cancels in-flight responses rather than await clients, so held streams can't hang it."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already finished
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(5.0)
        if self._thread.is_alive():
            raise RuntimeError("mock upstream thread did not stop within 5s")
        self._loop, self._thread, self._port = None, None, 0

    async def _main(self) -> None:
        self._stopping, self._release = asyncio.Event(), asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        try:
            server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("mock upstream is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    def enqueue(self, *scripts: Script) -> None:
        with self._cond:
            self._queue.extend(scripts)

    def enqueue_embeddings(self, *scripts: Script) -> None:
        """Scripts for /v1/embeddings, apart from chat's so a test can script both. Only
        `status`, `error_message`, `headers`, `first_delay` and `raw_body` apply."""
        with self._cond:
            self._embedding_queue.extend(scripts)

    def release(self) -> None:
        """Thread-safe; a release while nothing is held applies to the next hold, avoiding races."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def reset(self) -> None:
        with self._cond:
            self._queue.clear()
            self._embedding_queue.clear()
            self._requests.clear()
            self.default_script = Script()
            self.script_for = None
            self.embedding_dimensions = EMBEDDING_DIMENSIONS
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release.clear)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def open_connections(self) -> dict[int, RecordedRequest | None]:
        """Each connection still open, by id: the request it is answering, or None when idle
        (waiting for a keep-alive client's next request)."""
        with self._cond:
            return dict(self._open)

    def close_idle(self) -> None:
        """Close every connection waiting for its client's next request, as a server does when
        its keep-alive timeout passes. Thread-safe; the closes happen soon after, on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_idle)

    def _close_idle(self) -> None:
        with self._cond:
            idle = [ident for ident, rec in self._open.items() if rec is None]
        for ident in idle:
            self._conns[ident].writer.close()

    def peak_concurrency(self, path: str = "/v1/chat/completions") -> int:
        """The most requests to `path` the mock was answering at one time."""
        with self._cond:
            spans = [
                (r.received_at, r.ended_at or math.inf) for r in self._requests if r.path == path
            ]
        moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        peak = now = 0
        for _, change in moments:  # an end sorts before a start at the same instant
            now += change
            peak = max(peak, now)
        return peak

    @property
    def last_request(self) -> RecordedRequest:
        with self._cond:
            if not self._requests:
                raise AssertionError("mock upstream has not received any request")
            return self._requests[-1]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Blocks this thread; async tests whose loop drives the client need the _async form."""
        return self._wait(lambda: self._at_least(n), timeout, f"{n} request(s)")

    def wait_for_disconnect(self, index: int = -1, timeout: float = 5.0) -> float:
        return self._wait(lambda: self._disconnected_at(index), timeout, f"hang-up on #{index}")

    async def wait_for_requests_async(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - mirrors the sync form; raises AssertionError
    ) -> list[RecordedRequest]:
        return await self._poll(lambda: self._at_least(n), timeout, f"{n} request(s)")

    async def wait_for_disconnect_async(
        self,
        index: int = -1,
        timeout: float = 5.0,  # noqa: ASYNC109 - mirrors the sync form; raises AssertionError
    ) -> float:
        return await self._poll(
            lambda: self._disconnected_at(index), timeout, f"hang-up on #{index}"
        )

    def _at_least(self, n: int) -> list[RecordedRequest] | None:
        return list(self._requests) if len(self._requests) >= n else None

    def _disconnected_at(self, index: int) -> float | None:
        with contextlib.suppress(IndexError):
            return self._requests[index].disconnected_at
        return None

    def _wait(self, probe: Callable[[], _T | None], timeout: float, what: str) -> _T:
        with self._cond:
            if self._cond.wait_for(lambda: probe() is not None, timeout):
                result = probe()
                assert result is not None
                return result
            raise AssertionError(self._timeout_message(what, timeout))

    async def _poll(self, probe: Callable[[], _T | None], limit: float, what: str) -> _T:
        """Polls rather than blocks, so the test's own loop keeps driving the client meanwhile."""
        deadline = time.monotonic() + limit
        while True:
            with self._cond:
                if (result := probe()) is not None:
                    return result
                if time.monotonic() >= deadline:
                    raise AssertionError(self._timeout_message(what, limit))
            await asyncio.sleep(0.01)

    def _timeout_message(self, what: str, timeout: float) -> str:
        seen = [
            (r.method, r.path, r.chunks_sent, r.completed, r.disconnected_at)
            for r in self._requests
        ]
        return f"mock upstream: no {what} within {timeout}s; requests so far: {seen}"

    def _set_open(self, ident: int, rec: RecordedRequest | None) -> None:
        with self._cond:
            self._open[ident] = rec

    def _update(self, rec: RecordedRequest, **changes: Any) -> None:
        with self._cond:
            for name, value in changes.items():
                setattr(rec, name, value)
            self._cond.notify_all()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Swallows stop()'s cancellation: 3.11's start_server logs cancelled handlers as errors."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(reader, writer, next(self._ids))
        self._set_open(conn.ident, None)
        self._conns[conn.ident] = conn
        try:
            with contextlib.suppress(asyncio.CancelledError):
                while (request := await conn.read_request()) is not None:
                    if not await self._serve_one(conn, *request):
                        break
        finally:
            self._tasks.discard(task)
            with self._cond:
                del self._open[conn.ident]
            del self._conns[conn.ident]
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_one(
        self, conn: _Conn, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> bool:
        """Returns whether the connection may be kept alive for the next request."""
        rec = RecordedRequest(
            method, path, headers, _parse_json(body), time.monotonic(), conn.ident
        )
        with self._cond:
            self._requests.append(rec)
            self._open[conn.ident] = rec
            self._cond.notify_all()
        watcher = asyncio.create_task(conn.watch())
        try:
            await self._route(conn, rec)
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
            if conn.gone_at is not None and not rec.completed:
                self._update(rec, disconnected_at=conn.gone_at)
            self._update(rec, ended_at=time.monotonic())
            self._set_open(conn.ident, None)
        keep = headers.get("connection", "").lower() != "close" and not conn.close_after
        return rec.completed and keep

    async def _route(self, conn: _Conn, rec: RecordedRequest) -> None:
        if (rec.method, rec.path) == ("POST", "/v1/chat/completions"):
            chosen = self.script_for(rec.json) if self.script_for is not None else None
            with self._cond:
                script = chosen or (self._queue.popleft() if self._queue else self.default_script)
            await self._chat(conn, rec, script)
        elif (rec.method, rec.path) == ("POST", "/v1/embeddings"):
            with self._cond:
                queued = self._embedding_queue.popleft() if self._embedding_queue else None
            await self._embeddings(conn, rec, queued or Script())
        elif (rec.method, rec.path) == ("GET", "/v1/models"):
            model = {"id": _MODEL, "object": "model", "created": 0, "owned_by": "mock-upstream"}
            await self._send_json(conn, rec, 200, {"object": "list", "data": [model]})
        else:
            error = _error_body(404, f"Invalid URL ({rec.method} {rec.path})", code=None)
            await self._send_json(conn, rec, 404, error)

    async def _send_json(
        self,
        conn: _Conn,
        rec: RecordedRequest,
        status: int,
        payload: object,
        extra: _Headers = None,
    ) -> None:
        data = json.dumps(payload).encode()
        headers = {"content-type": "application/json", "content-length": str(len(data))}
        headers.update(extra or {})
        await conn.send(_head(status, headers) + data, partial(self._update, rec, completed=True))

    async def _embeddings(self, conn: _Conn, rec: RecordedRequest, script: Script) -> None:
        if not await conn.pause(script.first_delay):
            return
        if script.raw_body is not None:
            await self._raw(conn, rec, script)
            return
        inputs = _embedding_inputs(rec.json)
        if script.status != 200 or inputs is None:
            status = script.status if script.status != 200 else 400
            message = script.error_message or (None if inputs else "'input' is required")
            await self._send_json(conn, rec, status, _error_body(status, message), script.headers)
            return
        body: dict[str, Any] = rec.json
        dimensions = body.get("dimensions") or self.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, value in enumerate(inputs):
            vector: Any = embedding_for(value, dimensions)
            if as_base64:
                vector = base64.b64encode(array.array("f", vector).tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(v.split()) if isinstance(v, str) else len(str(v)) for v in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = body.get("model", _MODEL)
        payload = {"object": "list", "data": data, "model": model, "usage": usage}
        await self._send_json(conn, rec, 200, payload, script.headers)

    async def _chat(self, conn: _Conn, rec: RecordedRequest, script: Script) -> None:
        if not await conn.pause(script.first_delay):
            return
        if script.status != 200:
            error = _error_body(script.status, script.error_message)
            await self._send_json(conn, rec, script.status, error, script.headers)
            return
        if script.raw_body is not None:
            await self._raw(conn, rec, script)
            return
        body: dict[str, Any] = rec.json if isinstance(rec.json, dict) else {}
        stream = bool(body.get("stream"))
        base = {
            "id": f"chatcmpl-mock-{next(self._ids)}",
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", _MODEL),
        }
        if stream:
            await self._stream(conn, rec, script, body, base)
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(script.chunks) or None,
            "refusal": None,
        }
        if script.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in script.tool_calls
            ]  # fmt: skip
        choice = {"index": 0, "message": message, "logprobs": None}
        payload = {**base, "choices": [{**choice, "finish_reason": script.finish_reason}]}
        payload["usage"] = _usage(script, body)
        await self._send_json(conn, rec, 200, payload, script.headers)

    async def _stream(
        self, conn: _Conn, rec: RecordedRequest, script: Script, body: dict[str, Any], base: Any
    ) -> None:
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunked = not script.close_delimited

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            payload = {**base, "choices": [choice], **({"usage": None} if with_usage else {})}
            return _sse(payload, chunked)

        head = {"content-type": "text/event-stream"}
        if chunked:
            head["transfer-encoding"] = "chunked"
        else:
            conn.close_after = True
        if not await conn.send(_head(200, {**head, **script.headers})):
            return
        if not await conn.send(chunk({"role": "assistant", "content": ""})):
            return
        for piece in script.chunks:
            if not await self._checkpoint(conn, rec, script, rec.chunks_sent > 0):
                return
            counted = partial(self._update, rec, chunks_sent=rec.chunks_sent + 1)
            if not await conn.send(chunk({"content": piece}), counted):
                return
        for delta in _tool_call_deltas(script.tool_calls):
            if not await conn.send(chunk(delta)):
                return
        if not await self._checkpoint(conn, rec, script, False):
            return
        tail = [chunk({}, script.finish_reason)] if script.finish_reason is not None else []
        if with_usage:
            tail.append(_sse({**base, "choices": [], "usage": _usage(script, body)}, chunked))
        for data in tail:
            if not await conn.send(data):
                return
        # The chunked terminator goes with [DONE], in one write: a client that stops reading
        # at [DONE] still finds the body complete and keeps the connection.
        last = (_sse(b"[DONE]", chunked) if script.send_done else b"") + (
            b"0\r\n\r\n" if chunked else b""
        )
        await conn.send(last, partial(self._update, rec, completed=True))

    async def _raw(self, conn: _Conn, rec: RecordedRequest, script: Script) -> None:
        """A 200 whose body is `script.raw_body`, close-delimited or with a length."""
        assert script.raw_body is not None
        head = {"content-type": "text/html; charset=utf-8", **script.headers}
        if script.close_delimited:
            conn.close_after = True
        else:
            head["content-length"] = str(len(script.raw_body))
        done = partial(self._update, rec, completed=True)
        await conn.send(_head(200, head) + script.raw_body, done)

    async def _checkpoint(
        self, conn: _Conn, rec: RecordedRequest, script: Script, delay: bool
    ) -> bool:
        """Applies drop/hold/delay before the next piece; False aborts the response."""
        if rec.chunks_sent == script.drop_after:
            return False
        if rec.chunks_sent == script.hold_after:
            released = self._release
            if not await conn.pause(None, until=released):
                return False
            released.clear()
        return await conn.pause(script.delay if delay else 0)


def _tool_call_deltas(calls: list[dict[str, str]]) -> list[dict[str, Any]]:
    """OpenAI's tool-call deltas: per call, its id, type and name, then its arguments in pieces
    of 7 characters (so a client must join them)."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": ""}}  # fmt: skip
        deltas.append({"tool_calls": [head]})
        arguments = call["arguments"]
        for start in range(0, len(arguments), 7):
            piece = {"index": index, "function": {"arguments": arguments[start : start + 7]}}
            deltas.append({"tool_calls": [piece]})
    return deltas
