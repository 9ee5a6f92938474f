"""Loading the user's chains: every target and value form, a one-line reason for each failure."""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda
from pydantic import ValidationError

from chainserve.chains import ChainSpec, ModelConfig, build_registry
from chainserve.chains.registry import ChainLoadError, discover_specs
from chainserve.chains.user_chains import load_target, load_targets, parse_target, source_folders

PROMPT_CHAIN = """
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

prompt = ChatPromptTemplate.from_template("A joke about {topic}, {style}")
joke = prompt | RunnableLambda(lambda value: value.to_string().upper()) | StrOutputParser()
"""


@pytest.fixture(autouse=True)
def _isolated_imports(tmp_path: Path) -> Iterator[None]:
    """The user modules a test imports (`chains`, `api`, `my_chains`...) leave with it."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    sys.modules.pop("holder", None)


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def test_a_file_serves_its_chains_mapping_named_by_key(tmp_path: Path) -> None:
    write(tmp_path / "my_chains.py", PROMPT_CHAIN + "CHAINS = {'joke': joke, 'pun': joke}\n")
    specs = load_target(str(tmp_path / "my_chains.py"))
    assert [spec.name for spec in specs] == ["joke", "pun"]
    joke = specs[0]
    assert joke.input_type.model_validate({"topic": "cats", "style": "dry"}).topic == "cats"
    with pytest.raises(ValidationError):
        joke.input_type.model_validate({"topic": "cats"})  # the prompt needs `style` too
    assert joke.build(ModelConfig()).invoke({"topic": "a", "style": "b"}).startswith("HUMAN:")


def test_an_attribute_names_a_bare_runnable_and_the_default_names_it_by_module(
    tmp_path: Path,
) -> None:
    write(tmp_path / "jokes.py", PROMPT_CHAIN + "CHAINS = joke\n")
    assert [s.name for s in load_target(str(tmp_path / "jokes.py:joke"))] == ["joke"]
    assert [s.name for s in load_target(str(tmp_path / "jokes.py"))] == ["jokes"]


def test_a_bare_runnable_is_described_by_its_functions_docstring(tmp_path: Path) -> None:
    write(
        tmp_path / "tools.py",
        '''
        from langchain_core.runnables import chain

        @chain
        def shout(value: dict) -> str:
            """Shouts the text back.

            More detail that is not the summary."""
            return value["text"].upper()

        CHAINS = {"shout": shout}
        ''',
    )
    (spec,) = load_target(str(tmp_path / "tools.py"))
    assert spec.description == "Shouts the text back."


def test_a_module_target_imports_from_the_working_directory_with_relative_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "myapp" / "__init__.py", "")
    write(tmp_path / "myapp" / "prompts.py", "TEMPLATE = 'Say {word}'\n")
    write(
        tmp_path / "myapp" / "served.py",
        """
        from langchain_core.prompts import PromptTemplate
        from langchain_core.runnables import RunnableLambda
        from .prompts import TEMPLATE

        say = PromptTemplate.from_template(TEMPLATE) | RunnableLambda(lambda v: v.to_string())
        SERVED = {"say": say}
        """,
    )
    monkeypatch.chdir(tmp_path)
    (spec,) = load_target("myapp.served:SERVED")
    assert spec.build(ModelConfig()).invoke({"word": "hi"}) == "Say hi"


def test_a_file_inside_a_package_is_imported_as_part_of_it(tmp_path: Path) -> None:
    write(tmp_path / "src" / "app" / "__init__.py", "")
    write(tmp_path / "src" / "app" / "words.py", "WORD = 'inside'\n")
    write(
        tmp_path / "src" / "app" / "chains.py",
        """
        from langchain_core.runnables import RunnableLambda
        from .words import WORD

        CHAINS = {"word": RunnableLambda(lambda value: WORD)}
        """,
    )
    (spec,) = load_target(str(tmp_path / "src" / "app" / "chains.py"))
    assert spec.build(ModelConfig()).invoke({}) == "inside"
    assert sys.modules["app.chains"].__file__ == str(tmp_path / "src" / "app" / "chains.py")
    assert source_folders([str(tmp_path / "src/app/chains.py")]) == [tmp_path / "src"]


def test_a_users_own_chains_and_api_packages_are_theirs_and_ours_stay_ours(
    tmp_path: Path,
) -> None:
    write(tmp_path / "chains" / "__init__.py", "MINE = 'their chains package'\n")
    write(tmp_path / "api" / "__init__.py", "MINE = 'their api package'\n")
    write(
        tmp_path / "served.py",
        """
        import api
        import chains
        from langchain_core.runnables import RunnableLambda

        CHAINS = {"mine": RunnableLambda(lambda _: chains.MINE + " / " + api.MINE)}
        """,
    )
    (spec,) = load_target(str(tmp_path / "served.py"))
    assert spec.build(ModelConfig()).invoke({}) == "their chains package / their api package"
    # And chainserve's own registry, imported after theirs, still finds its examples.
    assert {"chat", "explain"} <= {spec.name for spec in discover_specs()}


def test_a_sequence_takes_specs_and_named_runnables(tmp_path: Path) -> None:
    write(
        tmp_path / "listed.py",
        PROMPT_CHAIN + "CHAINS = [joke.with_config(run_name='named')]\n" + "UNNAMED = [joke]\n",
    )
    assert [s.name for s in load_target(str(tmp_path / "listed.py"))] == ["named"]
    with pytest.raises(ChainLoadError, match=r"UNNAMED\[0\] is a runnable with no name"):
        load_target(str(tmp_path / "listed.py:UNNAMED"))


def test_a_chainspec_under_a_key_takes_the_keys_name() -> None:
    spec = ChainSpec(
        "old", "d", lambda _c: RunnableLambda(lambda x: x), discover_specs()[0].input_type
    )
    module = type(sys)("holder")
    module.CHAINS = {"new": spec}  # type: ignore[attr-defined]
    sys.modules["holder"] = module
    assert [s.name for s in load_target("holder")] == ["new"]


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (None, "missing.py", r"^no such chains file: .*missing\.py$"),
        (None, "no_such_module", r"^chains target 'no_such_module': no module named"),
        ("X = 1\n", "plain.py", r"plain\.py has no CHAINS; name what to serve with .*:NAME$"),
        ("X = 1\n", "plain.py:Y", r"plain\.py has no Y$"),
        ("import no_such_dependency\n", "plain.py", r"No module named 'no_such_dependency'"),
        ("\n\nraise RuntimeError('boom')\n", "plain.py", r"RuntimeError: boom \(plain\.py:3\)$"),
        ("def broken(:\n", "plain.py", r"^importing .*plain\.py' failed: SyntaxError"),
        ("CHAINS = 42\n", "plain.py", r"is a int; expected a Runnable, a ChainSpec"),
        ("CHAINS = {}\n", "plain.py", r"is empty: there is no chain to serve$"),
        ("CHAINS = {'x': 'text'}\n", "plain.py", r"\['x'\] is a str; expected a Runnable"),
        (
            "from langchain_core.runnables import RunnableLambda\n"
            "CHAINS = {'a b': RunnableLambda(lambda x: x)}\n",
            "plain.py",
            r"chain name 'a b' is not usable in a URL",
        ),
        (
            "from langchain_core.runnables import RunnableLambda\n"
            "def up(text: str) -> str:\n    return text.upper()\n"
            "CHAINS = {'up': RunnableLambda(up)}\n",
            "plain.py",
            r"chain 'up' takes a string as input; chainserve serves chains whose input is an obj",
        ),
        ("import sys\nsys.exit(3)\n", "plain.py", r"failed: SystemExit: 3"),
    ],
)
def test_every_load_failure_is_one_line_naming_the_target(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str | None,
    target: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if source is not None:
        write(tmp_path / "plain.py", source)
    with pytest.raises(ChainLoadError, match=message) as caught:
        load_target(target)
    assert "\n" not in str(caught.value)


def test_a_colon_must_be_followed_by_an_attribute_name() -> None:
    assert parse_target("pkg.mod:CHAINS.extra").attr == "CHAINS.extra"
    with pytest.raises(ChainLoadError, match="not an attribute name"):
        parse_target("my_chains.py:1x")


def test_two_targets_may_not_serve_the_same_name(tmp_path: Path) -> None:
    write(tmp_path / "one.py", PROMPT_CHAIN + "CHAINS = {'joke': joke}\n")
    write(tmp_path / "two.py", PROMPT_CHAIN + "CHAINS = {'joke': joke}\n")
    with pytest.raises(ChainLoadError, match=r"two chains are named 'joke' \(.*one\.py and"):
        load_targets([str(tmp_path / "one.py"), str(tmp_path / "two.py")])


def test_the_registry_serves_the_users_chains_with_or_without_the_examples(
    tmp_path: Path,
) -> None:
    write(tmp_path / "mine.py", PROMPT_CHAIN + "CHAINS = {'joke': joke}\n")
    specs = load_targets([str(tmp_path / "mine.py")])
    examples = {spec.name for spec in discover_specs() if not spec.needs_retrieval}
    with_examples = build_registry(ModelConfig(), extra=specs)
    assert set(with_examples) == {*examples, "joke"}
    only_mine = build_registry(ModelConfig(), extra=specs, examples=False)
    assert set(only_mine) == {"joke"}


def test_a_users_chain_named_like_an_example_is_refused_not_replaced(tmp_path: Path) -> None:
    write(tmp_path / "mine.py", PROMPT_CHAIN + "CHAINS = {'chat': joke}\n")
    specs = load_targets([str(tmp_path / "mine.py")])
    with pytest.raises(ChainLoadError, match=r"two chains are named 'chat' \(a shipped example"):
        build_registry(ModelConfig(), extra=specs)
    assert set(build_registry(ModelConfig(), extra=specs, examples=False)) == {"chat"}


def test_a_chain_whose_build_fails_is_named_in_the_error() -> None:
    def build(_config: ModelConfig) -> RunnableLambda[object, object]:
        raise KeyError("OPENAI_ORG")

    spec = ChainSpec("broken", "d", build, discover_specs()[0].input_type)
    with pytest.raises(ChainLoadError, match=r"^chain 'broken' failed to build: KeyError: "):
        build_registry(ModelConfig(), extra=[spec], examples=False)


def test_no_chains_at_all_is_an_error() -> None:
    with pytest.raises(ChainLoadError, match="there are no chains to serve"):
        build_registry(ModelConfig(), examples=False)
