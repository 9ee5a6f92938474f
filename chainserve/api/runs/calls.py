"""Start a run and hand back its stream, or run it to completion: shared by every protocol."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.types import Receive

from chainserve.api.errors.typed import ChainError, classify, log_failure
from chainserve.api.protocols import WireProtocol
from chainserve.api.runs.disconnect import cancel_on_disconnect
from chainserve.api.runs.event_stream import RunEventStream
from chainserve.api.runs.manager import RunManager
from chainserve.api.runs.request import OnDisconnect, PreparedRun
from chainserve.api.runs.stop_sequences import cut_output, stop_at
from chainserve.api.settings import Settings
from chainserve.chains import RegisteredChain


async def start_stream(
    runs: RunManager,
    settings: Settings,
    chain: RegisteredChain,
    prepared: PreparedRun,
    on_disconnect: OnDisconnect,
    protocol: WireProtocol | None = None,
    stop: Sequence[str] = (),
) -> RunEventStream:
    """Start `prepared` as a logged run and return the response that streams it; its text
    ends before the first of `stop`, if any."""
    run_id = prepared.run.run_id
    chunks = chain.runnable.astream(prepared.input, prepared.config)
    await runs.start(prepared.run, stop_at(chunks, stop) if stop else chunks)
    return RunEventStream(
        runs.log,
        run_id,
        keepalive_seconds=settings.keepalive_seconds,
        hold_seconds=settings.first_chunk_hold_seconds,
        on_hang_up=partial(runs.cancel, run_id) if on_disconnect == "cancel" else None,
        protocol=protocol,
        send_timeout=settings.send_timeout_seconds,
        drain=runs.drain,
        retrying_until=lambda: prepared.run.retry_until,
    )


def join_stream(
    runs: RunManager,
    settings: Settings,
    run_id: str,
    *,
    after: int = -1,
    protocol: WireProtocol | None = None,
) -> RunEventStream:
    """The response that follows an existing run after event `after`: a join, a resume, a
    rejoin from another surface. Joining never cancels: only the request that started the
    run decides that."""
    return RunEventStream(
        runs.log,
        run_id,
        after=after,
        keepalive_seconds=settings.keepalive_seconds,
        protocol=protocol,
        send_timeout=settings.send_timeout_seconds,
        drain=runs.drain,
    )


@dataclass(frozen=True)
class Completed:
    output: Any


@dataclass(frozen=True)
class Failed:
    error: ChainError


async def _ainvoke(chain: RegisteredChain, prepared: PreparedRun, stop: Sequence[str]) -> Completed:
    # Wrapped so a chain whose output is legitimately `None` is not mistaken for a cancel.
    output = await chain.runnable.ainvoke(prepared.input, prepared.config)
    return Completed(cut_output(output, stop) if stop else output)


async def invoke(
    receive: Receive,
    chain: RegisteredChain,
    prepared: PreparedRun,
    on_disconnect: OnDisconnect,
    stop: Sequence[str] = (),
) -> Completed | Failed | None:
    """Run to completion; `None` when the client hung up first and the run was cancelled."""
    run = prepared.run
    run.streamed = False
    work = partial(_ainvoke, chain, prepared, stop)
    try:
        done = await (
            work() if on_disconnect == "continue" else cancel_on_disconnect(receive, work)
        )
    except Exception as exc:  # noqa: BLE001 - reported to the client as a typed error
        error = classify(exc)
        log_failure(exc, error, run.run_id)
        run.finish("error", error.code)
        return Failed(error)
    if done is None:
        run.finish("cancelled")
        return None
    run.mark_chunk()
    run.finish("done")
    return done
