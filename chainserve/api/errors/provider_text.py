"""What a model provider said when it refused or failed, made safe to pass on to a client.

A provider's reason ("maximum context length is 8192 tokens", "model `gpt-5x` does not exist")
is what lets a user fix a request, so it is passed on; what must not travel with it is
removed first: anything shaped like a key or a bearer token, credentials in URLs, control
characters, and HTML (a proxy's error page says nothing a user can act on).
"""

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from chainserve.api.observability.log_redaction import REDACTED, redact

MAX_CHARS = 500

_SECRETS = re.compile(
    r"(?i)\b(?:sk|pk|rk|key|token)[-_][A-Za-z0-9_\-*.]{6,}"  # sk-..., sk-proj-..., key_...
    r"|\bBearer\s+\S+"
    r"|\b(?:api[-_ ]?key|authorization|password|secret)\b\s*[:=]\s*"
    r"[\"']?(?:Bearer\s+)?[^\s\"',;]{4,}"
)
_URL_USER = re.compile(r"(?<=://)[^/@\s]+@")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")
_HTML = re.compile(r"(?is)^\s*<(?:!doctype|html|head|body|\?xml)|</(?:html|body|div|p|h1)>")


def scrub(text: str) -> str:
    """`text` without secrets, control characters or runaway length."""
    text = _CONTROL.sub(" ", text).strip()
    text = _SECRETS.sub(REDACTED, text)
    text = _URL_USER.sub(f"{REDACTED}@", text)
    text = redact(text)
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1].rstrip() + "…"
    return text


def provider_message(body: Any) -> str:
    """The provider's reason in an error body as the OpenAI SDK keeps it (the `error` object,
    or the raw text), scrubbed; "" when there is nothing usable (no body, an HTML page)."""
    found: Any = body
    if isinstance(body, Mapping):
        found = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(found, Mapping):
            found = found.get("message")
        elif isinstance(found, list) and found and isinstance(found[0], Mapping):
            found = found[0].get("msg")  # a FastAPI-style server's validation detail
    if not isinstance(found, str) or not found.strip() or _HTML.search(found):
        return ""
    return scrub(found)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> str | None:
    """The wait a provider asked for, in whole seconds (at least 1), from `retry-after-ms`,
    `retry-after` as seconds, or `retry-after` as an HTTP date; None when it asked none."""
    lowered = {name.lower(): value for name, value in headers.items()}
    seconds: float | None = None
    try:
        if "retry-after-ms" in lowered:
            seconds = float(lowered["retry-after-ms"]) / 1000
        elif "retry-after" in lowered:
            value = lowered["retry-after"].strip()
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value).timestamp()
                seconds = when - (time.time() if now is None else now)
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return str(max(1, math.ceil(seconds)))
