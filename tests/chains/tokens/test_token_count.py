"""Token counts of chain inputs: tiktoken's for text, OpenAI's cookbook rules for messages."""

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from chainserve.chains.messages import coerce_message
from chainserve.chains.tokens.count import count_input_tokens, input_text

# The example from OpenAI's cookbook "How to count tokens with tiktoken", whose published
# counts (checked there against the API's prompt_tokens) are 129 for gpt-3.5-turbo and gpt-4,
# and 124 for gpt-4o and gpt-4o-mini.
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


def _messages(*raw: dict[str, object]) -> list[BaseMessage]:
    return [coerce_message(m) for m in raw]


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o-mini"])
def test_plain_text_counts_as_tiktoken_does(model: str) -> None:
    assert count_input_tokens({"topic": "hello world"}, model) == 2


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_messages_count_as_openai_cookbook_says(model: str, expected: int) -> None:
    assert count_input_tokens({"messages": _messages(*COOKBOOK)}, model) == expected


def test_each_message_adds_framing_and_the_reply_is_primed_once() -> None:
    one = count_input_tokens({"messages": _messages({"role": "user", "content": "hi"})}, "gpt-4")
    two = count_input_tokens(
        {"messages": _messages(*[{"role": "user", "content": "hi"}] * 2)}, "gpt-4"
    )
    assert one == 3 + 1 + 1 + 3  # framing, "user", "hi", reply priming
    assert two - one == 3 + 1 + 1


def test_text_parts_count_and_images_do_not() -> None:
    parts = [
        {"type": "text", "text": "hello"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
        {"type": "text", "text": " world"},
    ]
    multi = count_input_tokens({"messages": _messages({"role": "user", "content": parts})}, "gpt-4")
    plain = count_input_tokens(
        {"messages": _messages({"role": "user", "content": "hello world"})}, "gpt-4"
    )
    assert multi == plain


def test_tool_call_arguments_are_counted() -> None:
    call = AIMessage(
        content="", tool_calls=[{"name": "search", "args": {"q": "tokens"}, "id": "call-1"}]
    )
    bare = AIMessage(content="")
    assert count_input_tokens({"messages": [call]}, "gpt-4") > count_input_tokens(
        {"messages": [bare]}, "gpt-4"
    )


def test_special_token_text_is_counted_as_text() -> None:
    """A user typing "<|endoftext|>" must not make counting raise or shrink it to one token."""
    assert count_input_tokens({"topic": "<|endoftext|>"}, "gpt-4") > 1


@pytest.mark.parametrize(
    "text",
    ["hello world", "漢字の文章" * 50, "🙂🙃" * 30, "a" * 500, "x = 1\n" * 40, "ünïcödé " * 20],
)
@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_byte_bound_is_never_below_the_count(text: str, model: str) -> None:
    """The limit's no-tokenizer fast path is only safe if this bound always holds."""
    value = {"messages": _messages({"role": "user", "content": text, "name": "ada"})}
    assert input_text(value).most_tokens >= count_input_tokens(value, model)
    assert input_text({"topic": text}).most_tokens >= count_input_tokens({"topic": text}, model)


def test_nested_values_and_numbers_are_counted() -> None:
    assert input_text({"a": [1, "b", {"c": 2.5}], "d": None, "e": True}).texts == ["1", "b", "2.5"]
