"""``followup leads``: list the leads in a sequence (plain ``followup leads``, or
``leads list``), and set up a lead store: ``leads init``, ``leads import``, ``leads check``."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
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
    _load,
    _load_optional,
    _print_json,
    _store,
    _when,
    app,
    err,
    out,
)
from .errors import ConfigError
from .models import parse_time
from .store import resolve_db
from .store.access import READ, reading

leads_app = typer.Typer(
    help="Leads in a sequence (`followup leads`), and the lead store: init, import, check.",
    invoke_without_command=True,
)
app.add_typer(leads_app, name="leads")

SequenceOpt = Annotated[str | None, typer.Option("--sequence", help="Only this sequence.")]


def _table_name(config: str) -> str:
    loaded = _load_optional(config)
    return loaded.config.settings.lead_table if loaded else "leads"


@leads_app.callback()
def leads_group(
    ctx: typer.Context,
    sequence: SequenceOpt = None,
    account: AccountOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Leads in a sequence now: step, next due time and state (same as `leads list`).

    Example: followup leads --sequence warm --now 2026-03-02T14:00:00+01:00
    """
    if ctx.invoked_subcommand is None:
        leads_list(sequence, account, config, db, now, as_json)


@leads_app.command("list")
def leads_list(
    sequence: SequenceOpt = None,
    account: AccountOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Leads in a sequence now: step, next due time and state.

    Example: followup leads list --account acct_shop --json
    """
    from .report import leads_in_sequences

    loaded = _load(config, strict=False)
    _check_account(loaded, account)
    when = _when(now)
    store = _store(loaded, db, config, need=READ)
    try:
        with reading(store):
            rows = leads_in_sequences(store, loaded.config, when, sequence, account)
    finally:
        store.close()
    known = [s.id for s in loaded.config.sequences]
    if sequence is not None and sequence not in known and not rows:  # a typo, not a quiet day
        raise ConfigError(
            f"--sequence {sequence}: no such sequence in {loaded.path} "
            f"(sequences: {', '.join(known) or 'none'})"
        )
    if as_json:
        _print_json(rows)
        return
    _print_leads(rows, when, bool(now))


def _print_leads(rows: list[dict[str, Any]], when: datetime, fixed: bool) -> None:
    """``leads list``'s table (``fixed``: --now given)."""
    if not rows:
        out.print(
            f"no lead is in a sequence at {when.isoformat()}"
            + ("" if fixed else " (replaying a store's past? add --now)")
        )
        return
    table = Table(title=f"{len(rows)} lead(s) in a sequence at {when.isoformat()} (times UTC)")
    for col in ("lead", "account", "sequence", "step", "state", "next", "due", "now"):
        table.add_column(col, overflow="fold")
    for r in rows:
        steps = f"{r['step']}/{r['steps']}" if r["steps"] else str(r["step"])
        due = _fmt(parse_time(r["next_due_at"])) if r["next_due_at"] else "-"
        verdict = f"{r['action']}: {r['reason']}" if r["action"] else "-"
        cells = (
            r["lead_id"],
            r["account_id"] or "-",
            r["sequence_id"],
            steps,
            r["state"],
            r["next_message_id"] or "-",
            due,
            verdict,
        )
        table.add_row(*(Text(str(x)) for x in cells))
    out.print(table)


@leads_app.command("init")
def leads_init(config: ConfigOpt = "sequences.yaml", db: DbOpt = None) -> None:
    """Create the lead table and its index (a new SQLite file or an existing Postgres
    database), and the tool's own tables. Running it again changes nothing.

    Example: followup leads init --db my-leads.db
    """
    from .leadstore import init_lead_store

    result = init_lead_store(resolve_db(db, config), _table_name(config))
    for line in result.lines():
        out.print(line, markup=False)
    out.print(
        "next: `followup leads import FILE.csv` (columns: `followup leads check` names them)"
        if result.rows == 0
        else "next: `followup leads check`, then `followup run --dry-run`"
    )


@leads_app.command("import")
def leads_import(
    file: Annotated[str, typer.Argument(help="CSV with a header row; - for stdin.")],
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upsert leads from a CSV into a SQLite lead store, by id. Every line is checked with
    the run's own parser; bad lines are named (line and reason) and left out, exit 2.

    Example: followup leads import leads.csv --db my-leads.db
    """
    from .leadimport import import_csv

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read ({exc})") from None
    name = "<stdin>" if file == "-" else file
    result = import_csv(name, text, resolve_db(db, config), _table_name(config))
    if as_json:
        _print_json(result.as_dict())
    else:
        out.print(
            f"{result.target}: {result.inserted} new, {result.updated} updated, "
            f"{result.unchanged} unchanged"
            + (f", {len(result.rejected)} line(s) rejected" if result.rejected else ""),
            markup=False,
        )
    if result.ignored_columns:
        err.print(
            f"followup: warning: {name}: column(s) {', '.join(result.ignored_columns)} are not "
            "lead columns and were ignored (custom fields go in `attributes` as JSON)",
            markup=False,
        )
    for line in result.duplicates[:20]:
        err.print(f"followup: warning: {line}", markup=False)
    for line in result.rejected[:50]:
        err.print(f"followup: {line}", markup=False)
    if len(result.rejected) > 50:
        err.print(f"followup: … and {len(result.rejected) - 50} more rejected lines")
    if result.rejected:
        err.print(
            f"followup: {len(result.rejected)} line(s) rejected; fix them and import the file "
            "again (the good lines are in; importing again changes nothing for them)"
        )
        raise typer.Exit(errors.EXIT_USAGE)


@leads_app.command("check")
def leads_check(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """What a run would trip on in the lead store (SQLite or Postgres): a missing table or
    column, rows it would skip (and why), the missing (account_id, id) index. Changes
    nothing; exit 2 when a run would skip rows or cannot read the table.

    Example: followup leads check --db postgresql://app@db/crm
    """
    from .leadstore import check_lead_store

    loaded = _load_optional(config)
    accounts = {a.id for a in loaded.config.accounts} if loaded is not None else None
    store = _store(loaded, db, config, migrate=False, readonly=True)
    try:
        result = check_lead_store(store, accounts=accounts)
    finally:
        store.close()
    if as_json:
        _print_json(result.as_dict())
        raise typer.Exit(0 if result.ok else errors.EXIT_USAGE)
    for line in result.errors:
        err.print(f"followup: {line}", markup=False)
    for line in result.warnings:
        err.print(f"followup: warning: {line}", markup=False)
    for line in result.bad_rows[:50]:
        err.print(f"followup: {line}", markup=False)
    if len(result.bad_rows) > 50:
        err.print(f"followup: … and {len(result.bad_rows) - 50} more bad rows")
    if result.errors:
        raise typer.Exit(errors.EXIT_USAGE)
    out.print(
        f"{result.where}: table {result.table!r}: {result.rows} rows, "
        f"{len(result.bad_rows)} a run would skip"
        + ("" if result.index is not False else "; index on (account_id, id) missing"),
        markup=False,
    )
    if result.bad_rows:
        raise typer.Exit(errors.EXIT_USAGE)
