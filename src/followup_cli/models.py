"""Plain data the engine passes around: leads as read from the lead store, and the tool's
own tracking state for one lead. Parsing a lead row never raises anything but ``BadLead``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
        super().__init__(f"lead {printable(lead_id, 200)}: {column}: {what}")
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
    if dt.tzinfo is None:  # local time: as the process's zone says now (not cached)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _format_time(dt)


# A run writes the same few instants (its ``now``, a lead's times) into many rows and audit
# hashes; strftime costs ~4 us a call. Equal aware datetimes are the same instant, so they
# format the same.
@lru_cache(maxsize=4096)
def _format_time(dt: datetime) -> str:
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
    # The person's other lead rows (same account and recipient id), as the run found them
    # (``person_inbound``), and the one whose inbound message is ``last_inbound_at`` when it
    # is later than this row's own: the silence is the person's, not the row's. Not columns.
    other_rows: tuple[str, ...] = ()
    inbound_lead_id: str | None = None

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


# What a lead row may hold. Outside these bounds a value is garbage (a "never" sentinel
# such as 9999-12-31 or Go's zero time, a runaway text): the lead is skipped, named, and
# every date the rules compute from it (silence + delay, window, hand-off) stays in range.
LEAD_TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
LEAD_TIME_MAX = datetime(3000, 1, 1, tzinfo=UTC)
SCORE_LIMIT = 2**63  # |score| below it: a BIGINT, and a number templates can print
MAX_ID_CHARS = 1000  # ids, names, status, time zone
MAX_TEXT_CHARS = 1_000_000  # last_inbound_text, attributes (as JSON text)
# Times Postgres holds and Python cannot (read back as their text): infinity, BC, year 10000+
_BEYOND_PYTHON = re.compile(r"\s*([+-]?infinity|\d{5,}-|.*\bBC\s*$)", re.IGNORECASE)
ID_COLUMNS = ("id", "account_id", "recipient_id", "user_id", "conversation_id")
_BYTES = (bytes, bytearray, memoryview)


def printable(value: Any, limit: int = 80) -> str:
    """A value as it can be named in one line of a warning: escaped (undecodable bytes
    and control characters included), and cut to ``limit`` characters."""
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utf8(lead_id: str, column: str, value: str) -> str:
    """A text column's value; text that was not valid UTF-8 in the database arrives with
    surrogate escapes (see the stores) and is named here."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadLead(lead_id, column, "not UTF-8 text (undecodable bytes)") from None
    return value


def _column_text(lead_id: str, column: str, v: Any, limit: int = MAX_ID_CHARS) -> str | None:
    """A text (or, for ids, integer) column -> str; BadLead for blobs that are not UTF-8,
    floats in an id, undecodable text and runaway lengths."""
    if v is None:
        return None
    if type(v) is str and len(v) <= limit and v.isascii() and "\x00" not in v:
        return v  # what the checks below let through unchanged (ASCII is UTF-8)
    if isinstance(v, _BYTES):
        if column == "id":  # a blob never compares equal to the text the tool keeps
            raise BadLead(lead_id, column, f"a blob, not text: {printable(bytes(v))}")
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise BadLead(lead_id, column, "not UTF-8 text (a blob of other bytes)") from None
    elif isinstance(v, UUID) and column in ID_COLUMNS:
        return str(v)  # a uuid key (Postgres): compared as its text, as an integer one
    elif isinstance(v, bool) or (column in ID_COLUMNS and not isinstance(v, str | int)):
        raise BadLead(lead_id, column, f"not text: {printable(v)}")
    text = _utf8(lead_id, column, v if isinstance(v, str) else str(v))
    if len(text) > limit:
        raise BadLead(lead_id, column, f"too long ({len(text)} characters; at most {limit})")
    if "\x00" in text:
        # SQLite keeps one (Postgres text cannot): it would be sent, or sent to, as it is
        raise BadLead(lead_id, column, f"holds a NUL character: {printable(text)}")
    return text


def _lead_time(lead_id: str, column: str, value: Any) -> datetime | None:
    try:
        dt = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        beyond = isinstance(value, str) and _BEYOND_PYTHON.match(value)
        what = "out of range" if beyond else "not an ISO 8601 timestamp"
        raise BadLead(lead_id, column, f"{what}: {printable(value)}") from None
    if dt is not None and not (LEAD_TIME_MIN <= dt < LEAD_TIME_MAX):
        raise BadLead(
            lead_id,
            column,
            f"out of range: {printable(value)} (a time in the years 1900-2999, or NULL)",
        )
    return dt


def _score(lead_id: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError
        if isinstance(raw, str):
            raw = raw.strip()
            score = int(raw)  # "4"; not "4.0", "four" or a 5000-digit number
        else:
            score = int(raw)  # int, integral float or Decimal; NaN and inf raise
            if score != raw:
                raise ValueError
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        raise BadLead(lead_id, "score", f"not an integer: {printable(raw)}") from None
    if not -SCORE_LIMIT < score < SCORE_LIMIT:
        raise BadLead(lead_id, "score", f"out of range: {printable(raw)}")
    return score


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
    if type(raw) is not str:  # text (SQLite) is neither of these
        if isinstance(raw, Mapping):
            return dict(raw)
        if isinstance(raw, _BYTES):
            try:
                raw = bytes(raw).decode()
            except UnicodeDecodeError:
                raise BadLead(lead_id, "attributes", "not valid JSON (not UTF-8 text)") from None
    if isinstance(raw, str):
        if not raw.isascii():
            _utf8(lead_id, "attributes", raw)
        if len(raw) > MAX_TEXT_CHARS:
            raise BadLead(
                lead_id, "attributes", f"too long ({len(raw)} characters; at most {MAX_TEXT_CHARS})"
            )
        text = raw.strip()
        try:
            value = json.loads(text)
        except RecursionError:
            raise BadLead(lead_id, "attributes", "JSON nested too deeply") from None
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
    if isinstance(raw, str) and "\\u0000" in raw and _holds_nul(value):
        # a template would send it as it is (Postgres jsonb refuses one; json and SQLite keep it)
        raise BadLead(lead_id, "attributes", "a value holds a NUL character (\\u0000)")
    return value


def _holds_nul(value: Any, depth: int = 0) -> bool:
    """A decoded JSON value with a NUL character in a string (a key or a value)."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 100:
        return False
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v, depth + 1) for v in value)
    return False


def parse_lead(row: Mapping[str, Any]) -> Lead:
    """A lead-store row -> Lead; raises BadLead naming the column and the problem.

    The columns are checked in a fixed order (the id, the other ids, the texts, then the
    recipient, the times, the score, the attributes and the time zone): a row with several
    bad values is named for the first."""
    get = row.get
    raw_id = get("id")
    if raw_id is None or raw_id == "":
        raise BadLead("?", "id", "missing lead id")
    if (
        type(raw_id) is str
        and len(raw_id) <= MAX_ID_CHARS
        and raw_id.isascii()
        and "\x00" not in raw_id
    ):
        lead_id = raw_id  # what _column_text gives back at once
    else:
        named = printable(raw_id, MAX_ID_CHARS) if isinstance(raw_id, str) else printable(raw_id)
        checked = _column_text(named, "id", raw_id)
        assert checked is not None
        lead_id = checked
    account_id = _column_text(lead_id, "account_id", get("account_id"))
    recipient = _column_text(lead_id, "recipient_id", get("recipient_id"))
    user_id = _column_text(lead_id, "user_id", get("user_id"))
    conversation_id = _column_text(lead_id, "conversation_id", get("conversation_id"))
    username = _column_text(lead_id, "username", get("username"))
    first_name = _column_text(lead_id, "first_name", get("first_name"))
    status = _column_text(lead_id, "status", get("status"))
    tz = _column_text(lead_id, "timezone", get("timezone"))
    inbound_text = _column_text(
        lead_id, "last_inbound_text", get("last_inbound_text"), MAX_TEXT_CHARS
    )
    if not recipient or not recipient.strip():
        raise BadLead(
            lead_id, "recipient_id", "missing recipient (IGSID); the lead cannot be messaged"
        )
    last_inbound_at = _lead_time(lead_id, "last_inbound_at", get("last_inbound_at"))
    last_outbound_at = _lead_time(lead_id, "last_outbound_at", get("last_outbound_at"))
    converted_at = _lead_time(lead_id, "converted_at", get("converted_at"))
    score = _score(lead_id, get("score"))
    attrs = _parse_attributes(lead_id, get("attributes"))
    if tz and not _known_zone(tz):
        raise BadLead(lead_id, "timezone", f"unknown IANA time zone {printable(tz)}")
    return Lead(
        id=lead_id,
        account_id=account_id,
        recipient_id=recipient.strip(),
        user_id=user_id,
        conversation_id=conversation_id,
        username=username,
        first_name=first_name,
        score=score,
        status=status,
        last_inbound_at=last_inbound_at,
        last_inbound_text=inbound_text,
        last_outbound_at=last_outbound_at,
        converted_at=converted_at,
        timezone=tz or None,
        attributes=attrs,
    )


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    """An IANA time zone this machine knows (each name looked up once a process)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


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
        if not self.enrollments:
            return None
        active = [e for e in self.enrollments if e.ended_at is None]
        return max(active, key=lambda e: e.started_at) if active else None

    def counted(self, sequence_id: str | None = None) -> list[FollowupRecord]:
        """Follow-ups the person (may have) received, under this lead row or another."""
        if not self.followups and not self.person_followups:
            return []
        return [
            f
            for f in self.followups + self.person_followups
            if f.status in COUNTED and (sequence_id is None or f.sequence_id == sequence_id)
        ]
