"""The run log contract: every run's events and state, readable by any worker that shares it.

A run is decoupled from the HTTP request that started it: the run appends events here and
every stream (the original one, a reconnect, another worker's) reads them back by sequence
number, so a client can resume after a dropped connection with no gap and no duplicate.
"""

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

RunStatus = Literal["running", "done", "error", "cancelled"]
TERMINAL_EVENTS = frozenset({"end", "error"})


@dataclass(frozen=True)
class RunEvent:
    seq: int
    """The SSE `id`: 0 for `metadata`, then one more per event."""
    event: str
    data: str


@dataclass
class RunRecord:
    """A run's state: what `GET /runs/{run_id}` reports."""

    run_id: str
    chain: str
    model: dict[str, str]
    created_at: float
    status: RunStatus = "running"
    thread_id: str | None = None
    owner: str | None = None
    """The key id that started the run; None: unowned (no keys, or from before owners)."""
    output: str = ""
    structured_output: Any = None
    """The chain's whole structured output (a JSON value), when it streams one."""
    tool_calls: list[dict[str, Any]] | None = None
    """The tool calls its model made, complete (`chains/output_events.py`)."""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    http_status: int | None = None
    """The status a client still waiting for headers gets when the run failed early."""
    retry_after: str | None = None
    last_seq: int = -1

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        del body["http_status"], body["retry_after"], body["owner"]
        return body


class RunGone(Exception):  # noqa: N818 - named for the HTTP 410 it becomes
    """The events asked for were dropped (the log keeps a bounded window per run)."""


class RunLog(Protocol):
    async def create(self, record: RunRecord, metadata: str) -> None:
        """Store a new run and its `metadata` event (seq 0)."""

    async def append(self, run_id: str, event: str, data: str, output: str = "") -> int:
        """Append one event (and its text to the run's output); returns its seq."""

    async def finish(self, run_id: str, changes: dict[str, Any], event: str, data: str) -> None:
        """Update the record, then append the terminal event, so readers see both."""

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def read(self, run_id: str, after: int, wait: float) -> list[RunEvent]:
        """Events with seq > `after`, waiting up to `wait` seconds for one if none are there.

        Raises `RunGone` if some of them were already dropped, `KeyError` if the run is
        unknown or expired.
        """

    async def remember_latest(self, key: str, run_id: str) -> None:
        """Note `run_id` as the latest run of `key` (an AI SDK chat), for as long as runs are
        kept, so any worker can find the run when the chat's page comes back."""

    async def latest(self, key: str) -> str | None:
        """The run last noted for `key`, unless that note expired."""

    async def publish_cancel(self, run_id: str) -> None:
        """Ask whichever worker runs `run_id` to cancel it."""

    def cancellations(self) -> AsyncIterator[str]:
        """Run ids other workers asked to cancel (never yields for a single-process log)."""

    async def aclose(self) -> None: ...
