"""The runnables a LangGraph graph's nodes use: found, or replaced in a copy of the graph.

Why: a node is a function, and the model it calls is not a part of the graph LangChain can
see. `create_agent` closes over its model; the tutorials name a module global
(`llm = ChatOpenAI(...)`) from the node's body. The server needs those models twice: to list
the knobs they take (`agents.py`), and to run them as their served twins
(`models/served_openai.py`: the server's connection pool, output cap and fault checks, and the
lean stream) — which means a node that calls the twin.

Replacing never changes the user's objects: a function that reaches a replaced runnable is
rebuilt from the same code with new closure cells (shared cells stay shared) or globals that
hold the replaced names and read every other name live from its module; the runnable, node
and graph around it are copied. A function that assigns module globals (`global x`) keeps its
own globals, and so the user's model. Everything the walk does not recognise is kept as it is.
"""

import copy
import dis
import sys
import types
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda, RunnableSequence

from chainserve.chains.models.streaming import is_plain_binding

MAX_DEPTH = 4
"""How many functions, closures and containers deep a node's parts are looked for."""
_MAX_ITEMS = 50

Replace = Callable[[Runnable[Any, Any]], Runnable[Any, Any] | None]
"""Given a runnable, what to use instead (itself: keep it, and look no further inside),
or None: look inside it."""


def runnables_in_nodes(graph: Any) -> list[Runnable[Any, Any]]:
    """The runnables with knobs (`config_specs`) the graph's nodes use; see the module
    docstring for where they are looked for."""
    found: list[Runnable[Any, Any]] = []

    def record(runnable: Runnable[Any, Any]) -> Runnable[Any, Any] | None:
        if runnable.config_specs and not is_graph(runnable):
            found.append(runnable)
            return runnable
        return None

    _Walk(record).nodes(graph, 0)
    return found


def with_parts_replaced(graph: Any, replace: Replace) -> Any:
    """A copy of `graph` whose nodes use what `replace` gives for their runnables; `graph`
    itself when nothing was replaced."""
    return _Walk(replace).graph(graph, 0)


def is_graph(runnable: object) -> bool:
    """Whether `runnable` is a LangGraph graph (checked only once langgraph is imported)."""
    if "langgraph.pregel" not in sys.modules:
        return False
    from langgraph.pregel import Pregel

    return isinstance(runnable, Pregel)


class _Walk:
    """One walk over a graph; `memo` maps every object seen (by id) to what it became, so
    an object reached twice (a cell two functions share) is rebuilt once."""

    def __init__(self, replace: Replace) -> None:
        self._replace = replace
        self._memo: dict[int, Any] = {}
        self._cells: dict[int, types.CellType] = {}
        self._alive: list[Any] = []  # ids in the memo stay unique while the walk lasts

    def graph(self, graph: Any, depth: int) -> Any:
        nodes = self.nodes(graph, depth)
        return graph if nodes is None else graph.copy({"nodes": nodes})

    def nodes(self, graph: Any, depth: int) -> dict[str, Any] | None:
        """The graph's nodes with their runnables replaced; None when none changed."""
        nodes = dict(getattr(graph, "nodes", {}))
        changed = False
        for name, node in nodes.items():
            bound = getattr(node, "bound", None)
            if bound is None:
                continue
            new = self.value(bound, depth)
            if new is not bound:
                nodes[name] = node.copy({"bound": new})
                changed = True
        return nodes if changed else None

    def value(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH or value is None or isinstance(value, str | int | float | type):
            return value
        key = id(value)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = value  # a cycle back to here sees it unchanged
        self._alive.append(value)
        new = self._new(value, depth)
        self._memo[key] = new
        return new

    def _new(self, value: Any, depth: int) -> Any:
        if isinstance(value, Runnable):
            return self._runnable(value, depth)
        if isinstance(value, types.FunctionType):
            return self._function(value, depth)
        if isinstance(value, list | tuple) and len(value) <= _MAX_ITEMS:
            items = [self.value(item, depth + 1) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return type(value)(items) if isinstance(value, list) else tuple(items)
        return value

    def _runnable(self, runnable: Runnable[Any, Any], depth: int) -> Any:
        replaced = self._replace(runnable)
        if replaced is not None:
            return replaced
        if is_graph(runnable):
            return self.graph(runnable, depth + 1)
        if isinstance(runnable, RunnableSequence):
            steps = [self.value(step, depth + 1) for step in runnable.steps]
            if all(new is old for new, old in zip(steps, runnable.steps, strict=True)):
                return runnable
            return runnable.model_copy(
                update={"first": steps[0], "middle": steps[1:-1], "last": steps[-1]}
            )
        if is_plain_binding(runnable):
            bound = self.value(runnable.bound, depth + 1)
            if bound is runnable.bound:
                return runnable
            return runnable.model_copy(update={"bound": bound})
        return self._callable(runnable, depth)

    def _callable(self, runnable: Runnable[Any, Any], depth: int) -> Any:
        """A runnable wrapping functions (LangGraph's node callables, `RunnableLambda`): a
        shallow copy calling the rebuilt functions."""
        functions = {
            name: getattr(runnable, name, None)
            for name in ("func", "afunc")
            if isinstance(getattr(runnable, name, None), types.FunctionType)
        }
        rebuilt = {name: self.value(func, depth + 1) for name, func in functions.items()}
        if all(rebuilt[name] is functions[name] for name in functions):
            return runnable
        twin = copy.copy(runnable)
        for name, func in rebuilt.items():
            object.__setattr__(twin, name, func)
        if isinstance(twin, RunnableLambda):
            twin.__dict__.pop("deps", None)  # a cached view of the old function's closure
        return twin

    def _function(self, func: types.FunctionType, depth: int) -> types.FunctionType:
        cells = tuple(self._cell(cell, depth) for cell in func.__closure__ or ())
        globals_ = func.__globals__
        named = {name: globals_[name] for name in func.__code__.co_names if name in globals_}
        swapped = {
            name: new
            for name, old in named.items()
            if (new := self.value(old, depth + 1)) is not old
        }
        if swapped and _assigns_globals(func):
            swapped = {}  # its `global` writes must reach the module: it keeps the user's model
        if not swapped and all(
            new is old for new, old in zip(cells, func.__closure__ or (), strict=True)
        ):
            return func
        rebuilt = types.FunctionType(
            func.__code__,
            _LiveGlobals(globals_, swapped) if swapped else globals_,
            func.__name__,
            func.__defaults__,
            cells or None,
        )
        rebuilt.__kwdefaults__ = func.__kwdefaults__
        rebuilt.__qualname__ = func.__qualname__
        rebuilt.__module__ = func.__module__
        rebuilt.__doc__ = func.__doc__
        rebuilt.__annotations__ = func.__annotations__
        rebuilt.__dict__.update(func.__dict__)
        return rebuilt

    def _cell(self, cell: types.CellType, depth: int) -> types.CellType:
        if id(cell) in self._cells:
            return self._cells[id(cell)]
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned later)
            return cell
        new = self.value(contents, depth + 1)
        self._cells[id(cell)] = cell if new is contents else types.CellType(new)
        self._alive.append(cell)
        return self._cells[id(cell)]


class _LiveGlobals(dict[str, Any]):
    """A module's globals with some names replaced: every other name is read from the module
    when the function runs, so a global the module rebinds later is seen as before. (A
    function's globals may be a dict subclass; name lookups then go through `__missing__`.)"""

    def __init__(self, module: dict[str, Any], swapped: dict[str, Any]) -> None:
        super().__init__(swapped)
        # Read directly (not through `__missing__`) when the function is made.
        self["__builtins__"] = module.get("__builtins__", __builtins__)
        self._module = module

    def __missing__(self, name: str) -> Any:
        return self._module[name]


def _assigns_globals(func: types.FunctionType) -> bool:
    return any(op.opname in ("STORE_GLOBAL", "DELETE_GLOBAL") for op in dis.get_instructions(func))
