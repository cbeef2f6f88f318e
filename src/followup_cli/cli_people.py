"""One person at a time: ``optout`` (stop, resume, list, import, export) and ``erase``
(forget a lead's data, or lift an erasure)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .cli_common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    _fmt,
    _has_lead_table,
    _load_optional,
    _opened,
    _plain,
    _print_json,
    app,
    err,
    out,
)
from .errors import ConfigError
from .store.access import READ, WRITE, reading
from .store.base import SqlStore, nothing_to_put_back, retried

YesOpt = Annotated[bool, typer.Option("--yes", help="Do it (without it, nothing changes).")]


# -------------------------------------------------------------------- optout


OptoutLeadArg = Annotated[
    str | None, typer.Argument(help="Lead id (with --export: the file to write).")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]
UndoOpt = Annotated[bool, typer.Option("--undo", help="Resume the lead (never lifts an erasure).")]
ListOpt = Annotated[bool, typer.Option("--list", help="List opted-out leads and people.")]
ImportOpt = Annotated[
    str | None,
    typer.Option(
        "--import",
        help="Record the opt-outs of a CSV file: a lead id or recipient id per line "
        "(columns lead_id / recipient_id / id, account_id, reason; or id,reason).",
    ),
]
ExportOpt = Annotated[
    bool,
    typer.Option("--export", help="Write every opt-out as CSV to FILE (the argument) or stdout."),
]
ImportAccountOpt = Annotated[
    str | None,
    typer.Option("--account", help="Account of --import recipient ids without one."),
]


@app.command()
def optout(
    lead: OptoutLeadArg = None,
    reason: ReasonOpt = None,
    undo: UndoOpt = False,
    list_: ListOpt = False,
    import_: ImportOpt = None,
    export: ExportOpt = False,
    account: ImportAccountOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop (or resume) a lead at once, including a run already in progress. The opt-out
    holds for the person (account and recipient), whatever lead row carries them."""
    from .store.base import actor

    _one_optout_mode(lead, undo, list_, import_, export)
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


def _one_optout_mode(
    lead: str | None, undo: bool, list_: bool, import_: str | None, export: bool
) -> None:
    """``optout`` does one thing at a time, and only LEAD and --export take the argument."""
    modes = sum((bool(list_), bool(undo), bool(import_), bool(export)))
    if modes > 1:
        raise ConfigError("choose one of LEAD [--undo], --list, --import FILE, --export [FILE]")
    if not (list_ or import_ or export) and not lead:
        raise ConfigError("give a LEAD id, or --list, --import FILE or --export [FILE]")
    if (list_ or import_) and lead:
        raise ConfigError(f"{lead}: --list and --import take no LEAD")


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
