"""What the store's modules share: the tool's column lists, what is sealed or redacted,
and small row helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..models import FollowupRecord
from ..redact import redact

BAD_LEADS_NOTED = 1000  # bad rows remembered per run; beyond it they are always reported

TS_COLUMNS = {
    "started_at",
    "heartbeat_at",
    "finished_at",
    "business_now",
    "anchor_at",
    "ended_at",
    "scheduled_at",
    "claimed_at",
    "attempted_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "responded_at",
    "converted_at",
    "last_followup_at",
    "next_followup_at",
    "updated_at",
    "created_at",
    "at",
    "first_seen_at",
}
TRACKING_COLUMNS = (
    "lead_id",
    "sequence_id",
    "message_id",
    "step",
    "variant_id",
    "account_id",
    "user_id",
    "conversation_id",
    "recipient_id",
    "status",
    "reason",
    "followup_number",
    "scheduled_at",
    "claimed_at",
    "sent_at",
    "last_followup_at",
    "next_followup_at",
    "error_code",
    "error_subcode",
    "error_message",
    "external_id",
    "body",
    "body_encrypted",
    "run_id",
    "attempts",
    "updated_at",
    "person_key",
    "external_key",
    "attempted_at",
)
# Tracking columns sealed with FOLLOWUP_ENCRYPTION_KEY when it is set (the body is sealed by
# the engine, which also decides whether it is stored at all; see crypto.py). The platform's
# message id (``external_id``) is sealed too; ``external_key`` then holds its keyed hash
# (``suppress.lookup_token``), by which a webhook naming the message finds the row.
SEALED_TRACKING = ("recipient_id", "conversation_id", "error_message", "external_id")
# followup_events columns sealed with a key (``event_key`` is then a keyed hash instead).
SEALED_EVENTS = ("message_id",)
# The predicate of the partial index followup_tracking_open, repeated word for word in the
# queries that want it: SQLite uses a partial index only when the query's WHERE contains its
# predicate (``status = 'pending'`` alone does not imply ``status IN (...)`` for SQLite).
OPEN_STATUSES = "status IN ('pending', 'unknown')"


# Columns that may hold a text from outside (an API's error, an exception's text): what is
# written there passes the redaction step first (``redact.py``).
FREE_TEXT_COLUMNS = frozenset({"error_message", "reason", "detail", "summary", "ended_reason"})


def _redact_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if not any(k in FREE_TEXT_COLUMNS and isinstance(v, str) for k, v in fields.items()):
        return fields
    return {
        k: redact(v) if k in FREE_TEXT_COLUMNS and isinstance(v, str) else v
        for k, v in fields.items()
    }


def _followup_record(r: dict[str, Any]) -> FollowupRecord:
    return FollowupRecord(
        sequence_id=r["sequence_id"],
        message_id=r["message_id"],
        status=r["status"],
        at=r["sent_at"] or r["claimed_at"],
        variant_id=r["variant_id"],
        reason=r["reason"],
    )


class _Rollback(Exception):
    """Ends a scratch transaction."""


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
