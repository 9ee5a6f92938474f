"""Stream tokens and key ids: unforgeable, short-lived, bound to a chain, never the key itself."""

import pytest

from chainserve.api.access.api_keys import ApiKeys, key_id
from chainserve.api.access.stream_tokens import StreamTokens

KEY, OTHER_KEY = "sk-chainserve-first-0123456789", "sk-chainserve-second-9876543210"


def test_stream_tokens_expire_and_die_with_their_key() -> None:
    now = [1_000_000.0]
    tokens = StreamTokens(b"secret", ttl_seconds=60, clock=lambda: now[0])
    kid = key_id(KEY)
    issued = tokens.issue("chat", kid)
    assert tokens.verify(issued.token, "chat", {kid}) == kid
    assert tokens.verify(issued.token, "chat", {key_id(OTHER_KEY)}) is None  # key removed
    assert tokens.verify(issued.token, "explain", {kid}) is None
    now[0] += 61
    assert tokens.verify(issued.token, "chat", {kid}) is None
    assert StreamTokens(b"other", 60).verify(issued.token, "chat", {kid}) is None


@pytest.mark.parametrize("garbage", ["", ".", "abc", "a.b", "!!!.???", "é.é", "a" * 5000])
def test_garbage_stream_tokens_are_refused_not_crashed_on(garbage: str) -> None:
    assert StreamTokens(b"secret", 60).verify(garbage, "chat", {"key-x"}) is None


def test_keys_are_matched_by_digest_and_named_by_an_id_that_is_not_the_key() -> None:
    keys = ApiKeys([KEY, OTHER_KEY])
    assert keys.identify(KEY) == key_id(KEY)
    assert keys.identify(OTHER_KEY) == key_id(OTHER_KEY)
    assert keys.identify(KEY + " ") is None
    assert keys.identify("") is None
    assert KEY not in key_id(KEY)
    assert key_id(KEY).startswith("key-")
    assert not ApiKeys([]).enabled


def test_a_token_does_not_carry_the_key_id_in_the_clear() -> None:
    """The key id is a hash of the key; readable in a token, it would let a weak key be guessed."""
    import base64
    import json

    tokens = StreamTokens(b"secret", 60)
    kid = key_id(KEY)
    payload = tokens.issue("chat", kid).token.partition(".")[0]
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert kid not in json.dumps(body)
    assert kid[4:] not in json.dumps(body)
