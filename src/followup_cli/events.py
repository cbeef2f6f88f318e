"""``followup events ingest``: outcome events from the host app or from Instagram webhooks.

Two input shapes (the host app's JSON lines, Instagram webhook payloads), read into
``Event`` rows by ``eventparse.py``.

Every event gets a unique key (the platform message id, or a digest of the event), kept in
``followup_events``: re-ingesting the same events changes nothing. With
``FOLLOWUP_ENCRYPTION_KEY`` set, the store keeps no platform id in clear: the event key is
stored as a keyed hash (``suppress.lookup_token``; a key made of a message id, or of the
sender and time, would name the conversation), the event's message id sealed, and a message
id finds its tracking row by the same hash (``SqlStore.followup_by_external_id``). Keys
stored in clear before a key was set still count as seen (``SqlStore.insert_event``) until
``followup keys rotate`` hashes them. Outcomes go through
``outcomes.py`` (attributed to the last follow-up before them). A reply ends the lead's
active enrollment, a conversion too; ``opted_out`` and a reply with an opt-out keyword
add an opt-out, end the enrollment and are audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from .config import Config
from .eventparse import Event, IngestResult, parse
from .outcomes import OutcomeCounts, attribute, last_before, lead_outcome_rows
from .outcomes import record_followup_outcome as record
from .rules import keyword_optout
from .store.base import SqlStore, put_back, retried

# -------------------------------------------------------------------- applying


def ingest(
    store: SqlStore,
    config: Config,
    text: str,
    name: str,
    now: datetime,
    who: str,
    future_tolerance: timedelta = timedelta(0),
) -> IngestResult:
    """Parse an input text and apply its new events; returns what changed. Problems
    (documents that are not events) are listed in the result; the rest is applied, except
    events dated after ``now`` (+ ``future_tolerance`` for clock skew), which are left out
    and counted (``after_now``)."""
    result = IngestResult()
    events = parse(text, name, config, result)
    return apply_events(store, config, events, now, who, result, future_tolerance)


def apply_events(
    store: SqlStore,
    config: Config,
    events: Iterable[Event],
    now: datetime,
    who: str,
    result: IngestResult,
    future_tolerance: timedelta = timedelta(0),
) -> IngestResult:
    for ev in events:
        result.events += 1
        if ev.at > now + future_tolerance:
            # Not yet, as far as this run knows (a replay with --now, or a clock ahead):
            # not recorded, so ingesting it again once its time has come applies it.
            result.after_now += 1
            continue
        # one transaction an event, run again if the database aborts it for a conflict
        # with another writer (rolled back whole; the counts put back)
        retried(
            partial(_apply_event, store, config, ev, now, who, result),
            put_back(result),
            "events ingest",
        )
    return result


def _apply_event(
    store: SqlStore, config: Config, ev: Event, now: datetime, who: str, result: IngestResult
) -> None:
    """One event in one transaction, its audit rows written last (``SqlStore.audits_last``)."""
    with store.transaction(), store.audits_last():
        lead_id, row = _resolve(store, ev)
        if _erased(store, ev, lead_id):
            # Nothing of an erased person is stored again (not even the event's key).
            result.ignored["erased_person"] += 1
            return
        event_id = store.insert_event(
            {
                "event_key": ev.key,
                "type": ev.type,
                "source": ev.source,
                "lead_id": lead_id,
                "account_id": ev.account_id or (row or {}).get("account_id"),
                "message_id": ev.message_id,
                "at": ev.at,
                "outcome": "pending",
                "detail": json.dumps({"where": ev.where}) if ev.where else None,
                "ingested_at": now,
            }
        )
        if event_id is None:
            result.duplicates += 1
            return
        result.new += 1
        if lead_id is None:
            outcome = "unmatched"
            result.unmatched += 1
        else:
            changed = _apply(store, config, ev, lead_id, row, now, who, result)
            outcome = "applied" if changed else "no_change"
            if changed:
                result.applied[ev.type] += 1
            else:
                result.no_change += 1
        store.set_event_outcome(event_id, outcome)


def _erased(store: SqlStore, ev: Event, lead_id: str | None) -> bool:
    """Whether the event is about a person who was erased (by lead, or by recipient id)."""
    if lead_id is not None and store.is_erased(lead_id):
        return True
    if ev.recipient_id:
        row = store.suppression(store.person_key(ev.account_id, ev.recipient_id))
        return row is not None and row["kind"] == "erasure"
    return False


def _resolve(store: SqlStore, ev: Event) -> tuple[str | None, dict[str, Any] | None]:
    """The event's lead, and the follow-up its message id names (if any)."""
    row = store.followup_by_external_id(ev.message_id) if ev.message_id else None
    if ev.lead_id:
        return ev.lead_id, row if row is None or row["lead_id"] == ev.lead_id else None
    if row is not None:
        return str(row["lead_id"]), row
    if ev.recipient_id:
        return store.lead_for_recipient(ev.recipient_id, ev.account_id), None
    return None, None


def _apply(
    store: SqlStore,
    config: Config,
    ev: Event,
    lead_id: str,
    row: dict[str, Any] | None,
    now: datetime,
    who: str,
    result: IngestResult,
) -> bool:
    followups, enrollments = lead_outcome_rows(store, lead_id)
    counts = OutcomeCounts()
    changed = False
    if ev.type in ("delivered", "read"):
        target = row or last_before(followups, ev.at)
        if target is None:
            return False
        changed = record(store, target, "delivered_at", ev.at, now)
        if ev.type == "read":
            changed = record(store, target, "read_at", ev.at, now) or changed
        return changed
    if ev.type == "replied":
        attribute(store, followups, enrollments, "responded_at", ev.at, now, counts)
        changed = bool(counts.responded or counts.enrollments_responded)
        kw = keyword_optout(
            ev.text, _settings(config, ev, followups, store, lead_id).all_optout_keywords
        )
        if kw:
            changed = (
                _optout(store, lead_id, f"keyword: {kw}", "keyword", ev, now, who, result)
                or changed
            )
        changed = _end(store, lead_id, "replied", ev, now, who, result, after=ev.at) or changed
        return changed
    if ev.type == "converted":
        attribute(store, followups, enrollments, "converted_at", ev.at, now, counts)
        changed = bool(counts.converted or counts.enrollments_converted)
        return _end(store, lead_id, "converted", ev, now, who, result) or changed
    # opted_out: the lead's enrollments locked before its opt-out row is written, in the
    # one order (``SqlStore.lock_lead_rows``; ``followup optout`` and a run take them so)
    store.lock_lead_rows([lead_id])
    return _optout(store, lead_id, ev.reason or "opted out (event)", "event", ev, now, who, result)


def _settings(
    config: Config, ev: Event, followups: list[dict[str, Any]], store: SqlStore, lead_id: str
) -> Any:
    account = ev.account_id or next((f["account_id"] for f in reversed(followups)), None)
    if account is None:
        lead = store.lead_row(lead_id)
        account = lead.get("account_id") if lead else None
    return config.settings_for(config.account(account))


def _optout(
    store: SqlStore,
    lead_id: str,
    reason: str,
    source: str,
    ev: Event,
    now: datetime,
    who: str,
    result: IngestResult,
) -> bool:
    added = store.add_optout(lead_id, reason, source, who, ev.at)
    if added:
        result.optouts += 1
        store.audit(
            "optout",
            now,
            who,
            lead_id=lead_id,
            account_id=ev.account_id,
            detail={"reason": reason, "source": source, "event": ev.type, "at": ev.at.isoformat()},
        )
    ended = _end(store, lead_id, "opted_out", ev, now, who, result)
    return added or ended


def _end(
    store: SqlStore,
    lead_id: str,
    reason: str,
    ev: Event,
    now: datetime,
    who: str,
    result: IngestResult,
    after: datetime | None = None,
) -> bool:
    """End the lead's active enrollments (those whose silence started before ``after``)."""
    ended = False
    for e in store.lead_state(lead_id).enrollments:
        if e.ended_at is not None or (after is not None and e.anchor_at >= after):
            continue
        if store.end_enrollment(lead_id, e.sequence_id, reason, now):
            ended = True
            result.enrollments_ended[reason] += 1
            store.audit(
                "enrollment_end",
                now,
                who,
                lead_id=lead_id,
                account_id=ev.account_id,
                sequence_id=e.sequence_id,
                detail={"reason": reason, "source": "event", "event": ev.type},
            )
    return ended
