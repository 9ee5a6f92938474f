"""Cancel work the moment the client hangs up, instead of at the next write (or never)."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.types import Receive

T = TypeVar("T")


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the ASGI server reports `http.disconnect`; the body must already be read."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run `work`, cancelling it if the client leaves first; `None` means it was cancelled.

    Starlette does not cancel a plain endpoint when its client leaves, so a long `invoke`
    would otherwise keep paying for an upstream call nobody will read.
    """
    result: list[T] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await wait_for_disconnect(receive)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            result.append(await work())
        except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
            failure.append(exc)  # raising here would arrive wrapped in an ExceptionGroup
        finally:
            group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0] if result else None
