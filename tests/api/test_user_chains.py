"""The user's own chains served over every surface: native SSE, `/v1`, LangServe, the CLI."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.runnables import RunnableLambda

from chainserve.api.app import create_app
from chainserve.chains.registry import ChainLoadError
from tests.api.streaming import hang_up_at, stream
from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ROOT, ServerProcess

USER_CHAIN = """
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

prompt = ChatPromptTemplate.from_messages(
    [("system", "You answer in the style of {{style}}."), ("human", "{{question}}")]
)
model = ChatOpenAI(model="{model}", base_url="{base_url}", api_key="sk-user", max_retries=0)
CHAINS = {{"ask": prompt | model | StrOutputParser()}}
"""


def user_file(folder: Path, base_url: str, model: str = "gpt-4.1-mini") -> Path:
    path = folder / "my_chains.py"
    path.write_text(USER_CHAIN.format(base_url=base_url, model=model))
    return path


@pytest.mark.asyncio
async def test_a_users_own_chatopenai_chain_streams_on_the_native_route(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    file = user_file(tmp_path, upstream.base_url)
    server = start_server(offline_settings(chains=[str(file)], example_chains=False))
    upstream.enqueue(Script(chunks=["Ahoy", ", ", "matey"]))
    result = await stream(server.url, "ask", {"input": {"style": "a pirate", "question": "hi"}})
    assert result.status == 200
    assert result.text == "Ahoy, matey"
    # The model the chain calls, not the server's default (the offline model here).
    assert result.of("metadata")[0].json()["model"] == {
        "provider": "openai",
        "name": "gpt-4.1-mini",
    }
    sent = upstream.last_request.json
    assert sent["model"] == "gpt-4.1-mini"
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You answer in the style of a pirate.",
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        listed = (await client.get("/chains")).json()["chains"]
    assert [chain["name"] for chain in listed] == ["ask"]
    assert listed[0]["input_schema"]["required"] == ["question", "style"]


@pytest.mark.asyncio
async def test_a_bad_input_to_a_users_chain_is_a_422_naming_the_field(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    file = user_file(tmp_path, upstream.base_url)
    server = start_server(offline_settings(chains=[str(file)]))
    result = await stream(server.url, "ask", {"input": {"question": "hi"}})
    assert result.status == 422
    assert result.json()["error"]["details"][0]["loc"] == ["body", "input", "style"]
    assert upstream.requests == []


def test_hanging_up_on_a_users_chain_hangs_up_on_its_provider(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    file = user_file(tmp_path, upstream.base_url)
    server = start_server(offline_settings(chains=[str(file)], example_chains=False))
    upstream.enqueue(Script(chunks=["tok "] * 200, delay=0.05))
    body = {"input": {"style": "a pirate", "question": "hi"}}
    _, closed_at = hang_up_at(server.url, "/chains/ask/stream", body, "tok")
    assert upstream.wait_for_disconnect(timeout=5) - closed_at < 2.0
    assert upstream.last_request.chunks_sent < 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("script", "message"),
    [
        pytest.param(
            Script(chunks=["half"], finish_reason=None, send_done=False, close_delimited=True),
            "ended before the answer was complete",
            id="cut-short",
        ),
        pytest.param(
            Script(raw_body=b"<html>Bad gateway</html>", headers={"content-type": "text/html"}),
            "not an event stream",
            id="html-page",
        ),
    ],
)
async def test_a_users_chain_reports_a_broken_provider_stream_as_an_error(
    tmp_path: Path,
    start_server: ServerFactory,
    upstream: MockUpstream,
    script: Script,
    message: str,
) -> None:
    """A user's `ChatOpenAI` on the lean path fails a cut-off or non-SSE answer with a typed
    error, never a shorter answer that looks complete."""
    file = user_file(tmp_path, upstream.base_url)
    server = start_server(offline_settings(chains=[str(file)], example_chains=False))
    upstream.enqueue(script)
    result = await stream(server.url, "ask", {"input": {"style": "plain", "question": "hi"}})
    if result.status == 200:  # failed after the stream began: an error event, no `end`
        (error,) = result.of("error")
        assert message in error.json()["message"]
        assert not result.of("end")
    else:  # failed before the first byte: the status says it
        assert result.status == 502
        assert message in json.loads(result.body)["error"]["message"]


def test_a_users_chain_answers_langserve_and_the_openai_sdk(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    (tmp_path / "one_field.py").write_text(
        textwrap.dedent(
            f"""
            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate
            from langchain_openai import ChatOpenAI

            model = ChatOpenAI(model="gpt-4.1", base_url="{upstream.base_url}", api_key="k")
            CHAINS = {{"ask": ChatPromptTemplate.from_template("{{question}}") | model
                       | StrOutputParser()}}
            """
        )
    )
    server = start_server(offline_settings(chains=[str(tmp_path / "one_field.py")]))
    upstream.enqueue(Script(chunks=["via ", "langserve"]), Script(chunks=["via ", "sdk"]))
    invoked = httpx.post(
        f"{server.url}/langserve/ask/invoke", json={"input": {"question": "q"}}, timeout=10
    )
    assert invoked.status_code == 200
    assert invoked.json()["output"] == "via langserve"
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="ask", messages=[{"role": "user", "content": "what?"}]
    )
    assert completion.choices[0].message.content == "via sdk"
    assert upstream.last_request.json["messages"] == [{"role": "user", "content": "what?"}]


@pytest.mark.asyncio
async def test_create_app_takes_chains_directly(start_server: ServerFactory) -> None:
    shout = RunnableLambda(lambda value: value["text"].upper())
    server = start_server(offline_settings(example_chains=False), {"shout": shout})
    result = await stream(server.url, "shout", {"input": {"text": "quiet"}})
    assert result.text == "QUIET"
    # It calls no model that can be seen from outside: not named as the server's.
    assert result.of("metadata")[0].json()["model"] == {"provider": "unknown", "name": "unknown"}


def test_create_app_refuses_a_chain_it_cannot_serve_before_opening_anything() -> None:
    with pytest.raises(ChainLoadError, match=r"chains is a int"):
        create_app(offline_settings(), chains=42)


def _serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHAINSERVE_"))}
    return subprocess.run(
        [sys.executable, "-m", "chainserve", "serve", "--port", "9", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["--chains", "missing.py"], "no such chains file: "),
        ({}, ["--chains", "no_such.module"], "No module named 'no_such'"),
        ({"bad.py": "1/0\n"}, ["--chains", "bad.py"], "ZeroDivisionError: division by zero"),
        ({}, ["--no-examples"], "there are no chains to serve"),
    ],
)
def test_serve_with_chains_it_cannot_load_is_one_line_and_exit_status_1(
    tmp_path: Path, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    result = _serve(tmp_path, *args)
    assert result.returncode == 1
    assert result.stderr.startswith("chainserve: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_serve_in_a_project_with_its_own_api_and_chains_packages(tmp_path: Path) -> None:
    for package in ("api", "chains"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"WHO = 'the project {package}'\n")
    (tmp_path / "served.py").write_text(
        textwrap.dedent(
            """
            import api
            import chains
            from langchain_core.runnables import RunnableLambda

            CHAINS = {"who": RunnableLambda(lambda _: f"{api.WHO}, {chains.WHO}")}
            """
        )
    )
    with ServerProcess(tmp_path, args=["--chains", "served.py", "--no-examples"]) as server:
        assert server.health["chains"] == ["who"]
        invoked = httpx.post(f"{server.url}/chains/who/invoke", json={"input": {}}, timeout=10)
        assert invoked.json()["output"] == "the project api, the project chains"


def test_reload_picks_up_an_edit_to_the_users_chains(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    source = (
        "from langchain_core.runnables import RunnableLambda\n"
        "CHAINS = {{'v': RunnableLambda(lambda _: '{}')}}\n"
    )
    (project / "versioned.py").write_text(source.format("first"))
    elsewhere = tmp_path / "elsewhere"  # the server runs from another directory
    elsewhere.mkdir()
    target = str(project / "versioned.py")
    with ServerProcess(elsewhere, args=["--chains", target, "--no-examples", "--reload"]) as s:
        assert (
            httpx.post(f"{s.url}/chains/v/invoke", json={"input": {}}).json()["output"] == "first"
        )
        (project / "versioned.py").write_text(source.format("second"))
        deadline, output = time.monotonic() + 30, "first"
        while output != "second" and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                output = httpx.post(f"{s.url}/chains/v/invoke", json={"input": {}}).json()["output"]
            except httpx.TransportError:
                continue  # the worker is restarting
        assert output == "second"


def test_v1_sampling_parameters_reach_only_the_knobs_a_users_chain_declares(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    (tmp_path / "knobs.py").write_text(
        textwrap.dedent(
            f"""
            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate
            from langchain_core.runnables import ConfigurableField
            from langchain_openai import ChatOpenAI

            def model():
                return ChatOpenAI(model="m", base_url="{upstream.base_url}", api_key="k")

            prompt = ChatPromptTemplate.from_template("{{question}}")
            tunable = model().configurable_fields(
                temperature=ConfigurableField(id="temperature"),
                top_p=ConfigurableField(id="top_p"),
            )
            CHAINS = {{
                "fixed": prompt | model() | StrOutputParser(),
                "tunable": prompt | tunable | StrOutputParser(),
            }}
            """
        )
    )
    server = start_server(offline_settings(chains=[str(tmp_path / "knobs.py")]))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "q"}]
    for parameter in ({"temperature": 0.2}, {"max_tokens": 5}, {"max_completion_tokens": 5}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="fixed", messages=question, **parameter)  # type: ignore[call-overload]
        body = refused.value.body
        assert isinstance(body, dict)
        assert body["param"] == next(iter(parameter))
        assert body["code"] == "unsupported_parameter"
        assert "temperature" not in body["message"] or "no 'temperature' knob" in body["message"]
    assert upstream.requests == []
    upstream.enqueue(Script(chunks=["ok"]))
    client.chat.completions.create(model="tunable", messages=question, temperature=0.2, top_p=0.5)
    sent = upstream.last_request.json
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.5)
