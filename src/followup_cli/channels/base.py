"""Channels are transports: one ``send(message) -> SendResult`` interface.

Outcomes:
    sent           the channel accepted the message (``message_id`` when it gives one)
    failed         permanent for this lead (error code kept); never retried
    unknown        nobody can know whether it went out (timeout after the request left,
                   connection reset): recorded, never resent blindly
    deferred       it surely did not go out and may be tried at a later run (throttled,
                   transient errors that outlived the retries, refused connections)
    account_fatal  the account cannot send at all (bad token, permissions, blocked): stop
                   the account for this run
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["sent", "failed", "unknown", "deferred", "account_fatal"]


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

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def close(self) -> None: ...
