"""The OpenAPI schema documents every status and content type the routes really send."""

from collections.abc import Iterator
from typing import Any

import pytest

from chainserve.api.app import create_app
from tests.conftest import offline_settings

SSE = "text/event-stream"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(offline_settings()).openapi()


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_every_operation_documents_the_middleware_refusals(schema: dict[str, Any]) -> None:
    """Undocumented before: a body the guard refuses (400/413), a missing key (401), a limit."""
    for label, operation in _operations(schema):
        statuses = set(operation["responses"])
        expected = {"400", "413"} if label == "GET /health" else {"400", "401", "413", "429"}
        assert expected <= statuses, label


def test_a_name_that_matches_nothing_is_a_documented_404(schema: dict[str, Any]) -> None:
    for label, operation in _operations(schema):
        names_something = "{name}" in label or "_id}" in label or label.endswith("/stream-token")
        if label == "POST /collections/{name}/documents":
            continue  # ingesting creates the collection
        if names_something or label == "POST /v1/chat/completions":
            assert "404" in operation["responses"], label


def test_errors_are_documented_in_the_shape_each_route_family_sends(
    schema: dict[str, Any],
) -> None:
    for label, operation in _operations(schema):
        for status, response in operation["responses"].items():
            if status in ("422", "413") or int(status) < 400:
                continue  # FastAPI's validation shape, which ours extends; the token limit's
            ref = response["content"]["application/json"]["schema"]["$ref"]
            expected = "OpenAIErrorBody" if " /v1/" in label else "ErrorBody"
            assert ref == f"#/components/schemas/{expected}", (label, status)


def test_every_reference_in_the_schema_resolves(schema: dict[str, Any]) -> None:
    """LangServe's routes point at components only the native routes put there."""
    components = schema["components"]["schemas"]
    for ref in set(_refs(schema["paths"])):
        assert ref.removeprefix("#/components/schemas/") in components, ref


def test_streams_are_documented_as_event_streams(schema: dict[str, Any]) -> None:
    """LangServe's stream routes were documented as JSON only; ours offered JSON as well."""
    for label, operation in _operations(schema):
        content = operation["responses"].get("200", {}).get("content", {})
        if label.startswith("POST /langserve/") and "/stream" in label:
            assert SSE in content, label
        elif label.endswith(("/stream", "/ui")):
            assert set(content) == {SSE}, label


def test_the_openai_route_documents_streamed_and_whole_completions(
    schema: dict[str, Any],
) -> None:
    content = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", SSE}
