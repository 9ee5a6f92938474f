"""What the offline model does when tools or a response format are bound: a fixed, explainable
choice of tool and arguments derived from the conversation, so agents, `bind_tools` and
`with_structured_output` chains run with no key and give the same answer every time.

The rules, in order (`plan_turn`):
- `tool_choice="none"`, or no tools: text (JSON text following the schema under a bound
  `response_format`).
- After tool results (the last message is a tool's), a turn that is not forced to call a tool
  answers in text, quoting the results: an agent's loop always ends.
- Otherwise a tool is called when the user's last message asks for it: arithmetic in the
  message calls a calculator-like tool (its name or description says calculator, math,
  arithmetic or evaluate) with the expression; a word of four letters or more from a tool's
  name (`current_time` → "time") calls that tool.
- A forced turn (`tool_choice` "any", "required", a name or `{"function": {"name": ...}}`)
  calls the tool so named, else the one the rules above pick, else the first tool not yet
  called since the user spoke, else the last tool (structured-output tools come last).

Arguments are synthesised from the tool's JSON schema (`arguments_for`): strings take the
expression (for expression-like names) or the user's words, numbers the first number in the
message, and so on, within the schema's enums and bounds.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

_ARITHMETIC = re.compile(
    r"[-+(]*\s*\d+(?:\.\d+)?(?:\s*(?:[-+*/×÷^%]|\*\*)\s*[-+(]*\s*\d+(?:\.\d+)?\s*\)*)+"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NAME_WORD = re.compile(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])")
_CALCULATOR_HINTS = ("calculat", "math", "arithmetic", "evaluat")
_EXPRESSION_NAMES = {"expression", "expr", "formula", "equation", "calculation", "math"}
_MAX_DEPTH = 6
_TEXT_LIMIT = 200


@dataclass(frozen=True)
class ToolTurn:
    """One tool call the offline model makes: which tool, with what arguments."""

    name: str
    arguments: dict[str, Any]


def message_text(message: BaseMessage) -> str:
    """A message's text parts joined; other content parts (images, ...) left out."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content]
    return " ".join(p for p in parts if p)


def tool_name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool).get("name", ""))


def _description(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool).get("description", ""))


def _parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    parameters = tool.get("function", tool).get("parameters")
    return parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}


def _forced_name(tool_choice: Any) -> str | None:
    """The tool a `tool_choice` names, if it names one."""
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else tool_choice.get("name")
        return name if isinstance(name, str) else None
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required", "none"):
        return tool_choice
    return None


def _is_forced(tool_choice: Any) -> bool:
    return tool_choice in ("any", "required", True) or _forced_name(tool_choice) is not None


def _since_user(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    last_human = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    return list(messages[last_human + 1 :])


def _called_since_user(messages: Sequence[BaseMessage]) -> set[str]:
    called: set[str] = set()
    for message in _since_user(messages):
        for call in getattr(message, "tool_calls", None) or ():
            called.add(call["name"])
    return called


def user_text(messages: Sequence[BaseMessage]) -> str:
    return next((message_text(m) for m in reversed(messages) if m.type == "human"), "")


def arithmetic_in(text: str) -> str | None:
    """The longest arithmetic expression in `text` (`2 + 3 * 4`), if it has one."""
    found = [m.group(0).strip() for m in _ARITHMETIC.finditer(text)]
    return max(found, key=len) if found else None


def _name_words(name: str) -> set[str]:
    words = (w.lower() for part in re.split(r"[_\-\s.]+", name) for w in _NAME_WORD.findall(part))
    return {w for w in words if len(w) >= 4}


def _asked_for(tools: Sequence[Mapping[str, Any]], text: str) -> Mapping[str, Any] | None:
    """The tool the user's message asks for, by the rules in the module docstring."""
    if arithmetic_in(text) is not None:
        for tool in tools:
            about = f"{tool_name(tool)} {_description(tool)}".lower()
            if any(hint in about for hint in _CALCULATOR_HINTS):
                return tool
    said = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    said |= {w[:-1] for w in said if w.endswith("s")}
    for tool in tools:
        if _name_words(tool_name(tool)) & said:
            return tool
    return None


def plan_turn(
    messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]], tool_choice: Any
) -> ToolTurn | None:
    """The tool call this turn makes, or None for a text answer; see the module docstring."""
    if not tools or tool_choice == "none":
        return None
    forced = _is_forced(tool_choice)
    after_results = bool(messages) and messages[-1].type == "tool"
    if after_results and not forced:
        return None
    called = _called_since_user(messages)
    text = user_text(messages)
    chosen = next((t for t in tools if tool_name(t) == _forced_name(tool_choice)), None)
    if chosen is None:
        asked = _asked_for(tools, text)
        if asked is not None and tool_name(asked) not in called:
            chosen = asked
    if chosen is None and forced:
        chosen = next((t for t in tools if tool_name(t) not in called), tools[-1])
    if chosen is None:
        return None
    return ToolTurn(tool_name(chosen), arguments_for(_parameters(chosen), text))


def tool_results(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    """(tool name, result text) of the tool messages since the user last spoke."""
    names: dict[str, str] = {}
    results = []
    for message in _since_user(messages):
        for call in getattr(message, "tool_calls", None) or ():
            names[str(call.get("id"))] = call["name"]
        if message.type == "tool":
            call_id = str(getattr(message, "tool_call_id", ""))
            name = names.get(call_id) or getattr(message, "name", None) or "a tool"
            results.append((name, " ".join(message_text(message).split())))
    return results


def arguments_for(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Arguments matching the JSON schema `schema` (an object), filled from `text`."""
    value = _Synthesis(schema, text).value("", schema, 0)
    return value if isinstance(value, dict) else {}


class _Synthesis:
    def __init__(self, root: Mapping[str, Any], text: str) -> None:
        self.root = root
        self.text = " ".join(text.split())[:_TEXT_LIMIT]
        self.expression = arithmetic_in(text)
        number = _NUMBER.search(text)
        self.number = float(number.group(0)) if number else 0.0

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}

    def value(self, name: str, schema: Mapping[str, Any], depth: int) -> Any:
        schema = self._resolve(schema)
        if depth > _MAX_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        if "default" in schema and depth > 0:
            return schema["default"]
        for key in ("anyOf", "oneOf", "allOf"):
            branches = [b for b in schema.get(key, ()) if self._resolve(b).get("type") != "null"]
            if branches:
                return self.value(name, branches[0], depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            items = schema.get("items")
            item = self.value(name, items, depth + 1) if isinstance(items, Mapping) else self.text
            return [item] if item is not None else []
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(name, schema)

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        return {
            key: self.value(key, sub, depth + 1)
            for key, sub in properties.items()
            if isinstance(sub, Mapping)
        }

    def _number(self, schema: Mapping[str, Any], *, integer: bool) -> float | int:
        value = self.number
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if isinstance(low, int | float) and value < low:
            value = low + (1 if "exclusiveMinimum" in schema else 0)
        if isinstance(high, int | float) and value > high:
            value = high - (1 if "exclusiveMaximum" in schema else 0)
        return int(value) if integer else value

    def _string(self, name: str, schema: Mapping[str, Any]) -> str:
        formatted = {"date-time": "2000-01-01T00:00:00Z", "date": "2000-01-01", "time": "00:00:00"}
        if schema.get("format") in formatted:
            return formatted[schema["format"]]
        if self.expression is not None and name.lower() in _EXPRESSION_NAMES:
            value = self.expression
        else:
            value = self.text or name or "text"
        limit = schema.get("maxLength")
        if isinstance(limit, int):
            value = value[:limit]
        low = schema.get("minLength")
        if isinstance(low, int) and len(value) < low:
            value = value.ljust(low, ".")
        return value
