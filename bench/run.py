"""Entry point: `python -m bench.run [--smoke] [--out bench/results]`.

Runs every measurement in one process (the load generator) that starts and stops all servers
itself, then writes `latest.json` (the record), `latest.md` (tables) and the sweep plots, and
prints the markdown. The whole run is bounded by the plan's `max_seconds`: what finished in time
is reported, and the rest is named in the notes.
"""

import argparse
import asyncio
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench import report, scenarios
from bench.plots import plot_sweep
from bench.scenarios import Plan
from bench.targets import FULL_SERVERS, REPO, SERVERS

PACKAGES = ("fastapi", "uvicorn", "langchain-core", "langchain-openai", "langserve", "openai")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """Where and what was measured; the numbers only compare within one machine."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "chainserve")),
        "versions": versions,
    }


def _log(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:5.0f} s] {message}", file=sys.stderr, flush=True)


async def collect(plan: Plan, log_dir: Path, data: dict[str, Any]) -> None:
    """Fill `data` section by section, so a run cut short still keeps what it measured."""
    started = time.monotonic()
    steps: list[tuple[str, Callable[[], Awaitable[scenarios.Results]]]] = [
        ("cpu", functools.partial(scenarios.cpu_per_chunk, plan, SERVERS, log_dir)),
        ("ttft", functools.partial(scenarios.added_ttft, plan, FULL_SERVERS, log_dir)),
    ]
    steps += [
        (f"sweep {n}", functools.partial(scenarios.sweep, plan, FULL_SERVERS, log_dir, n))
        for n in plan.sweep_levels
    ]
    steps.append(("capacity", functools.partial(scenarios.capacity, plan, FULL_SERVERS, log_dir)))
    steps.append(
        ("workers", functools.partial(scenarios.many_workers, plan, FULL_SERVERS, log_dir))
    )
    label = "start-up"
    try:
        async with asyncio.timeout(plan.max_seconds):
            for label, step in steps:
                _log(started, f"{label}: starting")
                entries = {name: entry.to_json() for name, entry in (await step()).items()}
                if label.startswith("sweep "):
                    data.setdefault("sweep", {})[label.removeprefix("sweep ")] = entries
                else:
                    data[label] = entries
                _log(started, f"{label}: done")
    except TimeoutError:
        data.setdefault("notes", []).append(
            f"the run hit its {plan.max_seconds:.0f} s limit during '{label}'; "
            "that and later measurements are missing"
        )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # the servers under test run on uvloop; so does their load
    except ImportError:
        return None
    return uvloop.new_event_loop


def write(data: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    markdown = report.render(data)
    (out / "latest.md").write_text(markdown)
    plot_sweep(data, out)
    return markdown


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON for any reader."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark chainserve's streaming path.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, about a minute")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    plan = scenarios.SMOKE if args.smoke else scenarios.FULL
    data: dict[str, Any] = {"meta": machine(), "plan": dataclasses.asdict(plan)}
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="chainserve-bench-logs-") as logs,
        asyncio.Runner(loop_factory=_loop_factory()) as runner,
    ):
        runner.run(collect(plan, Path(logs), data))
    data["meta"]["elapsed_s"] = time.monotonic() - started
    markdown = write(_finite(data), args.out)
    print(markdown)
    print(f"results written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
