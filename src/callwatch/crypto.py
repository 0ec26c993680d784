"""Secrets at rest: hashed API keys and provider credentials encrypted with the secret key."""

import base64
import hashlib
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
