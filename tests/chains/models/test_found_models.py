"""Naming the model a chain calls: the user's own, the server's, or unknown."""

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_openai import ChatOpenAI

from chainserve.chains import ModelConfig, ModelInfo, build_model
from chainserve.chains.models.found import chain_model

PROMPT = ChatPromptTemplate.from_template("{question}")


def test_a_users_chatopenai_is_named_through_bindings_and_assign_steps() -> None:
    model = ChatOpenAI(model="gpt-4.1", api_key="k", base_url="http://127.0.0.1:9/v1")
    chain = (
        RunnablePassthrough.assign(context=RunnableLambda(lambda _: "c"))
        | PROMPT
        | model.bind(stop=["\n"]).with_config(tags=["t"])
        | StrOutputParser()
    )
    assert chain_model(chain) == ModelInfo("openai", "gpt-4.1")


def test_a_chain_on_the_servers_model_is_described_by_the_settings() -> None:
    assert chain_model(PROMPT | build_model(ModelConfig()) | StrOutputParser()) is None


def test_a_chain_with_no_visible_model_is_unknown_and_two_models_are_both_named() -> None:
    assert chain_model(RunnableLambda(lambda x: x)) == ModelInfo("unknown", "unknown")
    a = ChatOpenAI(model="a", api_key="k", base_url="http://127.0.0.1:9/v1")
    b = ChatOpenAI(model="b", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert chain_model(PROMPT | a.with_fallbacks([b])) == ModelInfo("several", "a, b")
