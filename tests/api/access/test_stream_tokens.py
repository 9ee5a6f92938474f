"""Stream tokens and key ids: unforgeable, short-lived, bound to a chain or run, never the key."""

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


def test_a_run_token_opens_only_its_run_and_a_chain_token_no_run() -> None:
    """The kind is in the signature: a payload edited to name the other kind fails as forged."""
    tokens = StreamTokens(b"secret", 60)
    kid = key_id(KEY)
    run_token = tokens.issue("run-1", kid, kind="run").token
    chain_token = tokens.issue("run-1", kid).token  # a chain that happens to share the name
    assert tokens.verify(run_token, "run-1", {kid}, kind="run") == kid
    assert tokens.verify(run_token, "run-2", {kid}, kind="run") is None
    assert tokens.verify(run_token, "run-1", {kid}) is None
    assert tokens.verify(chain_token, "run-1", {kid}, kind="run") is None


def test_chain_tokens_in_the_format_from_before_run_tokens_still_verify() -> None:
    """Tokens already handed out when a server is upgraded keep working until they expire."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    secret, kid = b"secret", key_id(KEY)
    sealed = b64(hmac.new(secret, kid.encode(), hashlib.sha256).digest()[:12])
    body = {"chain": "chat", "kid": sealed, "exp": 2_000_000_000}
    payload = b64(json.dumps(body, separators=(",", ":")).encode())
    message = b"chainserve-stream-token.v1." + payload.encode()
    old_token = f"{payload}.{b64(hmac.new(secret, message, hashlib.sha256).digest())}"
    tokens = StreamTokens(secret, 60, clock=lambda: 1_000_000_000.0)
    assert tokens.verify(old_token, "chat", {kid}) == kid
    assert tokens.verify(old_token, "chat", {kid}, kind="run") is None
