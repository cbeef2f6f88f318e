"""Channels are transports: one ``send(message) -> SendResult`` interface.

Outcomes:
    sent           the channel accepted the message (``message_id`` when it gives one)
    failed         permanent for this lead (error code kept); never retried
    unknown        nobody can know whether it went out (timeout after the request left,
                   connection reset): recorded, never resent blindly
    cancelled      not sent because ``still_wanted()`` said no before an attempt (the lead
                   opted out while the send waited): nothing went out
    deferred       it surely did not go out and may be tried at a later run (throttled,
                   transient errors that outlived the retries, refused connections)
    account_fatal  the account cannot send at all (bad token, permissions, blocked): stop
                   the account for this run
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..redact import redact

Outcome = Literal["sent", "failed", "unknown", "deferred", "account_fatal", "cancelled"]


@dataclass(frozen=True)
class OutgoingMessage:
    account_id: str
    recipient_id: str
    text: str | None
    media_type: str | None = None  # image | video
    media_url: str | None = None
    ig_user_id: str | None = None
    token_env: str | None = None
    lead_id: str = ""
    username: str | None = None
    sequence_id: str = ""
    message_id: str = ""
    variant_id: str | None = None
    idempotency_key: str = ""
    # Asked before every attempt (retries included): False cancels the send. How an opt-out
    # that lands while a send waits for Retry-After stops it.
    still_wanted: Callable[[], bool] | None = field(default=None, compare=False, repr=False)

    def wanted(self) -> bool:
        return self.still_wanted is None or self.still_wanted()


def idempotency_key(account_id: str, lead_id: str, sequence_id: str, message_id: str) -> str:
    """One key per (account, lead, sequence, message): the never-twice key, the same on
    every retry, host and database, so a receiver can drop a duplicate delivery."""
    raw = "\x1f".join((account_id, lead_id, sequence_id, message_id))
    return "fu-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message_id: str | None = None
    error_code: int | None = None
    error_subcode: int | None = None
    error_message: str | None = None
    http_status: int | None = None
    retry_after: float | None = None
    attempts: int = 1
    kind: str = ""  # the error class from the error table, for summaries

    def __post_init__(self) -> None:
        # The choke point between a channel and everything that stores, logs or prints its
        # answer: an API error text that quotes a token or a secret is redacted here.
        if self.error_message:
            object.__setattr__(self, "error_message", redact(self.error_message))

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def close(self) -> None: ...
