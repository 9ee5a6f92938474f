"""The `chainserve` command: `chainserve serve [--host] [--port] [--reload]`."""

import argparse
import copy
import json
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
from api.terminal import DEFAULT_URL, Client, ClientError, chat, parse_config


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
    chains = commands.add_parser("chains", help="list the chains a server serves")
    invoke = commands.add_parser("invoke", help="run a chain once and print its output")
    invoke.add_argument("name", help="chain name")
    invoke.add_argument("--input", required=True, help="the chain's input, as JSON")
    chat = commands.add_parser("chat", help="stream a chain's answers into the terminal")
    chat.add_argument("name", help="chain name")
    chat.add_argument("message", nargs="?", help="one message (else stdin, else a prompt)")
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


def _client_command(args: argparse.Namespace) -> int:
    client = Client(args.url, args.api_key)
    try:
        if args.command == "chains":
            for chain in client.chains():
                print(f"{chain['name']}\t{chain.get('description', '')}")
            return 0
        configurable = parse_config(args.config)
        if args.command == "invoke":
            try:
                chain_input = json.loads(args.input)
            except ValueError as exc:
                raise ClientError(f"--input is not JSON: {exc}") from None
            output = client.invoke(args.name, chain_input, configurable)
            print(output if isinstance(output, str) else json.dumps(output, indent=2))
            return 0
        return chat(
            client,
            args.name,
            args.message,
            args.thread,
            configurable,
            stats=args.stats,
            plain=args.plain,
        )
    except ClientError as exc:
        print(f"chainserve: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left (`| head`): stop quietly; closing the stream cancels the run.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings()
    parser = _parser(settings)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse takes positionals only before options: `chat NAME --url U "hi"` leaves "hi".
        words = [e for e in extra if not e.startswith("-")]
        if args.command == "chat" and args.message is None and words == extra:
            args.message = " ".join(words)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command != "serve":
        sys.exit(_client_command(args))
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
