"""`prompt → chat model → text` as one runnable, streamed with one hop per chunk.

Why not `prompt | model | StrOutputParser()`: streaming an LCEL sequence pulls every chunk
through each step's `_atransform_stream_with_config`, a new task per chunk per step plus tee
buffers, which costs more CPU than the chunk itself. This runnable keeps what those layers
give — its own chain run with the prompt and model as child runs (so tracing shows the same
tree), every model callback (the model's own `astream` runs unchanged), configurable
prompt and model fields, and the `on_chain_stream` tap that `astream_events`/`astream_log`
rely on — and iterates the model's stream directly, taking each chunk's text inline.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, Protocol, TypeGuard, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableSerializable,
)
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from pydantic import ConfigDict

from chainserve.chains.models.listeners import wants_chain_runs

StreamBody = Callable[[RunnableConfig], AsyncIterator[str]]


class TextStreaming(Protocol):
    """A model that streams text itself, with the callbacks its `astream` would make."""

    def astream_text(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]: ...


try:  # the type `BaseChatModel.bind` returns in recent langchain-core: a RunnableBinding in all
    # but its type hints
    from langchain_core.language_models.chat_models import _ChatModelBinding

    _PLAIN_BINDINGS: tuple[type, ...] = (RunnableBinding, _ChatModelBinding)
except ImportError:  # pragma: no cover - older langchain-core
    _PLAIN_BINDINGS = (RunnableBinding,)


def is_plain_binding(step: object) -> TypeGuard[RunnableBinding[Any, Any]]:
    """Whether `step` is a `.bind(...)`/`.with_config(...)` binding and nothing more: exactly
    the type, since a subclass (`RunnableWithMessageHistory`, ...) may stream differently."""
    return type(step) in _PLAIN_BINDINGS


def unbound(runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """The runnable inside any exact `.bind(...)`/`.with_config(...)`/`.with_types(...)`."""
    while is_plain_binding(runnable):
        runnable = runnable.bound
    return runnable


def unwrapped(
    model: Runnable[Any, Any], config: RunnableConfig
) -> tuple[Runnable[Any, Any], RunnableConfig, dict[str, Any]]:
    """The runnable that actually runs for `model.astream(input, config)`, with the config and
    keyword arguments it receives: what each `.bind(...)`/`.with_config(...)` binding and each
    configurable wrapper would do on the way in, done here once."""
    kwargs: dict[str, Any] = {}
    while True:
        if is_plain_binding(model):
            config = model._merge_configs(config)
            kwargs = {**model.kwargs, **kwargs}
            model = model.bound
        elif isinstance(model, DynamicRunnable):
            model, config = model.prepare(config)
        else:
            return model, config, kwargs


async def stream_model_text(
    model: Runnable[Any, Any], input: Any, config: RunnableConfig
) -> AsyncIterator[str]:
    """`model.astream(input, config)`, each chunk's text; a model that can stream its text
    directly (`chains/models/text_lane.py`) is asked to."""
    model, config, kwargs = unwrapped(model, config)
    if callable(getattr(model, "astream_text", None)):
        async for text in cast(TextStreaming, model).astream_text(input, config, **kwargs):
            yield text
        return
    async for chunk in model.astream(input, config, **kwargs):
        yield message_text(chunk)


async def traced_stream(
    runnable: Runnable[Any, Any], input: Any, config: RunnableConfig | None, body: StreamBody
) -> AsyncIterator[str]:
    """Stream `body(child_config)` as one chain run of `runnable`: start, end or error, and the
    `on_chain_stream` tap for astream_events/astream_log, with no task per chunk."""
    config = ensure_config(config)
    manager = get_async_callback_manager_for_config(config)
    run_manager = await manager.on_chain_start(
        None,
        input,
        name=config.get("run_name") or runnable.get_name(),
        run_id=config.pop("run_id", None),
    )
    output = ""
    try:
        texts = body(patch_config(config, callbacks=run_manager.get_child()))
        # Duck-typed: an isinstance check on the runtime Protocol costs ~40 µs per handler.
        tap = next((h for h in run_manager.handlers if hasattr(h, "tap_output_aiter")), None)
        if tap is not None:
            texts = cast(AsyncIterator[str], tap.tap_output_aiter(run_manager.run_id, texts))
        async for text in texts:
            output += text
            yield text
    except BaseException as exc:
        # Cancellation included: the run is recorded as failed, then the cancel propagates.
        await run_manager.on_chain_error(exc)
        raise
    await run_manager.on_chain_end(output)


async def format_prompt(
    prompt: Runnable[Any, PromptValue], input: Any, config: RunnableConfig
) -> PromptValue:
    """`prompt.ainvoke`, minus the prompt's own child run when no handler would receive it
    (`chains/models/listeners.py`): with no tracer that run is only callback-manager work."""
    prompt, prompt_config = (
        prompt.prepare(config) if isinstance(prompt, DynamicRunnable) else (prompt, config)
    )
    # Configured as the prompt's own run would be: context-variable hooks (LangSmith,
    # `collect_runs`) add their handlers here, not through the inherited callbacks.
    handlers = get_async_callback_manager_for_config(prompt_config).handlers
    if isinstance(prompt, BasePromptTemplate) and not any(
        wants_chain_runs(handler) for handler in handlers
    ):
        # What BasePromptTemplate.ainvoke runs inside its run, validation included.
        return await prompt._aformat_prompt_with_error_handling(input)
    return await prompt.ainvoke(input, prompt_config)


def message_text(message: Any) -> str:
    return message.text if isinstance(message, BaseMessage) else str(message)


class PromptModelText(RunnableSerializable[dict[str, Any], str]):
    """Format the prompt once, stream the model, yield each chunk's text."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    prompt: Runnable[dict[str, Any], PromptValue]
    model: Runnable[LanguageModelInput, BaseMessage]

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*self.prompt.config_specs, *self.model.config_specs])

    def _run(
        self, input: dict[str, Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> str:
        child = patch_config(config, callbacks=run_manager.get_child())
        return message_text(self.model.invoke(self.prompt.invoke(input, child), child))

    async def _arun(
        self,
        input: dict[str, Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> str:
        child = patch_config(config, callbacks=run_manager.get_child())
        prompt = await self.prompt.ainvoke(input, child)
        return message_text(await self.model.ainvoke(prompt, child))

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return self._call_with_config(self._run, input, config)

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return await self._acall_with_config(self._arun, input, config)

    def stream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str]:
        yield self.invoke(input, config)  # sync callers are not the server's hot path

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        async for text in traced_stream(self, input, config, partial(self._texts, input)):
            yield text

    async def _texts(self, input: dict[str, Any], config: RunnableConfig) -> AsyncIterator[str]:
        prompt = await format_prompt(self.prompt, input, config)
        async for text in stream_model_text(self.model, prompt, config):
            yield text
