"""The three measurements. Each starts its own `Stack` and measures every server in turn.

Rounds rotate the order of the servers, so slow drift of the machine (thermal, page cache,
another process) spreads over all of them instead of always landing on the one measured last.
A server that dies or cannot start is recorded as failed with the reason, and the others go on.
"""

import asyncio
import collections
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import client
from bench.procs import Sampler, Service
from bench.report import REDIS
from bench.stats import Summary, median, percentile, summarize
from bench.targets import Server, Stack, UpstreamArgs, running

MIB = 1024 * 1024
MAX_ERRORS = 6


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run (`FULL` or `SMOKE`)."""

    name: str
    rounds: int
    sweep_rounds: int
    cpu_chunks: int
    ttft_requests: int
    sweep_levels: tuple[int, ...]
    sweep_tokens: int
    sweep_timeout: float
    """Seconds one sweep stream may take before it is cut off and counted as failed."""
    max_seconds: float
    """The whole run stops (and reports what it has) after this long."""
    ttft_tokens: int = 20
    ttft_first_delay: float = 0.05
    sweep_rate: float = 50.0
    ramp_seconds: float = 1.0
    """Sweep streams start evenly over this long, so their token phases are independent."""
    capacity_levels: tuple[int, ...] = (25, 50, 75, 100, 150, 200, 300, 400)
    capacity_rounds: int = 2
    capacity_gap_ms: float = 50.0
    """A level passes when every stream completes and the p99 inter-token gap is below this."""
    multi_streams: int = 1000
    multi_rate: float = 20.0
    multi_workers: int = 2
    multi_timeout: float = 30.0
    multi_rounds: int = 1
    multi_servers: tuple[str, ...] = ("chainserve", REDIS, "bare", "relay")
    """LangServe is left out: at one worker it already fails 100 streams (see the sweep)."""


FULL = Plan(
    name="full",
    rounds=5,
    sweep_rounds=3,
    cpu_chunks=5000,
    ttft_requests=20,
    sweep_levels=(100, 300, 1000),
    sweep_tokens=200,
    sweep_timeout=12.0,
    max_seconds=1800.0,
)
SMOKE = Plan(
    name="smoke",
    rounds=2,
    sweep_rounds=2,
    cpu_chunks=1000,
    ttft_requests=5,
    sweep_levels=(20,),
    sweep_tokens=40,
    sweep_timeout=15.0,
    max_seconds=200.0,
    capacity_levels=(10, 20),
    capacity_rounds=1,
    multi_streams=40,
    multi_timeout=20.0,
)


@dataclass
class Entry:
    """One server in one measurement: its figures per round, or why it could not be measured."""

    rounds: list[dict[str, float]] = field(default_factory=list)
    failed: str | None = None
    errors: dict[str, list[int]] = field(default_factory=dict)
    """Distinct stream errors (at most `MAX_ERRORS`) and how many streams hit each, per round
    in which it occurred: the report's notes."""
    extra: dict[str, float] = field(default_factory=dict)

    def note_errors(self, results: Sequence[client.StreamResult]) -> None:
        for error, count in collections.Counter(r.error for r in results if r.error).items():
            self.note(error, count)

    def note(self, error: str, count: int = 1) -> None:
        if error in self.errors or len(self.errors) < MAX_ERRORS:
            self.errors.setdefault(error, []).append(count)

    def summary(self) -> dict[str, Summary | None]:
        keys = {key for row in self.rounds for key in row}
        return {key: summarize(row[key] for row in self.rounds if key in row) for key in keys}

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"summary": self.summary()}


Results = dict[str, Entry]


def _rotated(servers: Sequence[Server], index: int) -> list[Server]:
    shift = index % len(servers)
    return [*servers[shift:], *servers[:shift]]


def _entries(stack: Stack, servers: Sequence[Server]) -> Results:
    return {s.name: Entry(failed=stack.failed.get(s.name)) for s in servers}


def _measurable(stack: Stack, entry: Entry, name: str) -> Service | None:
    """The service to measure now, or None once it has failed (it is not tried again)."""
    if entry.failed is not None:
        return None
    why = stack.check(name)
    if why is not None:
        entry.failed = entry.failed or why
        return None
    return stack.services[name]


async def settle(stack: Stack, max_seconds: float = 15.0) -> None:
    """Wait until every process of the stack is idle (under 10 ms CPU per 100 ms in total), at
    most `max_seconds`: a server still tearing down the previous round's aborted streams would
    otherwise take CPU from the one being measured."""
    services = [stack.upstream, *(s for s in stack.services.values() if s.alive())]
    deadline = time.monotonic() + max_seconds
    last = sum(service.cpu_seconds() for service in services)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = sum(service.cpu_seconds() for service in services)
        if now - last < 0.01:
            return
        last = now


async def cpu_per_chunk(plan: Plan, servers: Sequence[Server], log_dir: Path) -> Results:
    """One stream of `cpu_chunks` at full upstream speed: server CPU µs per chunk and chunks/s."""
    async with running(UpstreamArgs(plan.cpu_chunks), servers, log_dir) as stack:
        results = _entries(stack, servers)
        for index in range(plan.rounds):
            for server in _rotated(servers, index):
                entry = results[server.name]
                service = _measurable(stack, entry, server.name)
                if service is None:
                    continue
                await settle(stack)
                redis = stack.redis if server.redis else None
                redis_before = redis.cpu_seconds() if redis is not None else 0.0
                before = service.cpu_seconds()
                result = await client.stream(server.call(service.port), time_limit=120.0)
                # Bookkeeping after the last byte (run log, pool release) is the server's cost too.
                await asyncio.sleep(0.1)
                spent = service.cpu_seconds() - before
                if not result.ok(plan.cpu_chunks):
                    entry.note(result.error or f"got {result.tokens} of {plan.cpu_chunks} chunks")
                    continue
                elapsed = result.times[-1] - result.started
                row = {
                    "us_per_chunk": spent / result.tokens * 1e6,
                    "chunks_per_s": result.tokens / elapsed,
                }
                if redis is not None:
                    redis_spent = redis.cpu_seconds() - redis_before
                    row["redis_us_per_chunk"] = redis_spent / result.tokens * 1e6
                entry.rounds.append(row)
        return results


def _ttft_ms(results: Sequence[client.StreamResult]) -> float | None:
    ttfts = [r.ttft for r in results if r.ok() and r.ttft is not None]
    return median(ttfts) * 1000 if ttfts else None


async def added_ttft(plan: Plan, servers: Sequence[Server], log_dir: Path) -> Results:
    """Sequential requests against an upstream whose first token takes `ttft_first_delay`:
    TTFT through each server minus TTFT straight from the upstream, per round."""
    upstream = UpstreamArgs(plan.ttft_tokens, 0.0, plan.ttft_first_delay)
    async with running(upstream, servers, log_dir) as stack:
        results = _entries(stack, servers)
        direct = results["direct"] = Entry()
        for index in range(plan.rounds):
            sample = await client.sequential(stack.direct_call(), plan.ttft_requests, 10.0)
            direct_ms = _ttft_ms(sample)
            if direct_ms is None:
                direct.note_errors(sample)
                continue
            direct.rounds.append({"ttft_ms": direct_ms})
            for server in _rotated(servers, index):
                entry = results[server.name]
                service = _measurable(stack, entry, server.name)
                if service is None:
                    continue
                sample = await client.sequential(
                    server.call(service.port), plan.ttft_requests, 10.0
                )
                entry.note_errors(sample)
                ms = _ttft_ms(sample)
                if ms is not None:
                    entry.rounds.append({"ttft_ms": ms, "added_ms": ms - direct_ms})
        return results


def _sweep_round(
    results: Sequence[client.StreamResult],
    plan: Plan,
    streams: int,
    cpu: dict[str, float],
    wall: float,
    rss_growth: int,
) -> dict[str, float]:
    gaps = [gap for r in results for gap in r.gaps()]
    rates = [rate for r in results if (rate := r.rate()) is not None]
    ttfts = [ttft for r in results if (ttft := r.ttft) is not None]
    row = {
        "ok_streams": float(sum(r.ok(plan.sweep_tokens) for r in results)),
        "total_tokens_per_s": sum(r.tokens for r in results) / wall,
        "tokens_per_s": median(rates) if rates else 0.0,
        "gap_p50_ms": percentile(gaps, 50) * 1000,
        "gap_p99_ms": percentile(gaps, 99) * 1000,
        "ttft_p50_ms": median(ttfts) * 1000 if ttfts else float("nan"),
        "rss_kib_per_stream": rss_growth / streams / 1024,
        "wall_s": wall,
    }
    row |= {f"{who}_cpu_pct": seconds / wall * 100 for who, seconds in cpu.items()}
    return row


async def _one_sweep(
    stack: Stack, server: Server, service: Service, plan: Plan, streams: int, idle_rss: int
) -> tuple[dict[str, float], list[client.StreamResult]]:
    me = psutil.Process()
    sampler = Sampler(service)
    sampler.start(plan.sweep_timeout + plan.ramp_seconds + 30)
    clocks = {"server": service, "upstream": stack.upstream}
    if server.redis and stack.redis is not None:
        clocks["redis"] = stack.redis
    before = {who: svc.cpu_seconds() for who, svc in clocks.items()}
    mine = me.cpu_times()
    started = time.perf_counter()
    results = await client.stream_many(
        server.call(service.port), streams, plan.ramp_seconds, plan.sweep_timeout
    )
    wall = time.perf_counter() - started
    cpu = {who: svc.cpu_seconds() - before[who] for who, svc in clocks.items()}
    now = me.cpu_times()
    cpu["client"] = now.user + now.system - mine.user - mine.system
    peak = await sampler.stop()
    return _sweep_round(results, plan, streams, cpu, wall, peak - idle_rss), results


async def sweep(plan: Plan, servers: Sequence[Server], log_dir: Path, streams: int) -> Results:
    """`streams` concurrent paced streams per server: delivery rate, gaps, CPU and memory."""
    upstream = UpstreamArgs(plan.sweep_tokens, plan.sweep_rate)
    async with running(upstream, servers, log_dir) as stack:
        results = _entries(stack, servers)
        idle = {name: service.rss() for name, service in stack.services.items()}
        for name, rss in idle.items():
            results[name].extra["idle_rss_mib"] = rss / MIB
        for index in range(plan.sweep_rounds):
            for server in _rotated(servers, index):
                entry = results[server.name]
                row = await _level(stack, entry, server, plan, streams, idle[server.name])
                if row is None:
                    continue
                if row["ok_streams"] == 0 and row["tokens_per_s"] == 0:
                    entry.failed = f"no stream delivered tokens at {streams} streams"
                    continue
                entry.rounds.append(row)
        return results


async def _level(
    stack: Stack, entry: Entry, server: Server, plan: Plan, streams: int, idle_rss: int
) -> dict[str, float] | None:
    """One round of `streams` paced streams against `server` after the machine settles; None
    (and `entry.failed` set) if the server is gone or died during the round."""
    service = _measurable(stack, entry, server.name)
    if service is None:
        return None
    await settle(stack)
    row, sample = await _one_sweep(stack, server, service, plan, streams, idle_rss)
    entry.note_errors(sample)
    if not service.alive():
        entry.failed = (
            f"process died during {streams} streams "
            f"(exit code {service.popen.returncode}): {service.log_tail(3)}"
        )
        return None
    return row


async def capacity(plan: Plan, servers: Sequence[Server], log_dir: Path) -> Results:
    """Per server and round, the largest of `capacity_levels` at which that many paced streams
    all complete with a p99 inter-token gap under `capacity_gap_ms`: levels are tried upwards
    and the first failure ends the search (0 if even the first level fails)."""
    upstream = UpstreamArgs(plan.sweep_tokens, plan.sweep_rate)
    async with running(upstream, servers, log_dir) as stack:
        results = _entries(stack, servers)
        idle = {name: service.rss() for name, service in stack.services.items()}
        for index in range(plan.capacity_rounds):
            for server in _rotated(servers, index):
                entry = results[server.name]
                passed = 0
                for level in plan.capacity_levels:
                    row = await _level(stack, entry, server, plan, level, idle[server.name])
                    if row is None:
                        break
                    if row["ok_streams"] < level or row["gap_p99_ms"] >= plan.capacity_gap_ms:
                        entry.extra[f"round {index + 1} stopped at"] = float(level)
                        entry.extra[f"round {index + 1} p99 gap ms there"] = row["gap_p99_ms"]
                        break
                    passed = level
                if entry.failed is None:
                    entry.rounds.append({"streams": float(passed)})
        return results


def _with_workers(server: Server, workers: int) -> Server:
    base = server.argv
    return dataclasses.replace(server, argv=lambda port: [*base(port), "--workers", str(workers)])


async def many_workers(plan: Plan, servers: Sequence[Server], log_dir: Path) -> Results:
    """The issue's load: `multi_streams` streams at `multi_rate` tokens/s each, every server with
    `multi_workers` uvicorn workers (chainserve's `--workers` and uvicorn's are the same flag),
    measured like a sweep level."""
    paced = dataclasses.replace(
        plan,
        sweep_rate=plan.multi_rate,
        sweep_timeout=plan.multi_timeout,
        sweep_rounds=plan.multi_rounds,
    )
    scaled = [
        _with_workers(server, plan.multi_workers)
        for server in servers
        if server.name in plan.multi_servers
    ]
    return await sweep(paced, scaled, log_dir, plan.multi_streams)
