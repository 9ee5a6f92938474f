"""The checks that keep JSON Python's parser cannot take safely away from every route."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainserve.api.access.json_scan import MAX_INT_DIGITS, has_lone_surrogate, json_problem


def _encodable(body: bytes) -> bool:
    """Ground truth: what `json` makes of the text can be written back out as UTF-8."""
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        r'"\ud800"',
        r'"\uDC00"',
        r'"a\ud83d"',
        r'"\ud83d\u0041"',
        r'"\ud83dx\ude00"',
        r'"\udc00\ud800"',
        r'"\ud83d\ude00\ud800"',
        r'"\\\ud800"',  # an escaped backslash, then a real escape
        r'"\\ud83d\udc00"',  # the "high half" is text, so the low half is alone
        r'"\ud83d\\\ude00"',  # an escaped backslash between the halves
        r'{"\ud800": 1}',
    ],
)
def test_a_lone_surrogate_escape_is_found(text: str) -> None:
    body = text.encode()
    assert not _encodable(body)
    assert has_lone_surrogate(body)
    assert json_problem(body, 64) == (
        "request JSON has an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
    )


@pytest.mark.parametrize(
    "text",
    [r'"\ud83d\ude00"', r'"\uDBFF\uDFFF"', r'"\\ud800"', r'"\\\\ud800"', r'"\u005cud800"', '"😀"'],
)
def test_pairs_and_text_that_only_looks_like_a_surrogate_are_accepted(text: str) -> None:
    body = text.encode()
    assert _encodable(body)
    assert not has_lone_surrogate(body)
    assert json_problem(body, 64) is None


PIECES = [r"\ud83d", r"\ude00", r"\udbff", r"\uDFFF", r"\\", r"\u0041", r"\"", r"\n", "ud800", "x"]
"""Fragments of JSON string text: escapes as they are written in a body."""


@settings(max_examples=500, derandomize=True, database=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=8), max_size=3))
def test_the_surrogate_check_agrees_with_the_json_module(strings: list[list[str]]) -> None:
    body = ("[" + ",".join(f'"{"".join(pieces)}"' for pieces in strings) + "]").encode()
    assert has_lone_surrogate(body) is not _encodable(body)


def test_an_integer_json_cannot_parse_is_refused() -> None:
    too_long = b"[-" + b"9" * (MAX_INT_DIGITS + 1) + b"]"
    with pytest.raises(ValueError, match="integer string conversion"):
        json.loads(too_long)
    assert json_problem(too_long, 64) == (
        f"request JSON has an integer longer than {MAX_INT_DIGITS} digits"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b"9" * MAX_INT_DIGITS + b"]",
        b"[1." + b"5" * 10_000 + b"]",
        b"[1e" + b"5" * 10_000 + b"]",
        b"[1E+" + b"5" * 10_000 + b"]",
        b'["' + b"5" * 10_000 + b'"]',
        b"[1e-" + b"0" * 10_000 + b"5]",
        b"[" + b"5" * 10_000 + b".5]",
        b"[-" + b"5" * 10_000 + b"e3]",
    ],
    ids=[
        "at-the-limit",
        "long-fraction",
        "long-exponent",
        "long-signed-exponent",
        "in-a-string",
        "long-negative-exponent",
        "long-integer-part-of-a-float",
        "long-negative-mantissa",
    ],
)
def test_long_digit_runs_json_can_parse_are_accepted(body: bytes) -> None:
    json.loads(body)
    assert json_problem(body, 64) is None


def test_nesting_is_counted_outside_strings_only() -> None:
    assert json_problem(b'["[[[[", {"a": "{{{{"}]', 2) is None
    assert json_problem(b"[[[]]]", 2) == "request JSON is nested deeper than 2 levels"
