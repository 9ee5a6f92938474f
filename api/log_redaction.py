"""Keeps stream tokens out of the access log: short-lived, but credentials all the same."""

import logging
import re

_TOKEN = re.compile(r"([?&]token=)[^&\s]*")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1[redacted]", text)


class RedactStreamTokens(logging.Filter):
    """uvicorn logs each request's path with its query string; the token's value goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True
