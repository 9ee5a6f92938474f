"""Runs as background tasks that write to the run log, so they can outlive their request."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
from pydantic import BaseModel

from chainserve.api.errors.typed import ChainError, classify, log_failure
from chainserve.api.request_state import HOLD_STREAM_SLOT
from chainserve.api.runs.encoding import to_json, to_jsonable
from chainserve.api.runs.log import RunLog, RunRecord
from chainserve.api.runs.run import Run
from chainserve.api.runs.shutdown import Drain
from chainserve.chains.models.retry_notice import RETRY_LISTENER
from chainserve.chains.output_events import EventChunk

logger = logging.getLogger("chainserve.runs")

CANCEL_WAIT_SECONDS = 5.0
CANCEL_REPUBLISH_SECONDS = 0.5


def _text(chunk: Any) -> str:
    """The text a chunk adds to the run's output (message chunks contribute their content)."""
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", None) if isinstance(chunk, BaseModel) else None
    return content if isinstance(content, str) else ""


class RunManager:
    """Starts runs, cancels them (here or, through the log, on another worker), and cleans up."""

    def __init__(
        self, log: RunLog, drain: Drain | None = None, run_timeout: float | None = None
    ) -> None:
        self.log = log
        self.run_timeout = run_timeout
        """Seconds a run may take in all (`CHAINSERVE_RUN_TIMEOUT_SECONDS`); None: unbounded."""
        self.drain = drain or Drain(0.0)
        """Started by SIGTERM: how long open streams of these runs may still go on."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing: set[str] = set()
        """Runs recording their cancellation: another cancel now would cut that short."""
        self._listener: asyncio.Task[None] | None = None

    async def start(self, run: Run, chunks: AsyncIterator[Any]) -> None:
        record = RunRecord(
            run_id=run.run_id,
            chain=run.chain,
            model=run.metadata()["model"],
            created_at=time.time(),
            thread_id=run.thread_id,
            owner=run.owner,
        )
        await self.log.create(record, to_json(run.metadata()))
        run.stats.sink = partial(self._side_event, run.run_id)
        task = asyncio.create_task(self._execute(run, chunks), name=f"run-{run.run_id}")
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.run_id, None))
        hold = HOLD_STREAM_SLOT.get()
        if hold is not None:  # the caller's stream slot stays taken while the run goes on
            release = hold(run.run_id)
            task.add_done_callback(lambda _: release())

    async def _relay(self, run: Run, chunks: AsyncIterator[Any]) -> None:
        async for chunk in chunks:
            if isinstance(chunk, str):
                if not chunk:
                    continue  # the usage-only chunk says nothing to a client
                run.mark_chunk()
                await self.log.append(run.run_id, "data", to_json(chunk), chunk)
            else:
                if not isinstance(chunk, EventChunk):  # an agent's step is not output
                    run.mark_chunk()
                    await self.log.append(run.run_id, "data", to_json(chunk), _text(chunk))
                # After the raw chunk (LangServe's shape, kept for every client): what it
                # means in the event model (`chains/output_events.py`).
                for name, body in run.outputs.feed(chunk):
                    await self.log.append(run.run_id, name, to_json(body))
            if run.chunks == 1:
                # Let the stream's reader send the headers and the first token now: when
                # the provider's first read holds many tokens, this task would otherwise
                # run through all of them (and the chain's work per token) first.
                await asyncio.sleep(0)

    async def _execute(self, run: Run, chunks: AsyncIterator[Any]) -> None:
        RETRY_LISTENER.set(run.note_retry)  # this task's own context: this run's retries only
        deadline = asyncio.timeout(self.run_timeout)
        try:
            async with deadline:
                await self._relay(run, chunks)
        except Exception as exc:  # noqa: BLE001 - every chain failure becomes a typed error
            await self._fail(run, exc, self._timed_out() if deadline.expired() else None)
        except anyio.get_cancelled_exc_class():
            self._closing.add(run.run_id)
            try:
                with anyio.CancelScope(shield=True):
                    await self._record_cancel(run)
            finally:
                self._closing.discard(run.run_id)
            raise
        else:
            for name, body in run.outputs.finish():
                await self.log.append(run.run_id, name, to_json(body))
            run.finish("done")
            summary = run.summary()
            await self._record_end(run, self._changes(run), "end", to_json(summary))
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    async def _record_end(self, run: Run, changes: dict[str, Any], event: str, data: str) -> None:
        """Write the run's terminal event; a cancel (a client hanging up just after reading
        it) must not cut this short, or the run would get a second ending."""
        self._closing.add(run.run_id)
        try:
            await self.log.finish(run.run_id, changes, event, data)
        finally:
            self._closing.discard(run.run_id)

    async def _side_event(self, run_id: str, name: str, data: Any) -> None:
        await self.log.append(run_id, name, to_json(data))

    def _changes(self, run: Run, **extra: Any) -> dict[str, Any]:
        summary = run.summary()
        outputs = run.outputs
        return {
            "status": run.status,
            "usage": summary["usage"],
            "finish_reason": summary["finish_reason"],
            "timings": summary["timings"],
            # What text cannot hold, kept for `GET /runs/{id}` (partial for a failed run).
            "structured_output": to_jsonable(outputs.value) if outputs.has_value else None,
            "tool_calls": outputs.tool_calls() or None,
            **extra,
        }

    def _timed_out(self) -> ChainError:
        return ChainError(
            504,
            "run_timeout",
            f"The run took longer than the server allows ({self.run_timeout:g}s) and was "
            "stopped; its output so far is kept.",
            False,
        )

    async def _fail(self, run: Run, exc: Exception, error: ChainError | None = None) -> None:
        error = error or classify(exc)
        log_failure(exc, error, run.run_id)
        run.finish("error", error.code)
        payload = error.payload(run.run_id)
        changes = self._changes(
            run, error=payload, http_status=error.status, retry_after=error.retry_after
        )
        await self._record_end(run, changes, "error", to_json(payload))

    async def _record_cancel(self, run: Run) -> None:
        if run.status != "running":
            return  # cancelled while its ending was being recorded: that ending stands
        run.finish("cancelled")
        payload = {
            "code": "cancelled",
            "message": "The run was cancelled.",
            "retryable": False,
            "run_id": run.run_id,
        }
        with contextlib.suppress(Exception):  # a log outage must not hide the cancellation
            await self.log.finish(
                run.run_id, self._changes(run, error=payload), "error", to_json(payload)
            )

    async def cancel(self, run_id: str) -> RunRecord | None:
        """Cancel a running run wherever it runs; returns its record once it has stopped."""
        task = self._tasks.get(run_id)
        if task is not None:
            self._cancel_task(run_id)
            await asyncio.wait({task}, timeout=CANCEL_WAIT_SECONDS)
            return await self.log.get(run_id)
        record = await self.log.get(run_id)
        if record is None or record.status != "running":
            return record
        # Pub/sub delivers only to workers subscribed at that instant (one still subscribing
        # after a start or a Redis reconnect misses it), so the cancel is sent again until
        # the run has stopped; a worker ignores it for a run already recording its end.
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        next_publish = 0.0
        while record is not None and record.status == "running" and time.monotonic() < deadline:
            if time.monotonic() >= next_publish:
                await self.log.publish_cancel(run_id)
                next_publish = time.monotonic() + CANCEL_REPUBLISH_SECONDS
            await asyncio.sleep(0.05)
            record = await self.log.get(run_id)
        return record

    async def _listen(self) -> None:
        """Follow cancel requests for as long as the app runs, reconnecting after outages."""
        delay = 0.5
        while True:
            try:
                async for run_id in self.log.cancellations():
                    delay = 0.5
                    self._cancel_task(run_id)
            # A Redis outage must not end cancellation for good; one line, not a traceback.
            except Exception as exc:  # noqa: BLE001
                logger.warning("run-cancel channel lost (%s); retry in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _cancel_task(self, run_id: str) -> None:
        """Cancel the run's task here, if it runs here, again if a cancel did not take (a
        library swallowed it), but never while it records its cancellation."""
        task = self._tasks.get(run_id)
        if task is not None and run_id not in self._closing:
            task.cancel()

    def start_listening(self) -> None:
        """Honour cancels sent through the log by other workers."""
        self._listener = asyncio.create_task(self._listen(), name="run-cancel-listener")

    async def aclose(self) -> None:
        """Cancel what still runs (recorded as cancelled) and stop listening."""
        tasks = [*self._tasks.values(), *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
