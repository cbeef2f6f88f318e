"""Personal data encrypted at rest when a key is configured.

``FOLLOWUP_ENCRYPTION_KEY`` holds one or more Fernet keys (``followup keygen`` prints one),
separated by commas or spaces; it is never stored. Every key is tried for reading, the first
one encrypts what is written. To change keys: put the new key first and the old one after
it, run ``followup keys rotate`` (everything is then written with the new key), and drop the
old key.

What is sealed: message bodies, recipient ids, conversation ids, error texts and the
platform's message ids (tracking rows' ``external_id``, events' ``message_id``) in the tool's
own tables. A sealed value is stored as ``enc1:<key id>:<Fernet token>``; the key id
is an HMAC of a fixed label under the key (it names the key without revealing anything of
it; ``followup keys status`` prints the ids of the keys in the environment). Fernet is
randomised, so nothing is looked up by a sealed value: lookups by person go through the
keyed ``person_key`` hash, lookups by message id and event de-duplication through
``suppress.lookup_token`` (the same secret; the event key itself is stored only hashed).

Without a key, message bodies are not stored at all: the tracking row keeps the sequence,
message (template) and variant ids and a keyed hash of the text (``hmac-sha256:…``), unless
``settings.store_bodies`` is true (then in clear). Recipient and conversation ids are then
stored as they are: the tool needs them to find a person again; so are message ids and
event keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

    from .config import LoadedConfig, Problem

KEY_ENV = "FOLLOWUP_ENCRYPTION_KEY"
SEALED_PREFIX = "enc1:"
DIGEST_PREFIX = "hmac-sha256:"
# A clear value that happens to start like a sealed one (a host's odd id) is stored behind
# this prefix, so that it is never taken for a sealed value (nor stops a run as unreadable).
CLEAR_PREFIX = "clr1:"
_RESERVED = (SEALED_PREFIX, CLEAR_PREFIX, DIGEST_PREFIX)
NOT_STORED = "(not stored)"
UNREADABLE = "<encrypted with a key FOLLOWUP_ENCRYPTION_KEY does not hold>"
NO_KEY = "<encrypted; FOLLOWUP_ENCRYPTION_KEY is not set>"
_KEY_ID_LABEL = b"followup encryption key id v1"
_SPLIT = re.compile(r"[\s,]+")


class UnreadableValue(ValueError):
    """A sealed value none of the configured keys opens (``key_id``: the key that sealed it,
    when the value names it)."""

    def __init__(self, key_id: str | None) -> None:
        super().__init__(key_id or "unknown key")
        self.key_id = key_id


def parse_keys(value: str | None) -> list[str]:
    """The keys of a ``FOLLOWUP_ENCRYPTION_KEY`` value: comma- or space-separated, in order,
    each once."""
    out: list[str] = []
    for k in _SPLIT.split(value or ""):
        if k and k not in out:
            out.append(k)
    return out


def key_id(key: str) -> str:
    """A short public name of a key: HMAC-SHA256 of a fixed label under the key."""
    raw = base64.urlsafe_b64decode(key.encode())
    return hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


def escape(text: str) -> str:
    """A clear value as stored: unchanged unless it starts with one of the prefixes."""
    return CLEAR_PREFIX + text if text.startswith(_RESERVED) else text


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def sealed_key_id(value: Any) -> str | None:
    """The id of the key that sealed ``value`` (None when it is not sealed)."""
    if not is_sealed(value):
        return None
    return value[len(SEALED_PREFIX) :].split(":", 1)[0]


class Cipher:
    """Seals and opens values with the keys of ``FOLLOWUP_ENCRYPTION_KEY`` (MultiFernet:
    every key reads, the first writes). Without keys it seals nothing."""

    def __init__(self, keys: str | Sequence[str] | None) -> None:
        items = parse_keys(keys) if isinstance(keys, str) or keys is None else list(keys)
        fernets: list[Fernet] = []
        ids: list[str] = []
        if items:  # cryptography is imported only when there is a key (~20 ms of start-up)
            from cryptography.fernet import Fernet, MultiFernet
        for i, k in enumerate(items, 1):
            try:
                fernets.append(Fernet(k.encode()))
                ids.append(key_id(k))
            except (ValueError, TypeError):
                which = f"key {i} of {len(items)}" if len(items) > 1 else "the key"
                raise ConfigError(
                    f"{KEY_ENV}: {which} is not a valid Fernet key; generate one with "
                    "`followup keygen` (several keys: separate them with commas)"
                ) from None
        self._multi: MultiFernet | None = MultiFernet(fernets) if fernets else None
        self._by_id = dict(zip(ids, fernets, strict=True))
        self.key_ids: tuple[str, ...] = tuple(ids)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Cipher:
        return cls((os.environ if env is None else env).get(KEY_ENV))

    @property
    def enabled(self) -> bool:
        return self._multi is not None

    @property
    def primary_id(self) -> str | None:
        return self.key_ids[0] if self.key_ids else None

    def seal(self, text: str | None) -> str | None:
        """``text`` sealed with the first key; without a key as it is (escaped, see
        CLEAR_PREFIX); None stays None."""
        if text is None:
            return None
        if self._multi is None:
            return escape(str(text))
        token = self._multi.encrypt(str(text).encode()).decode()
        return f"{SEALED_PREFIX}{self.key_ids[0]}:{token}"

    def open(self, stored: Any, encrypted: bool = False, strict: bool = False) -> Any:
        """The clear value of ``stored``: a sealed value opened, anything else as it is.
        ``encrypted``: a body of the first release (a bare Fernet token, flagged in
        ``body_encrypted``). A value no key opens is a placeholder, or with ``strict``
        raises UnreadableValue."""
        if not isinstance(stored, str):
            return stored
        if stored.startswith(CLEAR_PREFIX):
            return stored[len(CLEAR_PREFIX) :]
        kid: str | None = None
        if is_sealed(stored):
            kid, _, token = stored[len(SEALED_PREFIX) :].partition(":")
        elif encrypted:
            token = stored
        else:
            return stored
        if self._multi is None:
            if strict:
                raise UnreadableValue(kid)
            return NO_KEY
        from cryptography.fernet import InvalidToken

        try:
            fernet = self._by_id.get(kid) if kid else None
            return (fernet or self._multi).decrypt(token.encode()).decode()
        except InvalidToken:
            if strict:
                raise UnreadableValue(kid) from None
            return UNREADABLE

    def rotate(self, stored: Any, encrypted: bool = False) -> str | None:
        """``stored`` sealed with the first key (MultiFernet.rotate keeps the token's time),
        or None when it already is (or is not a value to seal). A clear value is sealed;
        a body digest stays what it is. Raises UnreadableValue when no key opens it."""
        if self._multi is None or not isinstance(stored, str):
            return None
        if stored.startswith(DIGEST_PREFIX) and not encrypted:
            return None
        if stored.startswith(CLEAR_PREFIX):
            return self.seal(stored[len(CLEAR_PREFIX) :])
        if is_sealed(stored):
            kid, _, token = stored[len(SEALED_PREFIX) :].partition(":")
            if kid == self.key_ids[0]:
                return None
        elif encrypted:
            kid, token = None, stored
        else:
            return self.seal(stored)
        from cryptography.fernet import InvalidToken

        try:
            new = self._multi.rotate(token.encode()).decode()
        except InvalidToken:
            raise UnreadableValue(kid) from None
        return f"{SEALED_PREFIX}{self.key_ids[0]}:{new}"

    def open_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Every sealed value of a row opened (a legacy body by its ``body_encrypted``)."""
        body = row.get("body")
        if row.get("body_encrypted") and isinstance(body, str) and not is_sealed(body):
            row["body"] = self.open(body, encrypted=True)
        for k, v in row.items():
            if isinstance(v, str) and v.startswith((SEALED_PREFIX, CLEAR_PREFIX)):
                row[k] = self.open(v)
        return row

    def seal_fields(self, fields: dict[str, Any], columns: Iterable[str]) -> bool:
        """Seal ``columns`` of ``fields`` in place (without a key: escape them); True when
        something was encrypted."""
        done = False
        for c in columns:
            v = fields.get(c)
            if isinstance(v, str):
                fields[c] = self.seal(v)
                done = done or self._multi is not None
        return done


# The first release's name.
BodyCipher = Cipher


def body_digest(secret: str | None, text: str) -> str:
    """What a tracking row keeps of a body that is not stored: a keyed hash of it (the
    person-key secret, so that a guessed text cannot be checked without the secret)."""
    key = (secret or "followup body digest").encode()
    return DIGEST_PREFIX + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def stored_body(
    cipher: Cipher, text: str, store_bodies: bool, secret: str | None
) -> tuple[str, bool]:
    """(value, sealed) a tracking row keeps of a message body: sealed with a key; without
    one, a keyed hash, or with ``settings.store_bodies`` the text in clear."""
    if cipher.enabled:
        return str(cipher.seal(text)), True
    if store_bodies:
        return escape(text), False
    return body_digest(secret, text), False


def show_body(stored: str | None) -> str:
    """A stored body for people: the text, or what stands in for it."""
    if stored is None:
        return NOT_STORED
    if stored.startswith(DIGEST_PREFIX):
        return f"{NOT_STORED} {stored[: len(DIGEST_PREFIX) + 12]}…"
    return stored


def storage_problems(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> list[Problem]:
    """For ``sequences check``: a key that is not a key (an error), or what is stored of
    message texts without one (one warning)."""
    from .config import Problem

    try:
        cipher = Cipher.from_env(env)
    except ConfigError as exc:
        return [Problem(None, "", str(exc), "error")]
    if cipher.enabled:
        return []
    if loaded.config.settings.store_bodies:
        return [
            Problem(
                loaded.line_of("settings", "store_bodies"),
                "settings.store_bodies",
                f"message texts are stored in clear: {KEY_ENV} is not set; set it "
                "(`followup keygen`) to store them encrypted",
                "warning",
            )
        ]
    return [
        Problem(
            None,
            "",
            f"{KEY_ENV} is not set: message texts are not stored (only their sequence, message "
            f"and variant ids and a hash); to store them encrypted set {KEY_ENV} "
            "(`followup keygen`)",
            "warning",
        )
    ]


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
