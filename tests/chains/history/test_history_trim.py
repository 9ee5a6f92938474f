"""Thread history is cut to its token budget with the model's tokenizer, newest turns first."""

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from chainserve.chains.history.wrap import trim_history
from chainserve.chains.tokens.count import count_message_tokens

MODEL = "gpt-4o"


def _tokens(messages: list[BaseMessage]) -> int:
    return sum(count_message_tokens(m, MODEL) for m in messages)


def _turns(n: int, text: str) -> list[BaseMessage]:
    turns: list[BaseMessage] = []
    for i in range(n):
        turns += [HumanMessage(f"{text} question {i}"), AIMessage(f"{text} answer {i}")]
    return turns


def test_the_newest_turns_that_fit_are_kept_and_start_on_a_user_message() -> None:
    history = _turns(50, "word " * 20)
    kept = trim_history(200, history, MODEL)
    assert kept == history[-len(kept) :]
    assert kept[0].type == "human"
    assert _tokens(kept) <= 200
    assert _tokens(history[-len(kept) - 2 :]) > 200  # one more turn would not have fit


def test_token_dense_text_is_counted_by_tokens_not_characters() -> None:
    dense = "\U00013000" * 200  # a few characters, several tokens each
    history = _turns(5, dense)
    kept = trim_history(1000, history, MODEL)
    assert _tokens(kept) <= 1000
    assert len(kept) < len(history)


def test_a_leading_system_message_is_kept_and_counted() -> None:
    system = SystemMessage("Answer in French.")
    history = [system, *_turns(30, "word " * 10)]
    kept = trim_history(150, history, MODEL)
    assert kept[0] is system
    assert kept[1].type == "human"
    assert _tokens(kept) <= 150


def test_nothing_fits_a_budget_smaller_than_one_turn() -> None:
    assert trim_history(5, _turns(3, "word " * 50), MODEL) == []
