"""`StandIn`: a runnable that is another one in every respect but how it streams.

The lean composition (`lean_compositions.py`) and the agent (`agents.py`) each replace one
path of a runnable the user wrote; its name, types, schemas, graph and the event streams that
tracing reads must stay the user's runnable's, so LangServe, the playground and LangSmith see
what the user wrote.
"""

from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.graph import Graph
from pydantic import BaseModel, ConfigDict


class StandIn(RunnableSerializable[Any, Any]):
    """Answers for `original` (name, types, schemas, graph, `astream_events`, `astream_log`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def original(self) -> Runnable[Any, Any]:
        raise NotImplementedError

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self.original.get_name(suffix, name=name)

    @property
    def InputType(self) -> Any:  # noqa: N802  # LangChain's name
        return self.original.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802  # LangChain's name
        return self.original.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return cast(type[BaseModel], self.original.get_input_schema(config))

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return cast(type[BaseModel], self.original.get_output_schema(config))

    def get_graph(self, config: RunnableConfig | None = None) -> Graph:
        return self.original.get_graph(config)

    def astream_log(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.original.astream_log(input, config, **kwargs)

    def astream_events(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        return self.original.astream_events(input, config, **kwargs)
