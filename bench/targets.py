"""The servers under test, the mock upstream, and a `Stack` that runs one set of them.

A `Stack` is one scenario's world: a fresh upstream with that scenario's behaviour and a fresh
process of every server pointed at it. Fresh processes per scenario keep idle RSS comparable and
stop one scenario's leftovers (pools, caches, garbage) from being billed to the next.
"""

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import client
from bench.procs import HOST, Service, clean_env, free_port, launch, stop, wait_listening
from bench.report import AGENT, LANGGRAPH, REDIS, USER_CHAIN
from bench.sse import Dialect

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
START_ATTEMPTS = 2
UPSTREAM_MAX_SECONDS = 1800.0

NATIVE_BODY = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
LANGSERVE_BODY = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
DIRECT_BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hi"},
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def _uvicorn(factory: str) -> Callable[[int], list[str]]:
    """The command line every baseline runs with: one worker, uvloop, httptools, quiet."""

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            HOST,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    return argv


def _chainserve(port: int) -> list[str]:
    # `chainserve serve` has no --loop/--http; uvicorn's "auto" picks uvloop and httptools.
    return [sys.executable, "-m", "chainserve", "serve", "--host", HOST, "--port", str(port)]


def _chainserve_agent(port: int) -> list[str]:
    """chainserve serving only a user's own `create_agent` graph."""
    return [*_chainserve(port), "--chains", str(REPO / "bench" / "agent_chain.py"), "--no-examples"]


def _chainserve_user_chain(port: int) -> list[str]:
    """chainserve serving only a user's own `prompt | ChatOpenAI | StrOutputParser()`."""
    return [*_chainserve(port), "--chains", str(REPO / "bench" / "user_chain.py"), "--no-examples"]


@dataclass(frozen=True)
class Server:
    """A server under test: how to start it and how to ask it for one stream."""

    name: str
    argv: Callable[[int], list[str]]
    path: str
    body: dict[str, Any]
    dialect: Dialect
    is_baseline: bool = True
    cpu_only: bool = False
    """Measured in the CPU table only (the agent rows), to keep the run's length."""
    redis: bool = False
    """Runs with `CHAINSERVE_REDIS_URL` set: the stack starts a redis-server for it."""

    def call(self, port: int) -> client.Call:
        return client.Call(port, self.path, json.dumps(self.body).encode(), self.dialect)


SERVERS: tuple[Server, ...] = (
    Server("chainserve", _chainserve, "/chains/chat/stream", NATIVE_BODY, Dialect.NAMED, False),
    Server(
        REDIS, _chainserve, "/chains/chat/stream", NATIVE_BODY, Dialect.NAMED, False, redis=True
    ),
    Server(
        USER_CHAIN,
        _chainserve_user_chain,
        "/chains/mine/stream",
        LANGSERVE_BODY,
        Dialect.NAMED,
        False,
    ),
    Server(
        "bare", _uvicorn("bench.baselines.bare:create_app"), "/stream", NATIVE_BODY, Dialect.PLAIN
    ),
    Server(
        "langserve",
        _uvicorn("bench.baselines.langserve_app:create_app"),
        "/chain/stream",
        LANGSERVE_BODY,
        Dialect.NAMED,
    ),
    Server(
        "relay",
        _uvicorn("bench.baselines.relay:create_app"),
        "/stream",
        NATIVE_BODY,
        Dialect.OPENAI,
    ),
    Server(
        AGENT, _chainserve_agent, "/chains/agent/stream", NATIVE_BODY, Dialect.NAMED, False, True
    ),
    Server(
        LANGGRAPH,
        _uvicorn("bench.baselines.langgraph_app:create_app"),
        "/stream",
        NATIVE_BODY,
        Dialect.PLAIN,
        False,
        True,
    ),
)
FULL_SERVERS = tuple(s for s in SERVERS if not s.cpu_only)
"""The servers every table measures."""
BASELINES = tuple(s.name for s in SERVERS if s.is_baseline)


@dataclass(frozen=True)
class UpstreamArgs:
    chunks: int
    rate: float = 0.0
    first_delay: float = 0.0

    def argv(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.upstream",
            "--host",
            HOST,
            "--port",
            str(port),
            "--chunks",
            str(self.chunks),
            "--rate",
            str(self.rate),
            "--first-delay",
            str(self.first_delay),
            "--max-seconds",
            str(UPSTREAM_MAX_SECONDS),
        ]


@dataclass
class Stack:
    """One running upstream plus every server that started; `failed` holds the ones that didn't."""

    upstream: Service
    services: dict[str, Service]
    failed: dict[str, str]
    redis: Service | None = None
    """The redis-server of the servers that use one (their run log and thread store)."""

    def direct_call(self) -> client.Call:
        return client.Call(
            self.upstream.port,
            "/v1/chat/completions",
            json.dumps(DIRECT_BODY).encode(),
            Dialect.OPENAI,
        )

    def check(self, name: str) -> str | None:
        """Why `name` can't be measured now (failed to start, or died), else None."""
        if name in self.failed:
            return self.failed[name]
        service = self.services[name]
        if not service.alive():
            self.failed[name] = f"process exited (code {service.popen.returncode})"
            return self.failed[name]
        return None


def _server_env(
    server: Server, upstream_port: int, data_dir: Path, redis_port: int | None
) -> dict[str, str]:
    extra = {
        "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "PYTHONPATH": str(REPO),
    }
    if server.name in ("chainserve", USER_CHAIN, AGENT, REDIS):
        redis_url = f"redis://{HOST}:{redis_port}/0" if server.redis and redis_port else ""
        extra |= {
            "CHAINSERVE_UPSTREAM_MAX_RETRIES": "0",
            "CHAINSERVE_LOG_LEVEL": "warning",
            "CHAINSERVE_DATA_DIR": str(data_dir),
            "CHAINSERVE_REDIS_URL": redis_url,
            # Above the longest measured stream (5,000 tokens), so no answer is cut, yet small
            # enough that the cap's per-chunk token counting runs for most of it, as it would
            # for a long answer under the default cap.
            "CHAINSERVE_MAX_OUTPUT_TOKENS": "8192",
        }
    return clean_env(extra)


async def _warm(stack: Stack, server: Server, requests: int, time_limit: float) -> None:
    """A few concurrent streams before any measurement: imports, pools and caches fill here,
    not in a round."""
    call = server.call(stack.services[server.name].port)
    first = await client.stream(call, time_limit)
    rest = await client.stream_many(call, requests - 1, 0.0, time_limit) if requests > 1 else []
    for result in (first, *rest):
        if not result.ok():
            stack.failed[server.name] = f"warm-up stream failed: {result.error or result.status}"
            return


@dataclass
class _Launcher:
    """Starts servers against one upstream; remembers every process it started, for clean-up."""

    upstream_port: int
    tmp: Path
    log_dir: Path
    started: list[Service]
    redis_port: int | None = None

    async def start(self, server: Server, attempts: int = START_ATTEMPTS) -> Service:
        """Start `server` and wait for its port; one more try if it fails (a developer may be
        mid-edit in api/ or chains/ while the benchmark imports them)."""
        data_dir = self.tmp / server.name
        data_dir.mkdir(exist_ok=True)
        # chainserve runs from its data dir so a developer's `.env` can't change the run.
        cwd = data_dir if server.name in ("chainserve", REDIS) else REPO
        if server.redis and self.redis_port is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        env = _server_env(server, self.upstream_port, data_dir, self.redis_port)
        for attempt in range(1, attempts + 1):
            port = free_port()
            service = launch(server.name, server.argv(port), port, env, cwd, self.log_dir)
            self.started.append(service)
            try:
                await wait_listening(service, START_TIMEOUT)
            except RuntimeError:
                stop(service)
                if attempt == attempts:
                    raise
                await asyncio.sleep(2.0)
            else:
                return service
        raise AssertionError("unreachable")


async def _start_redis(
    tmp: Path, log_dir: Path, started: list[Service], servers: Sequence[Server]
) -> Service | None:
    """A fresh redis-server when some server needs one (None when none does, or it is not
    installed: those servers then fail to start, and the report says why)."""
    binary = shutil.which("redis-server")
    if binary is None or not any(server.redis for server in servers):
        return None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(tmp)]  # fmt: skip
    redis = launch("redis", argv, port, clean_env({}), REPO, log_dir)
    started.append(redis)
    await wait_listening(redis, START_TIMEOUT)
    return redis


@asynccontextmanager
async def running(
    upstream_args: UpstreamArgs,
    servers: Sequence[Server],
    log_dir: Path,
    warm_requests: int = 3,
    warm_timeout: float = 60.0,
) -> AsyncIterator[Stack]:
    """Start the upstream and all servers in parallel, warm them up (in parallel too), and
    stop every process on exit."""
    started: list[Service] = []
    with tempfile.TemporaryDirectory(prefix="chainserve-bench-") as tmp:
        try:
            port = free_port()
            upstream = launch(
                "upstream", upstream_args.argv(port), port, clean_env({}), REPO, log_dir
            )
            started.append(upstream)
            await wait_listening(upstream, START_TIMEOUT)
            redis = await _start_redis(Path(tmp), log_dir, started, servers)
            launcher = _Launcher(
                port, Path(tmp), log_dir, started, redis.port if redis is not None else None
            )
            outcomes = await asyncio.gather(
                *(launcher.start(server) for server in servers), return_exceptions=True
            )
            stack = Stack(upstream, {}, {}, redis)
            for server, outcome in zip(servers, outcomes, strict=True):
                if isinstance(outcome, Service):
                    stack.services[server.name] = outcome
                else:
                    stack.failed[server.name] = f"start-up failed: {outcome}"
            await asyncio.gather(
                *(
                    _warm(stack, server, warm_requests, warm_timeout)
                    for server in servers
                    if server.name in stack.services
                )
            )
            yield stack
        finally:
            for service in reversed(started):
                with contextlib.suppress(OSError):
                    stop(service)
