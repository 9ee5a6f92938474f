"""The chains users write, `[steps |] prompt | chat model | StrOutputParser()`, served on the
lean path the shipped chains take, with the callbacks and traces of the chain as written.

Why: streaming an LCEL sequence pulls every chunk through each step's
`_atransform_stream_with_config` (a task per chunk per step, tee buffers), and a user's own
`ChatOpenAI` parses every chunk into the SDK's pydantic models. Measured on this machine that
is about 36 times the shipped `chat` chain's CPU per streamed chunk (`make bench`, user-chain row).

What is recognised, at registration: a `RunnableSequence` whose last step is exactly
`StrOutputParser()` and whose step before it is a chat model, possibly behind exact
`.bind(...)`/`.with_config(...)` bindings and configurable wrappers; the steps before it may
be anything (a prompt, `RunnablePassthrough.assign(context=retriever)`, a lambda). Anything
else is served unchanged, but for a LangGraph graph: its nodes' models are rebuilt the same way
(`graph_parts.py`), so an agent streams on the same lean model path.

What changes: each exact `ChatOpenAI` in the model step is rebuilt as the streamlined
subclass with the same field values (`served_chat_openai`), on the server's connection pool
unless the user gave it a client or a proxy of their own. That rebuilt sequence is what runs
whenever anything could tell the difference: a handler that listens to chain runs (a tracer,
LangSmith, `astream_events`, `astream_log`), `invoke`, `batch`, sync calls, extra `astream`
arguments. Otherwise (no handler would receive a chain event) the steps before the model run
once each with `ainvoke` and the model's text is streamed directly; every run a handler can
see (the model's, a retriever's, a step's own) is made exactly as the sequence makes it, with
the same parent run, tags (`seq:step:N`) and metadata.
"""

import sys
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableSequence,
)
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.configurable import (
    DynamicRunnable,
    RunnableConfigurableAlternatives,
    RunnableConfigurableFields,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec

from chainserve.chains.graph_parts import is_graph, with_parts_replaced
from chainserve.chains.models.factory import ModelConfig
from chainserve.chains.models.listeners import wants_chain_runs
from chainserve.chains.models.streaming import (
    format_prompt,
    is_plain_binding,
    stream_model_text,
    traced_stream,
    unbound,
)
from chainserve.chains.stand_in import StandIn

_MAX_WRAPPERS = 8


def chat_model_of(step: Runnable[Any, Any]) -> BaseChatModel | None:
    """The chat model a step runs, seen through exact bindings and configurable wrappers."""
    for _ in range(_MAX_WRAPPERS):
        if isinstance(step, BaseChatModel):
            return step
        if is_plain_binding(step):
            step = step.bound
        elif isinstance(step, RunnableConfigurableFields | RunnableConfigurableAlternatives):
            step = step.default
        else:
            return None
    return None


def configured_without_streaming(chain: Runnable[Any, Any]) -> bool:
    """Whether a recognised chain's chat model has per-request fields but was not built with
    `streaming=True`: LangChain rebuilds such a model for a request that sets a field, with an
    explicit `streaming=False`, and the answer then comes in one piece."""
    chain = unbound(chain)
    if not isinstance(chain, LeanSequence):
        return False
    step = chain.sequence.steps[-2]
    for _ in range(_MAX_WRAPPERS):
        if isinstance(step, RunnableConfigurableFields) and isinstance(step.default, BaseChatModel):
            model = step.default
            return "streaming" in type(model).model_fields and (
                "streaming" not in model.model_fields_set or vars(model)["streaming"] is not True
            )
        if is_plain_binding(step):
            step = step.bound
        elif isinstance(step, RunnableConfigurableAlternatives):
            step = step.default
        else:
            return False
    return False


def _is_prompt(step: Runnable[Any, Any]) -> bool:
    return isinstance(step, BasePromptTemplate) or (
        isinstance(step, DynamicRunnable) and isinstance(step.default, BasePromptTemplate)
    )


class LeanSequence(StandIn):
    """A recognised `[steps |] model | StrOutputParser()`: streamed lean when nobody listens
    to chain runs, else (and for everything but `astream`) the sequence itself."""

    sequence: RunnableSequence[Any, str]
    """The user's sequence on the served models: the path every traced or non-stream call takes."""

    @property
    def original(self) -> Runnable[Any, Any]:
        return self.sequence

    @property
    def _steps(self) -> list[Runnable[Any, Any]]:
        return self.sequence.steps

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return self.sequence.config_specs

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return self.sequence.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return await self.sequence.ainvoke(input, config, **kwargs)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[str]:
        return self.sequence.batch(inputs, config, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[str]:
        return await self.sequence.abatch(inputs, config, **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str]:
        yield from self.sequence.stream(input, config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        config = ensure_config(config)
        handlers = get_async_callback_manager_for_config(config).handlers
        if kwargs or any(wants_chain_runs(handler) for handler in handlers):
            async for chunk in self.sequence.astream(input, config, **kwargs):
                yield chunk
            return
        async for text in traced_stream(self, input, config, partial(self._texts, input)):
            yield text

    async def _texts(self, input: Any, config: RunnableConfig) -> AsyncIterator[str]:
        *before, model, _parser = self._steps
        value = input
        for index, step in enumerate(before):
            step_config = _step_config(config, index)
            if _is_prompt(step):
                value = await format_prompt(step, value, step_config)
            else:
                value = await step.ainvoke(value, step_config)
        async for text in stream_model_text(model, value, _step_config(config, len(before))):
            yield text


def _step_config(config: RunnableConfig, index: int) -> RunnableConfig:
    """The config the sequence gives its step `index`: its run's child manager, tagged
    `seq:step:N` for that step only, as `RunnableSequence` tags it."""
    manager = cast(AsyncCallbackManager, config["callbacks"]).copy()
    manager.add_tags([f"seq:step:{index + 1}"], inherit=False)
    return patch_config(config, callbacks=manager)


def _recognised(chain: Runnable[Any, Any]) -> RunnableSequence[Any, Any] | None:
    if not isinstance(chain, RunnableSequence) or type(chain) is not RunnableSequence:
        return None
    steps = chain.steps
    if type(steps[-1]) is not StrOutputParser or chat_model_of(steps[-2]) is None:
        return None
    return chain


def lean(chain: Runnable[Any, Any], config: ModelConfig) -> Runnable[Any, Any]:
    """`chain` served lean when it is a composition this module recognises (see the module
    docstring), else `chain` itself; exact bindings around it (`.with_types`) are kept."""
    if is_plain_binding(chain):
        inner = lean(chain.bound, config)
        return chain if inner is chain.bound else chain.model_copy(update={"bound": inner})
    if is_graph(chain):
        # A graph's nodes call their models themselves: a copy of the graph calls the twins.
        return cast(
            Runnable[Any, Any], with_parts_replaced(chain, partial(_twin_or_none, config=config))
        )
    sequence = _recognised(chain)
    if sequence is None:
        return chain
    *before, model, parser = sequence.steps
    served: RunnableSequence[Any, str] = RunnableSequence(
        *before, _served_models(model, config), parser, name=sequence.name
    )
    return LeanSequence(sequence=served)


def _twin_or_none(runnable: Runnable[Any, Any], config: ModelConfig) -> Runnable[Any, Any] | None:
    """`runnable`'s served twin, or None (look inside it) when it has no model to serve."""
    twin = _served_models(runnable, config)
    return None if twin is runnable else twin


def _served_models(model: Runnable[Any, Any], config: ModelConfig) -> Runnable[Any, Any]:
    # Imported only when the user's code imported langchain-openai (else no `ChatOpenAI` can be
    # in the chain): the offline path never loads the OpenAI client.
    if "langchain_openai" not in sys.modules:
        return model
    from chainserve.chains.models.served_openai import served_models

    return served_models(model, config)
