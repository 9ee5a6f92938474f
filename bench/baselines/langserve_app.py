"""Baseline "langserve": LangServe's `add_routes` over the canonical prompt | ChatOpenAI | parser.

The off-the-shelf way to serve a LangChain chain as SSE; chainserve runs a similar chain, so the
ratio against this row is the cost of chainserve's own streaming path versus LangServe's.
"""

import os
from typing import Any

from fastapi import FastAPI
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from langserve import add_routes
from pydantic import SecretStr


def build_chain() -> Runnable[Any, str]:
    """The chain every LangChain server here serves: this baseline and chainserve's user-chain
    row (`bench/user_chain.py`), so their ratio compares the servers, not the chains."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("messages")]
    )
    model = ChatOpenAI(
        model="gpt-4o-mini",
        streaming=True,
        stream_usage=True,
        max_retries=0,
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=SecretStr(os.environ.get("OPENAI_API_KEY", "sk-bench")),
    )
    return prompt | model | StrOutputParser()


def create_app() -> FastAPI:
    app = FastAPI()
    add_routes(app, build_chain(), path="/chain")
    return app
