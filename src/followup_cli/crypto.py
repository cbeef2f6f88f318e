"""Message bodies encrypted at rest when a key is configured.

The key is a Fernet key (``followup keygen`` prints one) in the environment variable
``FOLLOWUP_ENCRYPTION_KEY``; it is never stored. Without a key bodies are stored as text.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigError

KEY_ENV = "FOLLOWUP_ENCRYPTION_KEY"


class BodyCipher:
    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode())
            except (ValueError, TypeError):
                raise ConfigError(
                    f"{KEY_ENV} is not a valid Fernet key; generate one with `followup keygen`"
                ) from None

    @classmethod
    def from_env(cls) -> BodyCipher:
        return cls(os.environ.get(KEY_ENV))

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, text: str | None) -> tuple[str | None, bool]:
        if text is None or self._fernet is None:
            return text, False
        return self._fernet.encrypt(text.encode()).decode(), True

    def open(self, stored: str | None, encrypted: bool) -> str | None:
        if stored is None or not encrypted:
            return stored
        if self._fernet is None:
            return "<encrypted>"
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            return "<encrypted with another key>"


def new_key() -> str:
    return Fernet.generate_key().decode()
