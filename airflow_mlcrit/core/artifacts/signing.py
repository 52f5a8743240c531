"""Optional HMAC signatures on the store's records (manifests, alias history entries, head records).

A record's digest already covers every field, so a signature over the digest binds all of it.
The key is a shared secret held outside the store (an Airflow connection, a secrets backend,
an environment variable): someone who can write to the store but does not hold the key cannot
forge or edit a record that a keyed reader accepts. What it does not protect against is in
docs/reliability.md ("What the hash chain and signing do and do not protect against").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError

ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 32  # a 256-bit HMAC key: shorter secrets are guessable offline from any signed record


def key_id(key: bytes) -> str:
    """A public fingerprint of a key (domain-separated, so it is not the key's plain SHA-256)."""
    return hashlib.sha256(b"airflow-mlcrit signing key id\0" + key).hexdigest()[:16]


class Signer:
    """Signs with the first key and accepts signatures by any of ``keys``: list the previous key
    after the new one while rotating, until every record a reader needs is signed by the new one
    (re-signing is not offered: a record is immutable once committed).

    :param keys: secrets of at least 32 bytes each (str is taken as UTF-8).
    """

    def __init__(self, keys: Iterable[bytes | str]):
        raw = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        if not raw:
            raise ConfigError("a signer needs at least one key")
        for i, k in enumerate(raw):
            if len(k) < MIN_KEY_BYTES:
                which = "the signing key" if i == 0 else f"previous signing key #{i}"
                raise ConfigError(
                    f"{which} is {len(k)} bytes; use at least {MIN_KEY_BYTES} random bytes "
                    "(for example `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
        self._keys = {key_id(k): k for k in raw}
        self.key_id = key_id(raw[0])

    def __repr__(self) -> str:  # never the secret
        return f"Signer(key_id={self.key_id!r}, accepts={sorted(self._keys)})"

    @staticmethod
    def _message(record: str, digest: str) -> bytes:
        # The record type is part of the message, so a manifest's signature is never valid for
        # an alias entry or a head record that happened to carry the same digest string.
        return f"airflow-mlcrit/{record}/{digest}".encode()

    def sign(self, record: str, digest: str) -> dict[str, str]:
        mac = hmac.new(self._keys[self.key_id], self._message(record, digest), hashlib.sha256).hexdigest()
        return {"alg": ALGORITHM, "key_id": self.key_id, "value": mac}

    def problem(self, record: str, digest: str, signature: Any) -> str | None:
        """What is wrong with ``signature`` as a signature of ``digest`` by one of the keys, or None."""
        if signature is None:
            return "is not signed, although the store is opened with a signing key: a writer without the key, or forged"
        if not isinstance(signature, Mapping) or signature.get("alg") != ALGORITHM:
            return f"has a malformed signature (expected alg {ALGORITHM})"
        key = self._keys.get(str(signature.get("key_id")))
        if key is None:
            return (
                f"is signed by key {str(signature.get('key_id'))[:40]!r}, which is not one of the configured keys "
                f"({', '.join(sorted(self._keys))}); if that key was rotated out, list it as a previous key"
            )
        expected = hmac.new(key, self._message(record, digest), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature.get("value", ""))):
            return "has a bad signature: it was edited or forged after it was signed"
        return None

    def check(self, record: str, digest: str, signature: Any, where: str) -> None:
        """Raise ArtifactIntegrityError naming ``where`` unless ``signature`` is valid."""
        problem = self.problem(record, digest, signature)
        if problem is not None:
            raise ArtifactIntegrityError(f"{where} {problem}")


def signer_from_text(active: str | None, previous: Iterable[str] = ()) -> Signer | None:
    """A Signer from configured text (None or empty: no signing); the secret is stripped of
    surrounding whitespace, as a key pasted into a connection or a file often carries a newline."""
    if not active or not active.strip():
        if any(p.strip() for p in previous):
            raise ConfigError("previous signing keys are configured, but no signing key")
        return None
    return Signer([active.strip(), *(p.strip() for p in previous if p.strip())])
