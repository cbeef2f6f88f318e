"""The person behind a lead row, as a keyed hash.

An Instagram-scoped id is per account, so a person is (account id, recipient id). The tool
records opt-outs and erasures of people, and tags its tracking rows and enrollments with the
person, as ``HMAC-SHA256(secret, account \\x1f recipient)``: a re-inserted lead row (a new
lead id for the same person) is recognised, while an erasure's record names nobody.

The secret: ``FOLLOWUP_SUPPRESSION_KEY`` when set (recommended: then the database alone cannot
tell whether a given recipient id was erased), else a random secret the first migration
stores in ``followup_meta``. Every suppression records the id of the key it was written with;
a run with another key is refused (exit 2) rather than silently forgetting erasures.

The same secret keys the other lookups of identifying values that are not stored in clear:
an erased event key (``erased_token``) and, with ``FOLLOWUP_ENCRYPTION_KEY`` set, the
platform's message ids and the event keys made of them (``lookup_token``; the ids themselves
are then sealed, see ``crypto.py``). One secret for every keyed hash, stable across
encryption-key rotations, so a lookup never depends on which Fernet key is first.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache

SUPPRESSION_KEY_ENV = "FOLLOWUP_SUPPRESSION_KEY"
MIN_KEY_CHARS = 16

LOOKUP_PREFIX = "hk1:"

OPTOUT = "optout"
ERASURE = "erasure"


def env_secret() -> str | None:
    """The secret from the environment, or None when the variable is unset or empty."""
    value = os.environ.get(SUPPRESSION_KEY_ENV, "").strip()
    return value or None


def person_key(secret: str, account_id: str | None, recipient_id: str) -> str:
    msg = f"person\x1f{account_id or ''}\x1f{recipient_id.strip()}".encode()
    h = _keyed(secret).copy()  # the same HMAC as hmac.new(secret, msg), keyed once a secret
    h.update(msg)
    return h.hexdigest()


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with ``secret``, no message yet: a run computes the person key
    of every lead it decides, and keying (hashing the padded key) was a third of each."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def key_id(secret: str) -> str:
    """A short public fingerprint of the secret (which key wrote a record)."""
    return hmac.new(secret.encode(), b"followup key id", hashlib.sha256).hexdigest()[:12]


def erased_token(secret: str, value: str) -> str:
    """What an erased identifier (an event key) becomes: stable, so a re-ingested event is
    still a duplicate, and meaningless without the secret."""
    return "erased:" + hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def lookup_token(secret: str, value: str) -> str:
    """What a platform id (a message id, an event key) is stored as for lookups when ids are
    sealed: ``hk1:`` and an HMAC-SHA256 of it under the person-key secret. Equal ids give
    equal tokens (a webhook finds its tracking row, a re-ingested event is a duplicate); a
    token tells nothing of the id without the secret."""
    msg = f"id\x1f{value}".encode()
    return LOOKUP_PREFIX + hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]
