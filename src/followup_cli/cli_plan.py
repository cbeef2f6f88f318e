"""``followup plan`` (a forecast of the next days' cron slots) and ``--version``."""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from rich.table import Table

from .cli_common import (
    AccountOpt,
    ConfigOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    _check_account,
    _load,
    _print_json,
    _store,
    _when,
    app,
    err,
    out,
)
from .store.access import READ, reading


def package_version() -> str:
    try:
        return version("followup-cli")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from . import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        out.print(f"followup {package_version()}", markup=False)
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Automated follow-up DMs to sales leads who went silent."""


@app.command("plan")
def plan_command(
    days: Annotated[int, typer.Option("--days", min=1, max=60, help="How many days ahead.")] = 3,
    account: AccountOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Forecast the next N days of cron slots (settings.run_times) against the lead store
    as it is now: per slot and account, how many steps are due, how many go out, how many
    the messaging window loses, and when the backlog clears. Each slot sees what the
    earlier ones would send (the hourly limit, daily caps and the window apply); nothing
    is sent or written. Assumes no replies, conversions or new leads meanwhile.

    Example: followup plan --days 3 --now 2026-03-02T08:00:00+01:00
    """
    from .plan import ASSUMPTIONS, build_plan, summary_lines

    loaded = _load(config)
    _check_account(loaded, account)
    when = _when(now)
    store = _store(loaded, db, config, need=READ)
    try:
        with reading(store):  # a fresh store: the tool's tables exist only inside
            result = build_plan(loaded, store, when, days, account)
    finally:
        store.close()
    if as_json:
        _print_json(result.as_dict())
        return
    _print_plan_table(result, days, when)
    for line in summary_lines(result):
        out.print(line, markup=False)
    out.print(f"Assumes: {ASSUMPTIONS}.", markup=False)
    if result.bad_leads:
        err.print(
            f"followup: warning: {len(result.bad_leads)} bad lead row(s) left out "
            "(`followup leads check` names them)"
        )


def _print_plan_table(result: Any, days: int, when: datetime) -> None:
    """The plan's table: a row per slot and account."""
    from .plan import local

    tz = result.timezone
    table = Table(
        title=f"Plan for {days} day(s) from {when.isoformat()}: slots in {tz}, "
        f"{result.messages_per_hour}/h per account; nothing sent or written"
    )
    for col in ("slot", "account", "due", "go out", "window loses", "left for later"):
        table.add_column(col, justify="left" if col in ("slot", "account") else "right")
    for slot in result.slots:
        for acct, r in result.rows[slot].items():
            table.add_row(
                local(slot, tz),
                acct,
                str(r.due),
                str(r.sent),
                str(r.window_lost),
                str(r.deferred),
            )
    out.print(table)
