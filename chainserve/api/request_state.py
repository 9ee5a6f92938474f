"""What middleware leaves in `scope["state"]` for the layers around and inside it.

Its own module so the middleware that writes these and the ones that read them need not import
each other.
"""

import contextvars
from collections.abc import Callable

from starlette.types import Scope

KEY_ID = "api_key_id"
"""The id (never the key) of the caller's API key, set by auth when keys are on."""
IS_ADMIN = "api_key_is_admin"
"""True when the caller's key is one of the admin keys, set by auth beside `KEY_ID`."""
ERROR_CODE = "chainserve_error_code"
"""The code of the typed error this request was refused with, for the request metrics."""


def note_error(scope: Scope, code: str) -> None:
    """Record that this request was answered with the typed error `code`."""
    scope.setdefault("state", {})[ERROR_CODE] = code


HOLD_STREAM_SLOT: contextvars.ContextVar[Callable[[str], Callable[[], None]] | None] = (
    contextvars.ContextVar("chainserve_hold_stream_slot", default=None)
)
"""Set while a limited stream request is served: a run it starts calls it with its run id to
hold the caller's stream slot too, and calls what it returns when the run ends."""
