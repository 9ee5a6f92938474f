"""A graph's nodes serve the user's `ChatOpenAI` as its twin, in a copy: closures
(`create_agent`) and module globals (the tutorials) are rebuilt, the user's objects never."""

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import SecretStr

from chainserve.chains.agent import calculator
from chainserve.chains.graph_parts import runnables_in_nodes
from chainserve.chains.lean_compositions import lean
from chainserve.chains.models.factory import ModelConfig
from chainserve.chains.models.served_openai import ServedChatOpenAI

CONFIG = ModelConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_output_tokens=77)


def users_model(**fields: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4.1-mini",
        base_url="http://127.0.0.1:9/v1",
        api_key=SecretStr("sk-user"),
        streaming=True,
        **fields,
    )


def _closure(func: Any) -> dict[str, Any]:
    return {
        name: cell.cell_contents
        for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=True)
    }


def test_a_create_agent_graph_calls_the_twin_and_the_users_graph_is_untouched() -> None:
    model = users_model(temperature=0.3)
    graph = create_agent(model, tools=[calculator])
    served = lean(graph, CONFIG)
    assert served is not graph
    node = served.nodes["model"].bound  # type: ignore[attr-defined]
    twin = _closure(node.afunc)["model"]
    assert isinstance(twin, ServedChatOpenAI)
    assert (twin.model_name, twin.temperature, twin.output_cap) == ("gpt-4.1-mini", 0.3, 77)
    # The sync node closes over the same variable: it calls the same twin.
    assert _closure(node.func)["model"] is twin
    assert _closure(graph.nodes["model"].bound.afunc)["model"] is model  # type: ignore[attr-defined]
    assert served.nodes["tools"] is graph.nodes["tools"]  # type: ignore[attr-defined]


TUTORIAL_LLM: Any = None


async def _ask(messages: list[Any]) -> Any:
    return await TUTORIAL_LLM.ainvoke(messages)


def test_a_tutorial_graphs_global_model_is_served_through_the_helpers_it_calls() -> None:
    """The node names a helper, the helper names the global model: both are rebuilt, on a
    copy of the module's globals; the module's own name still holds the user's model."""
    global TUTORIAL_LLM
    TUTORIAL_LLM = users_model()

    async def chatbot(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await _ask(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chatbot", chatbot)
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    graph = builder.compile()
    served = lean(graph, CONFIG)
    node_func = served.nodes["chatbot"].bound.afunc  # type: ignore[attr-defined]
    helper = node_func.__globals__["_ask"]
    assert helper is not _ask
    assert isinstance(helper.__globals__["TUTORIAL_LLM"], ServedChatOpenAI)
    assert type(TUTORIAL_LLM) is ChatOpenAI
    assert globals()["_ask"] is _ask


SUFFIX = "before"
CALLS = 0


def _graph_of(node: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    return builder.compile()


def test_a_rebuilt_node_reads_the_modules_other_globals_live() -> None:
    """Only the model's name is fixed in the rebuilt node: a global the module rebinds later
    is seen, and a name the module drops is a `NameError`, as in the user's own node."""
    global TUTORIAL_LLM, SUFFIX
    TUTORIAL_LLM = users_model()

    def node(state: MessagesState) -> Any:
        return (TUTORIAL_LLM, SUFFIX)

    served = lean(_graph_of(node), CONFIG)
    rebuilt = served.nodes["node"].bound.func  # type: ignore[attr-defined]
    SUFFIX = "after"
    twin, suffix = rebuilt({"messages": []})
    assert isinstance(twin, ServedChatOpenAI)
    assert suffix == "after"


def test_a_node_that_assigns_module_globals_keeps_the_users_model() -> None:
    """Its `global` writes must land in the module, so it is not rebuilt."""
    global TUTORIAL_LLM
    TUTORIAL_LLM = users_model()

    def counting(state: MessagesState) -> Any:
        global CALLS
        CALLS += 1
        return TUTORIAL_LLM

    graph = _graph_of(counting)
    assert lean(graph, CONFIG) is graph


def test_a_model_behind_a_prompt_and_a_binding_is_served_in_place() -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | users_model().bind(stop=["\n"])

    async def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await chain.ainvoke({"question": "hi"})]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    graph = builder.compile()
    served = lean(graph, CONFIG)
    new_chain = _closure(served.nodes["answer"].bound.afunc)["chain"]  # type: ignore[attr-defined]
    assert new_chain.first is prompt
    assert isinstance(new_chain.last.bound, ServedChatOpenAI)
    assert new_chain.last.kwargs == {"stop": ["\n"]}


def test_a_graph_with_no_chatopenai_is_served_as_it_is() -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("hi")]))
    graph = create_agent(model, tools=[calculator])
    assert lean(graph, CONFIG) is graph


def test_two_servers_of_one_graph_each_get_their_own_twin() -> None:
    graph = create_agent(users_model(), tools=[calculator])
    first = lean(graph, CONFIG)
    second = lean(graph, ModelConfig(base_url="http://127.0.0.1:9/v1", max_output_tokens=5))
    twins = [
        _closure(g.nodes["model"].bound.afunc)["model"]  # type: ignore[attr-defined]
        for g in (first, second)
    ]
    assert [twin.output_cap for twin in twins] == [77, 5]


def test_the_knobs_of_a_nodes_model_are_found_on_the_served_copy() -> None:
    model = users_model().configurable_fields(
        temperature=ConfigurableField(id="temperature", name="Temperature")
    )
    graph = create_agent(model, tools=[calculator])
    served = lean(graph, CONFIG)
    found = runnables_in_nodes(served)
    assert [spec.id for part in found for spec in part.config_specs] == ["temperature"]
    assert isinstance(found[0].default, ServedChatOpenAI)  # type: ignore[attr-defined]
