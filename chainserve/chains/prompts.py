"""Named prompt variants, switchable per request through `configurable.prompt`."""

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField, Runnable

PROMPT_KEY = "prompt"
DEFAULT_VARIANT = "default"


def prompt_variants(
    build: Callable[[str], ChatPromptTemplate],
    instructions: Mapping[str, str],
) -> Runnable[dict[str, Any], PromptValue]:
    """One prompt per named instruction; `default` is used unless a request picks another."""
    if DEFAULT_VARIANT not in instructions:
        raise ValueError(f"prompt variants need a {DEFAULT_VARIANT!r} entry")
    alternatives: dict[str, Runnable[dict[str, Any], PromptValue]] = {
        name: build(text) for name, text in instructions.items() if name != DEFAULT_VARIANT
    }
    return build(instructions[DEFAULT_VARIANT]).configurable_alternatives(
        ConfigurableField(
            id=PROMPT_KEY,
            name="Prompt",
            description=f"Prompt variant: one of {', '.join(sorted(instructions))}.",
        ),
        default_key=DEFAULT_VARIANT,
        **alternatives,  # type: ignore[arg-type]  # LangChain types **kwargs by its first flag
    )


def literal_instruction(text: str) -> str:
    """Escape braces so an instruction is literal text, never a template variable."""
    return text.replace("{", "{{").replace("}", "}}")
