"""Token text is encoded exactly as before the orjson fast path, byte for byte."""

import json

import pytest

from chainserve.api.runs.encoding import to_json

SAMPLES = [
    "",
    "plain",
    'quote " backslash \\ slash /',
    "".join(chr(i) for i in range(0x20)),  # every control character
    "\x7f ünïcödé 🚀 \u2028\u2029 \ufeff \U0010ffff",
    "\ud800 lone surrogate",  # orjson refuses these; the slow path must still answer
]


@pytest.mark.parametrize("text", SAMPLES)
def test_token_text_is_encoded_as_json_dumps_encodes_it(text: str) -> None:
    expected = json.dumps(text, ensure_ascii=False, separators=(",", ":"))
    assert to_json(text) == expected
    assert json.loads(to_json(text)) == text
