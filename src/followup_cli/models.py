"""Plain data the engine passes around: leads as read from the lead store, and the tool's
own tracking state for one lead. Parsing a lead row never raises anything but ``BadLead``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Tracking statuses. ``pending`` is a committed claim whose send has not finished;
# ``unknown`` is a send whose outcome nobody can know (killed mid-call, timed out after
# the request left). Both occupy their step forever unless an operator releases them.
PENDING = "pending"
SENT = "sent"
DELIVERED = "delivered"
READ = "read"
RESPONDED = "responded"
CONVERTED = "converted"
FAILED = "failed"
UNKNOWN = "unknown"
SKIPPED = "skipped"
# Statuses that count as a follow-up the lead (may have) received: caps, intervals, rate limits.
COUNTED = (PENDING, SENT, DELIVERED, READ, RESPONDED, CONVERTED, UNKNOWN)


class BadLead(Exception):
    """A lead row that cannot be used; the run skips it with a counted, named warning."""

    def __init__(self, lead_id: str, column: str, what: str) -> None:
        super().__init__(f"lead {lead_id}: {column}: {what}")
        self.lead_id = lead_id
        self.column = column
        self.what = what


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text (UTC when no offset is given) or a datetime -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_time(dt: datetime | None) -> str | None:
    """The one text form of a time in the tool's own SQLite tables: sortable UTC ISO 8601."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Lead:
    id: str
    account_id: str | None
    recipient_id: str
    user_id: str | None = None
    conversation_id: str | None = None
    username: str | None = None
    first_name: str | None = None
    score: int | None = None
    status: str | None = None
    last_inbound_at: datetime | None = None
    last_inbound_text: str | None = None
    last_outbound_at: datetime | None = None
    converted_at: datetime | None = None
    timezone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """What templates see as ``lead``."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "recipient_id": self.recipient_id,
            "username": self.username,
            "first_name": self.first_name,
            "score": self.score,
            "status": self.status,
            "last_inbound_at": self.last_inbound_at,
            "last_inbound_text": self.last_inbound_text,
            "last_outbound_at": self.last_outbound_at,
            "converted_at": self.converted_at,
            "timezone": self.timezone,
            "attributes": dict(self.attributes),
        }

    def value(self, path: str) -> Any:
        """A column or ``attributes.<key>`` (dots go deeper) for trigger conditions."""
        if path.startswith("attributes."):
            cur: Any = self.attributes
            for part in path.split(".")[1:]:
                if not isinstance(cur, Mapping) or part not in cur:
                    return None
                cur = cur[part]
            return cur
        return getattr(self, path, None)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return str(v)


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _parse_attributes(lead_id: str, raw: Any) -> dict[str, Any]:
    """The attributes column -> dict. It holds a JSON object: as text (SQLite TEXT) or
    already decoded by the driver (Postgres JSONB). Valid JSON that is not an object is
    named for what it is, not called invalid JSON."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise BadLead(lead_id, "attributes", "not valid JSON (not UTF-8 text)") from None
    if isinstance(raw, str):
        text = raw.strip()
        try:
            value = json.loads(text)
        except ValueError as exc:
            if text.startswith(("{", "[")):
                raise BadLead(lead_id, "attributes", f"not valid JSON: {exc}") from None
            # Either text that is not JSON at all, or a JSON string a JSONB driver decoded.
            raise BadLead(
                lead_id, "attributes", "must be a JSON object ({...}), got a string"
            ) from None
    else:
        value = raw  # a JSON value the driver already decoded (list, number, boolean)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadLead(
            lead_id, "attributes", f"must be a JSON object ({{...}}), got {_json_kind(value)}"
        )
    return value


def parse_lead(row: Mapping[str, Any]) -> Lead:
    """A lead-store row -> Lead; raises BadLead naming the column and the problem."""
    lead_id = _text(row.get("id"))
    if not lead_id:
        raise BadLead("?", "id", "missing lead id")
    recipient = _text(row.get("recipient_id"))
    if not recipient or not recipient.strip():
        raise BadLead(
            lead_id, "recipient_id", "missing recipient (IGSID); the lead cannot be messaged"
        )
    times: dict[str, datetime | None] = {}
    for col in ("last_inbound_at", "last_outbound_at", "converted_at"):
        try:
            times[col] = parse_time(row.get(col))
        except (ValueError, TypeError):
            raise BadLead(lead_id, col, f"not an ISO 8601 timestamp: {row.get(col)!r}") from None
    score_raw = row.get("score")
    score: int | None
    if score_raw is None or score_raw == "":
        score = None
    else:
        try:
            score = int(score_raw)
            if isinstance(score_raw, float) and score_raw != score:
                raise ValueError
        except (ValueError, TypeError):
            raise BadLead(lead_id, "score", f"not an integer: {score_raw!r}") from None
    attrs = _parse_attributes(lead_id, row.get("attributes"))
    tz = _text(row.get("timezone"))
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadLead(lead_id, "timezone", f"unknown IANA time zone {tz!r}") from None
    return Lead(
        id=lead_id,
        account_id=_text(row.get("account_id")),
        recipient_id=recipient.strip(),
        user_id=_text(row.get("user_id")),
        conversation_id=_text(row.get("conversation_id")),
        username=_text(row.get("username")),
        first_name=_text(row.get("first_name")),
        score=score,
        status=_text(row.get("status")),
        last_inbound_at=times["last_inbound_at"],
        last_inbound_text=_text(row.get("last_inbound_text")),
        last_outbound_at=times["last_outbound_at"],
        converted_at=times["converted_at"],
        timezone=tz or None,
        attributes=attrs,
    )


@dataclass(frozen=True)
class FollowupRecord:
    """One tracking row, as the decision function needs it."""

    sequence_id: str
    message_id: str
    status: str
    at: datetime  # sent_at when known, else claimed_at
    variant_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class EnrollmentRecord:
    sequence_id: str
    anchor_at: datetime
    started_at: datetime
    ended_at: datetime | None = None
    ended_reason: str | None = None
    holdout: bool = False


@dataclass(frozen=True)
class PersonEnrollment:
    """An enrollment of the same person under another lead row."""

    lead_id: str
    sequence_id: str
    ended_at: datetime | None = None
    gone: bool = False  # that lead row is no longer in the lead table (the host re-imported)


@dataclass(frozen=True)
class LeadState:
    """Everything the tool itself knows about one lead, and about the person behind it:
    ``person_followups`` / ``person_enrollments`` come from the person's *other* lead rows
    (same account and recipient), ``suppression`` is the person's opt-out or erasure."""

    followups: tuple[FollowupRecord, ...] = ()
    enrollments: tuple[EnrollmentRecord, ...] = ()
    optout_reason: str | None = None
    opted_out: bool = False
    suppression: str | None = None  # "optout" | "erasure" recorded for the person
    suppression_reason: str | None = None
    person_followups: tuple[FollowupRecord, ...] = ()
    person_enrollments: tuple[PersonEnrollment, ...] = ()

    def active_enrollment(self) -> EnrollmentRecord | None:
        active = [e for e in self.enrollments if e.ended_at is None]
        return max(active, key=lambda e: e.started_at) if active else None

    def counted(self, sequence_id: str | None = None) -> list[FollowupRecord]:
        """Follow-ups the person (may have) received, under this lead row or another."""
        return [
            f
            for f in self.followups + self.person_followups
            if f.status in COUNTED and (sequence_id is None or f.sequence_id == sequence_id)
        ]
