"""The page's files over plain HTTP: headers, keys, limits, and nothing missing or outside."""

import re

import httpx

from chainserve.api.routes.page import STATIC_DIR
from tests.conftest import ServerFactory, offline_settings

KEY = "sk-page-files-0123456789"


def _page_files(base: str) -> list[str]:
    """Every file the page loads: from index.html, then each module's imports, recursively."""
    html = httpx.get(f"{base}/").text
    found = re.findall(r'(?:src|href)="(static/[^"]+)"', html)
    queue = [f for f in found if f.endswith(".js")]
    while queue:
        module = queue.pop()
        source = httpx.get(f"{base}/{module}").text
        folder = module.rsplit("/", 1)[0]
        for target in re.findall(r'^import\s[^;]*?from\s+"(\.{1,2}/[^"]+)";', source, re.M):
            resolved = str(httpx.URL(f"{base}/{folder}/").join(target).path).lstrip("/")
            if resolved not in found:
                found.append(resolved)
                queue.append(resolved)
    return found


def test_the_page_and_its_files_need_no_key_but_the_api_does(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(api_keys=KEY))
    files = _page_files(server.url)
    page = httpx.get(f"{server.url}/")

    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert {"static/js/app.js", "static/js/sse.js", "static/vendor/marked.js"} <= set(files)
    for name in files:
        response = httpx.get(f"{server.url}/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"
        expected = "text/css" if name.endswith(".css") else "javascript|svg"
        assert re.search(expected, response.headers["content-type"]), name
    assert httpx.get(f"{server.url}/chains").status_code == 401
    assert httpx.head(f"{server.url}/").status_code == 200


def test_every_file_in_the_static_folder_is_used_or_a_licence(start_server: ServerFactory) -> None:
    """Nothing dead ships with the page, and the licences of what is vendored do."""
    server = start_server(offline_settings())
    used = {name.removeprefix("static/") for name in _page_files(server.url)}
    shipped = {str(p.relative_to(STATIC_DIR)) for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert shipped - used - {"index.html"} == {
        "vendor/LICENSE.marked", "vendor/LICENSE.dompurify", "vendor/LICENSE.highlight",
    }  # fmt: skip


def test_nothing_outside_the_static_folder_is_served(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    for path in ("/static/../settings.py", "/static/%2e%2e/settings.py", "/static/js/../../cli.py"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 404, path
        assert "pydantic" not in response.text


def test_loading_the_page_does_not_spend_the_callers_request_budget(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings(requests_per_minute=2))
    for name in _page_files(server.url) * 2:
        assert httpx.get(f"{server.url}/{name}").status_code == 200
    assert httpx.get(f"{server.url}/chains").status_code == 200


def test_the_page_can_be_switched_off(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(web_page=False))
    assert httpx.get(f"{server.url}/").status_code == 404
    assert httpx.get(f"{server.url}/static/js/app.js").status_code == 404


def test_configurable_keys_carry_the_schema_the_page_builds_controls_from(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())
    chains = {c["name"]: c for c in httpx.get(f"{server.url}/chains").json()["chains"]}
    knobs = {k["id"]: k for k in chains["rag"]["configurable"]}

    assert knobs["temperature"]["schema"] == {"type": "number", "minimum": 0.0, "maximum": 2.0}
    assert knobs["k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 20}
    assert knobs["search_type"]["schema"]["enum"] == ["similarity", "mmr"]
    assert "pattern" in knobs["collection"]["schema"]
