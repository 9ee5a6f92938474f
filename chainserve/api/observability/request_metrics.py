"""Counts every request by route template and status, and the event streams open right now.

Pure ASGI and outside auth and the limits, so refused requests are counted too. The route label
is the path template (`/chains/{name}/stream`), never the raw path: raw paths would make a new
time series for every run id and every scanner's guess.
"""

import re
from collections.abc import Iterable, Iterator

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainserve.api.observability.metrics import OBSERVING, Metrics, RequestObservation
from chainserve.api.request_state import ERROR_CODE

UNMATCHED = "unmatched"
CLIENT_CLOSED = "499"
"""The status of a request whose client left before any response (nginx's convention)."""


def route_template(scope: Scope, known: "RouteTemplates") -> str:
    """The template of the route that served (or would have served) this request."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return known.match(scope["path"])  # refused before routing (401, 413, 429)


class RouteTemplates:
    """Every route's path template, to name requests that never reached the router."""

    def __init__(self) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str:
        if self._patterns is None:
            return UNMATCHED
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return UNMATCHED

    def learn(self, app: object) -> None:
        """Read the templates off the app's routes once (they don't change after start-up)."""
        if self._patterns is None:
            templates = dict.fromkeys(_templates(getattr(app, "routes", ())))
            self._patterns = [(compile_path(t)[0], t) for t in templates]


def _templates(routes: Iterable[object]) -> Iterator[str]:
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            yield path
        # FastAPI wraps each included router; recurse into what it wraps.
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _templates(inner)


def _is_event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).startswith(b"text/event-stream")
    return False


class CountRequests:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.templates.learn(scope.get("app"))
        token = OBSERVING.set(RequestObservation(self.metrics, scope))
        status = 0
        streaming: str | None = None

        async def observe(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                if _is_event_stream(message):
                    streaming = route_template(scope, self.templates)
                    self.metrics.active_streams.labels(streaming).inc()
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, observe)
            failed = False
        finally:
            OBSERVING.reset(token)
            if streaming is not None:
                self.metrics.active_streams.labels(streaming).dec()
            # No response at all: the app failed (the server answers 500), or the client left.
            label = str(status) if status else ("500" if failed else CLIENT_CLOSED)
            self.metrics.requests.labels(
                route_template(scope, self.templates), scope["method"], label
            ).inc()
            code = scope.get("state", {}).get(ERROR_CODE)
            if code is None and failed and not status:
                # Unhandled: Starlette's outermost handler answers (and notes it) after us.
                code = "internal_error"
            if code:
                self.metrics.errors.labels(code).inc()
