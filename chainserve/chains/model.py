"""`model`: the server's model itself, messages in and its message out, taking the caller's
tools and response format, so an OpenAI client's own tool loop (`ChatOpenAI(base_url=...)
.bind_tools(...)`, `with_structured_output`) runs against chainserve."""

from typing import Any, cast

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from chainserve.chains.messages import ChatMessages
from chainserve.chains.models.client_tools import ClientToolsModel
from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.registry import ChainSpec


class ModelInput(BaseModel):
    """The conversation, oldest first: any OpenAI role, tool calls and tool results included."""

    messages: ChatMessages


def build_model_chain(config: ModelConfig) -> Runnable[Any, Any]:
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("messages")])
    chain = prompt | ClientToolsModel(model=build_model(config))
    return chain.with_types(input_type=cast(Any, ModelInput))  # the spec validates it first


CHAINS = (
    ChainSpec(
        name="model",
        description="The model itself: messages in, its message out; takes the caller's tools.",
        build=build_model_chain,
        input_type=ModelInput,
    ),
)
