"""Outcomes: what happened after a follow-up went out.

A response (an inbound message) or a conversion is attributed to the **last follow-up
sent before it** (its sequence, message and variant), within ``ATTRIBUTION_DAYS``; the
follow-up keeps the time (``responded_at`` / ``converted_at``) so response time and time
to conversion can be computed. Enrollments (holdout ones included, which get no
follow-up) keep the first response and the conversion after their silence started, so
the report can compare messaged leads with the control group.

Two sources feed it, and both are idempotent (a time is only ever replaced by an earlier
one, a status only moves forward):

* ``reconcile(store, config, now)``: the lead store's ``last_inbound_at`` and
  ``converted_at``, at the start of every live run (and of ``followup report``);
* ``events.py``: events from the host app or Instagram webhooks (``followup events ingest``).

Nothing later than ``now`` is recorded: a replay with ``--now`` sees the past as it was.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from .config import Config
from .models import CONVERTED, DELIVERED, READ, RESPONDED, SENT, parse_time
from .person_inbound import inbound_time
from .store.base import SqlStore, put_back, retried

ATTRIBUTION_DAYS = 30
ATTRIBUTION = timedelta(days=ATTRIBUTION_DAYS)
# How far back a reconcile looks: the attribution window plus a week of late data.
LOOKBACK = ATTRIBUTION + timedelta(days=7)
# Leads read and written per transaction while reconciling.
RECONCILE_CHUNK = 500

# Status moves: a later outcome never goes back to an earlier status.
PROMOTE = {
    "delivered_at": ((SENT,), DELIVERED),
    "read_at": ((SENT, DELIVERED), READ),
    "responded_at": ((SENT, DELIVERED, READ), RESPONDED),
    "converted_at": ((SENT, DELIVERED, READ, RESPONDED), CONVERTED),
}


@dataclass
class OutcomeCounts:
    """What one reconcile (or one ingest) changed."""

    responded: int = 0
    converted: int = 0
    delivered: int = 0
    read: int = 0
    enrollments_responded: int = 0
    enrollments_converted: int = 0
    leads_checked: int = 0
    bad_times: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def last_before(rows: Sequence[Mapping[str, Any]], at: datetime, key: str = "sent_at") -> Any:
    """The row with the latest ``key`` strictly before ``at`` and within the attribution
    window, or None. ``rows`` need not be sorted."""
    best = None
    for r in rows:
        t = r.get(key)
        if t is None or t >= at or at - t > ATTRIBUTION:
            continue
        if best is None or (t, r.get("id", 0)) > (best[key], best.get("id", 0)):
            best = r
    return best


def record_followup_outcome(
    store: SqlStore, row: Mapping[str, Any], column: str, at: datetime, now: datetime
) -> bool:
    promote_from, status = PROMOTE[column]
    return store.set_followup_outcome(row["id"], column, at, now, promote_from, status)


def attribute(
    store: SqlStore,
    followups: Sequence[Mapping[str, Any]],
    enrollments: Sequence[Mapping[str, Any]],
    column: str,
    at: datetime,
    now: datetime,
    counts: OutcomeCounts,
) -> Mapping[str, Any] | None:
    """Attribute a response (``responded_at``) or conversion (``converted_at``) at ``at`` to
    the last follow-up and the last enrollment before it; returns that follow-up."""
    target = last_before(followups, at)
    if (
        target is not None
        and _newer(target, column, at)
        and record_followup_outcome(store, target, column, at, now)
    ):
        if column == "responded_at":
            counts.responded += 1
        else:
            counts.converted += 1
    enrollment = last_before(enrollments, at, key="anchor_at")
    if (
        enrollment is not None
        and _newer(enrollment, column, at)
        and store.set_enrollment_outcome(
            enrollment["lead_id"], enrollment["sequence_id"], column, at
        )
    ):
        if column == "responded_at":
            counts.enrollments_responded += 1
        else:
            counts.enrollments_converted += 1
    return target


def _newer(row: Mapping[str, Any], column: str, at: datetime) -> bool:
    """Whether ``at`` would change the row (the store checks again, atomically)."""
    kept = row.get(column)
    return kept is None or kept > at


def _status_converted(lead: Mapping[str, Any]) -> bool:
    return str(lead.get("status") or "").lower() == "converted"


def _time(row: Mapping[str, Any], col: str, counts: OutcomeCounts) -> datetime | None:
    try:
        return parse_time(row.get(col))
    except (ValueError, TypeError):
        counts.bad_times.append(f"lead {row.get('id')}: {col}: not an ISO 8601 timestamp")
        return None


def reconcile(store: SqlStore, config: Config, now: datetime) -> OutcomeCounts:
    """Bring outcomes up to date from the lead store; safe to run any number of times.

    Incremental: only leads whose ``last_inbound_at`` / ``converted_at`` changed since the
    last reconcile, or whose follow-ups or enrollments changed (the database forgets the
    mark then), are read (``followup_outcome_marks`` keeps what was seen). A lead whose
    times are later than ``now`` (a replay) or unreadable gets no mark and is looked at
    again next time, unless it has no recent row to attribute anything to.
    """
    del config  # outcomes need only the lead store; the engine passes it for symmetry
    counts = OutcomeCounts()
    since = now - LOOKBACK
    changed = store.changed_outcome_leads(since)
    for start in range(0, len(changed), RECONCILE_CHUNK):
        chunk = changed[start : start + RECONCILE_CHUNK]
        ids = [str(r["lead_id"]) for r in chunk]
        by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
        enr_by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in store.outcome_followups(since=since, lead_ids=ids):
            by_lead[str(r["lead_id"])].append(r)
        for e in store.outcome_enrollments(since=since, lead_ids=ids):
            enr_by_lead[str(e["lead_id"])].append(e)
        leads = {str(lead["id"]): lead for lead in store.lead_rows(ids)}
        _persons_rows(store, leads, by_lead, enr_by_lead, since, now)
        work = partial(_reconcile_chunk, store, chunk, leads, by_lead, enr_by_lead, now, counts)
        settled_marks = retried(work, put_back(counts), "reconcile")
        # After the chunk's commit: a claim that forgets one of these marks (0011) never
        # waits for this transaction's locks on outcomes while this one waits for its mark
        # (a crash in between leaves the leads unmarked: looked at again, idempotent).
        store.save_outcome_marks(settled_marks, now)
    return counts


def _persons_rows(
    store: SqlStore,
    leads: Mapping[str, Mapping[str, Any]],
    by_lead: dict[str, list[dict[str, Any]]],
    enr_by_lead: dict[str, list[dict[str, Any]]],
    since: datetime,
    now: datetime,
) -> None:
    """A response recorded on a lead row the tool never wrote to (the host app holds the
    person under a newer lead id too) is the person's: for such a lead whose message is
    recent, the follow-ups and enrollments of its person under other rows (by person key)
    stand in for its own (``by_lead``, ``enr_by_lead``), so the follow-up it answers counts
    as answered. Only the response: a conversion stays the row's own."""
    keys: dict[str, str] = {}
    for lid, lead in leads.items():
        if by_lead.get(lid) or enr_by_lead.get(lid):
            continue
        at = inbound_time(lead.get("last_inbound_at"))
        if at is None or not since <= at <= now:
            continue
        account = lead.get("account_id")
        key = store.person_key(None if account is None else str(account), lead.get("recipient_id"))
        if key:
            keys[lid] = key
    if not keys:
        return
    wanted = sorted(set(keys.values()))
    fu: dict[str, list[dict[str, Any]]] = defaultdict(list)
    en: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.outcome_followups(since=since, lead_ids=wanted, by="person_key"):
        fu[r["person_key"]].append(r)
    for e in store.outcome_enrollments(since=since, lead_ids=wanted, by="person_key"):
        en[e["person_key"]].append(e)
    for lid, key in keys.items():
        if fu.get(key) or en.get(key):
            by_lead[lid] = [{**r, "person": True} for r in fu.get(key, ())]
            enr_by_lead[lid] = [{**e, "person": True} for e in en.get(key, ())]


def _reconcile_chunk(
    store: SqlStore,
    chunk: Sequence[Mapping[str, Any]],
    leads: Mapping[str, Mapping[str, Any]],
    by_lead: Mapping[str, list[dict[str, Any]]],
    enr_by_lead: Mapping[str, list[dict[str, Any]]],
    now: datetime,
    counts: OutcomeCounts,
) -> list[tuple[str, str | None, str | None]]:
    """One chunk's outcomes in one transaction (leads in id order, as ``changed_outcome_leads``
    gives them); returns the marks of the leads settled."""
    settled_marks: list[tuple[str, str | None, str | None]] = []
    with store.transaction():
        for mark in chunk:
            lid = str(mark["lead_id"])
            lead = leads.get(lid)
            if lead is None:
                continue
            fu, en = by_lead.get(lid, []), enr_by_lead.get(lid, [])
            if not fu and not en:
                # nothing recent to attribute to: marked whatever its times say (a new
                # row forgets the mark, migration 0011)
                settled_marks.append((lid, mark["inbound_seen"], mark["converted_seen"]))
                continue
            counts.leads_checked += 1
            settled = True
            for column, lead_column in (
                ("responded_at", "last_inbound_at"),
                ("converted_at", "converted_at"),
            ):
                bad = len(counts.bad_times)
                at = _time(lead, lead_column, counts)
                if column == "converted_at" and (fu or en) and (fu or en)[0].get("person"):
                    continue  # the person's rows stand in for the response only
                if at is None and column == "converted_at" and _status_converted(lead):
                    # converted by status alone: first seen now (a conversion time
                    # known only to within a run; the kept time never moves later)
                    at = now
                if at is not None and at <= now:
                    attribute(store, fu, en, column, at, now, counts)
                elif at is not None or len(counts.bad_times) > bad:
                    settled = False  # in the future of a replay, or unreadable
            if settled:
                settled_marks.append((lid, mark["inbound_seen"], mark["converted_seen"]))
    return settled_marks


def lead_outcome_rows(
    store: SqlStore, lead_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A lead's sent follow-ups and enrollments (every one of them, for events)."""
    return store.outcome_followups(lead_ids=[lead_id]), store.outcome_enrollments(
        lead_ids=[lead_id]
    )
