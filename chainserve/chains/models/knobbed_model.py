"""`build_model`'s model: per-request knobs that survive `bind_tools`, `with_structured_output`
and `create_agent`.

LangChain's `configurable_fields` wrapper forwards any other attribute to the model inside it,
so `build_model(config).bind_tools(tools)` binds the tools to the inner model and returns a
runnable with no knobs: a request's `temperature` or `model` would be refused or, worse, lost.
Here those two calls bind the same arguments (formatted by the model itself) around the
wrapper instead, so the model is still rebuilt per request and then receives the tools.
"""

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableParallel,
    RunnableSequence,
)
from langchain_core.runnables.configurable import RunnableConfigurableFields
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_core.tools import BaseTool


# Not parametrised: pydantic makes `RunnableConfigurableFields[...]` a new, abstract class.
class KnobbedChatModel(RunnableConfigurableFields):  # type: ignore[type-arg]
    """A chat model with per-request fields; see the module docstring."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        bound = self._model.bind_tools(tools, tool_choice=tool_choice, **kwargs)
        return rebound(bound, self._model, self)

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable[Any, Any]:
        return rebound(self._model.with_structured_output(schema, **kwargs), self._model, self)

    @property
    def _model(self) -> BaseChatModel:
        model = self.default
        if not isinstance(model, BaseChatModel):  # pragma: no cover - built only around one
            raise TypeError(f"KnobbedChatModel wraps a chat model, not {type(model).__name__}")
        return model


def rebound(
    runnable: Runnable[Any, Any], old: Runnable[Any, Any], new: Runnable[Any, Any]
) -> Runnable[Any, Any]:
    """`runnable` with every binding of `old` inside it (through sequences, maps and
    fallbacks, the shapes `bind_tools` and `with_structured_output` return) bound to `new`."""
    if isinstance(runnable, RunnableBinding):
        inner = new if runnable.bound is old else rebound(runnable.bound, old, new)
        return runnable.model_copy(update={"bound": inner})
    if isinstance(runnable, RunnableSequence):
        steps = [rebound(step, old, new) for step in runnable.steps]
        return RunnableSequence(*steps, name=runnable.name)
    if isinstance(runnable, RunnableParallel):
        branches = {key: rebound(step, old, new) for key, step in runnable.steps__.items()}
        return runnable.model_copy(update={"steps__": branches})
    if isinstance(runnable, RunnableWithFallbacks):
        return runnable.model_copy(
            update={
                "runnable": rebound(runnable.runnable, old, new),
                "fallbacks": [rebound(f, old, new) for f in runnable.fallbacks],
            }
        )
    return new if runnable is old else runnable
