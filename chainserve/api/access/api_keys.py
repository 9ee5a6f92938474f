"""API keys: who may call, checked in constant time, and known afterwards only by a key id."""

import hashlib
import hmac
from collections.abc import Sequence


def key_id(key: str) -> str:
    """A stable, non-secret name for a key (for limits and logs): never the key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class ApiKeys:
    """The configured keys. None configured means the API is open (the local default).

    Admin keys are keys too: they sign in like any other, and their ids are `admin_ids`."""

    def __init__(self, keys: Sequence[str], admin_keys: Sequence[str] = ()) -> None:
        unique = list(dict.fromkeys([*keys, *admin_keys]))
        self._digests = [(hashlib.sha256(key.encode()).digest(), key_id(key)) for key in unique]
        self.ids = frozenset(kid for _, kid in self._digests)
        self.admin_ids = frozenset(key_id(key) for key in admin_keys)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str) -> str | None:
        """The key id of `presented` if it is a configured key, else None.

        Digests are compared, each against every key with no early exit, so the time taken
        says nothing about which key matched, or how long or how right a wrong one was."""
        candidate = hashlib.sha256(presented.encode()).digest()
        found = None
        for digest, kid in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = kid
        return found

    def token_secret(self) -> bytes:
        """A signing secret every worker and replica with the same keys agrees on, and that
        nobody without a key can compute."""
        material = b"\0".join(sorted(digest for digest, _ in self._digests))
        return hashlib.sha256(b"chainserve stream tokens v1\0" + material).digest()
