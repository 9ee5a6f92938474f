"""Prometheus metrics: what is recorded, and the `/metrics` text, correct under several workers.

With one process the metrics live in the app's own registry. Under `chainserve serve
--workers N` the CLI points `PROMETHEUS_MULTIPROC_DIR` at an empty directory before the workers
start; every worker then writes its values to memory-mapped files there and `/metrics`, on
whichever worker answers, adds up all of them (prometheus_client's multiprocess mode).
"""

import contextvars
import glob
import os
import re
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from starlette.types import Scope

from chainserve.api.request_state import KEY_ID

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ObservedRun(Protocol):
    """What a finished run tells the metrics (`api/runs/run.py`'s `Run` is one): declared
    here so the metrics need not import the runs that report to them."""

    @property
    def chain(self) -> str: ...
    @property
    def model_called(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started(self) -> float: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def first_chunk_at(self) -> float | None: ...
    @property
    def streamed(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...

    def usage(self) -> dict[str, Any] | None: ...


NO_KEY = "anonymous"
"""The `key_id` label of callers when no API keys are configured."""

# Seconds. First tokens come in tens of milliseconds from a local server and in seconds from a
# loaded provider; whole streams run from a fraction of a second to minutes.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")
MAX_MODEL_LABELS = 64
"""Distinct `model` label values one process records; later ones count as `other`."""
OTHER_MODEL = "other"


class Metrics:
    """The app's metric families; one instance per app, so tests can build many apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir is None:
            # Per-worker process figures mean nothing summed across workers: one process only.
            ProcessCollector(namespace="chainserve", registry=self.registry)
        reg = self.registry
        self.requests = Counter(
            "chainserve_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.active_streams = Gauge(
            "chainserve_active_streams",
            "Event streams being sent right now, by route template.",
            ["route"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.time_to_first_token = Histogram(
            "chainserve_time_to_first_token_seconds",
            "Time from the start of a streamed run to its first output chunk, by chain.",
            ["chain"],
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.run_duration = Histogram(
            "chainserve_run_duration_seconds",
            "Time from the start of a run to its end, by chain and final status.",
            ["chain", "status"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            "chainserve_tokens",
            "Model tokens by chain, the model the run called, caller key id and direction "
            "(input or output); estimated for runs cut short before the provider reported usage.",
            ["chain", "model", "key_id", "direction"],
            registry=reg,
        )
        # A chain's own configurable model field may take any string a caller sends: each new
        # one would be a new time series kept for the life of the process.
        self._model_labels: set[str] = set()
        self.errors = Counter(
            "chainserve_errors",
            "Typed errors sent to clients (refused requests and failed runs), by error code.",
            ["code"],
            registry=reg,
        )
        self.cancellations = Counter(
            "chainserve_cancellations",
            "Runs cancelled (client hang-ups, cancel requests, shutdown), by chain.",
            ["chain"],
            registry=reg,
        )

    def observe_run(self, run: ObservedRun, key_id: str) -> None:
        """Record a finished run: duration, first token, tokens, and how it ended."""
        chain = run.chain
        ended = run.ended_at if run.ended_at is not None else run.started
        self.run_duration.labels(chain, run.status).observe(ended - run.started)
        if run.streamed and run.first_chunk_at is not None:
            self.time_to_first_token.labels(chain).observe(run.first_chunk_at - run.started)
        usage = run.usage() or {}
        model = self._model_label(run.model_called)
        for direction in ("input", "output"):
            count = usage.get(f"{direction}_tokens")
            if count:
                self.tokens.labels(chain, model, key_id, direction).inc(count)
        if run.status == "cancelled":
            self.cancellations.labels(chain).inc()
        elif run.status == "error" and run.error_code:
            self.errors.labels(run.error_code).inc()

    def _model_label(self, model: str) -> str:
        if model in self._model_labels:
            return model
        if len(self._model_labels) >= MAX_MODEL_LABELS:
            return OTHER_MODEL
        self._model_labels.add(model)
        return model

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, all workers' summed in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died without saying so (killed, crashed): their
    open streams ended with them. Their counters and histograms stay; what they counted
    happened."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.search(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, under another user


@dataclass
class RequestObservation:
    """What a run started by this request needs to report itself: the metrics and the caller."""

    metrics: Metrics
    scope: Scope

    def key_id(self) -> str:
        return str(self.scope.get("state", {}).get(KEY_ID) or NO_KEY)


OBSERVING: contextvars.ContextVar[RequestObservation | None] = contextvars.ContextVar(
    "chainserve_observing", default=None
)
"""Set for each request by `CountRequests`; a run's task copies it, so it outlives the request."""
