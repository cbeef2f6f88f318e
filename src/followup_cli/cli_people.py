"""One person at a time: ``explain``, ``optout``, ``unknown``, ``erase``, ``handoff``,
and ``events ingest`` (what leads did)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import errors
from .cli_common import (
    AccountOpt,
    ConfigOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    _check_account,
    _fmt,
    _has_lead_table,
    _load,
    _load_optional,
    _opened,
    _pending_migrations,
    _plain,
    _print_json,
    _when,
    app,
    err,
    out,
)
from .errors import ConfigError
from .store.access import READ, WRITE, reading
from .store.base import SqlStore, nothing_to_put_back, retried

unknown_app = typer.Typer(
    help="Follow-ups whose outcome nobody knows: list and resolve.", no_args_is_help=True
)
app.add_typer(unknown_app, name="unknown")
events_app = typer.Typer(
    help="Outcome events from the host app or Instagram webhooks.", no_args_is_help=True
)
app.add_typer(events_app, name="events")

LeadArg = Annotated[str, typer.Argument(help="Lead id.")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do it (without it, nothing changes).")]


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


# -------------------------------------------------------------------- optout


@app.command()
def optout(
    lead: Annotated[
        str | None, typer.Argument(help="Lead id (with --export: the file to write).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log).")
    ] = None,
    undo: Annotated[
        bool, typer.Option("--undo", help="Resume the lead (never lifts an erasure).")
    ] = False,
    list_: Annotated[bool, typer.Option("--list", help="List opted-out leads and people.")] = False,
    import_: Annotated[
        str | None,
        typer.Option(
            "--import",
            help="Record the opt-outs of a CSV file: a lead id or recipient id per line "
            "(columns lead_id / recipient_id / id, account_id, reason; or id,reason).",
        ),
    ] = None,
    export: Annotated[
        bool,
        typer.Option(
            "--export", help="Write every opt-out as CSV to FILE (the argument) or stdout."
        ),
    ] = False,
    account: Annotated[
        str | None,
        typer.Option("--account", help="Account of --import recipient ids without one."),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop (or resume) a lead at once, including a run already in progress. The opt-out
    holds for the person (account and recipient), whatever lead row carries them."""
    from .store.base import actor

    modes = sum((bool(list_), bool(undo), bool(import_), bool(export)))
    if modes > 1:
        raise ConfigError("choose one of LEAD [--undo], --list, --import FILE, --export [FILE]")
    if not (list_ or import_ or export) and not lead:
        raise ConfigError("give a LEAD id, or --list, --import FILE or --export [FILE]")
    if (list_ or import_) and lead:
        raise ConfigError(f"{lead}: --list and --import take no LEAD")
    loaded = _load_optional(config)
    with _opened(loaded, db, config, READ if list_ or export else WRITE) as store:
        now = datetime.now(UTC)
        if list_:
            with reading(store):
                _print_optouts(store, as_json)
        elif import_:
            from .optouts import import_optouts

            result = import_optouts(store, loaded, import_, account, actor(), now)
            if as_json:
                _print_json(dict(result.__dict__))
            else:
                out.print(result.line())
        elif export:
            _export_optouts(store, lead or "-")
        elif undo:
            assert lead is not None
            from .optouts import refuse_undo_of_a_keyword

            refuse_undo_of_a_keyword(store, loaded, lead)
            changed, line = _undo_optout(store, lead, reason, actor(), now)
            _said(line, as_json, lead_id=lead, opted_out=False, changed=changed)
        else:
            assert lead is not None
            changed, line = _add_optout(store, lead, reason, actor(), now)
            _said(line, as_json, lead_id=lead, opted_out=True, changed=changed)


def _said(line: str, as_json: bool, **fields: Any) -> None:
    """What `optout LEAD [--undo]` did: its line, or with --json an object holding it."""
    if as_json:
        _print_json({**fields, "message": line})
    else:
        out.print(line)


def _export_optouts(store: SqlStore, target: str) -> None:
    """Every opt-out as CSV, to ``target`` (a file, or - for stdout)."""
    from .optouts import export_optouts

    with reading(store):
        text, n, erased = export_optouts(store)
    if target == "-":
        sys.stdout.write(text)
    else:
        from .files import write_private

        write_private(target, text)
        out.print(f"{target}: {n} opt-out(s) written")
    if erased:
        err.print(
            f"followup: {erased} erasure(s) not exported: they hold no identifier "
            "(a keyed hash only)"
        )


def _undo_optout(
    store: SqlStore, lead: str, reason: str | None, who: str, now: datetime
) -> tuple[bool, str]:
    """Lift a lead's opt-out (never an erasure), audited."""
    if store.is_erased(lead):
        raise ConfigError(
            f"{lead}: erased on request; `optout --undo` never lifts an erasure. "
            f"`followup erase --lift {lead} --yes` does (audited); nothing was changed"
        )

    others: list[str] = []

    def lift() -> bool:
        with store.transaction(), store.audits_last():
            store.lock_lead_rows([lead])  # the one order: the lead's rows, the audit row last
            others[:] = store.other_optouts(lead)
            if others and not store.is_opted_out(lead):
                # Not this row's opt-out: its person's, said under another row. Lifting
                # it from here would resume someone who said stop there; nothing changes.
                raise ConfigError(
                    f"{lead}: not opted out itself; its person is, under lead "
                    f"{', '.join(others)}: `followup optout {others[0]} --undo` resumes "
                    f"them; nothing was changed"
                )
            changed = store.remove_optout(lead, others)
            store.audit("optout_undo", now, who, lead_id=lead, detail={"reason": reason})
        return changed

    # One whole transaction and nothing outside it: a conflict with a busy run (40P01,
    # 40001) rolled it back whole, so it runs again (``retried``) instead of failing.
    changed = retried(lift, nothing_to_put_back, "optout --undo")
    if changed and others:
        return changed, (
            f"{lead}: opt-out removed; its person stays opted out under lead "
            f"{', '.join(others)} (`followup optout {others[0]} --undo` resumes them)"
        )
    return changed, (f"{lead}: opt-out removed" if changed else f"{lead}: was not opted out")


def _add_optout(
    store: SqlStore, lead: str, reason: str | None, who: str, now: datetime
) -> tuple[bool, str]:
    """Opt a lead (and its person) out and end its enrollments, audited."""

    def stop() -> bool:
        with store.transaction(), store.audits_last():
            # The one order (docs/never-twice.md): the lead's enrollments first, before its
            # opt-out row, as a run's claim batch and bookkeeping take them (a batch that
            # holds them and meets STOP in the lead's last message inserts the same
            # opt-out row: taken the other way round, each waited for the other); the audit
            # row last.
            store.lock_lead_rows([lead])
            changed = store.add_optout(lead, reason, "cli", who, now)
            for e in store.enrollments(lead_id=lead):
                store.end_enrollment(lead, e["sequence_id"], "opted_out", now)
            store.audit(
                "optout", now, who, lead_id=lead, detail={"reason": reason, "source": "cli"}
            )
        return changed

    # An operator's stop must not fail because a run is busy: a conflict with another
    # writer (40P01, 40001) rolled the transaction back whole (no opt-out, no audit row)
    # and nothing outside it happened, so it runs again (``retried``).
    changed = retried(stop, nothing_to_put_back, "optout")
    exists = store.lead_row(lead) is not None if _has_lead_table(store) else True
    note = (
        ""
        if exists
        else f" (note: no lead {lead!r} in the lead table yet; the opt-out holds when it appears)"
    )
    if store.key_problem:
        err.print(
            f"followup: warning: {store.key_problem} (the opt-out holds; its recipient id "
            "was not stored)",
            markup=False,
        )
    return changed, (f"{lead}: opted out" if changed else f"{lead}: already opted out") + note


def _print_optouts(store: SqlStore, as_json: bool) -> None:
    """Opted-out leads, then people recorded without a listed lead (imports, erasures)."""
    rows = store.optouts()
    listed = {r["lead_id"] for r in rows}
    people = [
        p for p in store.suppressions() if p["kind"] == "erasure" or p["lead_id"] not in listed
    ]
    if as_json:
        _print_json(
            [_plain(r) for r in rows] + [_plain(p, drop=("person_key", "key_id")) for p in people]
        )
        return
    if not rows and not people:
        out.print("no opted-out leads")
    for r in rows:
        out.print(
            f"{r['lead_id']}\t{_fmt(r['created_at'])}\t{r['source']}\t"
            f"{r['actor'] or '-'}\t{r['reason'] or ''}",
            markup=False,
        )
    for p in people:
        who = (
            f"erased person of {p['account_id'] or '-'} (keyed hash {p['person_key'][:8]}…)"
            if p["kind"] == "erasure"
            else f"recipient {p['recipient_id']} of {p['account_id'] or '-'}"
        )
        out.print(
            f"{who}\t{_fmt(p['created_at'])}\t{p['source']}\t{p['actor'] or '-'}\t"
            f"{p['reason'] or ''}",
            markup=False,
        )


# ------------------------------------------------------------------- unknown


@unknown_app.command("list")
def unknown_list(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Follow-ups whose outcome is unknown (and claims still pending)."""
    loaded = _load_optional(config)
    with _opened(loaded, db, config, READ) as store, reading(store):
        rows = store.followups(status="unknown") + store.followups(status="pending")
    from .crypto import show_body

    if as_json:
        hidden = ("body", "body_encrypted", "person_key", "external_key")
        _print_json(
            [
                # the text: what to look for in the conversation
                {**_plain(r, drop=hidden), "text": show_body(r.get("body"))}
                for r in rows
            ]
        )
        return
    if not rows:
        out.print("no follow-ups with an unknown outcome")
    for r in rows:
        variant = f"/{r['variant_id']}" if r.get("variant_id") else ""
        text = " ".join(show_body(r.get("body")).split())
        out.print(
            f"{r['id']}\t{r['status']}\t{r['lead_id']}\t{r['sequence_id']}/{r['message_id']}"
            f"{variant}\t{_fmt(r['claimed_at'])}\t{r.get('reason') or r.get('error_message') or ''}"
            f"\t{text[:60] + '…' if len(text) > 60 else text}",
            markup=False,
        )
    if rows:
        out.print(
            "Check the conversation in Instagram, then "
            "`followup unknown resolve ID --sent` or `--release`."
        )


@unknown_app.command("resolve")
def unknown_resolve(
    followup_id: Annotated[
        int, typer.Argument(help="Tracking row id (from `followup unknown list`).")
    ],
    sent: Annotated[bool, typer.Option("--sent", help="It did go out: mark it sent.")] = False,
    release: Annotated[
        bool, typer.Option("--release", help="It did not go out: free the step for a later run.")
    ] = False,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
) -> None:
    """Resolve an unknown follow-up: mark it sent, or release it for a retry."""
    from .store.base import actor

    if sent == release:
        raise ConfigError("choose one: --sent (it went out) or --release (it did not)")
    loaded = _load_optional(config)
    with _opened(loaded, db, config, WRITE) as store:
        row = store.resolve_unknown(followup_id, sent, actor(), datetime.now(UTC))
    if row is None:
        raise ConfigError(
            f"tracking row {followup_id} is not an unknown follow-up (see `followup unknown list`)"
        )
    out.print(
        f"{followup_id}: {'marked sent' if sent else 'released: a later run may send this step'}"
    )


# ---------------------------------------------------------------- erase


@app.command()
def erase(
    lead: Annotated[
        str, typer.Argument(help="Lead id (with --lift: a lead id or a recipient id).")
    ],
    yes: YesOpt = False,
    lift: Annotated[
        bool,
        typer.Option("--lift", help="Lift an erasure: the person may be messaged again (audited)."),
    ] = False,
    account: Annotated[
        str | None,
        typer.Option("--account", help="With --lift: the account of a recipient id."),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
) -> None:
    """Erase the person behind a lead from the tool's tables; never messaged again (the
    host app's own lead table is not the tool's to erase)."""
    from .store.base import actor
    from .store.erasure import erase_lead

    loaded = _load_optional(config)
    if lift:
        _lift_erasure(loaded, db, config, lead, account, yes)
        return
    if not yes:
        raise ConfigError(
            f"erase {lead}: this removes, for good, the message bodies, ids and notes of the "
            "person behind this lead from the tool's tables and stops messaging them; add --yes "
            "to do it"
        )
    with _opened(loaded, db, config, WRITE) as store:
        counts = erase_lead(store, lead, actor(), datetime.now(UTC))
    purge = counts.pop("purge", "")
    person = counts.pop("person", "")
    done = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
    out.print(f"{lead}: personal data erased from the tool's tables ({done}); person {person}")
    out.print(f"  {purge}")
    out.print(
        "  The host app's own lead table is not the tool's: delete or anonymise the lead row "
        "there too (doing that first lets this command's purge also clear what the deletion "
        "left in a SQLite file)."
    )


def _lift_erasure(
    loaded: Any, db: str | None, config: str, target: str, account: str | None, yes: bool
) -> None:
    """``erase --lift``: the person may be messaged again (their data does not come back)."""
    from .store.base import actor
    from .store.erasure import lift_erasure

    if not yes:
        raise ConfigError(
            f"erase --lift {target}: this lets sequences message the erased person again "
            "(their erased data does not come back); add --yes to do it"
        )
    if account is None and loaded is not None and len(loaded.config.accounts) == 1:
        account = loaded.config.accounts[0].id
    with _opened(loaded, db, config, WRITE) as store:
        lifted = lift_erasure(store, target, account, actor(), datetime.now(UTC))
    if lifted is None:
        raise ConfigError(
            f"{target}: no erasure holds for this lead or recipient"
            + ("" if account else " (for a recipient id, give --account)")
        )
    out.print(
        f"{target}: erasure lifted; sequences may message this person again. Their erased "
        "data does not come back. To keep them from being messaged: `followup optout`"
    )


@app.command()
def handoff(
    account: AccountOpt = None,
    since: Annotated[
        float | None,
        typer.Option("--since", min=0, help="Only leads skipped in the last HOURS (default: all)."),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Leads whose messaging window closed with a step still due: for human agents."""
    from .engine import handoff as handoff_leads

    loaded = _load(config, strict=False)
    _check_account(loaded, account)
    when = _when(now)
    with _opened(loaded, db, config, READ) as store:
        rows = []
        if not _pending_migrations(store):
            rows = handoff_leads(loaded.config, store, when, since, account)
    if as_json:
        _print_json([_plain(r) for r in rows])
        return
    _print_handoffs(rows)


def _print_handoffs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("no hand-offs: no lead's messaging window closed with a step still due")
        return
    table = Table(title=f"{len(rows)} lead(s) to hand to a human agent (the window closed)")
    cols = ("account", "lead", "user", "step", "due", "window closed", "human until", "message")
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        text = (r["text"] or "") + (f" [{r['media_url']}]" if r["media_url"] else "")
        table.add_row(
            *(
                Text(x)
                for x in (
                    r["account_id"] or "-",
                    r["lead_id"],
                    r["username"] or r["recipient_id"] or "-",
                    f"{r['sequence_id']}/{r['message_id']}",
                    _fmt(r["due_at"]),
                    _fmt(r["window_closed_at"]),
                    _fmt(r["human_reply_until"]),
                    text,
                )
            )
        )
    out.print(table)
    out.print(
        "Automation never messages outside the window. A human agent may still reply until "
        "'human until' (Meta's HUMAN_AGENT tag: 7 days after the lead's last message); times UTC."
    )


@events_app.command("ingest")
def events_ingest(
    source: Annotated[str, typer.Argument(help="JSON lines or webhook payloads; - for stdin.")],
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record delivered, read, replied, converted and opted_out events (idempotent)."""
    from .events import ingest
    from .store.base import actor

    loaded = _load(config, strict=False)
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read ({exc})") from None
    when = _when(now)
    name = "<stdin>" if source == "-" else source
    # A replay (--now) sees nothing after its instant; real time allows clock skew.
    skew = timedelta(0) if now else timedelta(minutes=5)
    with _opened(loaded, db, config, WRITE) as store:
        result = ingest(store, loaded.config, text, name, when, actor(), skew)
    data = result.as_dict()
    if as_json:
        _print_json(data)
    else:
        applied = ", ".join(f"{k} {v}" for k, v in data["applied"].items()) or "nothing new"
        out.print(
            f"{data['new']} new event(s), {data['duplicates']} already ingested; applied: {applied}"
            + (f"; {data['unmatched']} matched no lead" if data["unmatched"] else "")
            + (f"; {data['optouts']} opt-out(s)" if data["optouts"] else "")
        )
    if data["after_now"]:
        err.print(
            f"followup: warning: {data['after_now']} event(s) dated after {when.isoformat()} "
            "were not recorded; ingest them again once their time has come"
        )
    if data["events"] == 0 and data["ignored"] and not data["problems"]:
        kinds = ", ".join(f"{k} {v}" for k, v in data["ignored"].items())
        err.print(f"followup: warning: no outcome event in {name} (ignored: {kinds})")
    for problem in data["problems"][:20]:
        err.print(f"followup: {problem}", markup=False)
    if data["problems"]:
        n = len(data["problems"])
        err.print(f"followup: {n} document(s) rejected; the others were ingested")
        raise typer.Exit(errors.EXIT_USAGE)
