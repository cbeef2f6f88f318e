"""Erasure on request: ``erase_lead`` removes what identifies a person from the tool's tables
and keeps what prevents messaging them again (a keyed suppression); ``lift_erasure`` is the
one audited way back. See docs/erasure.md."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .. import auditchain, suppress
from .base import SqlStore, _chunks
from .queries import Sql

# The tool's tables an erasure rewrites (the ones to purge of old row versions afterwards).
ERASE_TABLES = (
    "followup_tracking",
    "followup_events",
    "followup_audit",
    "followup_optouts",
    "followup_suppressions",
    "followup_enrollments",
    "followup_outcome_marks",
    "followup_runs",
)


def erase_lead(
    store: SqlStore, lead_id: str, who: str, now: datetime, purge: bool = True
) -> dict[str, Any]:
    """Erase the person behind a lead from the tool's tables, keeping what prevents messaging
    them again.

    The person is (account, recipient) as the lead table or, once the host app deleted its
    row, the tool's tracking rows know it; every lead row of that person is erased. Message
    bodies, recipient and conversation ids, error texts, channel message ids (sealed or clear,
    and their lookup hashes), event keys (clear or hashed) and payloads, audit details and
    bad-row notes are removed; the tracking rows stay without them (so no step is sent twice)
    and a suppression record holding only a keyed hash of the person makes sure no lead row
    of theirs is ever messaged again. The host app's own
    lead table is not the tool's: it is left as it is.

    ``purge``: afterwards, rewrite what the database keeps of old row versions (SQLite: with
    ``secure_delete`` on, a WAL checkpoint and VACUUM; Postgres: VACUUM FULL of the tool's
    tables when the role may).
    """
    store.begin_erase()
    with store.transaction():
        ref = store.person_ref(lead_id)
        key, account, recipient = ref if ref else (None, None, None)
        ids = _person_lead_ids(store, lead_id, key, account, recipient)
        counts: dict[str, Any] = {"lead_rows": len(ids)}
        scrubbed, audit_scrubbed = _scrub_leads(store, ids, key, now)
        counts.update(scrubbed)
        counts["run_notes_scrubbed"] = _scrub_run_notes(store, ids)
        counts["person"] = _suppress_erased(store, ids, key, account, who, now)
        store.audit(
            "erase",
            now,
            who,
            lead_id=lead_id,
            detail={
                "lead_rows": len(ids),
                "person_suppressed": key is not None,
                "audit_scrubbed": audit_scrubbed,
            },
        )
    if purge:
        counts["purge"] = store.purge_old_versions(ERASE_TABLES)
    return counts


def _person_lead_ids(
    store: SqlStore, lead_id: str, key: str | None, account: str | None, recipient: str | None
) -> list[str]:
    """Every lead id of the person: by its keyed hash in the tool's rows, by (account,
    recipient) in the tracking rows and in the lead table (when there is one)."""
    from ..errors import ConfigError

    lead_ids = {lead_id}
    if key is not None:
        for name in ("erase_leads_of_person_tracking", "erase_leads_of_person_enrollments"):
            lead_ids |= {str(r["lead_id"]) for r in store.query(store.q(name), {"k": key})}
    if recipient is not None:
        lead_ids |= {
            str(r["lead_id"])
            for r in store.query(
                store.q("erase_leads_of_recipient_tracking"), {"a": account, "r": recipient}
            )
        }
        try:
            store.lead_columns()
            for r in store.query(
                store.q("erase_leads_of_recipient", leads=store.leads),
                {"a": account, "r": recipient},
            ):
                lead_ids.add(str(r["id"]))
        except ConfigError:
            pass
    return sorted(lead_ids)


def _scrub_leads(
    store: SqlStore, ids: list[str], key: str | None, now: datetime
) -> tuple[dict[str, int], list[int]]:
    """Remove what identifies the person from the rows of these leads (and the tracking rows
    of the person under lead ids the host no longer has); returns the counts and the audit
    chain places whose detail was removed."""
    scrubbed = {"tracking_rows_scrubbed": 0, "audit_rows_scrubbed": 0, "events_scrubbed": 0}
    audit_scrubbed: list[int] = []  # chain places, recorded in the erasure's own row
    secret = store.person_secret()
    for chunk in _chunks(ids, 500):
        where, names = SqlStore._in_list(store, "lead_id", chunk)
        scrubbed["tracking_rows_scrubbed"] += store.execute(
            store.q("erase_scrub_tracking", ids=where), {**names, "f": False, "now": now}
        )
        audit_scrubbed += auditchain.scrub(store, where, names)
        scrubbed["events_scrubbed"] += _scrub_events(store, where, names, secret)
        for name in ("erase_enrollments_person", "erase_outcome_marks", "erase_optouts"):
            store.execute(store.q(name, ids=where), names)
    if key is not None:
        # any tracking row of the person under a lead id the host no longer has
        scrubbed["tracking_rows_scrubbed"] += store.execute(
            store.q("erase_scrub_tracking_of_person"), {"f": False, "now": now, "k": key}
        )
    scrubbed["audit_rows_scrubbed"] = len(audit_scrubbed)
    return scrubbed, audit_scrubbed


def _scrub_events(store: SqlStore, where: Sql, names: dict[str, Any], secret: str | None) -> int:
    """The leads' events lose their detail and message id; their keys become erased tokens
    (keyed when the store has a person secret), so a re-ingested event is still a duplicate."""
    n = 0
    for ev in store.query(store.q("erase_events_of_leads", ids=where), names):
        token = (
            suppress.erased_token(secret, str(ev["event_key"])) if secret else f"erased:{ev['id']}"
        )
        if str(ev["event_key"]).startswith("erased:"):
            token = str(ev["event_key"])
        n += store.execute(store.q("erase_scrub_event"), {"k": token, "i": ev["id"]})
    return n


def _suppress_erased(
    store: SqlStore, ids: list[str], key: str | None, account: str | None, who: str, now: datetime
) -> str:
    """Each lead id opted out as erased (its enrollments ended), and the person suppressed by
    its keyed hash when known; returns what holds for the person, as a phrase."""
    for lid in ids:
        store.execute(
            store.q("erase_optout_add"),
            {"l": lid, "r": None, "s": suppress.ERASURE, "a": who, "now": now},
        )
        for e in store.enrollments(lead_id=lid):
            store.end_enrollment(lid, e["sequence_id"], "opted_out", now)
    if key is None:
        return "unknown (no recipient on record): only the lead id is suppressed"
    store.add_suppression(key, account, suppress.ERASURE, suppress.ERASURE, who, now)
    return "suppressed by a keyed hash"


def lift_erasure(
    store: SqlStore, target: str, account_id: str | None, who: str, now: datetime
) -> dict[str, Any] | None:
    """Lift an erasure: the person (a lead id, or a recipient id of ``account_id``) may be
    messaged again by sequences. Their erased data does not come back. None when no erasure
    holds for them."""
    with store.transaction():
        ref = store.person_ref(target)  # a lead id the lead table or the tool's rows know
        known_lead = ref is not None or bool(store.query(store.q("optout_of_lead"), {"l": target}))
        lead_id = target if known_lead else None
        key = ref[0] if ref else None
        person_account = ref[1] if ref else None
        if ref is None and lead_id is None and account_id is not None:
            key = store.person_key(account_id, target)  # a recipient id of that account
            person_account = account_id
        lifted_person = store.remove_suppression(key, suppress.ERASURE) if key else False
        lifted_lead = False
        if lead_id is not None:
            lifted_lead = (
                store.execute(
                    store.q("optout_remove_source"), {"l": lead_id, "s": suppress.ERASURE}
                )
                > 0
            )
        if not (lifted_person or lifted_lead):
            return None
        store.audit(
            "erase_lift",
            now,
            who,
            lead_id=lead_id,
            account_id=person_account,
            detail={"person": lifted_person, "lead": lifted_lead},
        )
    return {"person": lifted_person, "lead": lifted_lead}


def _scrub_run_notes(store: SqlStore, lead_ids: list[str]) -> int:
    """Bad-row notes of these leads in the runs' summaries (they may quote row values)."""
    changed = 0
    for lid in lead_ids:
        needle = f"lead {lid}: "
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for r in store.query(store.q("erase_runs_noting"), {"n": like}):
            try:
                data = json.loads(r["summary"])
            except (TypeError, ValueError):
                continue
            for k in ("bad_leads", "bad_leads_new"):
                if isinstance(data.get(k), list):
                    data[k] = [x for x in data[k] if not str(x).startswith(needle)]
            store.execute(
                store.q("run_set_summary"), {"s": json.dumps(data, default=str), "r": r["run_id"]}
            )
            changed += 1
    return changed
