"""Baseline "langserve": LangServe's `add_routes` over the canonical prompt | ChatOpenAI | parser.

The off-the-shelf way to serve a LangChain chain as SSE; chainserve runs a similar chain, so the
ratio against this row is the cost of chainserve's own streaming path versus LangServe's.
"""

from typing import Any

from fastapi import FastAPI
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable
from langserve import add_routes

from bench.baselines.user_model import user_chat_model


def build_chain() -> Runnable[Any, str]:
    """The chain every LangChain server here serves: this baseline and chainserve's user-chain
    row (`bench/user_chain.py`), so their ratio compares the servers, not the chains."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("messages")]
    )
    model = user_chat_model()
    return prompt | model | StrOutputParser()


def create_app() -> FastAPI:
    app = FastAPI()
    add_routes(app, build_chain(), path="/chain")
    return app
