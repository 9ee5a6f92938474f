"""Named prompt variants, switchable per request through `configurable.prompt`."""

from collections.abc import Callable, Mapping

from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import ConfigurableField, Runnable
from langchain_core.runnables.configurable import RunnableConfigurableAlternatives

PROMPT_KEY = "prompt"
DEFAULT_VARIANT = "default"


def prompt_variants(
    build: Callable[[str], BasePromptTemplate],
    instructions: Mapping[str, str],
) -> Runnable[dict[str, object], object]:
    """One prompt per named instruction, the `default` one used unless a request picks another."""
    if DEFAULT_VARIANT not in instructions:
        raise ValueError(f"prompt variants need a {DEFAULT_VARIANT!r} entry")
    alternatives = {k: build(v) for k, v in instructions.items() if k != DEFAULT_VARIANT}
    chooser: RunnableConfigurableAlternatives = build(
        instructions[DEFAULT_VARIANT]
    ).configurable_alternatives(
        ConfigurableField(
            id=PROMPT_KEY,
            name="Prompt",
            description=f"Prompt variant: one of {', '.join(sorted(instructions))}.",
        ),
        default_key=DEFAULT_VARIANT,
        **alternatives,
    )
    return chooser
