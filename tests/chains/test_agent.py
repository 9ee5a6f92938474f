"""The shipped `agent` example's tools: arithmetic parsed (never `eval`'d) within bounds."""

import pytest
from langchain_core.tools import ToolException

from chainserve.chains.agent import calculator, current_time, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ** 10", 1024),
        ("2^10", 1024),
        ("7 × 6", 42),
        ("1 ÷ 4", 0.25),
        ("-3 + +5", 2),
        ("17 // 5 + 17 % 5", 5),
    ],
)
def test_arithmetic_is_evaluated(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "only numbers"),
        ("x + 1", "only numbers"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("9 ** 9 ** 9", "exponent above"),
        ("10 ** 200", "too large"),
        ("1 / 0", "division by zero"),
        ("2 +", "not an arithmetic expression"),
        ("1 + " * 100 + "1", "longer than"),
        ("(-8) ** 0.5", "not a finite real number"),
    ],
)
def test_anything_else_is_a_tool_error_saying_why(expression: str, reason: str) -> None:
    with pytest.raises(ToolException, match=reason):
        evaluate(expression)


def test_the_tools_answer_as_the_model_reads_them() -> None:
    assert calculator.invoke({"expression": "1.5 * 2"}) == "3"
    assert calculator.invoke({"expression": "1 / 0"}) == "division by zero"
    assert current_time.invoke({}).endswith("+00:00")
