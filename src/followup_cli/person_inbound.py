"""The person's latest inbound message, whatever lead row of the host app carries it.

PRODUCT.md: "Safety is about the person, not the row": a host app may hold one person (an
account's recipient id) under several lead ids, and record the person's message on any of
them. A lead row's silence is the person's: its ``last_inbound_at`` is, for the rules, the
latest over every lead row of the same (account, recipient id), and ``inbound_lead_id``
names the row that carries it when that is another row. The gates then apply unchanged:
a message after the silence start ends the enrollment (``replied``), a person who spoke
last waits for a human, the messaging window counts from the person's last message.

The inbound *text* stays the row's own: an opt-out keyword under another row is that row's
own candidacy (the candidate query keeps any row whose text may hold one), recorded as the
person's opt-out before the account sends anything, and checked again at every claim.

Where it is read:

* planning: ``PersonRows.load`` once per account that has candidates (one query over the
  account's rows: the persons with more than one row, and those rows' inbound times), then
  ``apply`` to each candidate before it is decided;
* the claim (and bookkeeping): the other rows the plan found (``Lead.other_rows``) read
  again by id inside the claim transaction (``from_rows``), so a reply under another row
  since the plan stops the send; the attempt reads them again (``inbound_snapshot``): one
  since the claim releases it, to be decided again. A lead row the host creates for the
  person after the plan is seen by the next run;
* ``explain``: the rows of the lead's person (``for_recipient``).

A row without a usable recipient id is nobody's; a time that is no time (or out of the
years 1900-2999) is ignored: one bad row never stops the run or hides a good one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .models import LEAD_TIME_MAX, LEAD_TIME_MIN, Lead, parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import SqlStore


@dataclass(frozen=True)
class RowInbound:
    """One lead row of a person: its id and its last inbound time (None: none, or garbage)."""

    lead_id: str
    at: datetime | None


def inbound_time(value: Any) -> datetime | None:
    """A lead row's ``last_inbound_at`` as the rules read it, or None when it is none or
    garbage (that row is named by the run when it is a candidate itself)."""
    try:
        dt = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if dt is None or not (LEAD_TIME_MIN <= dt < LEAD_TIME_MAX):
        return None
    return dt


def recipient_key(value: Any) -> str | None:
    """The person a row names within its account: its recipient id, stripped; None when
    blank (an erased or broken row is nobody)."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    text = str(value).strip()
    return text or None


def merged(lead: Lead, others: Sequence[RowInbound]) -> Lead:
    """``lead`` with the person's other rows (``others``, this row left out) noted, and their
    latest inbound time as its own when that is later than the row's."""
    others = [o for o in others if o.lead_id != lead.id]
    if not others:
        return lead if not lead.other_rows else replace(lead, other_rows=(), inbound_lead_id=None)
    ids = tuple(sorted({o.lead_id for o in others}))
    latest = max(
        (o for o in others if o.at is not None),
        key=lambda o: (o.at, o.lead_id),
        default=None,
    )
    if latest is not None and (lead.last_inbound_at is None or latest.at > lead.last_inbound_at):
        return replace(
            lead, last_inbound_at=latest.at, inbound_lead_id=latest.lead_id, other_rows=ids
        )
    return replace(lead, other_rows=ids, inbound_lead_id=None)


def from_rows(lead: Lead, rows: Iterable[Mapping[str, Any]]) -> Lead:
    """``lead`` (freshly read) merged with those of ``rows`` (lead-table rows) that are the
    same person: the same account and recipient id as the lead has now."""
    me = recipient_key(lead.recipient_id)
    others = [
        RowInbound(str(r["id"]), inbound_time(r.get("last_inbound_at")))
        for r in rows
        if r.get("id") is not None
        and str(r["id"]) != lead.id
        and me is not None
        and recipient_key(r.get("recipient_id")) == me
        and (None if r.get("account_id") is None else str(r["account_id"])) == lead.account_id
    ]
    return merged(lead, others)


def inbound_snapshot(rows: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """What of the person's other rows a claim compares at its attempt: (id, last inbound
    as stored), in id order."""
    return tuple(sorted((str(r["id"]), r.get("last_inbound_at")) for r in rows))


class PersonRows:
    """An account's persons held by more than one lead row: recipient id -> their rows."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self.by_recipient: dict[str, list[RowInbound]] = {}
        for r in rows:
            key = recipient_key(r.get("recipient_id"))
            if key is None or r.get("id") is None:
                continue
            self.by_recipient.setdefault(key, []).append(
                RowInbound(str(r["id"]), inbound_time(r.get("last_inbound_at")))
            )

    @classmethod
    def load(cls, store: SqlStore, account_id: str) -> PersonRows:
        return cls(store.person_rows(account_id))

    @classmethod
    def for_recipient(cls, store: SqlStore, account_id: str | None, recipient: str) -> PersonRows:
        return cls(store.person_rows(account_id, recipient))

    def apply(self, lead: Lead) -> Lead:
        if not self.by_recipient:
            return lead
        rows = self.by_recipient.get(lead.recipient_id)
        return merged(lead, rows) if rows else lead

    def apply_all(self, leads: list[Lead]) -> list[Lead]:
        if not self.by_recipient:
            return leads
        return [self.apply(lead) for lead in leads]
