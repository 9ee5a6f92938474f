"""Turn a request's raw input and config into a validated chain run, or a 4xx."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from chainserve.api.access.json_scan import json_problem
from chainserve.api.access.ownership import Caller
from chainserve.api.runs.config import ConfigError, chosen_model, validate_config
from chainserve.api.runs.run import Run
from chainserve.chains import ModelInfo, RegisteredChain
from chainserve.chains.history import THREAD_KEY, ThreadStore
from chainserve.chains.owner import with_owner

OnDisconnect = Literal["cancel", "continue"]
QUERY_CONTROLS = ("config", "input", THREAD_KEY, "on_disconnect", "token")
"""Query parameters that steer a GET stream rather than fill the chain's input."""


class RunRequest(BaseModel):
    """Body of `POST /chains/{name}/stream` and `/invoke`, shaped like LangServe's."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="The chain's input; see `GET /chains` for each schema.")
    config: dict[str, Any] | None = Field(
        None,
        description="`configurable` keys listed by `GET /chains`, plus tags/metadata/run_name.",
    )
    thread_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Continue this thread (chains with memory); same as configurable.thread_id.",
    )
    on_disconnect: OnDisconnect = Field(
        "cancel",
        description="`cancel` the run when the client hangs up, or `continue` it so a client "
        "can rejoin with GET /runs/{run_id}/stream.",
    )


@dataclass(frozen=True)
class PreparedRun:
    input: dict[str, Any]
    config: RunnableConfig
    run: Run


def _validate_input(chain: RegisteredChain, raw: Any, where: tuple[str, ...]) -> dict[str, Any]:
    try:
        model = chain.spec.input_type.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {**err, "loc": (*where, *err["loc"])}
            for err in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None
    except (TypeError, ValueError) as exc:  # a user schema's own validator, failing its way
        error = {"type": "value_error", "loc": where, "msg": str(exc), "input": raw}
        raise RequestValidationError([error]) from None
    return unpack_input(model)


def unpack_input(model: BaseModel) -> dict[str, Any]:
    """The validated input as the chain takes it, as LangServe unpacks it: attributes, not
    `model_dump()`, so coerced values such as LangChain messages stay objects; the fields an
    open schema allows beyond its own (a `dict`-typed chain's input is all extra) kept."""
    if isinstance(model, RootModel):  # object roots only: user_chains refuses the others
        return dict(model.root)
    values = {name: getattr(model, name) for name in type(model).model_fields}
    return {**(model.model_extra or {}), **values}


def with_thread(raw_config: Any, thread_id: str | None, where: str = "body") -> Any:
    """Fold a top-level `thread_id` into `config.configurable`, where the chain reads it."""
    if thread_id is None or not isinstance(raw_config, dict | None):
        return raw_config
    config = dict(raw_config or {})
    configurable = config.get("configurable") or {}
    if not isinstance(configurable, dict):
        return raw_config  # validate_config reports the real problem
    if configurable.get(THREAD_KEY, thread_id) != thread_id:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (where, THREAD_KEY),
                    "msg": "thread_id differs from config.configurable.thread_id",
                    "input": thread_id,
                }
            ]
        )
    config["configurable"] = {**configurable, THREAD_KEY: thread_id}
    return config


async def check_thread(
    threads: ThreadStore, config: RunnableConfig | dict[str, Any], caller: Caller
) -> None:
    """A run may only continue a thread that exists and is the caller's: a 404 otherwise, the
    same for both."""
    thread_id = config.get("configurable", {}).get(THREAD_KEY)
    if not thread_id:
        return
    info = await threads.get(str(thread_id))
    if info is None or not caller.sees(info.owner):
        raise HTTPException(404, f"no thread {thread_id!r}; create one with POST /threads")


def prepare_run(
    chain: RegisteredChain,
    raw_input: Any,
    raw_config: Any,
    model: ModelInfo,
    where: tuple[str, ...] = ("body", "input"),
    owner: str | None = None,
) -> PreparedRun:
    """Validate everything before any model is contacted; the run acts for `owner`."""
    chain_input = _validate_input(chain, raw_input, where)
    try:
        config = validate_config(chain, raw_config)
    except ConfigError as exc:
        if exc.status == 422:
            loc = (where[0], *exc.loc)
            raise RequestValidationError(
                [{"type": "value_error", "loc": loc, "msg": exc.reason, "input": raw_config}]
            ) from None
        raise HTTPException(exc.status, exc.message) from None
    thread_id = config.get("configurable", {}).get(THREAD_KEY) or None
    model = chain.model or model
    run = Run(
        chain=chain.name,
        model=model,
        model_name=chosen_model(chain, config, model.name),
        thread_id=thread_id,
        owner=owner,
    )
    # Set after validation, which refuses the key in a request's own config.
    owned: RunnableConfig = with_owner(dict(config), owner)  # type: ignore[assignment]
    return PreparedRun(chain_input, run.config(owned), run)


def _json_param(params: Mapping[str, str], key: str, max_depth: int) -> Any:
    text = params[key]
    # The checks a request body gets from BodyGuard: a query string is parsed here instead.
    problem = json_problem(text.encode(), max_depth)
    if problem is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON: {exc.msg}"
    error = {"type": "json_invalid", "loc": ("query", key), "msg": problem, "input": text}
    raise RequestValidationError([error])


def input_from_query(
    chain: RegisteredChain, params: Mapping[str, str], max_depth: int
) -> tuple[Any, Any]:
    """Map `?field=value` (or `?input=<json>`) and `?config=<json>` to input and config."""
    config = _json_param(params, "config", max_depth) if "config" in params else None
    config = with_thread(config, params.get(THREAD_KEY), where="query")
    if "input" in params:
        return _json_param(params, "input", max_depth), config
    fields = {k: v for k, v in params.items() if k not in QUERY_CONTROLS}
    if chain.spec.from_query is not None:
        return chain.spec.from_query(fields), config
    return fields, config
