"""Message coercion: both wire styles become LangChain messages; anything else is refused."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from chainserve.chains.chat import ChatInput
from chainserve.chains.messages import coerce_message


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        ({"role": "user", "content": "x"}, HumanMessage),
        ({"role": "assistant", "content": "x"}, AIMessage),
        ({"role": "system", "content": "x"}, SystemMessage),
        ({"role": "developer", "content": "x"}, SystemMessage),
        ({"role": "tool", "content": "x", "tool_call_id": "c1"}, ToolMessage),
        ({"type": "human", "content": "x"}, HumanMessage),
        ({"type": "ai", "content": "x"}, AIMessage),
        ({"type": "human", "content": [{"type": "text", "text": "x"}]}, HumanMessage),
    ],
)
def test_both_wire_styles_become_langchain_messages(wire: dict[str, object], kind: type) -> None:
    assert isinstance(coerce_message(wire), kind)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ({"role": "wizard", "content": "x"}, "must be one of"),
        ({"content": "x"}, "must be one of"),
        ({"role": "user"}, "missing 'content'"),
        ({"role": "user", "content": 3}, "string or a list"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ("bare string", "must be an object"),
        (["user", "x"], "must be an object"),
    ],
)
def test_malformed_messages_raise_value_error_saying_why(wire: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        coerce_message(wire)


def test_chat_input_reports_the_index_of_a_bad_message() -> None:
    with pytest.raises(ValidationError) as info:
        ChatInput.model_validate({"messages": [{"role": "user", "content": "ok"}, {"role": "x"}]})
    assert info.value.errors()[0]["loc"] == ("messages", 1)


def test_chat_input_schema_documents_both_styles() -> None:
    item = ChatInput.model_json_schema()["properties"]["messages"]["items"]
    assert {"role", "type", "content"} <= set(item["properties"])
