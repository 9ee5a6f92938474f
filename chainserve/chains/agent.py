"""`agent`: a tool-calling agent (LangChain's `create_agent`) whose tools need no network, so
it streams its steps with the offline model too (arithmetic calls `calculator`, "time" calls
`current_time`)."""

import ast
import datetime
import math
import operator
from collections.abc import Callable
from typing import Any, cast

from langchain.agents import create_agent
from langchain_core.runnables import Runnable
from langchain_core.tools import StructuredTool, ToolException, tool
from pydantic import BaseModel

from chainserve.chains.messages import ChatMessages
from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.registry import ChainSpec

INSTRUCTION = (
    "You are a careful assistant. Use the calculator for any arithmetic and current_time for "
    "the date or time; then answer in one or two sentences."
)
_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_MAX_EXPRESSION = 200
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 10**100


class AgentInput(BaseModel):
    """The conversation so far, oldest first; the agent answers the last user message."""

    messages: ChatMessages


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression (numbers, + - * / // % ** and parentheses), or a
    `ToolException` saying why not: parsed, never `eval`'d, and bounded in size."""
    text = expression.replace("×", "*").replace("÷", "/").replace("^", "**").strip()
    if len(text) > _MAX_EXPRESSION:
        raise ToolException(f"expression longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ToolException(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _value(tree.body)
    except ZeroDivisionError:
        raise ToolException("division by zero") from None


def _value(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, str
        number: float | int = node.value  # type: ignore[assignment]  # narrowed just above
        return number
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _bounded(_OPERATORS[type(node.op)](_value(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolException(f"exponent above {_MAX_EXPONENT}")
        return _bounded(_OPERATORS[type(node.op)](left, right))
    raise ToolException("only numbers, + - * / // % ** and parentheses are allowed")


def _bounded(value: Any) -> float | int:
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        raise ToolException("the result is not a finite real number")
    if abs(value) > _MAX_MAGNITUDE:
        raise ToolException("the result is too large")
    return value  # type: ignore[no-any-return]


def _calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as `2 + 3 * 4` or `(1.5 + 2) ** 3`."""
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)


# A bad expression is the tool's answer (status "error"), which the model then reads.
calculator = StructuredTool.from_function(_calculate, name="calculator", handle_tool_error=True)


@tool
def current_time() -> str:
    """The current date and time, in UTC (ISO 8601)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def build_agent(config: ModelConfig) -> Runnable[Any, Any]:
    # `create_agent` is typed for a bare chat model; `build_model`'s knobbed wrapper has the
    # `bind_tools` it calls, and keeps the request's knobs (`models/knobbed_model.py`).
    model: Any = build_model(config)
    return create_agent(
        model,
        tools=[calculator, current_time],
        system_prompt=INSTRUCTION,
        name="agent",
    ).with_types(input_type=cast(Any, AgentInput))  # validated first by the spec's AgentInput


CHAINS = (
    ChainSpec(
        name="agent",
        description="An agent with a calculator and a clock: its tool steps and answer stream.",
        build=build_agent,
        input_type=AgentInput,
        memory=True,
    ),
)
