"""Every LangServe import lives here, so dropping LangServe touches one module.

Two deliberate differences from a stock `add_routes` mount:
- The config schema LangServe validates against is built from the chain's allow-list with
  `Literal` options. LangChain's generated schema types options as Enums with plain-string
  defaults, which makes pydantic warn on every request LangServe handles.
- A route dependency checks each `config.configurable` in the body against the same
  allow-list as the native routes (LangServe would silently drop unknown keys; we refuse
  them with a 400), and validates batch inputs (LangServe answers a bad one with a 500).
"""

import enum
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from langchain_core.runnables import ConfigurableFieldSpec, RunnableBinding
from pydantic import BaseModel, Field, ValidationError, create_model

from api.run_config import ConfigError, validate_config
from api.run_request import check_thread
from chains import RegisteredChain

# LangServe names runs itself and refuses `run_name` here.
CONFIG_KEYS = ("configurable", "tags", "metadata")


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


def _check_config(chain: RegisteredChain, config: Any) -> None:
    if not isinstance(config, dict):
        return  # LangServe's own validation answers
    try:
        # Only `configurable` matters: LangServe drops other top-level keys itself, and its
        # client always sends a few (recursion_limit, callbacks: []).
        validate_config(chain, {"configurable": config.get("configurable")})
    except ConfigError as exc:
        if exc.status == 422:
            error = {"type": "value_error", "loc": ("body", *exc.loc), "msg": exc.message}
            raise RequestValidationError([error]) from None
        raise HTTPException(exc.status, exc.message) from None


def _config_from_hash(config_hash: str) -> Any:
    from langserve.lzstring import LZString

    try:
        text = LZString.decompressFromEncodedURIComponent(config_hash)  # type: ignore[no-untyped-call]
        return json.loads(text or "null")
    except (ValueError, TypeError):
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


def _request_guard(chain: RegisteredChain) -> Callable[[Request], Awaitable[None]]:
    async def check_request(request: Request) -> None:
        configs: list[Any] = []
        if "config_hash" in request.path_params:  # the playground's /c/{hash}/... routes
            configs.append(_config_from_hash(request.path_params["config_hash"]))
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except (ValueError, RecursionError):
                body = None  # not JSON: LangServe's own validation answers with a 422
        if isinstance(body, dict):
            config = body.get("config")
            configs.extend(config if isinstance(config, list) else [config])
        for one in configs:
            _check_config(chain, one)
            if isinstance(one, dict) and isinstance(one.get("configurable"), dict):
                await check_thread(request.app.state.threads, one)
        if isinstance(body, dict) and isinstance(body.get("inputs"), list):
            _check_batch_inputs(chain, body["inputs"])

    return check_request


def reset_loop_state() -> None:
    """Forget sse-starlette's process-wide shutdown Event, which binds to the first event loop.

    LangServe streams through sse-starlette 1.x, whose `AppStatus.should_exit_event` is
    created once per process; an app started on a second loop (a test server, an embedded
    app) would otherwise fail every LangServe stream with "bound to a different event loop".
    """
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit_event = None


def mount_langserve(app: FastAPI, chains: dict[str, RegisteredChain], *, playground: bool) -> None:
    """Mount each chain with LangServe's `add_routes` under `/langserve/{name}`."""
    from langserve import add_routes

    for chain in chains.values():
        add_routes(
            app,
            _Served(bound=chain.runnable),
            path=f"/langserve/{chain.name}",
            input_type=chain.spec.input_type,
            config_keys=CONFIG_KEYS,
            playground_type=chain.spec.playground,
            disabled_endpoints=None if playground else ["playground"],
            dependencies=[Depends(_request_guard(chain))],
        )
