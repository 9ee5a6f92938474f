"""Where the developer page lives: auth and limits let its static files through.

The files hold no data and no secret (the page asks for a key, then sends it on every API
call it makes), and a page load is a dozen requests that must not eat a caller's budget.
"""

PAGE = "/"
ASSETS = "/static/"


def is_page_file(path: str) -> bool:
    return path == PAGE or path.startswith(ASSETS)
