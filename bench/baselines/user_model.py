"""The `ChatOpenAI` a user's own chain or agent carries in the bench: every LangChain server
here (LangServe, LangGraph, chainserve's user rows) builds the same one, against the bench's
mock upstream."""

import os

from langchain_openai import ChatOpenAI
from pydantic import SecretStr


def user_chat_model() -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        streaming=True,
        stream_usage=True,
        max_retries=0,
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=SecretStr(os.environ.get("OPENAI_API_KEY", "sk-bench")),
    )
