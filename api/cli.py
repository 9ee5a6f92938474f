"""The `chainserve` command: `chainserve serve [--host] [--port] [--reload]`."""

import argparse
import copy
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.metrics import MULTIPROC_ENV
from api.settings import Settings


def log_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """Uvicorn's logging set-up, plus our `chainserve.*` loggers on the same handler, the
    request id on every line, and stream tokens redacted from the access log. In `json`
    format every line is a JSON object and chainserve's own request line replaces uvicorn's."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["chainserve"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    config.setdefault("filters", {}).update(
        {
            "redact_tokens": {"()": "api.log_redaction.RedactStreamTokens"},
            "request_id": {"()": "api.request_log.WithRequestId"},
        }
    )
    config["handlers"]["default"]["filters"] = ["request_id"]
    config["handlers"]["access"]["filters"] = ["redact_tokens", "request_id"]
    if fmt == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "api.json_logs.JsonFormatter"
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    else:
        config["loggers"]["chainserve.requests"] = {"level": "WARNING"}  # uvicorn's access log
    return config


@contextmanager
def shared_metrics_dir(workers: int) -> Iterator[str | None]:
    """With several workers, a directory where they all keep their metrics (api/metrics.py).

    One the operator names in PROMETHEUS_MULTIPROC_DIR is emptied of old values first, as
    prometheus_client requires; otherwise a fresh one is made and removed on exit."""
    chosen = os.environ.get(MULTIPROC_ENV)
    if chosen:  # with one worker too: a restarted process may reuse an old file's pid
        Path(chosen).mkdir(parents=True, exist_ok=True)
        for stale in Path(chosen).glob("*.db"):
            stale.unlink()
        yield chosen
        return
    if workers <= 1:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="chainserve-metrics-") as made:
        os.environ[MULTIPROC_ENV] = made  # inherited by the workers uvicorn starts
        try:
            yield made
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainserve", description="Serve LangChain chains over SSE."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument(
        "--host", default=settings.host, help=f"bind address (default {settings.host})"
    )
    serve.add_argument(
        "--port", type=int, default=settings.port, help=f"port (default {settings.port})"
    )
    serve.add_argument(
        "--reload", action="store_true", help="restart when code changes (development)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings()
    args = _parser(settings).parse_args(argv)
    if args.command == "serve":
        if args.workers > 1 and settings.redis_url is None:
            print(
                "chainserve: warning: without CHAINSERVE_REDIS_URL each worker keeps its own run "
                "log, so joining or cancelling a run only works on the worker that runs it",
                file=sys.stderr,
            )
        workers = 1 if args.reload else args.workers
        with shared_metrics_dir(workers):
            uvicorn.run(
                "api.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                reload=args.reload,
                workers=None if args.reload else args.workers,
                log_level=settings.log_level,
                log_config=log_config(settings.log_level, settings.log_format),
                # Longer than our grace period: streams end themselves first (api/shutdown.py).
                timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds) + 5,
            )


if __name__ == "__main__":
    main()
