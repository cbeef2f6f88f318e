"""Erasure on request: ``erase_lead`` removes what identifies a person from the tool's tables
and keeps what prevents messaging them again (a keyed suppression); ``lift_erasure`` is the
one audited way back. See docs/erasure.md."""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from typing import Any

from .. import auditchain, suppress
from .base import SqlStore, _chunks, nothing_to_put_back, retried
from .queries import Sql, has_query

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
    # One whole transaction and nothing outside it (the purge comes after its commit): a
    # conflict with another writer (40P01, 40001; a run at work on the person's rows)
    # rolled it back whole, so it runs again (``retried``) instead of failing.
    counts = retried(partial(_erase_tx, store, lead_id, who, now), nothing_to_put_back, "erase")
    if purge:
        counts["purge"] = store.purge_old_versions(ERASE_TABLES)
    return counts


def _erase_tx(store: SqlStore, lead_id: str, who: str, now: datetime) -> dict[str, Any]:
    """``erase_lead``'s transaction, its writes in the one order (docs/never-twice.md): the
    person's rows locked first (their tracking rows by id, then their enrollments by lead
    id), then written; the audit rows last (the old ones scrubbed, then the erasure's own)."""
    with store.transaction():
        ref = store.person_ref(lead_id)
        key, account, recipient = ref if ref else (None, None, None)
        ids = _person_lead_ids(store, lead_id, key, account, recipient)
        _lock_rows(store, ids)
        scrubbed = _scrub_leads(store, ids, key, now)
        counts: dict[str, Any] = {  # (in the order the command prints them)
            "lead_rows": len(ids),
            "tracking_rows_scrubbed": scrubbed["tracking_rows_scrubbed"],
            "audit_rows_scrubbed": 0,
            "events_scrubbed": scrubbed["events_scrubbed"],
        }
        counts["run_notes_scrubbed"] = _scrub_run_notes(store, ids)
        counts["person"] = _suppress_erased(store, ids, key, account, who, now)
        audit_scrubbed = _scrub_audit(store, ids)
        counts["audit_rows_scrubbed"] = sum(len(s) for s in audit_scrubbed.values())
        store.audit(
            "erase",
            now,
            who,
            lead_id=lead_id,
            detail={
                "lead_rows": len(ids),
                "person_suppressed": key is not None,
                **auditchain.scrubbed_detail(audit_scrubbed),
            },
        )
    return counts


def _lock_rows(store: SqlStore, ids: list[str]) -> None:
    """The leads' tracking rows by id, then their enrollments by lead id, locked before any
    is written (``SqlStore.lock_lead_rows``; Postgres, where a statement of many rows
    would lock them in whatever order it meets them)."""
    if not has_query("erase_tracking_lock", store.dialect):
        return
    where, names = store._in_list("lead_id", ids)  # (one array: no limit to chunk for)
    store.execute(store.q("erase_tracking_lock", ids=where), names)
    store.lock_lead_rows(ids)


def _person_lead_ids(
    store: SqlStore,
    lead_id: str | None,
    key: str | None,
    account: str | None,
    recipient: str | None,
) -> list[str]:
    """Every lead id of the person: by its keyed hash in the tool's rows, by (account,
    recipient) in the tracking rows and in the lead table (when there is one)."""
    from ..errors import ConfigError

    lead_ids = {lead_id} if lead_id is not None else set()
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


def _scrub_leads(store: SqlStore, ids: list[str], key: str | None, now: datetime) -> dict[str, int]:
    """Remove what identifies the person from the rows of these leads (and the tracking rows
    of the person under lead ids the host no longer has), but the audit rows
    (``_scrub_audit``); returns the counts."""
    scrubbed = {"tracking_rows_scrubbed": 0, "events_scrubbed": 0}
    secret = store.person_secret()
    for chunk in _chunks(ids, 500):
        where, names = SqlStore._in_list(store, "lead_id", chunk)
        scrubbed["tracking_rows_scrubbed"] += store.execute(
            store.q("erase_scrub_tracking", ids=where), {**names, "f": False, "now": now}
        )
        scrubbed["events_scrubbed"] += _scrub_events(store, where, names, secret)
        for name in ("erase_enrollments_person", "erase_outcome_marks", "erase_optouts"):
            store.execute(store.q(name, ids=where), names)
    if key is not None:
        # any tracking row of the person under a lead id the host no longer has
        scrubbed["tracking_rows_scrubbed"] += store.execute(
            store.q("erase_scrub_tracking_of_person"), {"f": False, "now": now, "k": key}
        )
    return scrubbed


def _scrub_audit(store: SqlStore, ids: list[str]) -> dict[str, list[int]]:
    """The audit rows of these leads lose their detail, after the erasure's other writes
    (the audit rows last); returns their places (chain -> chain_seqs), recorded in the
    erasure's own row."""
    places: dict[str, list[int]] = {}
    for chunk in _chunks(ids, 500):
        where, names = SqlStore._in_list(store, "lead_id", chunk)
        for chain, seqs in auditchain.scrub(store, where, names).items():
            places.setdefault(chain, []).extend(seqs)
    return places


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
    holds for them. One whole transaction, nothing outside it: run again on a conflict
    (``retried``, as ``erase_lead``)."""
    return retried(
        partial(_lift_tx, store, target, account_id, who, now), nothing_to_put_back, "erase --lift"
    )


def _lift_tx(
    store: SqlStore, target: str, account_id: str | None, who: str, now: datetime
) -> dict[str, Any] | None:
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
        # every lead row of the person the erasure marked, not the named one alone
        recipient = ref[2] if ref else (target if lead_id is None and key else None)
        ids = _person_lead_ids(store, lead_id, key, person_account, recipient)
        lifted_lead = False
        for lid in ids:
            removed = store.execute(
                store.q("optout_remove_source"), {"l": lid, "s": suppress.ERASURE}
            )
            lifted_lead = removed > 0 or lifted_lead
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
