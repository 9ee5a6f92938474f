"""The contract every wire protocol meets, so one run can be streamed in any dialect."""

from typing import Any, Protocol

from chainserve.api.runs.log import RunEvent

KEEPALIVE = b": keepalive\n\n"
"""An SSE comment: every SSE parser (browsers, the OpenAI SDK, the AI SDK) skips it."""


class WireProtocol(Protocol):
    headers: dict[str, str]
    """Extra response headers for the stream."""

    def frame(self, event: RunEvent) -> bytes:
        """The bytes one run event becomes (possibly none, possibly several SSE messages)."""

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        """The JSON body for a run that failed before streaming began."""
