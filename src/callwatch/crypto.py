"""Secrets at rest: hashed API keys, provider credentials encrypted with the secret key, and
keyed fingerprints of values that must be recognised but never kept (an erased number)."""

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


def hash_key(api_key: str) -> str:
    # API keys carry 192 random bits: a fast hash is as safe as a slow one, and lookups stay cheap.
    return hashlib.sha256(api_key.encode()).hexdigest()


class Vault:
    """Encrypts JSON credentials with a Fernet key derived from CALLWATCH_SECRET_KEY."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._mac_key = hashlib.sha256(b"callwatch fingerprint\0" + secret_key.encode()).digest()

    def fingerprint(self, value: str) -> str:
        """HMAC-SHA256 under a key derived from the secret key: the same value always gives the
        same fingerprint here, and without the key no one can test a guess against it."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, credentials: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise ValueError(
                "credentials cannot be decrypted: wrong CALLWATCH_SECRET_KEY"
            ) from None
        return value
