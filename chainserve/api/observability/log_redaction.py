"""Keeps credentials out of every log line: stream tokens, and keys a caller put in a URL.

A query parameter is recognised by its name as the server decodes it, not as it was spelled:
`?to%6Ben=...` authenticates exactly like `?token=...` (percent-decoding comes first), so it
must be redacted exactly the same. Names compare case-insensitively, which redacts a little
more than is accepted for auth, never less.
"""

import logging
import re
from urllib.parse import unquote_plus

CREDENTIAL_PARAMS = frozenset({"token", "api_key", "api-key", "apikey", "key", "access_token"})
"""Query parameters whose value is a secret, however the client spelled their names."""
REDACTED = "[redacted]"

# A `name=value` pair in a query: after `?` or `&` (a log line's URL) or at the very start (a
# bare query string). `#` and whitespace end a URL inside a longer log message.
_PAIR = re.compile(r"(^|[?&])([^&=\s#?]+)=([^&\s#]*)")


def _redact_pair(match: re.Match[str]) -> str:
    lead, name, value = match.groups()
    if unquote_plus(name).strip().lower() in CREDENTIAL_PARAMS and value:
        return f"{lead}{name}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """`text` (a URL, a query string or a log message holding one) with credential values
    replaced; cheap when there is nothing to redact."""
    if "=" not in text:
        return text
    return _PAIR.sub(_redact_pair, text)


class RedactStreamTokens(logging.Filter):
    """Redacts credentials from a record's message and string arguments, whichever logger
    wrote it: uvicorn's access log puts the path with its query in an argument, and an
    error or warning may quote a URL too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if not record.args and isinstance(record.msg, str):
            # With arguments the message is a format string: a `%s` taken for a value
            # would break formatting, and the arguments are redacted above.
            record.msg = redact(record.msg)
        return True
