"""Operating it: ``schedule``, ``status``, ``tokens check`` and ``tokens refresh``."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

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
    UnusedDbOpt,
    _check_account,
    _fmt,
    _load,
    _print_json,
    _store,
    _when,
    app,
    err,
    out,
)
from .store.access import READ

if TYPE_CHECKING:
    from .tokens import TokenState

tokens_app = typer.Typer(
    help="Access tokens: set, accepted, expiring; refresh a long-lived one.", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")


@app.command("schedule")
def schedule_command(
    config: ConfigOpt = "sequences.yaml",
    db: UnusedDbOpt = None,
    now: NowOpt = None,
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="Slots to show.")] = 6,
) -> None:
    """The schedule (settings.run_times in settings.timezone): the next slots, and the
    systemd OnCalendar= line that wakes the tool at them."""
    from .schedule import latest_slot, on_calendar, slots_between

    loaded = _load(config, strict=False)
    st = loaded.config.settings
    when = _when(now)
    last = latest_slot(when, st)
    out.print(f"run_times {', '.join(st.run_times) or '(none)'} in {st.timezone}")
    if last:
        out.print(f"  latest slot: {last.key} ({_fmt(last.at)} UTC)")
    for s in slots_between(when, when + timedelta(days=max(2, count)), st)[:count]:
        out.print(f"  next: {s.key} ({_fmt(s.at)} UTC)")
    out.print(on_calendar(st))


@app.command("status")
def status_command(
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    max_age_hours: Annotated[
        float,
        typer.Option(
            "--max-age-hours",
            min=0.1,
            help="Unhealthy (exit 3) when the last successful run is older than this.",
        ),
    ] = 26,
    check_tokens: Annotated[
        bool, typer.Option("--check-tokens", help="Also ask the API about each token.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Is the job healthy? Last run per slot, last success, backlog and what will be lost,
    unknown follow-ups, stopped accounts, tokens. Exit 3 when the last success is too old."""
    from .status import build_status

    loaded = _load(config, strict=False)
    when = _when(now)
    store = _store(loaded, db, config, need=READ)
    try:
        data = build_status(loaded, store, when, max_age_hours, check_tokens)
    finally:
        store.close()
    code = 0 if data["healthy"] else errors.EXIT_SEND_FAILURES
    if as_json:
        _print_json(data)
        raise typer.Exit(code)
    _print_status(data)
    raise typer.Exit(code)


def _print_status(data: dict[str, Any]) -> None:
    head = "[green]HEALTHY[/green]" if data["healthy"] else "[red]UNHEALTHY[/red]"
    age = data["last_success_age_hours"]
    out.print(
        f"[bold]followup status[/bold] at {data['now']}: {head}"
        + (
            f" (last success {age:.1f} h ago; threshold {data['max_age_hours']:g} h)"
            if age is not None
            else " (no successful run yet)"
        )
    )
    out.print(
        f"  schedule: {', '.join(data['run_times']) or '(none)'} {data['timezone']}; "
        f"next slot {data['next_slot'] or '-'}"
    )
    for hhmm, r in data["slots"].items():
        if r is None:
            out.print(f"  slot {hhmm}: never run")
        else:
            out.print(f"  slot {hhmm}: last {r['slot']}, exit {r['exit_code']} (run {r['run_id']})")
    lr = data["last_run"]
    if lr:
        why = f": {lr['error']}" if lr.get("error") else f", {lr.get('sent') or 0} sent"
        out.print(f"  last run: {lr['run_id']} at {lr['at']}, exit {lr['exit_code']}{escape(why)}")
    for acct, a in data["accounts"].items():
        out.print(f"  {escape(acct)}: " + escape("; ".join(_account_parts(a)) or "ok"))
    for p in data["problems"]:
        out.print(f"  [yellow]![/yellow] {escape(p)}")


def _account_parts(a: dict[str, Any]) -> list[str]:
    """An account's status line, in parts: its backlog, unknown sends, a stop, its token."""
    parts = []
    b = a["backlog"]
    if b is not None:
        limits = f"{b['messages_per_hour']}/h" + (
            f", {b['messages_per_day']}/day" if b.get("messages_per_day") else ""
        )
        parts.append(
            f"backlog {b['due']} due, {b['servable']} can go out before their windows close "
            f"({limits}), {b['lost']} will be lost"
        )
    if a["unknown"]:
        parts.append(f"{a['unknown']} unknown")
    if a["stopped"]:
        parts.append(f"stopped {a['stopped']}")
    tok = a["token"]
    if tok:
        state = "set" if tok["is_set"] else "NOT SET"
        if tok.get("accepted") is not None:
            state += ", accepted" if tok["accepted"] else ", REFUSED"
        if tok.get("days_left") is not None:
            state += f", expires in {tok['days_left']:.0f} days"
        parts.append(f"token {tok['token_env']} {state}")
    return parts


@tokens_app.command("check")
def tokens_check(
    config: ConfigOpt = "sequences.yaml",
    db: UnusedDbOpt = None,
    account: AccountOpt = None,
    warn_days: Annotated[
        float, typer.Option("--warn-days", min=0, help="Fail when a token expires sooner.")
    ] = 7,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per account: is the token variable set, does the API accept it, when does it expire.
    Exit 2 when an enabled account's token is missing, refused or expires within --warn-days."""
    from .tokens import check

    loaded = _load(config, strict=False)
    _check_account(loaded, account)
    when = _when(now)
    states = check(loaded.config, account=account)
    bad = _tokens_needing_attention(states, when, warn_days, loaded.config.channel.type)
    if as_json:
        _print_json({"ok": not bad, "accounts": [s.as_dict(when) for s in states]})
        raise typer.Exit(2 if bad else 0)
    out.print(_tokens_table(states, when, loaded.config.channel.type))
    if bad:
        err.print(f"followup: {len(bad)} account(s) need attention: {', '.join(bad)}")
        raise typer.Exit(2)


def _tokens_needing_attention(
    states: list[TokenState], when: datetime, warn_days: float, channel_type: str
) -> list[str]:
    """The enabled accounts whose token is missing or refused (Instagram), or expires within
    ``warn_days`` (its problem then says how to refresh it)."""
    bad = []
    for s in states:
        left = s.days_left(when)
        if s.enabled and (s.problem or s.accepted is False) and channel_type == "instagram":
            bad.append(s.account_id)
        elif s.enabled and left is not None and left < warn_days:
            bad.append(s.account_id)
            s.problem = s.problem or (
                f"expires in {max(left, 0):.1f} days: `followup tokens refresh {s.account_id}`"
            )
    return bad


def _tokens_table(states: list[TokenState], when: datetime, channel_type: str) -> Table:
    table = Table(title=f"Access tokens ({channel_type} channel)")
    for col in (
        "account",
        "variable",
        "set",
        "accepted",
        "account on the API",
        "expires",
        "problem",
    ):
        table.add_column(col, overflow="fold")
    for s in states:
        left = s.days_left(when)
        expires = (
            "never"
            if s.never_expires
            else (f"{_fmt(s.expires_at)} UTC ({left:.0f} days)" if s.expires_at else "unknown")
        )
        table.add_row(
            *(
                Text(x)
                for x in (
                    s.account_id + ("" if s.enabled else " (disabled)"),
                    s.token_env or "-",
                    "yes" if s.is_set else "NO",
                    {True: "yes", False: "NO", None: "-"}[s.accepted],
                    f"{s.user_id or '-'}{' @' + s.username if s.username else ''}",
                    expires if s.accepted else "-",
                    s.problem or "",
                )
            )
        )
    return table


@tokens_app.command("refresh")
def tokens_refresh(
    account: Annotated[str, typer.Argument(help="Account id.")],
    config: ConfigOpt = "sequences.yaml",
    db: UnusedDbOpt = None,
) -> None:
    """Refresh the account's long-lived Instagram token (it must be over 24 hours old and
    unexpired) and print the new one on stdout for your secret store. Nothing else is
    written: put it in the env file cron or systemd reads."""
    from .tokens import refresh

    loaded = _load(config, strict=False)
    token, expires = refresh(loaded.config, account)
    sys.stdout.write(token + "\n")
    acct = loaded.config.account(account)
    var = acct.token_env if acct else "the token variable"
    err.print(
        f"followup: new token for {account}"
        + (f", valid until {_fmt(expires)} UTC" if expires else "")
        + f"; store it as {var} (nothing was written)",
        markup=False,
    )


# ------------------------------------------------------------------- explain
