"""Run a real chainserve (uvicorn on a free loopback port) in a background thread."""

import asyncio
import contextlib
import threading
import time
from types import TracebackType

import uvicorn

from chainserve.api.app import create_app
from chainserve.api.settings import Settings


class _PromptServer(uvicorn.Server):
    """uvicorn, noticing `should_exit` at once instead of at its next 0.1 s tick: a test suite
    starts and stops a server for most of its tests."""

    async def main_loop(self) -> None:
        self.wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self.wake.wait()


class LiveServer:
    """`with LiveServer(settings) as server:` serves `create_app(settings)` at `server.url`."""

    def __init__(self, settings: Settings, chains: object = None) -> None:
        self.app = create_app(settings, chains=chains)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", loop="asyncio"
        )
        self._server = _PromptServer(config)
        self._thread = threading.Thread(
            target=self._server.run, name="chainserve-test", daemon=True
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        self.loop = self._server.servers[0].get_loop()
        return self

    @property
    def url(self) -> str:
        socket = self._server.servers[0].sockets[0]
        host, port = socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def task_names(self) -> list[str]:
        """Names of the tasks alive on the server's loop (to prove nothing was left behind)."""
        assert self.loop is not None

        async def names() -> list[str]:
            current = asyncio.current_task()
            return sorted(t.get_name() for t in asyncio.all_tasks() if t is not current)

        return asyncio.run_coroutine_threadsafe(names(), self.loop).result(timeout=5)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        wake = getattr(self._server, "wake", None)  # None: its loop sees should_exit first
        if wake is not None and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                self.loop.call_soon_threadsafe(wake.set)
        self._thread.join(timeout=10)
