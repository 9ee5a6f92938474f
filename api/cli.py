"""The `chainserve` command: `serve` runs the server; `chains`, `invoke` and `chat` are a client.

Only `serve` reads the server's settings and imports the app: a client works from any directory
(whatever its .env holds) and starts without loading LangChain.
"""

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

from client.http_client import DEFAULT_URL


def log_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """Uvicorn's logging set-up, plus our `chainserve.*` loggers on the same handler, the
    request id on every line, and credentials redacted from every line, whichever logger wrote
    it (api/observability/log_redaction.py). In `json` format every line is a JSON object and
    chainserve's own request line replaces uvicorn's."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["chainserve"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    config.setdefault("filters", {}).update(
        {
            "redact_tokens": {"()": "api.observability.log_redaction.RedactStreamTokens"},
            "request_id": {"()": "api.observability.request_log.WithRequestId"},
        }
    )
    config["handlers"]["default"]["filters"] = ["redact_tokens", "request_id"]
    config["handlers"]["access"]["filters"] = ["redact_tokens", "request_id"]
    if fmt == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "api.observability.json_logs.JsonFormatter"
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    else:
        config["loggers"]["chainserve.requests"] = {"level": "WARNING"}  # uvicorn's access log
    return config


@contextmanager
def shared_metrics_dir(workers: int) -> Iterator[str | None]:
    """With several workers, a directory where they all keep their metrics
    (api/observability/metrics.py).

    One the operator names in PROMETHEUS_MULTIPROC_DIR is emptied of old values first, as
    prometheus_client requires; otherwise a fresh one is made and removed on exit."""
    from api.observability.metrics import MULTIPROC_ENV

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainserve", description="Serve LangChain chains over SSE."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    # Defaults come from Settings when serving; the parser is built without them (see above).
    serve.add_argument("--host", help="bind address (default $CHAINSERVE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $CHAINSERVE_PORT or 8000)")
    serve.add_argument(
        "--reload", action="store_true", help="restart when code changes (development)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    chains = commands.add_parser("chains", help="list the chains a server serves")
    invoke = commands.add_parser("invoke", help="run a chain once and print its output")
    invoke.add_argument("name", help="chain name")
    invoke.add_argument("--input", required=True, help="the chain's input, as JSON")
    chat = commands.add_parser("chat", help="stream a chain's answers into the terminal")
    chat.add_argument("name", help="chain name")
    chat.add_argument(
        "message",
        nargs="*",
        help="one message, words anywhere after NAME; after `--` words may start with '-' "
        "(piped stdin is appended; neither: a conversation at a prompt)",
    )
    chat.add_argument("--thread", help="continue this thread (chat chains)")
    chat.add_argument("--stats", action="store_true", help="print ttft and tokens/s")
    chat.add_argument(
        "--plain", action="store_true", help="plain text on a terminal too (no Markdown, spinner)"
    )
    for client_command in (chains, invoke, chat):
        client_command.add_argument(
            "--url", help=f"server (default $CHAINSERVE_URL or {DEFAULT_URL})"
        )
        client_command.add_argument("--api-key", help="API key (default $CHAINSERVE_API_KEY)")
    for configurable in (invoke, chat):
        configurable.add_argument(
            "--config", action="append", default=[], metavar="KEY=VALUE", help="configurable key"
        )
    return parser


def message_words(positional: list[str], extra: list[str]) -> tuple[str | None, list[str]]:
    """The chat message from the words argparse placed (those before the first option) and
    those it left over (after options); the leftover options, which are errors. Words after
    `--` are message words even when they start with "-"."""
    before, after = extra, []
    if "--" in extra:
        cut = extra.index("--")
        before, after = extra[:cut], extra[cut + 1 :]
    unknown = [word for word in before if word.startswith("-")]
    words = [*positional, *(w for w in before if not w.startswith("-")), *after]
    return (" ".join(words) if words else None), unknown


def _client_command(args: argparse.Namespace) -> int:
    try:
        from client.commands import run_command  # rich: loaded only for a client

        return run_command(args)
    except KeyboardInterrupt:
        # Closing the connection (on exit) is what makes the server cancel the run.
        print("[cancelled]", file=sys.stderr)
        return 130


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.settings import Settings

    settings = Settings()
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
            host=args.host or settings.host,
            port=settings.port if args.port is None else args.port,
            reload=args.reload,
            workers=None if args.reload else args.workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level, settings.log_format),
            # Longer than our grace period: streams end themselves first (api/runs/shutdown.py).
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds) + 5,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "chat":
        # argparse takes positionals only before options: `chat NAME hi --url U there`.
        args.message, extra = message_words(args.message, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        _serve(args)
    else:
        sys.exit(_client_command(args))


if __name__ == "__main__":
    main()
