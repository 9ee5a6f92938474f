"""A lean HTTP/1.1 client for streamed model responses: `asyncio.Protocol` plus httptools.

Why not httpx: under load a live model sends one SSE event per socket read, and every read
through httpx2 → httpcore2 → h11 pays an anyio cancel scope, a timeout, h11's state machine
and several coroutine layers (about 220 µs of profiled CPU per event at 100 concurrent
streams, the largest single share of a streamed token's cost). Here `data_received` hands
whatever the socket delivered to the C parser, and the reader picks up every block that
arrived since it last looked, with one future per wait and no timer unless it has to wait.

Deliberately small: HTTP/1.1 keep-alive to plain or TLS origins, chunked, sized or
close-delimited bodies, a read timeout, back-pressure (reading pauses when the consumer lags
by more than `HIGH_WATER` bytes). Proxies, HTTP/2 and auth flows stay with the SDK's client;
`StreamlinedChatOpenAI` only routes a request here when none of them applies.
"""

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 512 * 1024
"""Body bytes buffered ahead of the reader before the socket stops being read."""

MAX_HEAD_BYTES = 64 * 1024


class UpstreamError(Exception):
    """The connection failed: refused, dropped, unparseable. Nothing usable was received."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made: nothing was sent."""


class UpstreamTimeoutError(UpstreamError):
    """Connecting, or waiting for the next bytes, took longer than allowed."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> tuple["Origin", str]:
        """The origin of `url` and its request target (path and query)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port), target

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class _Connection(asyncio.Protocol):
    """One upstream connection; holds at most one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.delimited = False
        """The body's end is marked (chunked or Content-Length), not the connection's close."""
        self.got_bytes = False
        self.error: Exception | None = None
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.head_bytes = 0
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP response: {exc}"))
            return
        if not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamError("response headers too large"))
                return
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return False  # close our side too; an upstream never half-closes mid-response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.delimited and self.error is None:
            self.complete = True  # a close-delimited body ends here
        elif not self.complete and self.error is None:
            detail = f": {exc}" if exc else ""
            self.error = UpstreamError(f"the model provider closed the connection{detail}")
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        names = {name for name, _ in self.headers}
        self.delimited = b"content-length" in names or any(
            name == b"transfer-encoding" and b"chunked" in value.lower()
            for name, value in self.headers
        )
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # the reader's side

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    async def wait(self, seconds: float | None, error: Exception | None = None) -> None:
        """Until something changes (bytes, the end of the body, an error), or `seconds` pass:
        then `error` is raised (by default, the read timeout's).

        A future and one timer handle per wait: this runs once per streamed event, and
        `asyncio.timeout` costs several times as much."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = None
        if seconds is not None:
            if error is None:
                error = UpstreamTimeoutError(f"no data from the model provider for {seconds:g}s")
            timer = loop.call_later(seconds, _fail_waiter, waiter, error)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> bytes:
        data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.body


def _fail_waiter(waiter: asyncio.Future[None], error: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class UpstreamResponse:
    """A response whose head has arrived; read the body block by block, then `close()`."""

    def __init__(
        self, pool: "UpstreamClient", origin: Origin, conn: _Connection, read_timeout: float | None
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._conn = conn
        self.read_timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers
        self._open = True

    async def read(self, deadline: float | None = None) -> bytes:
        """Everything that arrived since the last call (waiting if nothing has); b"" at the end.

        `deadline` (loop time) bounds the wait on top of the read timeout: whichever comes
        first raises `TimeoutError` (deadline) or `UpstreamTimeoutError` (read timeout).
        """
        conn = self._conn
        while True:
            if conn.body:
                return conn.take()
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return b""
            if deadline is None:
                await conn.wait(self.read_timeout)
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError
            if self.read_timeout is None or left < self.read_timeout:
                await conn.wait(left, TimeoutError())
            else:
                await conn.wait(self.read_timeout)

    async def read_all(self, limit: int = 1024 * 1024) -> bytes:
        """The whole (error) body, up to `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            block = await self.read()
            if not block:
                break
            parts.append(block)
            size += len(block)
        return b"".join(parts)[:limit]

    def close(self) -> None:
        """Return the connection to the pool if the body was read to its end, else close it
        (which is how the upstream learns that nobody is listening any more)."""
        if not self._open:
            return
        self._open = False
        self._pool._release(self._origin, self._conn)


class UpstreamClient:
    """Keep-alive connections to model providers, shared by every request of one app.

    Owned by whoever serves the chains (the app closes it at shutdown), like an httpx pool.
    """

    def __init__(
        self,
        *,
        max_idle_per_origin: int = 100,
        ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.max_idle_per_origin = max_idle_per_origin
        self._ssl_context_factory = ssl_context_factory
        self._idle: dict[Origin, list[_Connection]] = {}
        self.refusing_stream_options: set[str] = set()
        """Base URLs whose server refused `stream_options` (`chains/models/stream_options.py`)."""
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def request(
        self,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> UpstreamResponse:
        """POST `body` to `url` and wait for the response head."""
        if self._closed:
            raise UpstreamError("the upstream client is closed")
        origin, target = Origin.of(url)
        head = [f"POST {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n".encode()]
        head.extend(
            b"%s: %s\r\n" % (name, value)
            for name, value in headers
            if name.lower() not in (b"host", b"content-length", b"connection", b"transfer-encoding")
        )
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        message = b"".join(head) + body
        while True:
            conn = self._idle_connection(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
            try:
                return await self._exchange(origin, conn, message, read_timeout)
            except UpstreamError:
                # A kept-alive connection the provider closed while idle fails before any byte
                # of the response: the request never reached it, so try once on a fresh one.
                if (
                    reused
                    and not conn.got_bytes
                    and not isinstance(conn.error, UpstreamTimeoutError)
                ):
                    continue
                raise

    async def _exchange(
        self, origin: Origin, conn: _Connection, message: bytes, read_timeout: float | None
    ) -> UpstreamResponse:
        assert conn.transport is not None
        try:
            conn.transport.write(message)
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            conn.transport.abort()
            conn.closed = True
            raise
        return UpstreamResponse(self, origin, conn, read_timeout)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn._reset()
                conn.reused = True
                return conn
        return None

    async def _connect(self, origin: Origin, seconds: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                _, conn = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"connecting to the model provider took longer than {seconds:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(f"could not connect to the model provider: {exc}") from exc
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            factory = self._ssl_context_factory or ssl.create_default_context
            self._ssl = factory()
        return self._ssl

    def _release(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if conn.reusable() and not self._closed and len(idle) < self.max_idle_per_origin:
            idle.append(conn)
        elif not conn.closed and conn.transport is not None:
            conn.closed = True
            conn.transport.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                if conn.transport is not None:
                    with contextlib.suppress(Exception):
                        conn.transport.close()
        self._idle.clear()
