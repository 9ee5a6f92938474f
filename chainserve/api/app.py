"""The app factory: `create_app(settings)` builds everything; importing builds nothing."""

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx2
import openai
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from chainserve.api.access.api_keys import ApiKeys
from chainserve.api.access.auth import RequireApiKey
from chainserve.api.access.body_guard import BodyGuard
from chainserve.api.access.limits import LimitPerCaller
from chainserve.api.access.stream_tokens import StreamTokens
from chainserve.api.errors.handlers import install_error_handlers
from chainserve.api.errors.langserve_streams import LangServeStreamErrors
from chainserve.api.observability.gc_tuning import tune_gc_for_streaming
from chainserve.api.observability.metrics import Metrics
from chainserve.api.observability.request_log import RequestLog
from chainserve.api.observability.request_metrics import CountRequests
from chainserve.api.routes import auth as auth_routes
from chainserve.api.routes import chains as chain_routes
from chainserve.api.routes import collection_sharing, health
from chainserve.api.routes import collections as collection_routes
from chainserve.api.routes import metrics as metrics_routes
from chainserve.api.routes import openai as openai_routes
from chainserve.api.routes import responses as response_routes
from chainserve.api.routes import runs as run_routes
from chainserve.api.routes import threads as thread_routes
from chainserve.api.routes import ui as ui_routes
from chainserve.api.routes.langserve import mount_langserve_on_first_use, reset_loop_state
from chainserve.api.routes.page import mount_page
from chainserve.api.runs.manager import RunManager
from chainserve.api.runs.send_watch import CutOffStuckClients
from chainserve.api.runs.shutdown import Drain
from chainserve.api.settings import Settings
from chainserve.api.stores import (
    build_chunk_store,
    build_limit_counts,
    build_run_log,
    build_thread_store,
)
from chainserve.api.version import VERSION
from chainserve.chains import build_registry, describe_model
from chainserve.chains.history.graph_checkpoints import with_graph_checkpoints
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.retrieval.embeddings import build_embeddings
from chainserve.chains.retrieval.remote_embeddings import legacy_embedder_id, resolve_input_mode
from chainserve.chains.retrieval.retrievers import Retrieval
from chainserve.chains.user_chains import load_targets, served_specs

logger = logging.getLogger("chainserve")


def create_app(settings: Settings | None = None, *, chains: object = None) -> FastAPI:
    """Build the chainserve app for `settings` (read from the environment when omitted).

    `chains` adds the caller's own chains to those `settings.chains` names: a `Runnable`, a
    `ChainSpec`, a sequence of them or a mapping name → either. A chain that cannot be
    loaded or built raises `ChainLoadError` before anything is opened.
    """
    settings = settings or Settings()
    given = [] if chains is None else served_specs("chain", chains, "chains")
    user_specs = load_targets(settings.chains, given)
    # One upstream connection pool per app, closed on shutdown. The OpenAI SDK's own client
    # class on purpose: with a plain `httpx.AsyncClient` a cancelled request inside a chain
    # was left running, so a hang-up never reached the upstream.
    upstream = openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64)
    )
    # The lean client for streamed completions (chains/models/upstream_client.py); requests it can't
    # send exactly as the SDK would (proxies, token providers) still use the pool above.
    lean = (
        UpstreamClient(ssl_context_factory=httpx2.create_ssl_context)
        if settings.lean_upstream
        else None
    )
    retrieval = _build_retrieval(settings, upstream)
    model_config = replace(settings.model_settings(upstream, lean), retrieval=retrieval)
    model_info = describe_model(model_config)
    threads = build_thread_store(settings)
    runs = RunManager(
        build_run_log(settings),
        Drain(settings.shutdown_grace_seconds),
        run_timeout=settings.run_timeout_seconds or None,
    )
    registry = build_registry(
        model_config,
        threads,
        settings.history_token_budget,
        extra=user_specs,
        examples=settings.example_chains,
    )
    rate, slots = build_limit_counts(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        where = f" at {settings.openai_base_url}" if settings.openai_base_url else ""
        logger.info(
            "chainserve %s serving chains %s with model %s (%s%s)",
            VERSION,
            ", ".join(registry),
            model_info.name,
            model_info.provider,
            where,
        )
        if model_info.provider == "offline":
            logger.info(
                "offline model in use: set OPENAI_API_KEY or OPENAI_BASE_URL for a real one"
            )
        reset_loop_state()
        runs.drain.attach()
        runs.start_listening()
        if settings.gc_tuning:
            tune_gc_for_streaming()
        try:
            yield
        finally:
            await runs.aclose()
            await runs.log.aclose()
            await upstream.aclose()
            if lean is not None:
                await lean.aclose()
            await threads.aclose()
            await retrieval.store.aclose()
            for counts in (rate, slots):
                if counts is not None:
                    await counts.aclose()

    app = FastAPI(
        title="chainserve",
        version=VERSION,
        description="LangChain chains streamed over Server-Sent Events.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.chains = registry
    app.state.model_info = model_info
    # The thread routes also see (and delete) what users' graphs keep in their own checkpointers.
    app.state.threads = with_graph_checkpoints(
        threads, ((name, chain.runnable) for name, chain in registry.items())
    )
    app.state.runs = runs
    app.state.retrieval = retrieval
    keys = ApiKeys(
        [key.get_secret_value() for key in settings.api_keys],
        admin_keys=[key.get_secret_value() for key in settings.admin_keys],
    )
    app.state.stream_tokens = StreamTokens(
        _token_secret(settings, keys), settings.stream_token_ttl_seconds
    )
    install_error_handlers(app)
    app.include_router(health.router)
    if settings.metrics:
        app.include_router(metrics_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(chain_routes.router)
    app.include_router(thread_routes.router)
    app.include_router(run_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(response_routes.router)
    app.include_router(ui_routes.router)
    app.include_router(collection_routes.router)
    app.include_router(collection_sharing.router)
    mount_langserve_on_first_use(app, registry, playground=settings.langserve_playground)
    if settings.web_page:
        mount_page(app)
    app.add_middleware(LangServeStreamErrors, hold_seconds=settings.first_chunk_hold_seconds)
    app.add_middleware(
        CutOffStuckClients, seconds=settings.send_timeout_seconds, prefix="/langserve/"
    )
    if rate is not None or slots is not None:
        app.add_middleware(
            LimitPerCaller,
            rate=rate,
            slots=slots,
            max_batch_inputs=settings.max_batch_inputs,
            max_batch_concurrency=settings.max_batch_concurrency,
        )
    app.add_middleware(
        BodyGuard,
        max_depth=settings.max_json_depth,
        max_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    # Added last runs first: CORS answers preflights (which carry no key) before auth.
    app.add_middleware(RequireApiKey, keys=keys, tokens=app.state.stream_tokens)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "authorization",
                "x-api-key",
                "content-type",
                "last-event-id",
                "x-request-id",
            ],
            expose_headers=["x-run-id", "retry-after", "x-request-id"],
            # Keys travel in headers, never cookies: no credentials, so "*" is never paired
            # with them.
            allow_credentials=False,
            max_age=600,
        )
    if settings.metrics:
        app.state.metrics = Metrics()
        app.add_middleware(CountRequests, metrics=app.state.metrics)
    app.add_middleware(RequestLog)  # outermost: every response, refusals included, has an id
    return app


def _build_retrieval(settings: Settings, upstream: httpx2.AsyncClient) -> Retrieval:
    """The document store and embeddings: the embeddings server's when one is configured,
    else the chat model's upstream (OpenAI or a compatible server) when there is one, else
    the local model, so retrieval works with no key and no network."""
    own_server = settings.embedding_base_url is not None
    secret = settings.embedding_api_key if own_server else settings.openai_api_key
    key = secret.get_secret_value() if secret else None
    base_url = settings.embedding_base_url if own_server else settings.openai_base_url
    embeddings, embedder = build_embeddings(
        key or None,
        base_url,
        settings.embedding_model,
        upstream,
        timeout=settings.upstream_timeout,
        max_retries=settings.upstream_max_retries,
        input_prefixes=settings.embedding_input_prefixes,
    )
    # Collections recorded before ids named their server were embedded by the chat upstream:
    # that set-up may go on using them; an embeddings server of its own may not.
    mode = resolve_input_mode(settings.embedding_input_prefixes, settings.embedding_model)
    legacy = None if own_server else legacy_embedder_id(settings.embedding_model, base_url, mode)
    return Retrieval(build_chunk_store(settings), embeddings, embedder, legacy)


def _token_secret(settings: Settings, keys: ApiKeys) -> bytes:
    if settings.stream_token_secret is not None:
        return settings.stream_token_secret.get_secret_value().encode()
    if keys.enabled:
        return keys.token_secret()
    return secrets.token_bytes(32)  # no keys: tokens open nothing that isn't open already
