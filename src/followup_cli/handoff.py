"""``followup handoff``: leads whose messaging window closed with a step still due, for
human agents (Meta's HUMAN_AGENT tag lets a person reply up to 7 days after the lead's last
message; automation never uses it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .config import Config, Sequence
from .models import SKIPPED, BadLead, Lead, parse_lead
from .render import Renderer, TemplateProblem
from .store.base import SqlStore
from .store.queries import all_of, compare

HUMAN_REPLY_DAYS = 7  # Meta's HUMAN_AGENT tag: a person may reply this long after the lead


def handoff(
    config: Config,
    store: SqlStore,
    now: datetime,
    since_hours: float | None = None,
    account_id: str | None = None,
) -> list[dict[str, Any]]:
    """Leads whose messaging window closed with a step still due: a hand-off for human agents.

    From the ``skipped`` / ``outside_window`` tracking rows recorded since ``now - since_hours``
    (all when None), joined with the lead table; a lead who replied, converted or opted out
    since is no longer listed. Each entry carries the step's text, rendered for the lead, that
    a human may send (with the HUMAN_AGENT tag, which automation never uses).
    """
    rows = _window_skips(store, now, since_hours, account_id)
    leads = _readable_leads(store, sorted({r["lead_id"] for r in rows}))
    gone = _stopped(store)
    renderer = Renderer(config)
    out: list[dict[str, Any]] = []
    for r in rows:
        lead = leads.get(r["lead_id"])
        if lead is None or not _still_open(store, lead, r["claimed_at"], gone):
            continue
        text, media = _step_text(config, renderer, lead, r, now)
        out.append(_entry(lead, r, config.channel.window_hours, text, media))
    return out


def _window_skips(
    store: SqlStore, now: datetime, since_hours: float | None, account_id: str | None
) -> list[dict[str, Any]]:
    """The ``skipped`` / ``outside_window`` tracking rows up to ``now`` (since ``now -
    since_hours`` when given; of one account when given), oldest first."""
    params: dict[str, Any] = {"status": SKIPPED, "reason": "outside_window", "now": now}
    where = []
    if since_hours is not None:
        where.append(compare("claimed_at", ">=", "since"))
        params["since"] = now - timedelta(hours=since_hours)
    if account_id is not None:
        where.append(compare("account_id", "=", "a"))
        params["a"] = account_id
    return store.rows(store.q("handoff_window_skips", where=all_of(where)), params)


def _readable_leads(store: SqlStore, lead_ids: list[str]) -> dict[str, Lead]:
    """The lead rows by id; a row that does not parse is left out."""
    leads: dict[str, Lead] = {}
    for raw in store.lead_rows(lead_ids):
        try:
            parsed = parse_lead(raw)
        except BadLead:
            continue
        leads[parsed.id] = parsed
    return leads


def _stopped(store: SqlStore) -> tuple[set[str], set[str]]:
    """The opted-out lead ids, and the person keys opted out or erased."""
    opted_out = {o["lead_id"] for o in store.optouts()}
    suppressed = {o["person_key"] for o in store.suppressions()}
    return opted_out, suppressed


def _still_open(
    store: SqlStore, lead: Lead, skipped_at: datetime, gone: tuple[set[str], set[str]]
) -> bool:
    """Whether the lead still needs a human: not opted out (as a lead row or as a person),
    not converted, and silent since the step was skipped."""
    opted_out, suppressed = gone
    if lead.id in opted_out:
        return False
    if store.person_key(lead.account_id, lead.recipient_id) in suppressed:
        return False  # the person opted out or was erased under another lead row
    if lead.converted_at is not None or (lead.status or "").lower() == "converted":
        return False
    if lead.last_inbound_at is not None and lead.last_inbound_at > skipped_at:
        return False  # the lead wrote again: the conversation is open, not a hand-off
    return True


def _step_text(
    config: Config, renderer: Renderer, lead: Lead, r: dict[str, Any], now: datetime
) -> tuple[str | None, str | None]:
    """The skipped step's text and media rendered for the lead; (None, None) when the step
    is no longer in the config or does not render."""
    seq: Sequence | None = next((x for x in config.sequences if x.id == r["sequence_id"]), None)
    msg = next((m for m in seq.messages if m.id == r["message_id"]), None) if seq else None
    if seq is None or msg is None:
        return None, None
    try:
        rendered = renderer.render(
            seq, msg, r["variant_id"], lead.context(), config.account(lead.account_id), now
        )
    except TemplateProblem:
        return None, None
    return rendered.text, rendered.media_url


def _entry(
    lead: Lead, r: dict[str, Any], window: float | None, text: str | None, media: str | None
) -> dict[str, Any]:
    """One hand-off as ``followup handoff`` prints it."""
    inbound = lead.last_inbound_at
    return {
        "lead_id": lead.id,
        "account_id": lead.account_id,
        "user_id": lead.user_id,
        "conversation_id": lead.conversation_id,
        "recipient_id": lead.recipient_id,
        "username": lead.username,
        "first_name": lead.first_name,
        "sequence_id": r["sequence_id"],
        "message_id": r["message_id"],
        "step": r["step"],
        "variant_id": r["variant_id"],
        "due_at": r["scheduled_at"],
        "last_inbound_at": inbound,
        "window_closed_at": (
            inbound + timedelta(hours=window)
            if window is not None and inbound is not None
            else None
        ),
        # After HUMAN_REPLY_DAYS nobody can message the lead until it writes.
        "human_reply_until": inbound + timedelta(days=HUMAN_REPLY_DAYS) if inbound else None,
        "skipped_at": r["claimed_at"],
        "text": text,
        "media_url": media,
    }


__all__ = ["handoff"]
