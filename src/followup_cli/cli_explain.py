"""``followup explain LEAD``: why a lead is or is not due, which step is next and when
(the run's own decision, with the account's windows), and the lead's history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from .cli_common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    _fmt,
    _load,
    _opened,
    _pending_migrations,
    _plain,
    _print_json,
    _when,
    app,
    out,
)
from .errors import ConfigError
from .store.access import READ
from .store.base import SqlStore

LeadArg = Annotated[str, typer.Argument(help="Lead id.")]


@app.command()
def explain(
    lead: LeadArg,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why a lead is or is not due, which step is next and when."""
    loaded = _load(config, strict=False)
    when = _when(now)
    with _opened(loaded, db, config, READ) as store:
        d, history = _explain(store, loaded, lead, when)
    if as_json:
        data = d.as_dict()
        data["now"] = when.isoformat()
        data["history"] = [_plain(h, drop=("body",)) for h in history]
        _print_json(data)
        return
    _print_explanation(lead, when, d, history)


def _explain(
    store: SqlStore, loaded: Any, lead: str, when: datetime
) -> tuple[Any, list[dict[str, Any]]]:
    """The decision the run would make for the lead now (with the account's windows), and
    the lead's tracking rows."""
    from .models import BadLead, LeadState, parse_lead
    from .person_inbound import PersonRows
    from .rules import decide

    pending = _pending_migrations(store)
    state = LeadState() if pending else None
    row = store.lead_row(lead)
    if row is None:
        raise ConfigError(f"no lead {lead!r} in table {store.lead_table!r} of {store.describe()}")
    try:
        parsed = parse_lead(row)
    except BadLead as exc:
        raise ConfigError(f"{exc}; fix the row in the lead store") from None
    # the silence is the person's: the latest inbound under any of its lead rows
    parsed = PersonRows.for_recipient(store, parsed.account_id, parsed.recipient_id).apply(parsed)
    if state is None:
        person = store.person_key(parsed.account_id, parsed.recipient_id)
        state = store.lead_state(lead, person)
    try:
        d = decide(parsed, state, loaded.config, when)
    except Exception as exc:  # noqa: BLE001 - a value the rules cannot compute with
        raise ConfigError(
            f"lead {lead}: cannot be decided ({type(exc).__name__}: {exc}); "
            "fix the row in the lead store"
        ) from None
    if d.action == "send":
        _explain_person_keyword(store, loaded.config, parsed, d)
    if d.action == "send":
        _explain_message(loaded.config, parsed, d, when)
    if d.action == "send" and not pending:
        # Every rule of the lead holds; the account's own windows may still hold it back.
        from .accountwindows import account_windows

        checks, blocked = account_windows(loaded.config, store, parsed.account_id, when)
        d.checks.extend(checks)
        if blocked is not None:
            d.action, d.reason, d.detail, d.next_at = "wait", *blocked
    history = [] if pending else store.followups(lead_id=lead)
    return d, history


def _explain_person_keyword(store: SqlStore, config: Any, lead: Any, d: Any) -> None:
    """A due lead whose person wrote an opt-out keyword under another lead row: the next
    run records that opt-out before it sends anything, so this lead is not due either."""
    from .models import BadLead, parse_lead
    from .rules.decision import Check
    from .rules.keywords import keyword_optout

    if not lead.recipient_id:
        return
    keywords = config.settings_for(config.account(lead.account_id)).all_optout_keywords
    ids = store.query(
        store.q("erase_leads_of_recipient", leads=store.leads),
        {"a": lead.account_id, "r": lead.recipient_id},
    )
    others = sorted(str(r["id"]) for r in ids if str(r["id"]) != lead.id)
    for row in store.lead_rows(others) if others else ():
        try:
            other = parse_lead(row)
        except BadLead:
            continue
        kw = keyword_optout(other.last_inbound_text, keywords)
        if kw:
            d.checks.append(Check("opt-out", False, f"the person wrote {kw!r} as lead {other.id}"))
            d.action, d.reason = "none", "opted_out"
            d.detail = (
                f"the person behind this lead wrote {kw!r} as lead {other.id}: "
                "the next run records the opt-out"
            )
            return


def _explain_message(config: Any, lead: Any, d: Any, when: datetime) -> None:
    """A due lead's message rendered as the run renders it: a lead its template cannot
    serve (an attribute it lacks, a text over the channel's limit, an empty message) is
    skipped by the run, so it is not due here either (the skip reason is the run's)."""
    from .render import Renderer, TemplateProblem
    from .rules.decision import Check

    try:
        r = Renderer(config).render(
            d.sequence, d.message, d.variant_id, lead.context(),
            config.account(lead.account_id), when,
        )  # fmt: skip
        if r.text or r.media_url:
            return
        reason, what = "empty_message", "the message renders empty"
    except TemplateProblem as tp:
        reason, what = tp.reason, tp.what
    d.checks.append(Check("message", False, what))
    d.action, d.reason = "skip", reason
    d.detail = f"{d.sequence.id}/{d.message.id}: {what}"


def _print_explanation(lead: str, when: datetime, d: Any, history: list[dict[str, Any]]) -> None:
    verdict = {
        "send": "[green]DUE NOW[/green]",
        "wait": "[yellow]WAITING[/yellow]",
        "skip": "[red]CANNOT BE SENT[/red]",
        "end": "[red]ENROLLMENT ENDS[/red]",
        "holdout": "[blue]HOLDOUT[/blue]",
        "none": "[dim]NOT DUE[/dim]",
    }[d.action]
    out.print(f"[bold]{escape(lead)}[/bold] at {when.isoformat()}: {verdict} — {escape(d.detail)}")
    for c in d.checks:
        mark = "[green]✓[/green]" if c.ok else ("[red]✗[/red]" if c.ok is False else "·")
        out.print(f"  {mark} {c.rule}: {escape(c.detail)}")
    if d.sequence:
        out.print(f"  sequence: {d.sequence.id} ({d.sequence.name or d.sequence.id})")
    if d.message:
        out.print(
            f"  next step: {d.step} {d.message.id}{'/' + d.variant_id if d.variant_id else ''}, "
            f"due {_fmt(d.due_at)} UTC"
        )
    if d.next_at:
        out.print(f"  re-check after: {_fmt(d.next_at)} UTC")
    if d.window_closes_at:
        out.print(f"  messaging window closes: {_fmt(d.window_closes_at)} UTC")
    for h in history:
        out.print(
            f"  history: {h['sequence_id']}/{h['message_id']} {h['status']}"
            f" {_fmt(h.get('sent_at') or h.get('claimed_at'))}"
            f"{' code ' + str(h['error_code']) if h.get('error_code') else ''}"
        )
