"""Count the tokens a chain input sends to the model, as OpenAI counts a chat request.

Messages cost what OpenAI's cookbook (`num_tokens_from_messages`) says a chat model is billed:
3 tokens of framing per message, its role and content, 1 more for a `name`, and 3 that prime
the reply. Other input values (a `topic` string) are counted as the text they put into the
prompt. Not counted: the chain's own prompt template (a fixed few dozen tokens the caller
cannot change), and non-text content parts such as images, which are priced by their pixels.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from chainserve.chains.tokens.encodings import encoding_for_model

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


@dataclass
class InputText:
    """The texts an input sends to the model, and the framing tokens its messages add."""

    texts: list[str] = field(default_factory=list)
    framing: int = 0

    @property
    def most_tokens(self) -> int:
        """An upper bound that needs no tokenizer: no token is shorter than one UTF-8 byte."""
        return self.framing + sum(len(text.encode()) for text in self.texts)

    def count(self, model: str) -> int:
        """The exact count with `model`'s encoding (CPU-bound: about 80 ms a MiB of text)."""
        encoding = encoding_for_model(model)
        # Ordinary encoding: "<|endoftext|>" typed by a user is text, not a special token.
        return self.framing + sum(len(encoding.encode_ordinary(text)) for text in self.texts)


def _content_texts(content: str | list[Any]) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return texts


def _add_message(message: BaseMessage, into: InputText) -> None:
    into.framing += TOKENS_PER_MESSAGE
    into.texts.append(_ROLES.get(message.type, message.type))
    into.texts.extend(_content_texts(message.content))
    if message.name:
        into.framing += TOKENS_PER_NAME
        into.texts.append(message.name)
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            into.texts.extend((call["name"], json.dumps(call["args"])))


def _collect(value: Any, into: InputText) -> bool:
    """Add `value`'s texts to `into`; True when it held at least one message."""
    if isinstance(value, BaseMessage):
        _add_message(value, into)
        return True
    if isinstance(value, str):
        into.texts.append(value)
        return False
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        into.texts.append(str(value))
        return False
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        return _collect_each(value.values(), into)
    if isinstance(value, list | tuple):
        return _collect_each(value, into)
    return False


def _collect_each(values: Iterable[Any], into: InputText) -> bool:
    found = False
    for item in values:
        found = _collect(item, into) or found
    return found


def input_text(chain_input: Any) -> InputText:
    """What of a validated chain input reaches the model as text (no tokenizer needed)."""
    text = InputText()
    if _collect(chain_input, text):
        text.framing += REPLY_PRIMING
    return text


def count_input_tokens(chain_input: Any, model: str) -> int:
    """Tokens `chain_input` sends to `model`: exact for OpenAI models, an estimate for others."""
    return input_text(chain_input).count(model)


def count_message_tokens(message: BaseMessage, model: str) -> int:
    """Tokens one message adds to a request to `model`, framing included (no reply priming)."""
    text = InputText()
    _add_message(message, text)
    return text.count(model)
