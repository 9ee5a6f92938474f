"""`chainserve serve`: check the chains, then hand the app factory to uvicorn.

The chains are loaded and built once here before uvicorn starts, so a missing file or a chain
that fails to build is one line and exit status 1, not a traceback from inside a worker.
Uvicorn then builds the app itself (in each worker, and again after every `--reload`), with
the command line's choices passed on through the environment `Settings` reads.
"""

import copy
import logging
import math
import os
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI
from pydantic import ValidationError

from chainserve.api.app import create_app
from chainserve.api.settings import Settings
from chainserve.chains import build_registry
from chainserve.chains.registry import ChainLoadError
from chainserve.chains.user_chains import load_targets, parse_target, source_folders

logger = logging.getLogger("chainserve")


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
            "redact_tokens": {
                "()": "chainserve.api.observability.log_redaction.RedactStreamTokens"
            },
            "request_id": {"()": "chainserve.api.observability.request_log.WithRequestId"},
        }
    )
    config["handlers"]["default"]["filters"] = ["redact_tokens", "request_id"]
    config["handlers"]["access"]["filters"] = ["redact_tokens", "request_id"]
    if fmt == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "chainserve.api.observability.json_logs.JsonFormatter"
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
    from chainserve.api.observability.metrics import MULTIPROC_ENV

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


def _fail(message: str) -> NoReturn:
    print(f"chainserve: error: {message}", file=sys.stderr)
    sys.exit(1)


def _settings_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}")
    return "bad settings: " + "; ".join(problems)


def _absolute(text: str) -> str:
    """A file target with its path made absolute, so every worker finds the same file."""
    try:
        target = parse_target(text)
    except ChainLoadError:
        return text  # reported by the check
    if target.file is None:
        return text
    return f"{target.file}:{target.attr}" if target.attr else str(target.file)


def _pass_on(args: Namespace) -> None:
    """The command line's chain choices, for the `Settings` every worker reads."""
    if args.chains:
        os.environ["CHAINSERVE_CHAINS"] = ",".join(_absolute(text) for text in args.chains)
    if args.no_examples:
        os.environ["CHAINSERVE_EXAMPLE_CHAINS"] = "false"


def check_chains(settings: Settings) -> None:
    """Load and build every chain the settings name, as the app will; raise the first
    `ChainLoadError`. Nothing is opened: no stores, no connection pools."""
    specs = load_targets(settings.chains)
    build_registry(
        settings.model_settings(),
        None,
        settings.history_token_budget,
        extra=specs,
        examples=settings.example_chains,
    )


def served_app() -> FastAPI:
    """The factory uvicorn calls; after a `--reload` a chain that no longer loads is one
    logged line, and the next saved change tries again."""
    try:
        return create_app()
    except ChainLoadError as exc:
        logger.error("%s", exc)
        sys.exit(1)


def serve(args: Namespace) -> None:
    import uvicorn

    _pass_on(args)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(_settings_problem(exc))
    try:
        check_chains(settings)
    except ChainLoadError as exc:
        _fail(str(exc))
    if args.workers > 1 and settings.redis_url is None:
        print(
            "chainserve: warning: without CHAINSERVE_REDIS_URL each worker keeps its own run "
            "log, so joining or cancelling a run only works on the worker that runs it",
            file=sys.stderr,
        )
    workers = 1 if args.reload else args.workers
    watched = [str(Path.cwd()), *(str(folder) for folder in source_folders(settings.chains))]
    with shared_metrics_dir(workers):
        uvicorn.run(
            "chainserve.api.serve:served_app",
            factory=True,
            host=args.host or settings.host,
            port=settings.port if args.port is None else args.port,
            reload=args.reload,
            reload_dirs=sorted(set(watched)) if args.reload else None,
            workers=None if args.reload else args.workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level, settings.log_format),
            # Longer than our grace period: streams end themselves first (api/runs/shutdown.py).
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds) + 5,
        )
