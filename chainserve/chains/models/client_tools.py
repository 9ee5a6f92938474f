"""A model that takes the caller's tools: what lets an OpenAI client's own tool loop run
against a chain (`ChatOpenAI(base_url=chainserve).bind_tools(...)`, `with_structured_output`).

Tools normally belong to the chain. A chain built on `ClientToolsModel` declares one more knob,
`client_tools`: the `tools`, `tool_choice`, `response_format` and `parallel_tool_calls` of the
request (`/v1` fills it from the Chat Completions body). The model binds them for that request
only, keeping its other knobs, and its tool calls go back to the caller to run.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from pydantic import BaseModel, ConfigDict, Field

CLIENT_TOOLS_KEY = "client_tools"


class FunctionSpec(BaseModel):
    """A function the caller's model may call, as OpenAI takes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ClientTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionSpec


class ClientTools(BaseModel):
    """The caller's tools for one request, in OpenAI's Chat Completions shapes."""

    model_config = ConfigDict(extra="forbid")

    tools: list[ClientTool] = Field(default_factory=list, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


CLIENT_TOOLS_SPEC = ConfigurableFieldSpec(
    id=CLIENT_TOOLS_KEY,
    annotation=ClientTools | None,
    name="Client tools",
    description="The caller's tools, tool_choice and response_format (OpenAI's shapes).",
    default=None,
)


class ClientToolsModel(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """`model`, with the request's `client_tools` bound to it; see the module docstring."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Runnable[LanguageModelInput, BaseMessage]

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*self.model.config_specs, CLIENT_TOOLS_SPEC])

    def _for(self, config: RunnableConfig) -> Runnable[LanguageModelInput, BaseMessage]:
        raw = (config.get("configurable") or {}).get(CLIENT_TOOLS_KEY)
        if not raw:
            return self.model
        asked = raw if isinstance(raw, ClientTools) else ClientTools.model_validate(raw)
        model = self.model
        tools = [tool.model_dump(exclude_none=True) for tool in asked.tools]
        if tools:
            extra = (
                {}
                if asked.parallel_tool_calls is None
                else {"parallel_tool_calls": asked.parallel_tool_calls}
            )
            model = model.bind_tools(tools, tool_choice=asked.tool_choice, **extra)  # type: ignore[attr-defined]
        if asked.response_format is not None:
            model = model.bind(response_format=asked.response_format)
        return model

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config = ensure_config(config)
        return self._for(config).invoke(input, config, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config = ensure_config(config)
        return await self._for(config).ainvoke(input, config, **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        config = ensure_config(config)
        yield from self._for(config).stream(input, config, **kwargs)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        config = ensure_config(config)
        async for chunk in self._for(config).astream(input, config, **kwargs):
            yield chunk
