"""Providers that refuse `stream_options`: learned once per upstream, then never sent to it.

LangChain sends `stream_options: {"include_usage": true}` with every streamed request so the
provider reports token usage. OpenAI and most compatible servers take it; some (older vLLM and
llama.cpp builds, strict FastAPI-based gateways) answer 400 or 422 naming the field, which
would fail every streamed request. The first such refusal is retried without the field and
remembered for that base URL (by the app's upstream pool, so one app's finding stays its
own); usage is then estimated and marked `approximate`.
"""

import logging

import openai

logger = logging.getLogger("chainserve.upstream")


def takes_stream_options(refusing: set[str], base_url: str) -> bool:
    return base_url not in refusing


def refuses_stream_options(exc: openai.APIStatusError) -> bool:
    """Whether a refusal is about `stream_options` (a 400, or a validating server's 422)."""
    if exc.status_code not in (400, 422):
        return False
    return "stream_options" in f"{exc.message} {exc.body}"


def drop_stream_options(refusing: set[str], base_url: str) -> None:
    if base_url not in refusing:
        refusing.add(base_url)
        logger.warning(
            "the model provider at %s refused stream_options; streaming without it from now "
            "on (token usage will be estimated)",
            base_url,
        )
