"""Credentials in URLs never reach a log line, in either log format, however they are spelled."""

from pathlib import Path

import httpx
import pytest

from chainserve.api.observability.log_redaction import redact
from tests.support.process import ServerProcess

KEY = "sk-redaction-test-key-0001"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=abc&x=1", "token=[redacted]&x=1"),
        ("/s?token=abc", "/s?token=[redacted]"),
        ("/s?topic=a&to%6Ben=abc", "/s?topic=a&to%6Ben=[redacted]"),
        ("/s?TOKEN=abc&api_key=k1&key=k2", "/s?TOKEN=[redacted]&api_key=[redacted]&key=[redacted]"),
        (
            'GET /s?a%5Fkey=1&api%5Fkey=k HTTP/1.1" 200',
            'GET /s?a%5Fkey=1&api%5Fkey=[redacted] HTTP/1.1" 200',
        ),
        ("/s?monkey=1&tokens=2&token=", "/s?monkey=1&tokens=2&token="),
    ],
)
def test_credential_parameters_are_redacted_by_their_decoded_name(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_servers_logs_never_show_a_credential_from_a_url(
    tmp_path: Path, log_format: str
) -> None:
    """Stream tokens first in the query, percent-encoded names, and keys pasted into a URL:
    none of them appears in anything the server printed, in either log format."""
    env = {
        "CHAINSERVE_API_KEYS": KEY,
        "CHAINSERVE_LOG_FORMAT": log_format,
        "CHAINSERVE_LOG_LEVEL": "debug",
    }
    secrets: list[str] = []
    with ServerProcess(tmp_path, env) as server:
        with httpx.Client(base_url=server.url, timeout=20) as client:

            def token() -> str:
                response = client.post(
                    "/auth/stream-token", json={"chain": "explain"}, headers={"X-API-Key": KEY}
                )
                assert response.status_code == 200
                value: str = response.json()["token"]
                secrets.append(value)
                return value

            first = client.get(f"/chains/explain/stream?token={token()}&topic=logs")
            assert first.status_code == 200, first.text
            encoded = client.get(f"/chains/explain/stream?topic=logs&to%6Ben={token()}")
            assert encoded.status_code == 200, encoded.text  # the spelling auth accepts
            pasted = ["sk-pasted-api-key-0002", "sk-pasted-key-0003", "sk-pasted-upper-0004"]
            secrets.extend(pasted)
            query = f"api_key={pasted[0]}&key={pasted[1]}&TOKEN={pasted[2]}"
            assert client.get(f"/chains?{query}").status_code == 401
            assert client.get(f"/health?{query}").status_code == 200
        server.stop()
    assert "[redacted]" in server.output
    assert "/chains/explain/stream" in server.output
    leaked = [secret for secret in [*secrets, KEY] if secret in server.output]
    assert not leaked, server.output
