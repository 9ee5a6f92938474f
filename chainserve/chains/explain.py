"""`explain`: a single-field chain that explains a topic."""

from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field

from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.models.streaming import PromptModelText
from chainserve.chains.prompts import literal_instruction, prompt_variants
from chainserve.chains.registry import ChainSpec

INSTRUCTIONS = {
    "default": "You explain technical topics to software developers, with one short example.",
    "eli5": "You explain things to a curious five-year-old, with no jargon.",
    "expert": "You brief a domain expert: precise terms, trade-offs and pitfalls, no basics.",
}


class ExplainInput(BaseModel):
    topic: str = Field(min_length=1, max_length=2000, description="What to explain.")


def _prompt(instruction: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", literal_instruction(instruction)),
            ("human", "Explain {topic}."),
        ]
    )


def compose_explain(model: Runnable[LanguageModelInput, BaseMessage]) -> Runnable[Any, str]:
    """The chain around any chat model; `build_explain` supplies the configured one."""
    chain: Runnable[Any, str] = PromptModelText(
        prompt=prompt_variants(_prompt, INSTRUCTIONS), model=model
    )
    return chain.with_types(input_type=ExplainInput)


def build_explain(config: ModelConfig) -> Runnable[Any, str]:
    return compose_explain(build_model(config))


CHAINS = (
    ChainSpec(
        name="explain",
        description='Explain a topic: send `{"topic": ...}`.',
        build=build_explain,
        input_type=ExplainInput,
    ),
)
