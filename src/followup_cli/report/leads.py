"""``followup leads``: the leads in each sequence, with where they stand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..config import Config
from ..models import BadLead, Lead, parse_lead, parse_time
from ..person_inbound import PersonRows
from ..rules import config_sequence, decide
from ..store.base import SqlStore
from .common import _iso


def leads_in_sequences(
    store: SqlStore,
    config: Config,
    now: datetime,
    sequence: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Leads in a sequence now (the ``followup_lead_labels`` view), with the next step and
    when it is due, from the same decision function ``run`` uses, on the person's state as
    the run sees it: the opt-outs, erasures and follow-ups of the person (account and
    recipient id) under any lead row, and its latest inbound message under any of them
    (``person_inbound``)."""
    labels = store.lead_labels(sequence, account)
    if not labels:
        return []
    ids = [str(r["lead_id"]) for r in labels]
    rows = {str(r["id"]): r for r in store.lead_rows(ids)}
    parsed = _persons_leads(store, rows)
    states = store.lead_states(
        ids,
        {
            lid: store.person_key(lead.account_id, lead.recipient_id)
            for lid, lead in parsed.items()
            if isinstance(lead, Lead)
        },
    )
    out = []
    for lab in labels:
        lid = str(lab["lead_id"])
        seq = config_sequence(config, lab["sequence_id"])
        item: dict[str, Any] = {
            "lead_id": lid,
            "account_id": lab["account_id"],
            "sequence_id": lab["sequence_id"],
            "step": int(lab["step"] or 0),
            "steps": len(seq.messages) if seq else None,
            "state": lab["state"],
            "started_at": _iso(lab["started_at"]),
            "next_message_id": None,
            "next_due_at": None,
            "action": None,
            "reason": None,
        }
        row = rows.get(lid)
        if row is None:
            item.update(action="none", reason="lead_gone")
        else:
            try:
                lead = parsed[lid]
                if isinstance(lead, BadLead):
                    raise lead
                d = decide(lead, states[lid], config, now, explain=False)
            except BadLead as exc:
                item.update(action="none", reason=f"bad_row: {exc.column}")
            except Exception as exc:  # noqa: BLE001 - one row must not stop the view
                item.update(action="none", reason=f"bad_row: {type(exc).__name__}")
            else:
                item.update(action=d.action, reason=d.reason, next_message_id=d.message_id)
                nxt = d.due_at if d.message is not None else None
                if d.action == "wait" and d.next_at is not None:
                    nxt = max(nxt, d.next_at) if nxt else d.next_at
                item["next_due_at"] = _iso(nxt)
        if item["next_due_at"] is None and lab["next_followup_at"] is not None:
            item["next_due_at"] = _iso(parse_time(lab["next_followup_at"]))
        out.append(item)
    return out


def _persons_leads(store: SqlStore, rows: dict[str, dict[str, Any]]) -> dict[str, Lead | BadLead]:
    """Each row parsed (or why it cannot be), with the latest inbound message of its person
    under any lead row (one query per account, as the run's plan reads them)."""
    persons: dict[str, PersonRows] = {}
    out: dict[str, Lead | BadLead] = {}
    for lid, row in rows.items():
        try:
            lead = parse_lead(row)
        except BadLead as exc:
            out[lid] = exc
            continue
        if lead.account_id not in persons:
            persons[lead.account_id] = PersonRows.load(store, lead.account_id)
        out[lid] = persons[lead.account_id].apply(lead)
    return out
