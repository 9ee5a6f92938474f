"""chainserve's own SSE dialect: LangServe's event names, JSON data, and an id on every event."""

from typing import Any

from fastapi.sse import format_sse_event

from chainserve.api.runs.log import RunEvent


class NativeProtocol:
    headers: dict[str, str] = {}  # noqa: RUF012 - never mutated

    def frame(self, event: RunEvent) -> bytes:
        return format_sse_event(data_str=event.data, event=event.event, id=str(event.seq))

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return {"error": error}
