"""`chat`: a system prompt plus a conversation; the chain behind LangServe's chat playground."""

from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from chainserve.chains.history.wrap import HISTORY_KEY
from chainserve.chains.messages import ChatMessages
from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.models.streaming import PromptModelText
from chainserve.chains.prompts import literal_instruction, prompt_variants
from chainserve.chains.registry import ChainSpec

INSTRUCTIONS = {
    "default": "You are a helpful assistant. Answer clearly and accurately.",
    "concise": "You are a terse assistant. Answer in at most two sentences.",
    "teacher": "You are a patient teacher. Explain step by step and end with a check question.",
}


class ChatInput(BaseModel):
    """The conversation so far, oldest first; the last message is usually the user's."""

    messages: ChatMessages


def _prompt(instruction: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", literal_instruction(instruction)),
            MessagesPlaceholder(HISTORY_KEY, optional=True),
            MessagesPlaceholder("messages"),
        ]
    )


def compose_chat(model: Runnable[LanguageModelInput, BaseMessage]) -> Runnable[Any, str]:
    """The chain around any chat model; `build_chat` supplies the configured one."""
    chain: Runnable[Any, str] = PromptModelText(
        prompt=prompt_variants(_prompt, INSTRUCTIONS), model=model
    )
    return chain.with_types(input_type=ChatInput)


def build_chat(config: ModelConfig) -> Runnable[Any, str]:
    return compose_chat(build_model(config))


def chat_from_query(params: Any) -> dict[str, Any]:
    """`?message=...` is one user turn, the familiar `/chat-stream?message=` style."""
    return {"messages": [{"role": "user", "content": params.get("message", "")}]}


CHAINS = (
    ChainSpec(
        name="chat",
        description="Chat with a system prompt: send the conversation as `messages`.",
        build=build_chat,
        input_type=ChatInput,
        from_query=chat_from_query,
        playground="chat",
        memory=True,
    ),
)
