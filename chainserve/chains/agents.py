"""LangGraph graphs (`create_agent`, or built by hand) served as agents: their model's tokens
as they come, their steps and their tools' results, in the event model
(`chains/output_events.py`).

A graph's own `astream` yields whole state updates, so a client would see an agent's answer
only when its turn is over. `AgentStream` streams the graph in LangGraph's `messages` and
`tasks` modes: each model token as a message chunk (text, tool-call pieces), each tool's
`ToolMessage` as a `tool_result`, and a `step` event as each task (a node's run: a model turn,
a tool turn) starts and ends. Tokens of a model called inside a tool are that tool's
business: its result is what the agent shows.

Everything else (`invoke`, `batch`, `astream_events`, `astream_log`, schemas) is the graph's
own, so LangServe and tracing see the graph as written. The graph's knobs are the ones its
models declare (`configurable_fields`, `build_model`): LangGraph hands a node's model the
request's config, but does not list what the model accepts, so they are found in the nodes.
"""

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs

from chainserve.chains.graph_parts import is_graph, runnables_in_nodes
from chainserve.chains.messages import coerce_message
from chainserve.chains.models.streaming import is_plain_binding, unbound
from chainserve.chains.output_events import EventChunk
from chainserve.chains.stand_in import StandIn
from chainserve.chains.thread_key import THREAD_KEY, THREAD_SPEC


class TurnStore(Protocol):
    """Where an agent's conversation turns are kept (`chains/history/agent_turns.py`)."""

    async def load(self, config: RunnableConfig) -> tuple[Any, list[BaseMessage]]:
        """The run's thread (None: no thread asked for) and the history to run on."""

    async def save(self, thread: Any, messages: Sequence[BaseMessage]) -> None:
        """Append a completed turn to the thread."""


def is_agent(chain: Runnable[Any, Any]) -> bool:
    return isinstance(unbound(chain), AgentStream)


def own_checkpointed_graph(chain: Runnable[Any, Any]) -> Any | None:
    """The graph `chain` serves (behind exact bindings) when it keeps its own checkpoints."""
    agent = unbound(chain)
    return agent.graph if isinstance(agent, AgentStream) and agent.checkpointed else None


def with_turns(chain: Runnable[Any, Any], turns: TurnStore) -> Runnable[Any, Any]:
    """The agent in `chain` (behind exact bindings) keeping its conversations in `turns`."""
    if is_plain_binding(chain):
        return chain.model_copy(update={"bound": with_turns(chain.bound, turns)})
    if not isinstance(chain, AgentStream):
        raise TypeError(f"threads are kept for agents, not for {type(chain).__name__}")
    return chain.model_copy(update={"turns": turns})


def as_agent(chain: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """`chain` streamed as an agent when it is a graph (exact bindings around it kept)."""
    if is_plain_binding(chain):
        inner = as_agent(chain.bound)
        return chain if inner is chain.bound else chain.model_copy(update={"bound": inner})
    return AgentStream(graph=chain) if is_graph(chain) else chain


class AgentStream(StandIn):
    """A graph whose `astream` yields tokens, steps and tool results; see the module docstring."""

    graph: Any
    """The user's compiled graph (a `Pregel`)."""
    turns: Any = None
    """Its conversation threads (a `TurnStore`), when the chain keeps them."""

    @property
    def original(self) -> Runnable[Any, Any]:
        return cast(Runnable[Any, Any], self.graph)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        found = [spec for model in runnables_in_nodes(self.graph) for spec in model.config_specs]
        threads = [THREAD_SPEC] if self.turns is not None or self.checkpointed else []
        return get_unique_config_specs([*self.graph.config_specs, *found, *threads])

    @property
    def checkpointed(self) -> bool:
        """The graph keeps its own threads (compiled with a LangGraph checkpointer)."""
        return getattr(self.graph, "checkpointer", None) not in (None, False)

    def _config(self, config: RunnableConfig | None) -> RunnableConfig:
        """A graph with its own checkpointer needs a thread id to run at all: a request that
        names none gets a fresh one, a turn with no past (LangGraph would refuse it)."""
        config = ensure_config(config)
        configurable = config.get("configurable") or {}
        if self.checkpointed and not configurable.get(THREAD_KEY):
            return {**config, "configurable": {**configurable, THREAD_KEY: uuid.uuid4().hex}}
        return config

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.graph.invoke(input, self._config(config), **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = self._config(config)
        if self.turns is None:
            return await self.graph.ainvoke(input, config, **kwargs)
        thread, past = await self.turns.load(ensure_config(config))
        state = await self.graph.ainvoke(_after(past, input), config, **kwargs)
        await self.turns.save(thread, _turn(state, past))
        return state

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self.graph.stream(input, self._config(config), **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        config = self._config(config)
        if kwargs:  # a caller asking for the graph's own stream modes gets them
            async for item in self.graph.astream(input, config, **kwargs):
                yield item
            return
        thread, past = (None, [])
        if self.turns is not None:
            thread, past = await self.turns.load(ensure_config(config))
        steps, tokens = _Steps(_tool_nodes(self.graph)), _Tokens()
        # The state after each superstep (once per step, not per token): a thread keeps the
        # turn's messages, and a `create_agent(response_format=...)` answer is in it.
        modes = ["messages", "tasks", "values"]
        state: Any = None
        async for mode, item in self.graph.astream(_after(past, input), config, stream_mode=modes):
            if mode == "values":
                state = item
                continue
            if mode == "tasks":
                yield steps.task(item)
                continue
            message, metadata = item
            step = steps.of(metadata)
            if isinstance(message, ToolMessage):
                yield EventChunk("tool_result", _tool_result(message, step.index))
            elif isinstance(message, AIMessage) and step.kind != "tool":
                chunk = tokens.of(message)
                if chunk is not None:
                    yield chunk
        structured = state.get("structured_response") if isinstance(state, dict) else None
        if structured is not None:
            yield structured  # the agent's answer as a value: an `object` event on every surface
        if thread is not None:  # only a completed turn is remembered
            await self.turns.save(thread, _turn(state, past))


class _Tokens:
    """A model turn's chunks as the run streams them: plain text as text (what a text chain
    streams, and a fraction of a message chunk's cost to send), anything more (tool-call
    pieces, reasoning, the end of a turn that called tools) as the message chunk itself."""

    def __init__(self) -> None:
        self._calling = False

    def of(self, message: AIMessage) -> Any:
        if not isinstance(message, AIMessageChunk):
            return message  # a whole message (a node that invoked its model): as it is
        ends = message.chunk_position == "last" or bool(
            message.response_metadata.get("finish_reason")
        )
        if message.tool_call_chunks or message.additional_kwargs:
            self._calling = self._calling or bool(message.tool_call_chunks)
            return message
        if ends and self._calling:
            self._calling = False
            return message  # closes the turn's tool calls (`output_events.py`)
        content = message.content
        if isinstance(content, str):
            return content or None
        return message  # content blocks (reasoning, images): the chunk carries them


@dataclass(frozen=True)
class _Step:
    index: int
    kind: str
    node: str


class _Steps:
    """The graph's tasks as steps: each task (a node run in a superstep) is one, numbered in
    the order they start; a tool node's task is a tool step, any other a model step."""

    def __init__(self, tool_nodes: set[str]) -> None:
        self._tool_nodes = tool_nodes
        self._running: dict[str, _Step] = {}
        self._count = 0

    def task(self, task: dict[str, Any]) -> EventChunk:
        task_id, node = str(task.get("id")), str(task.get("name"))
        if "input" in task:  # LangGraph's task start; its end has `result` and `error`
            kind = "tool" if node in self._tool_nodes else "model"
            step = self._running[task_id] = _Step(self._count, kind, node)
            self._count += 1
            return EventChunk("step", {**_step_body(step), "status": "start"})
        step = self._running.pop(task_id) if task_id in self._running else _Step(-1, "model", node)
        body = {**_step_body(step), "status": "end"}
        if task.get("error"):
            body["error"] = str(task["error"])
        return EventChunk("step", body)

    def of(self, metadata: Any) -> _Step:
        """The step a streamed message belongs to: the top-level task in its namespace."""
        meta = metadata if isinstance(metadata, dict) else {}
        namespace = str(meta.get("langgraph_checkpoint_ns") or "")
        task_id = namespace.split("|", 1)[0].rpartition(":")[2]
        found = self._running.get(task_id)
        if found is not None:
            return found
        node = str(meta.get("langgraph_node") or "")
        return _Step(-1, "tool" if node in self._tool_nodes else "model", node)


def _step_body(step: _Step) -> dict[str, Any]:
    return {"index": step.index, "type": step.kind, "node": step.node}


def _tool_nodes(graph: Any) -> set[str]:
    """The graph's nodes that run tools (LangGraph's `ToolNode`, as `create_agent` uses)."""
    from langgraph.prebuilt import ToolNode

    nodes = getattr(graph, "nodes", {})
    return {
        name for name, node in nodes.items() if isinstance(getattr(node, "bound", None), ToolNode)
    }


def _after(past: list[BaseMessage], input: Any) -> Any:
    """The graph's input with a thread's history before the new messages."""
    if not past or not isinstance(input, dict):
        return input
    return {**input, "messages": [*past, *(coerce_message(m) for m in input.get("messages", []))]}


def _turn(state: Any, past: list[BaseMessage]) -> list[BaseMessage]:
    """What a completed turn adds to its thread: the final state's messages after the history."""
    messages = state.get("messages") if isinstance(state, dict) else None
    return list(messages[len(past) :]) if isinstance(messages, list) else []


def _tool_result(message: ToolMessage, step: int) -> dict[str, Any]:
    content = message.content
    text = (
        content
        if isinstance(content, str)
        else " ".join(
            part if isinstance(part, str) else str(part.get("text", "")) for part in content
        )
    )
    return {
        "tool_call_id": message.tool_call_id,
        "name": message.name or "",
        "content": text,
        "status": message.status,
        "step": step,
    }


def model_parts(chain: Runnable[Any, Any]) -> Any:
    """Where a chain's models are to be looked for: an agent's node runnables, else itself."""
    chain = unbound(chain)
    return runnables_in_nodes(chain.graph) if isinstance(chain, AgentStream) else chain


def agent_answer(output: Any) -> Any:
    """The answer in an agent's final state (`{"messages": [...]}`): its structured response
    (`create_agent(response_format=...)`), else its last AI message; None if not a state."""
    if not isinstance(output, dict):
        return None
    if output.get("structured_response") is not None:
        return output["structured_response"]
    messages = output.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], AIMessage):
        return messages[-1]
    return None
