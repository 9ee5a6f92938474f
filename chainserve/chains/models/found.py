"""Which model a chain calls, found by looking inside it: what its runs report as their model.

The server's own model (`build_model`) is described by the settings; a user's chain may carry
its own `ChatOpenAI(model="gpt-4.1")`, and naming the server's default for it would be wrong in
every stream's metadata and every log line. Runnables keep their parts as attributes (a
sequence's steps, a binding's `bound`, a configurable's `default`), so a walk over them finds
each chat model; one hidden inside a function is found only when it runs (the run's callbacks
report it), so such a chain is described as `unknown` until then.
"""

from typing import Any

from langchain_core.language_models import BaseChatModel

from chainserve.chains.models.factory import ModelInfo
from chainserve.chains.models.offline import OfflineChatModel

_MAX_DEPTH = 12
_MAX_ITEMS = 100


def chat_models_in(runnable: Any) -> list[BaseChatModel]:
    """Every chat model reachable through the runnable's attributes, in order, once each."""
    found: list[BaseChatModel] = []
    seen: set[int] = set()

    def visit(value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, BaseChatModel):
            found.append(value)
            return
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value[:_MAX_ITEMS]  # a retriever's documents are not where models are
        elif hasattr(value, "__dict__") and type(value).__module__.startswith(
            ("langchain", "chainserve")
        ):
            children = vars(value).values()
        else:
            return
        for child in children:
            visit(child, depth + 1)

    visit(runnable, 0)
    return found


def _is_servers(model: BaseChatModel) -> bool:
    from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI

    return type(model) in (OfflineChatModel, StreamlinedChatOpenAI)


def chain_model(runnable: Any) -> ModelInfo | None:
    """The model a chain calls, when it is not the server's own: None for a chain on
    `build_model` (the settings describe it), else the one model it carries, or `unknown`."""
    models = chat_models_in(runnable)
    if models and all(_is_servers(model) for model in models):
        return None
    names = []
    for model in models:
        params = model._get_ls_params()
        names.append(
            (
                str(params.get("ls_provider") or "unknown"),
                str(params.get("ls_model_name") or "unknown"),
            )
        )
    distinct = list(dict.fromkeys(names))
    if len(distinct) == 1:
        provider, name = distinct[0]
        return ModelInfo(provider, name)
    if not distinct:
        return ModelInfo("unknown", "unknown")
    return ModelInfo("several", ", ".join(name for _, name in distinct))
