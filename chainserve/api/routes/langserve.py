"""Every LangServe import lives here, so dropping LangServe touches one module.

Three deliberate differences from a stock `add_routes` mount:
- The config schema LangServe validates against is built from the chain's allow-list with
  `Literal` options. LangChain's generated schema types options as Enums with plain-string
  defaults, which makes pydantic warn on every request LangServe handles.
- A route dependency checks each `config.configurable` in the body against the same
  allow-list as the native routes (LangServe would silently drop unknown keys; we refuse
  them with a 400), validates batch inputs (LangServe answers a bad one with a 500), and
  holds each input to the token limit (a 413, as on the native routes). It also answers what
  LangServe 0.3.3 fails on with a 500 (malformed JSON, a null config, batch inputs that are
  not a list, a config hash its decoder trips over) with our usual 4xx.
- The OpenAPI schema declares the errors these routes really send, and SSE from the streams.
"""

import asyncio
import contextlib
import enum
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from langchain_core.runnables import ConfigurableFieldSpec, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.types import ASGIApp, Receive, Scope, Send

from chainserve.api.access.batch_limits import (
    BATCH_CONCURRENCY,
    BATCH_SLOTS,
    batch_concurrency,
    check_batch_size,
)
from chainserve.api.access.input_limit import REFERENCED_RESPONSES as INPUT_LIMIT_RESPONSES
from chainserve.api.access.input_limit import check_input_tokens
from chainserve.api.access.ownership import caller_of
from chainserve.api.errors.langserve_streams import note_failure, opened
from chainserve.api.errors.responses import REFUSALS, referenced_error_responses
from chainserve.api.runs.callback_runs import CallbackRuns
from chainserve.api.runs.config import ConfigError, chosen_model, validate_config
from chainserve.api.runs.request import check_thread
from chainserve.chains import ModelInfo, RegisteredChain
from chainserve.chains.owner import with_owner

# LangServe names runs itself and refuses `run_name` here.
CONFIG_KEYS = ("configurable", "tags", "metadata")
PREFIX = "/langserve/"
RUN_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_log", "stream_events"})


def _option_type(spec: ConfigurableFieldSpec) -> tuple[Any, Any]:
    """(annotation, default) for one configurable key, with Enums turned into Literals."""
    annotation, default = spec.annotation, spec.default
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = tuple(member.value for member in annotation)
        annotation = Literal[values]
        default = getattr(default, "value", default)
    return annotation, default


def config_model(specs: Sequence[ConfigurableFieldSpec], include: Sequence[str]) -> type[BaseModel]:
    """The pydantic model LangServe validates `config` with, and shows in its playground."""
    knobs: dict[str, Any] = {}
    for spec in specs:
        annotation, default = _option_type(spec)
        knobs[spec.id] = (annotation, Field(default, title=spec.name, description=spec.description))
    configurable = create_model("Configurable", **knobs)
    fields: dict[str, Any] = {
        "configurable": (configurable | None, None),
        "tags": (list[str] | None, None),
        "metadata": (dict[str, Any] | None, None),
        "run_name": (str | None, None),
    }
    chosen = {name: fields[name] for name in include if name in fields}
    return create_model("RunnableConfig", **chosen)


class _Served(RunnableBinding[Any, Any]):  # type: ignore[no-redef]  # pydantic plugin vs. RunnableBinding.kwargs
    """The chain as LangServe sees it: unchanged, except for its config schema."""

    def config_schema(self, *, include: Sequence[str] | None = None) -> type[BaseModel]:
        return config_model(self.bound.config_specs, include or ())

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """The chain's stream, run in a task of its own and noted for the response
        (`api/errors/langserve_streams.py`): closing it cancels that task, which unwinds every
        generator in the chain down to the provider request. LangChain's nested generators do
        not close their inner ones when closed, only when an exception passes through them."""
        stream = _in_task(super().astream(input, config, **kwargs))
        opened(stream)
        return stream

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """LangServe's batch with its concurrency bounded (`api/access/batch_limits.py`)."""
        limit = BATCH_CONCURRENCY.get()
        if limit is not None:
            configs = get_config_list(config, len(inputs))
            config = [{**one, "max_concurrency": limit} for one in configs]
        return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)


@dataclass(frozen=True)
class _Raised:
    exc: Exception


_ENDED = object()


async def _in_task(chunks: AsyncIterator[Any]) -> AsyncGenerator[Any]:
    """`chunks`, produced by a task that is cancelled when this generator is closed; a
    failure is noted before it is raised, since LangServe reports every one as a 500.

    The task never waits anywhere but in the chain (the queue is unbounded), so a cancel
    always lands inside it and unwinds it to the provider request. A reader that stops
    reading is cut off by `CutOffStuckClients`, which bounds what can pile up."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for chunk in chunks:
                queue.put_nowait(chunk)
        except Exception as exc:  # noqa: BLE001 - raised again by the reader
            queue.put_nowait(_Raised(exc))
        else:
            queue.put_nowait(_ENDED)

    task = asyncio.create_task(produce(), name="langserve-stream")
    try:
        while (item := await queue.get()) is not _ENDED:
            if isinstance(item, _Raised):
                note_failure(item.exc)
                raise item.exc
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _check_config(chain: RegisteredChain, config: Any) -> None:
    if not isinstance(config, dict):
        return  # LangServe's own validation answers
    try:
        # Only `configurable` matters: LangServe drops other top-level keys itself, and its
        # client always sends a few (recursion_limit, callbacks: []).
        validate_config(chain, {"configurable": config.get("configurable")})
    except ConfigError as exc:
        if exc.status == 422:
            error = {"type": "value_error", "loc": ("body", *exc.loc), "msg": exc.reason}
            raise RequestValidationError([error]) from None
        raise HTTPException(exc.status, exc.message) from None


def _config_from_hash(config_hash: str) -> Any:
    from langserve.lzstring import LZString

    try:
        text = LZString.decompressFromEncodedURIComponent(config_hash)  # type: ignore[no-untyped-call]
        return json.loads(text or "null")
    # The decoder fails on garbage with whatever it trips over (`UnboundLocalError` on "0").
    except Exception:  # noqa: BLE001
        return None  # LangServe answers an undecodable hash with its own 400


def _check_batch_inputs(chain: RegisteredChain, inputs: list[Any]) -> None:
    """LangServe 0.3.3 lets a batch input's ValidationError escape as a 500; make it a 422."""
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(inputs):
        try:
            chain.spec.input_type.model_validate(item)
        except ValidationError as exc:
            errors.extend(
                {**err, "loc": ("body", "inputs", index, *err["loc"])}
                for err in exc.errors(include_url=False, include_context=False)
            )
    if errors:
        raise RequestValidationError(errors)


def _merged_config(configs: list[Any]) -> dict[str, Any]:
    """The playground's hash config overlaid by the body's: what picks the model and thread."""
    configurable: dict[str, Any] = {}
    for config in configs:
        if isinstance(config, dict) and isinstance(config.get("configurable"), dict):
            configurable.update(config["configurable"])
    return {"configurable": configurable}


async def _check_input_tokens(
    request: Request, chain: RegisteredChain, body: dict[str, Any], configs: list[Any]
) -> None:
    """Every input of an invoke, stream or batch body against the token limit."""
    batch = isinstance(body.get("inputs"), list)
    inputs = body["inputs"] if batch else [body["input"]] if "input" in body else []
    hashed = configs[:1] if "config_hash" in request.path_params else []
    config = body.get("config")
    for index, raw in enumerate(inputs):
        try:
            chain_input = chain.spec.input_type.model_validate(raw)
        except ValidationError:
            continue  # LangServe's own validation answers
        own = config[index] if isinstance(config, list) and index < len(config) else config
        merged = _merged_config([*hashed, own])
        default = (chain.model or request.app.state.model_info).name
        model = chosen_model(chain, cast(RunnableConfig, merged), default)
        param = f"inputs[{index}]" if batch else None
        await check_input_tokens(
            request.app.state.settings, chain, chain_input, model, merged, param
        )


def _invalid_json(exc: ValueError) -> RequestValidationError:
    """The 422 the native routes answer malformed JSON with."""
    where = ("body", exc.pos) if isinstance(exc, json.JSONDecodeError) else ("body",)
    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
    error = {"type": "json_invalid", "loc": where, "msg": f"JSON decode error: {reason}"}
    return RequestValidationError([error])


def _check_body_shape(request: Request, body: dict[str, Any]) -> None:
    """What LangServe 0.3.3 takes on trust, then fails on with a TypeError (a 500): a null
    `config` (every endpoint but batch) and batch `inputs` that are not a list."""
    errors = []
    if "config" in body and body["config"] is None:
        errors.append(
            {"type": "dict_type", "loc": ("body", "config"), "msg": "Input should be an object"}
        )
    batch = request.url.path.endswith("/batch")
    if batch and "inputs" in body and not isinstance(body["inputs"], list):
        errors.append(
            {"type": "list_type", "loc": ("body", "inputs"), "msg": "Input should be a list"}
        )
    if errors:
        raise RequestValidationError(errors)


def _request_guard(chain: RegisteredChain) -> Callable[[Request], Awaitable[None]]:
    async def check_request(request: Request) -> None:
        configs: list[Any] = []
        if "config_hash" in request.path_params:  # the playground's /c/{hash}/... routes
            configs.append(_config_from_hash(request.path_params["config_hash"]))
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError as exc:
                # LangServe's own answer is an error list holding a bare string, which no
                # handler expects (a 500). BodyGuard refused what else fails to parse.
                raise _invalid_json(exc) from None
        if isinstance(body, dict):
            _check_body_shape(request, body)
            config = body.get("config")
            configs.extend(config if isinstance(config, list) else [config])
        for one in configs:
            _check_config(chain, one)
            if isinstance(one, dict) and isinstance(one.get("configurable"), dict):
                await check_thread(request.app.state.threads, one, caller_of(request.scope))
        if isinstance(body, dict) and isinstance(body.get("inputs"), list):
            settings = request.app.state.settings
            check_batch_size(body["inputs"], settings.max_batch_inputs)
            _check_batch_inputs(chain, body["inputs"])
            slots = request.scope.get("state", {}).get(BATCH_SLOTS)
            concurrency = batch_concurrency(
                settings.max_batch_concurrency, body.get("config"), slots
            )
            BATCH_CONCURRENCY.set(concurrency)  # read by `_Served.abatch`, in this request only
        if isinstance(body, dict):
            await _check_input_tokens(request, chain, body, configs)

    return check_request


def _observe_runs(
    chain: RegisteredChain,
) -> Callable[[dict[str, Any], Request], Awaitable[dict[str, Any]]]:
    """Give each run LangServe starts the same book-keeping (metrics, run log line) as ours."""

    async def add_observer(config: dict[str, Any], request: Request) -> dict[str, Any]:
        model: ModelInfo = chain.model or request.app.state.model_info
        streamed = request.url.path.rsplit("/", 1)[-1].startswith("stream")
        observer = CallbackRuns(
            chain.name,
            model,
            chosen_model(chain, cast(RunnableConfig, config), model.name),
            streamed=streamed,
        )
        # The request's own `configurable` was checked against the allow-list already.
        config = with_owner(config, caller_of(request.scope).owner)
        callbacks = config.get("callbacks")
        if callbacks is not None and not isinstance(callbacks, list):
            return config  # a callback manager: LangServe never sends one, leave it be
        return {**config, "callbacks": [*(callbacks or []), observer]}

    return add_observer


def reset_loop_state() -> None:
    """Forget sse-starlette's process-wide shutdown Event, which binds to the first event loop.

    LangServe streams through sse-starlette 1.x, whose `AppStatus.should_exit_event` is
    created once per process; an app started on a second loop (a test server, an embedded
    app) would otherwise fail every LangServe stream with "bound to a different event loop".
    """
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit_event = None


def _document_input_limit(app: FastAPI, prefix: str) -> None:
    """Add the token limit's 413 to LangServe's run endpoints (add_routes takes no `responses`)."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(prefix):
            continue
        if route.path.rsplit("/", 1)[-1] in RUN_ENDPOINTS:
            route.responses = {**route.responses, **INPUT_LIMIT_RESPONSES}


def _document_responses(app: FastAPI, prefix: str) -> None:
    """Declare what LangServe's routes really answer: our errors, and SSE from the streams."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(prefix):
            continue
        endpoint = route.path.rsplit("/", 1)[-1]
        # A thread named in a body's or a hash's config must exist.
        names_thread = endpoint in RUN_ENDPOINTS or "{config_hash}" in route.path
        responses = referenced_error_responses(*REFUSALS, *((404,) if names_thread else ()))
        if endpoint.startswith("stream"):
            responses[200] = {"content": {"text/event-stream": {}}}
        route.responses = {**responses, **route.responses}


class _MountFirst:
    """Mounts LangServe's routes before the first request that could reach them."""

    def __init__(self, app: ASGIApp, *, mount: Callable[[], None]) -> None:
        self.app = app
        self.mount = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PREFIX):
            self.mount()
        await self.app(scope, receive, send)


def mount_langserve_on_first_use(
    app: FastAPI, chains: dict[str, RegisteredChain], *, playground: bool
) -> None:
    """Mount LangServe's routes when a request first reaches `/langserve/` (or the OpenAPI
    schema is built). `add_routes` builds some thirty FastAPI routes per chain, about 80 ms
    each chain: most of an app's start-up, paid now only by a server that serves LangServe."""
    mounted = False

    def mount() -> None:
        nonlocal mounted
        if not mounted:  # no await in between: two first requests cannot both mount
            mounted = True
            mount_langserve(app, chains, playground=playground)
            app.openapi_schema = None

    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        mount()
        return build_schema()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_MountFirst, mount=mount)


def mount_langserve(app: FastAPI, chains: dict[str, RegisteredChain], *, playground: bool) -> None:
    """Mount each chain with LangServe's `add_routes` under `/langserve/{name}`."""
    from langserve import add_routes

    for chain in chains.values():
        add_routes(
            app,
            _Served(bound=chain.runnable),
            path=f"{PREFIX}{chain.name}",
            input_type=chain.spec.input_type,
            config_keys=CONFIG_KEYS,
            playground_type=chain.spec.playground,
            disabled_endpoints=None if playground else ["playground"],
            dependencies=[Depends(_request_guard(chain))],
            per_req_config_modifier=_observe_runs(chain),
        )
        _document_input_limit(app, f"{PREFIX}{chain.name}/")
        _document_responses(app, f"{PREFIX}{chain.name}/")
