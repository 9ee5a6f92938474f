"""Linear checks of JSON text for what Python's `json` module cannot safely be handed.

Each is a regex scan, never a parse: a body is checked before any route parses it (and
LangServe parses it twice), so the checks must cost less than the parse they protect.
"""

import json
import re
import sys

MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
"""Longest integer literal accepted: `json` refuses longer ones (the limit stops a quadratic
int conversion; 4300 is Python's default should the process have turned it off)."""

# A string runs to its closing quote or, unterminated, to the end of the body (a lone final
# backslash included): every match succeeds where it starts, so the scan stays linear. Made
# to fail on an unterminated string, it restarted at every quote: a body of escaped quotes
# took quadratic time on the event loop (48 KB stalled every stream for seconds). A run of
# digits is only tried where it starts (the look-behind), so a long run is read once too. Only
# an integer counts: digits in a fraction or an exponent (after `.`, `e`, `e+`, `e-`) or
# before them (the look-ahead) make a float, which json parses with no digit limit.
_TOKENS = re.compile(
    rb'"(?:[^"\\]+|\\.|\\\Z)*(?:"|\Z)|[\[\]{}]|(?<![0-9.eE+-])-?[0-9]{%d,}(?![0-9.eE])'
    % (MAX_INT_DIGITS + 1),
    re.DOTALL,
)
# Half a UTF-16 surrogate pair, as JSON escapes: a high surrogate not followed by a low one,
# or a low one not preceded by a high one (the look-behind spans both escapes). Only right
# where every backslash starts an escape.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|[c-fC-F](?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F]))"
)


def has_lone_surrogate(text: bytes) -> bool:
    """Whether JSON text escapes half a UTF-16 surrogate pair without the other half."""
    # Blanking escaped backslashes (left to right, as a parser pairs them) leaves only
    # backslashes that start an escape: `\\ud800` is a backslash and text, not a surrogate.
    return _LONE_SURROGATE.search(text.replace(b"\\\\", b"..")) is not None


def json_problem(body: bytes, max_depth: int) -> str | None:
    """Why `body` must not be handed to a JSON parser, or None: linear scans, no parsing."""
    if body and json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        # json.loads would decode UTF-16/32 itself, past the checks below (RFC 8259: UTF-8).
        return "request JSON must be UTF-8"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte {exc.start})"
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return f"request JSON is nested deeper than {max_depth} levels"
        elif token in (b"]", b"}"):
            depth -= 1
        elif token[:1] in b"-0123456789":
            return f"request JSON has an integer longer than {MAX_INT_DIGITS} digits"
    if b"\\u" in body and has_lone_surrogate(body):
        return "request JSON has an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
    return None
