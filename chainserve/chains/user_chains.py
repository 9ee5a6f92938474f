"""The user's own chains: a file or module named on the command line, loaded as their code.

A target is `path/to/file.py` or `package.module`, optionally `:attr` (default `CHAINS`).
The value found there may be a `Runnable`, a `ChainSpec`, a sequence of them, or a mapping
name → `Runnable | ChainSpec`; `specs_from_value` turns each form into `ChainSpec`s.

Loading is the user's code running, so anything may go wrong in it; every failure is a
`ChainLoadError` whose message is one line naming the target and the reason, which is what
a start-up error should be (a traceback into importlib says nothing a user can act on).
"""

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, RootModel

from chainserve.chains.graph_parts import is_graph
from chainserve.chains.messages import ChatMessages
from chainserve.chains.models.streaming import unbound
from chainserve.chains.registry import ChainLoadError, ChainSpec

__all__ = [
    "ChainLoadError",
    "ChainTarget",
    "load_target",
    "load_targets",
    "parse_target",
    "served_specs",
]

DEFAULT_ATTR = "CHAINS"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""Chain names are URL path segments (`/chains/{name}/stream`, `/langserve/{name}`)."""


@dataclass(frozen=True)
class ChainTarget:
    """Where to find chains: a `.py` file or an importable module, and the attribute in it."""

    text: str
    """As the user wrote it, for messages."""
    file: Path | None
    module: str | None
    attr: str | None

    @property
    def where(self) -> str:
        return str(self.file) if self.file is not None else str(self.module)


def parse_target(text: str) -> ChainTarget:
    """`file.py`, `dir/file.py`, `pkg.module`, each optionally `:attr`."""
    raw = text.strip()
    if not raw:
        raise ChainLoadError("an empty chains target: give a file (my_chains.py) or a module")
    where, attr = raw, None
    head, sep, tail = raw.rpartition(":")
    # `C:\chains.py` has a colon too; only a dotted identifier after it is an attribute.
    if sep and head and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", tail):
        where, attr = head, tail
    elif sep and head:
        raise ChainLoadError(f"chains target {raw!r}: {tail!r} after ':' is not an attribute name")
    if where.endswith(".py") or "/" in where or os.sep in where:
        return ChainTarget(raw, Path(where).expanduser().resolve(), None, attr)
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", where):
        raise ChainLoadError(f"chains target {raw!r} is neither a .py file nor a module name")
    return ChainTarget(raw, None, where, attr)


def _package_root(file: Path) -> tuple[Path, str]:
    """The folder to put on the path and the dotted module name for `file`: a file inside a
    package (folders with `__init__.py`) is imported as part of it, so its relative imports
    work; a loose file is imported by its stem, from its own folder, as `uvicorn app:app`."""
    parts = [file.stem]
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def _on_path(folder: Path) -> None:
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _where_it_failed(exc: BaseException) -> str:
    """` (file.py:12)`: the innermost frame of the user's own code, not importlib's."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and "/chainserve/" not in frame.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" ({Path(frame.filename).name}:{frame.lineno})"


def _import(target: ChainTarget) -> Any:
    if target.file is not None:
        if not target.file.is_file():
            raise ChainLoadError(f"no such chains file: {target.file}")
        folder, name = _package_root(target.file)
        _on_path(folder)
    else:
        assert target.module is not None
        # As `uvicorn module:app` does: the working directory's modules come first.
        _on_path(Path.cwd())
        name = target.module
        if name in sys.modules:  # already imported (by the host app, or a test)
            return sys.modules[name]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ChainLoadError(f"chains target {target.text!r}: {exc}") from None
    if spec is None:
        raise ChainLoadError(
            f"chains target {target.text!r}: no module named {name!r} "
            f"(looked in {Path.cwd()} and the installed packages)"
        )
    taken = spec.origin is not None and Path(spec.origin).resolve() != target.file
    if target.file is not None and taken:
        if "." in name:  # inside a package: another copy of it is first on the path
            raise ChainLoadError(
                f"chains target {target.text!r}: the name {name!r} is already taken by "
                f"{spec.origin}; rename the file"
            )
        return _import_file_as_its_own(target, target.file)
    try:
        return importlib.import_module(name)
    except ChainLoadError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's module may raise anything
        _reraise_as_load_error(target, exc)


def _import_file_as_its_own(target: ChainTarget, file: Path) -> Any:
    """A loose file whose name another module already has (a second `my_chains.py`, a
    `test.py`): loaded under a name of its own, so neither replaces the other."""
    digest = hashlib.sha1(str(file).encode(), usedforsecurity=False).hexdigest()[:8]
    name = f"chainserve_user_{file.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - the user's module may raise anything
        del sys.modules[name]
        _reraise_as_load_error(target, exc)
    return module


def _reraise_as_load_error(target: ChainTarget, exc: BaseException) -> NoReturn:
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    raise ChainLoadError(
        f"importing {target.text!r} failed: {reason}{_where_it_failed(exc)}"
    ) from None


def _attribute(module: Any, target: ChainTarget) -> tuple[str, Any]:
    path = target.attr or DEFAULT_ATTR
    value = module
    for part in path.split("."):
        if not hasattr(value, part):
            hint = "" if target.attr else f"; name what to serve with {target.text}:NAME"
            raise ChainLoadError(f"{target.where} has no {path}{hint}")
        value = getattr(value, part)
    # `CHAINS = chain` names the chain after its module, not "CHAINS".
    name = path.rsplit(".", 1)[-1]
    if name == DEFAULT_ATTR:
        name = (target.file.stem if target.file else str(target.module)).rsplit(".", 1)[-1]
    return name, value


def _description(name: str, runnable: Runnable[Any, Any]) -> str:
    """The docstring of the user's function or class; LangChain's own classes' docstrings
    describe LangChain, not the chain, so those fall back to the chain's name."""
    func = getattr(runnable, "afunc", None) or getattr(runnable, "func", None)
    if isinstance(runnable, RunnableLambda) and func is not None:
        doc = inspect.getdoc(func)
        if doc:
            return doc.strip().split("\n\n", 1)[0]
    module = type(runnable).__module__
    if not module.startswith(("langchain", "langgraph")):
        doc = inspect.getdoc(type(runnable))
        if doc:
            return doc.strip().split("\n\n", 1)[0]
    return f"{name} ({runnable.get_name()})"


def spec_for_runnable(name: str, runnable: Runnable[Any, Any]) -> ChainSpec:
    """A `ChainSpec` for a bare runnable: its input checked against the schema LangChain
    infers for it, as a shipped chain's input is checked against its declared type."""
    schema = runnable.get_input_schema()
    if not issubclass(schema, BaseModel):  # a pydantic.v1 model: LangChain's legacy input
        raise ChainLoadError(
            f"chain {name!r} declares a pydantic v1 input type; chainserve needs pydantic v2"
        )
    if is_graph(unbound(runnable)) and "messages" in _json_properties(schema):
        # LangGraph's state schema takes LangChain-typed message dicts only; a web client
        # sends OpenAI's `{"role", "content"}`, as for every other chain with `messages`.
        schema = GraphMessagesInput
    if schema.model_json_schema() == {"title": schema.__name__}:
        # Untyped (`RunnableLambda(lambda x: ...)`): served as taking any JSON object.
        schema = OpenInput
    if issubclass(schema, RootModel) and _json_type(schema) != "object":
        raise ChainLoadError(
            f"chain {name!r} takes {_type_name(schema)} as input; chainserve serves chains "
            "whose input is an object (a prompt's variables, a dict): start it with a prompt "
            "or wrap it, e.g. {'text': itemgetter('text') | chain}"
        )
    return ChainSpec(
        name=name,
        description=_description(name, runnable),
        build=lambda _config: runnable,
        input_type=schema,
    )


class GraphMessagesInput(BaseModel):
    """A LangGraph state with `messages`: the conversation (OpenAI or LangChain message
    objects), plus whatever other keys the state has."""

    model_config = ConfigDict(extra="allow")

    messages: ChatMessages


def _json_properties(schema: type[BaseModel]) -> dict[str, Any]:
    described = _described(schema)
    properties = described.get("properties")
    return properties if isinstance(properties, dict) else {}


def _described(schema: type[BaseModel]) -> dict[str, Any]:
    """A schema's JSON schema, through a top-level `$ref` (a LangGraph state)."""
    described = schema.model_json_schema()
    ref = described.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = described.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return found if isinstance(found, dict) else {}
    return described


class OpenInput(RootModel[dict[str, Any]]):
    """Any JSON object: the input of a chain whose input type LangChain cannot infer."""


def _json_type(schema: type[BaseModel]) -> Any:
    return _described(schema).get("type")


def _type_name(schema: type[BaseModel]) -> str:
    json_type = _json_type(schema)
    if not isinstance(json_type, str):
        return "any value"
    return f"an {json_type}" if json_type[0] in "aeiou" else f"a {json_type}"


def _named(name: str, item: Any, where: str) -> ChainSpec:
    if isinstance(item, ChainSpec):
        return item if item.name == name else replace(item, name=name)
    if isinstance(item, Runnable):
        return spec_for_runnable(name, item)
    raise ChainLoadError(
        f"{where}[{name!r}] is a {type(item).__name__}; expected a Runnable or a ChainSpec"
    )


def _own_name(runnable: Runnable[Any, Any]) -> str:
    """The name the user gave a runnable (`name=` or `.with_config(run_name=...)`), if any."""
    config = getattr(runnable, "config", None)
    run_name = config.get("run_name") if isinstance(config, dict) else None
    return runnable.name or (run_name if isinstance(run_name, str) else "")


def specs_from_value(name: str, value: Any, where: str) -> list[ChainSpec]:
    """Every accepted form of a chains value as `ChainSpec`s; `name` names a bare runnable."""
    if isinstance(value, ChainSpec):
        return [value]
    if isinstance(value, Runnable):
        return [spec_for_runnable(name, value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise ChainLoadError(f"{where} has a key {key!r}; chain names are strings")
        return [_named(key, item, where) for key, item in value.items()]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        specs = []
        for index, item in enumerate(value):
            if isinstance(item, ChainSpec):
                specs.append(item)
            elif isinstance(item, Runnable) and _own_name(item):
                specs.append(spec_for_runnable(_own_name(item), item))
            elif isinstance(item, Runnable):
                raise ChainLoadError(
                    f"{where}[{index}] is a runnable with no name; serve a dict "
                    "{'name': runnable} or give it one with .with_config(run_name=...)"
                )
            else:
                raise ChainLoadError(
                    f"{where}[{index}] is a {type(item).__name__}; expected a Runnable or "
                    "a ChainSpec"
                )
        return specs
    raise ChainLoadError(
        f"{where} is a {type(value).__name__}; expected a Runnable, a ChainSpec, a list of "
        "them, or a dict of name: Runnable | ChainSpec"
    )


def check_names(specs: Iterable[ChainSpec], where: str) -> None:
    for spec in specs:
        if not NAME_PATTERN.match(spec.name):
            raise ChainLoadError(
                f"{where}: chain name {spec.name!r} is not usable in a URL; use letters, "
                "digits, '-' and '_' (at most 64)"
            )


def served_specs(name: str, value: Any, where: str) -> list[ChainSpec]:
    """`specs_from_value`, refusing an empty value and names no URL can carry."""
    specs = specs_from_value(name, value, where)
    if not specs:
        raise ChainLoadError(f"{where} is empty: there is no chain to serve")
    check_names(specs, where)
    return specs


def load_target(text: str) -> list[ChainSpec]:
    """The chains a target names, as `ChainSpec`s."""
    target = parse_target(text)
    module = _import(target)
    name, value = _attribute(module, target)
    return served_specs(name, value, f"{target.where}:{target.attr or DEFAULT_ATTR}")


def load_targets(texts: Iterable[str], given: Sequence[ChainSpec] = ()) -> list[ChainSpec]:
    """`given` then every target's chains, in order; a name used twice is an error."""
    specs: list[ChainSpec] = list(given)
    origins = {spec.name: "the chains passed in" for spec in given}
    for text in texts:
        for spec in load_target(text):
            if spec.name in origins:
                raise ChainLoadError(
                    f"two chains are named {spec.name!r} ({origins[spec.name]} and {text})"
                )
            origins[spec.name] = text
            specs.append(spec)
    return specs


def source_folders(texts: Iterable[str]) -> list[Path]:
    """Where the targets' code lives, for `--reload` to watch: a file's package root, or a
    module's folder when it is the user's own (not an installed package)."""
    folders: list[Path] = []
    for text in texts:
        try:
            target = parse_target(text)
        except ChainLoadError:
            continue
        if target.file is not None:
            folders.append(_package_root(target.file)[0])
            continue
        try:
            _on_path(Path.cwd())
            spec = importlib.util.find_spec(str(target.module).split(".")[0])
        except (ImportError, ValueError):
            continue
        locations = spec.submodule_search_locations if spec else None
        origin = spec.origin if spec else None
        found = Path(next(iter(locations))) if locations else Path(origin) if origin else None
        if found is not None and "site-packages" not in found.parts:
            folders.append(found if locations else found.parent)
    return folders
