"""The lead-store contract, in one place: the columns the tool reads from the host's lead
table, their SQL types on each store, what they mean, and which a table must have."""

from __future__ import annotations

from dataclasses import dataclass

# A lead table without one of these is refused (exit 2, naming it); the others are optional.
REQUIRED_LEAD_COLUMNS = ("id", "account_id", "recipient_id", "score", "last_outbound_at")


@dataclass(frozen=True)
class LeadColumn:
    name: str
    sqlite: str
    postgres: str
    meaning: str


# (name, SQLite type, Postgres type, meaning): the lead-store contract, in one place.
COLUMNS: tuple[LeadColumn, ...] = (
    LeadColumn("id", "TEXT PRIMARY KEY", "TEXT PRIMARY KEY", "lead id"),
    LeadColumn("account_id", "TEXT", "TEXT", "the Instagram account that owns the conversation"),
    LeadColumn("user_id", "TEXT", "TEXT", "owner in the host app"),
    LeadColumn("conversation_id", "TEXT", "TEXT", "the conversation"),
    LeadColumn("recipient_id", "TEXT", "TEXT", "Instagram-scoped id (IGSID) to message"),
    LeadColumn("username", "TEXT", "TEXT", "for templates"),
    LeadColumn("first_name", "TEXT", "TEXT", "for templates"),
    LeadColumn("score", "INTEGER", "INTEGER", "lead score; 2-6: qualified, not converted"),
    LeadColumn("status", "TEXT", "TEXT", "new, qualified, converted, lost, ..."),
    LeadColumn("last_inbound_at", "TEXT", "TIMESTAMPTZ", "last message from the lead"),
    LeadColumn("last_inbound_text", "TEXT", "TEXT", "its text, for opt-out keywords"),
    LeadColumn("last_outbound_at", "TEXT", "TIMESTAMPTZ", "last message to the lead, by anyone"),
    LeadColumn("converted_at", "TEXT", "TIMESTAMPTZ", "when the lead converted"),
    LeadColumn("timezone", "TEXT", "TEXT", "IANA zone, for quiet hours"),
    LeadColumn("attributes", "TEXT", "JSONB", "custom fields as a JSON object"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
OPTIONAL_LEAD_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in REQUIRED_LEAD_COLUMNS)
