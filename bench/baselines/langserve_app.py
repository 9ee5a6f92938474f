"""Baseline "langserve": LangServe's `add_routes` over the canonical prompt | ChatOpenAI | parser.

The off-the-shelf way to serve a LangChain chain as SSE; chainserve runs a similar chain, so the
ratio against this row is the cost of chainserve's own streaming path versus LangServe's.
"""

import os

from fastapi import FastAPI
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_openai import ChatOpenAI
from langserve import add_routes
from pydantic import SecretStr


def create_app() -> FastAPI:
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
    app = FastAPI()
    add_routes(app, prompt | model | StrOutputParser(), path="/chain")
    return app
