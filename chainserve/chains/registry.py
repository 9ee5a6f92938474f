"""The chain registry: the shipped examples (every module here that declares `CHAINS`) and the
user's own chains (`user_chains.py`), built against one model configuration."""

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import ConfigurableFieldSpec, Runnable
from pydantic import BaseModel

from chainserve.chains.agents import as_agent, model_parts
from chainserve.chains.history import ThreadStore, with_thread_history
from chainserve.chains.lean_compositions import configured_without_streaming, lean
from chainserve.chains.models.factory import ModelConfig, ModelInfo
from chainserve.chains.models.found import chain_model

logger = logging.getLogger(__name__)

QueryMapper = Callable[[Mapping[str, str]], dict[str, Any]]
MessagesMapper = Callable[[list[BaseMessage]], dict[str, Any]]
Playground = Literal["default", "chat"]


class ChainLoadError(Exception):
    """Chains could not be loaded or built; the message is one line for the user."""


@dataclass(frozen=True)
class ChainSpec:
    """How to build one named chain and how its input arrives over the wire."""

    name: str
    description: str
    build: Callable[[ModelConfig], Runnable[Any, Any]]
    input_type: type[BaseModel]
    """Validates and coerces request input before anything reaches the model."""
    from_query: QueryMapper | None = None
    """Maps flat query parameters (`?topic=...`) to input, for browser `EventSource`."""
    from_messages: MessagesMapper | None = None
    """Maps a chat transcript (OpenAI clients, useChat) to input; see `input_from_messages`."""
    playground: Playground = "default"
    memory: bool = False
    """Keeps conversation threads: input has `messages`, the prompt a `history` placeholder."""
    needs_retrieval: bool = False
    """Searches documents: served only when the model config carries a `retrieval`."""


@dataclass(frozen=True)
class RegisteredChain:
    """A chain built for one app: its spec plus the runnable that serves it."""

    spec: ChainSpec
    runnable: Runnable[Any, Any]
    model: ModelInfo | None = None
    """The model the chain calls when it brings its own (None: the server's, from settings)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def configurable(self) -> dict[str, ConfigurableFieldSpec]:
        """The per-request knobs this chain exposes, by id: the only keys a request may set."""
        return {spec.id: spec for spec in self.runnable.config_specs}


def input_from_messages(spec: ChainSpec, messages: list[BaseMessage]) -> dict[str, Any]:
    """A chat transcript as this chain's input, for clients that only speak in messages.

    Chains taking `messages` get them all; a chain with one required field gets the last
    user message's text in it; anything else must declare `from_messages`.
    """
    if spec.from_messages is not None:
        return spec.from_messages(messages)
    fields = spec.input_type.model_fields
    if "messages" in fields:
        return {"messages": messages}
    required = [name for name, info in fields.items() if info.is_required()]
    if len(required) != 1:
        raise ValueError(f"chain {spec.name!r} cannot take a chat transcript as input")
    last = next((i for i in reversed(range(len(messages))) if messages[i].type == "human"), None)
    if last is None:
        raise ValueError("the messages need at least one user message")
    _text_only(spec, messages[last], last)
    return {required[0]: messages[last].text}


def _text_only(spec: ChainSpec, message: BaseMessage, index: int) -> None:
    """A chain that takes a text field gets the message's text: a part that is not text (an
    image) would never reach its model, so it is refused by name rather than dropped."""
    if isinstance(message.content, str):
        return
    for position, part in enumerate(message.content):
        kind = part.get("type") if isinstance(part, dict) else "text"
        if kind != "text":
            raise ValueError(
                f"messages[{index}].content[{position}] is a {kind!r} part, but chain "
                f"{spec.name!r} takes text only; send it to a chain that takes messages"
            )


def discover_specs() -> list[ChainSpec]:
    """Import every module of this package and collect their `CHAINS`, sorted by name."""
    package = importlib.import_module(__package__ or "chainserve.chains")
    specs: dict[str, ChainSpec] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for spec in getattr(module, "CHAINS", ()):
            if spec.name in specs:
                raise ValueError(f"two chains are named {spec.name!r}")
            specs[spec.name] = spec
    return [specs[name] for name in sorted(specs)]


def _build(
    spec: ChainSpec, config: ModelConfig, threads: ThreadStore | None, budget: int
) -> Runnable[Any, Any]:
    try:
        runnable = spec.build(config)
    except Exception as exc:  # a user's build may raise anything
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise ChainLoadError(f"chain {spec.name!r} failed to build: {reason}") from exc
    if not isinstance(runnable, Runnable):
        raise ChainLoadError(
            f"chain {spec.name!r}: its build returned a {type(runnable).__name__}, not a Runnable"
        )
    runnable = as_agent(lean(runnable, config))
    if configured_without_streaming(runnable):
        logger.warning(
            "chain %r: a request that sets one of its model's configurable fields is answered "
            "in one piece (LangChain rebuilds the model with streaming=False); build the model "
            "with streaming=True to stream those too",
            spec.name,
        )
    if spec.memory:
        # The wrapper hides the chain's own types; restate them for schemas and LangServe.
        runnable = with_thread_history(runnable, threads, budget, config.model).with_types(
            input_type=spec.input_type, output_type=runnable.OutputType
        )
    return runnable


def _served_specs(extra: Iterable[ChainSpec], examples: bool) -> list[ChainSpec]:
    """The examples (unless turned off) then the user's chains; a name both use is an error,
    never one silently replacing the other."""
    specs = discover_specs() if examples else []
    taken = {spec.name for spec in specs}
    for spec in extra:
        if spec.name in taken:
            where = "a shipped example" if examples and spec.name in _example_names() else None
            hint = f" ({where}; rename yours or turn the examples off)" if where else ""
            raise ChainLoadError(f"two chains are named {spec.name!r}{hint}")
        taken.add(spec.name)
        specs.append(spec)
    if not specs:
        raise ChainLoadError("there are no chains to serve: name some with --chains")
    return specs


def _example_names() -> set[str]:
    return {spec.name for spec in discover_specs()}


def build_registry(
    config: ModelConfig,
    threads: ThreadStore | None = None,
    history_token_budget: int = 3000,
    *,
    extra: Iterable[ChainSpec] = (),
    examples: bool = True,
) -> dict[str, RegisteredChain]:
    """Build the served chains against one model configuration and thread store: the shipped
    examples (unless `examples` is false) and `extra`, the user's own."""
    served: dict[str, RegisteredChain] = {}
    for spec in _served_specs(extra, examples):
        if config.retrieval is None and spec.needs_retrieval:
            continue
        runnable = _build(spec, config, threads, history_token_budget)
        served[spec.name] = RegisteredChain(spec, runnable, chain_model(model_parts(runnable)))
    return served
