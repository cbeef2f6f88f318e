"""The Typer app: parse, call one library function, print. Exit codes live here only:
0 done, 2 bad usage or configuration (nothing sent), 3 finished but some sends failed,
75 another run holds the lock, 1 anything unexpected."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from . import errors
from .clock import Clock
from .config import LoadedConfig, check_config, load_config
from .errors import ConfigError, FollowupError
from .models import parse_time
from .store import open_store, resolve_db
from .store.base import SqlStore

app = typer.Typer(
    name="followup",
    help="Automated follow-up DMs to sales leads who went silent.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
sequences_app = typer.Typer(help="Validate and show sequences.yaml.", no_args_is_help=True)
unknown_app = typer.Typer(
    help="Follow-ups whose outcome nobody knows: list and resolve.", no_args_is_help=True
)
tokens_app = typer.Typer(
    help="Access tokens: set, accepted, expiring; refresh a long-lived one.", no_args_is_help=True
)
app.add_typer(sequences_app, name="sequences")
app.add_typer(unknown_app, name="unknown")
app.add_typer(tokens_app, name="tokens")

ConfigOpt = Annotated[
    str,
    typer.Option("--config", envvar="FOLLOWUP_CONFIG", help="sequences.yaml to use."),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="FOLLOWUP_DB",
        help="Database: a file path, sqlite:///file.db or postgresql://… "
        "(default: followup.db beside the config).",
    ),
]
NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Pretend it is this time (ISO 8601; UTC when no offset)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
VerboseOpt = Annotated[
    int,
    typer.Option("--verbose", "-v", count=True, help="Log to stderr too (-v info, -vv debug)."),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no warnings).")
]
LogFormatOpt = Annotated[
    str,
    typer.Option(
        "--log-format", envvar="FOLLOWUP_LOG_FORMAT", help="text, or json (one object a line)."
    ),
]
LogFileOpt = Annotated[
    str | None,
    typer.Option(
        "--log-file",
        envvar="FOLLOWUP_LOG_FILE",
        help="Append the full log here (time, level, run id, account on every line).",
    ),
]

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------- helpers


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise ConfigError(
            f"--now {value!r}: not an ISO 8601 time, e.g. 2026-11-28T09:00:00+01:00"
        ) from None


def _load(config: str, strict: bool = True) -> LoadedConfig:
    loaded = load_config(config)
    if strict:
        problems = [p for p in check_config(loaded) if p.level == "error"]
        if problems:
            raise ConfigError(
                "\n".join(p.format(loaded.path) for p in problems)
                + f"\n{loaded.path}: {len(problems)} problem(s); "
                "fix them (`followup sequences check`)"
            )
    return loaded


def _store(
    loaded: LoadedConfig | None,
    db: str | None,
    config_path: str,
    migrate: bool = True,
    readonly: bool = False,
) -> SqlStore:
    table = loaded.config.settings.lead_table if loaded else "leads"
    return open_store(resolve_db(db, config_path), table, migrate=migrate, readonly=readonly)


def _fmt(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt else "-"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


# ----------------------------------------------------------------------- run


@app.command()
def run(
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send and write nothing.")
    ] = False,
    now: NowOpt = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account id.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="Send at most N messages.")
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            min=1,
            help="Run time budget in seconds (default: until the next cron slot).",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for another run's lock (SQLite)."),
    ] = 5.0,
    as_json: JsonOpt = False,
    on_schedule: Annotated[
        bool,
        typer.Option(
            "--on-schedule",
            help="For a frequent cron tick or timer: run only when a slot of settings.run_times "
            "(settings.timezone) is due and no run took it; otherwise exit 0 at once, writing "
            "nothing.",
        ),
    ] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = "text",
    log_file: LogFileOpt = None,
    metrics_file: Annotated[
        str | None,
        typer.Option(
            "--metrics-file",
            envvar="FOLLOWUP_METRICS_FILE",
            help="Write Prometheus metrics of the run here (node_exporter textfile collector).",
        ),
    ] = None,
    ping_url: Annotated[
        str | None,
        typer.Option(
            "--ping-url",
            envvar="FOLLOWUP_PING_URL",
            help="Healthchecks-style URL pinged at start (/start) and end (/<exit code>).",
        ),
    ] = None,
    ping_timeout: Annotated[
        float,
        typer.Option("--ping-timeout", min=0.1, help="Seconds a run waits for its pings at most."),
    ] = 5.0,
) -> None:
    """The cron job: send every follow-up that is due now."""
    from . import operate
    from .channels import make_channel
    from .engine import Engine, RunOptions
    from .runlock import RunLock

    ops = operate.begin(
        operate.RunOps(
            config,
            db,
            dry_run=dry_run,
            on_schedule=on_schedule,
            account=account,
            metrics_file=metrics_file,
            ping_url=ping_url,
            ping_timeout=ping_timeout,
            quiet=quiet,
            printer=lambda line: err.print(f"followup: {line}", markup=False),
        ),
        verbose,
        _log_format(log_format),
        log_file,
    )
    loaded = _load(config)
    ops.lead_table = loaded.config.settings.lead_table
    if dry_run:  # the preview says what the real run would stop at
        from .tokens import unset_problems

        for p in unset_problems(loaded.config):
            if account in (None, p.where.removeprefix("accounts: ")):
                ops.say(logging.WARNING, f"warning: {p.where}: {p.what}")
    if account is not None and loaded.config.account(account) is None:
        raise ConfigError(f"--account {account}: no such account in {loaded.path}")
    when = _now(now)
    target = resolve_db(db, config)
    lock = None
    if not dry_run and not target.startswith(("postgresql://", "postgres://")):
        path = target[len("sqlite:///") :] if target.startswith("sqlite:///") else target
        lock = RunLock(f"{path}.lock", wait_seconds=wait)
    store = _store(loaded, db, config, migrate=not dry_run, readonly=dry_run)
    try:
        store.lead_columns()
        from .store.sealing import check_keys

        check_keys(store)  # a key that cannot read the rows: exit 2 before anything is sent
        if on_schedule and not ops.take_slot(store, loaded.config.settings, when or _wall()):
            raise typer.Exit(0)  # no slot due, or another run took it: nothing to do
        ops.started(when or _wall())
        # --json owns stdout: the console channel then prints to stderr
        channel = make_channel(loaded.config, stream=sys.stderr if as_json else None)
        progress = _progress() if sys.stderr.isatty() and not as_json and not dry_run else None
        plan = _PlanSink(spool=as_json) if dry_run else None
        engine = Engine(
            loaded,
            store,
            channel,
            Clock(fixed=when),
            progress=progress and progress[1],
            on_planned=plan.add if plan else None,
            on_sent=ops.on_sent,
        )
        options = RunOptions(
            now=when,
            dry_run=dry_run,
            account=account,
            limit=limit,
            budget_seconds=budget,
            run_id=ops.run_id,
        )
        if lock is not None:
            with lock:
                summary = engine.run(options)
        elif dry_run and store.pending_migrations():
            # A fresh store: create the tool's tables in a transaction that is rolled back.
            with store.scratch():
                summary = engine.run(options)
        else:
            summary = engine.run(options)
        if progress:
            progress[0].stop()
        channel.close()
        code = ops.done(summary, store, loaded)
    finally:
        store.close()
    data = summary.as_dict()
    if as_json and plan is not None:
        plan.print_json(data)
    elif as_json:
        _print_json(data)
    elif dry_run and plan is not None:
        _print_dry_run(summary, plan)
    elif sys.stdout.isatty():
        _print_summary(data)
    # On a terminal (and in a dry run) every bad row; under cron only those not reported
    # before, so a row that stays bad is mailed once rather than three times a day.
    bad = data["bad_leads"] if dry_run or sys.stderr.isatty() else data["bad_leads_new"]
    for line in bad[:20]:
        ops.say(logging.WARNING, f"warning: skipped {line}")
    if len(bad) > 20:
        ops.say(logging.WARNING, f"warning: … and {len(bad) - 20} more bad lead rows")
    if summary.exit_code == errors.EXIT_SEND_FAILURES:
        ops.say(logging.ERROR, _failure_line(data))
    raise typer.Exit(code)


def _wall() -> datetime:
    return datetime.now(UTC)


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ConfigError(f"--log-format {value!r}: use text or json")
    return value


def _pending_migrations(store: SqlStore) -> bool:
    return bool(store.pending_migrations())


def _progress() -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    p = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, Any] = {}
    p.start()

    def update(account_id: str, done: int, total: int) -> None:
        if account_id not in tasks:
            tasks[account_id] = p.add_task(account_id, total=total)
        p.update(tasks[account_id], completed=done)

    return p, update


def _failure_line(data: dict[str, Any]) -> str:
    parts = []
    if data["failed"]:
        n = sum(data["failed"].values())
        codes = ", ".join(f"code {k}: {v}" for k, v in data["failed"].items())
        parts.append(f"{n} send(s) failed ({codes})")
    if data["unknown"]:
        parts.append(
            f"{data['unknown']} send(s) with unknown outcome (see `followup unknown list`)"
        )
    if data["stale_claims_marked_unknown"]:
        parts.append(
            f"{data['stale_claims_marked_unknown']} send(s) of a run that died mid-call marked "
            "unknown (check them: `followup unknown list`)"
        )
    for acct, why in data["stopped_accounts"].items():
        parts.append(why if acct in why else f"{acct}: {why}")
    parts.append(f"{data['sent']} sent")
    return "; ".join(parts)


def _print_summary(data: dict[str, Any]) -> None:
    """The closing summary on a terminal: sent; skipped by reason; failed by code; unknown;
    deferred by reason (rate_limit, throttled, time_budget, ...); ended; waiting; time."""
    elapsed = data["elapsed_seconds"]
    head = f"[bold]followup run[/bold] {data['now']}: [green]{data['sent']} sent[/green]"
    out.print(f"{head} in {elapsed:.1f}s" if elapsed >= 1 else f"{head} in {elapsed:.2f}s")
    lines = (
        ("skipped", "skipped", "{k} {v}"),
        ("failed", "failed", "{v} with code {k}"),
        ("deferred", "deferred", "{k} {v}"),
        ("ended", "ended", "{k} {v}"),
        ("waiting", "waiting", "{k} {v}"),
    )
    for label, key, fmt in lines:
        if data[key]:
            items = ", ".join(fmt.format(k=k, v=v) for k, v in data[key].items())
            out.print(f"  {label}: {escape(items)}")
    if data["unknown"]:
        out.print(
            f"  [yellow]unknown: {data['unknown']}[/yellow] (never resent; `followup unknown list`)"
        )
    if data["stale_claims_marked_unknown"]:
        out.print(f"  claims of dead runs marked unknown: {data['stale_claims_marked_unknown']}")
    accounts = data.get("accounts") or {}
    if len(accounts) > 1:
        for acct, a in accounts.items():
            failed = sum(a["failed"].values())
            deferred = sum(a["deferred"].values())
            out.print(
                f"  {escape(acct)}: {a['sent']} sent, {failed} failed, {a['unknown']} unknown, "
                f"{deferred} deferred"
            )
    for acct, why in data["stopped_accounts"].items():
        out.print(f"  [red]stopped {escape(acct)}[/red]: {escape(why)}")
    busy = ("sent", "failed", "unknown", "skipped", "deferred")
    if not any(data[k] for k in busy):
        out.print("  nothing was due; `followup explain LEAD` shows why a lead waits")


DRY_RUN_ROWS = 50  # rows of the dry-run table; --json lists every planned message


class _PlanSink:
    """A dry run's planned messages, streamed: the first rows for the table and, for
    --json, every one spooled to a temporary file (memory stays flat at any size)."""

    def __init__(self, spool: bool) -> None:
        import tempfile

        self.first: list[Any] = []
        self.count = 0
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8") if spool else None

    def add(self, planned: Any) -> None:
        self.count += 1
        if len(self.first) < DRY_RUN_ROWS:
            self.first.append(planned)
        if self.spool is not None:
            self.spool.write(json.dumps(planned.as_dict(), default=str) + "\n")

    def print_json(self, data: dict[str, Any]) -> None:
        """``data`` as _print_json prints it, its "messages" read back from the spool."""
        head = json.dumps({k: v for k, v in data.items() if k != "messages"}, indent=2, default=str)
        w = sys.stdout.write
        w(head[: head.rindex("}")].rstrip() + ',\n  "messages": [')
        assert self.spool is not None
        self.spool.seek(0)
        for i, line in enumerate(self.spool):
            w(("," if i else "") + "\n    " + line.rstrip("\n"))
        w("\n  ]\n}\n" if self.count else "]\n}\n")
        self.spool.close()


def _print_dry_run(summary: Any, plan: _PlanSink) -> None:
    planned = plan.first
    table = Table(
        title=f"Dry run at {summary.now.isoformat()}: {plan.count} message(s) would be sent",
        show_lines=False,
    )
    for col in ("account", "lead", "sequence", "step", "variant", "due", "message"):
        table.add_column(col, overflow="fold")
    for p in planned:
        text = (p.text or "") + (f" [{p.media_url}]" if p.media_url else "")
        table.add_row(
            *(
                Text(x)
                for x in (
                    p.account_id,
                    p.lead_id,
                    p.sequence_id,
                    f"{p.step} {p.message_id}",
                    p.variant_id or "-",
                    _fmt(p.due_at),
                    text,
                )
            )
        )
    out.print(table)
    if plan.count > len(planned):
        out.print(
            f"… and {plan.count - len(planned)} more (the first {len(planned)} are shown; "
            "--json lists every one)"
        )
    data = summary.as_dict()
    for label, key in (
        ("skipped", "skipped"),
        ("deferred", "deferred"),
        ("would end", "ended"),
        ("waiting", "waiting"),
    ):
        if data[key]:
            out.print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in data[key].items()))
    out.print("Nothing was sent or written. Run without --dry-run to send.")


@app.command("schedule")
def schedule_command(
    config: ConfigOpt = "sequences.yaml",
    now: NowOpt = None,
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="Slots to show.")] = 6,
) -> None:
    """The schedule (settings.run_times in settings.timezone): the next slots, and the
    systemd OnCalendar= line that wakes the tool at them."""
    from .schedule import latest_slot, on_calendar, slots_between

    loaded = _load(config, strict=False)
    st = loaded.config.settings
    when = _now(now) or datetime.now(UTC)
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
    when = _now(now) or datetime.now(UTC)
    store = _store(loaded, db, config, migrate=False)
    try:
        store.lead_columns()
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
        out.print(f"  {escape(acct)}: " + escape("; ".join(parts) or "ok"))
    for p in data["problems"]:
        out.print(f"  [yellow]![/yellow] {escape(p)}")


@tokens_app.command("check")
def tokens_check(
    config: ConfigOpt = "sequences.yaml",
    account: Annotated[str | None, typer.Option("--account", help="Only this account id.")] = None,
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
    if account is not None and loaded.config.account(account) is None:
        raise ConfigError(f"--account {account}: no such account in {loaded.path}")
    when = _now(now) or datetime.now(UTC)
    states = check(loaded.config, account=account)
    bad = []
    for s in states:
        left = s.days_left(when)
        if (
            s.enabled
            and (s.problem or s.accepted is False)
            and loaded.config.channel.type == "instagram"
        ):
            bad.append(s.account_id)
        elif s.enabled and left is not None and left < warn_days:
            bad.append(s.account_id)
            s.problem = s.problem or (
                f"expires in {max(left, 0):.1f} days: `followup tokens refresh {s.account_id}`"
            )
    if as_json:
        _print_json({"ok": not bad, "accounts": [s.as_dict(when) for s in states]})
        raise typer.Exit(2 if bad else 0)
    table = Table(title=f"Access tokens ({loaded.config.channel.type} channel)")
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
    out.print(table)
    if bad:
        err.print(f"followup: {len(bad)} account(s) need attention: {', '.join(bad)}")
        raise typer.Exit(2)


@tokens_app.command("refresh")
def tokens_refresh(
    account: Annotated[str, typer.Argument(help="Account id.")],
    config: ConfigOpt = "sequences.yaml",
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


@app.command()
def explain(
    lead: Annotated[str, typer.Argument(help="Lead id.")],
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why a lead is or is not due, which step is next and when."""
    from .models import BadLead, parse_lead
    from .rules import decide

    loaded = _load(config, strict=False)
    when = _now(now) or datetime.now(UTC)
    store = _store(loaded, db, config, migrate=False, readonly=True)
    try:
        if _pending_migrations(store):
            from .models import LeadState

            state = LeadState()
        else:
            state = None
        row = store.lead_row(lead)
        if row is None:
            raise ConfigError(
                f"no lead {lead!r} in table {store.lead_table!r} of {store.describe()}"
            )
        try:
            parsed = parse_lead(row)
        except BadLead as exc:
            raise ConfigError(f"{exc}; fix the row in the lead store") from None
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
        if d.action == "send" and not _pending_migrations(store):
            # Every rule of the lead holds; the account's own windows may still hold it back.
            from .engine import account_windows

            checks, blocked = account_windows(loaded.config, store, parsed.account_id, when)
            d.checks.extend(checks)
            if blocked is not None:
                d.action, d.reason, d.detail, d.next_at = "wait", *blocked
        history = [] if _pending_migrations(store) else store.followups(lead_id=lead)
    finally:
        store.close()
    if as_json:
        data = d.as_dict()
        data["now"] = when.isoformat()
        data["history"] = [
            {
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in h.items()
                if k not in ("body",)
            }
            for h in history
        ]
        _print_json(data)
        return
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
    store = _store(loaded, db, config)
    try:
        now = datetime.now(UTC)
        if list_:
            _print_optouts(store, as_json)
            return
        if import_:
            from .optouts import import_optouts

            result = import_optouts(store, loaded, import_, account, actor(), now)
            out.print(result.line())
            return
        if export:
            from .optouts import export_optouts

            target = lead or "-"
            text, n, erased = export_optouts(store)
            if target == "-":
                sys.stdout.write(text)
            else:
                Path(target).write_text(text, encoding="utf-8")
                out.print(f"{target}: {n} opt-out(s) written")
            if erased:
                err.print(
                    f"followup: {erased} erasure(s) not exported: they hold no identifier "
                    "(a keyed hash only)"
                )
            return
        assert lead is not None
        who = actor()
        if undo:
            if store.is_erased(lead):
                raise ConfigError(
                    f"{lead}: erased on request; `optout --undo` never lifts an erasure. "
                    f"`followup erase --lift {lead} --yes` does (audited); nothing was changed"
                )
            with store.transaction():
                changed = store.remove_optout(lead)
                store.audit("optout_undo", now, who, lead_id=lead, detail={"reason": reason})
            out.print(f"{lead}: opt-out removed" if changed else f"{lead}: was not opted out")
            return
        with store.transaction():
            changed = store.add_optout(lead, reason, "cli", who, now)
            for e in store.enrollments(lead_id=lead):
                store.end_enrollment(lead, e["sequence_id"], "opted_out", now)
            store.audit(
                "optout", now, who, lead_id=lead, detail={"reason": reason, "source": "cli"}
            )
        exists = store.lead_row(lead) is not None if _has_lead_table(store) else True
        note = (
            ""
            if exists
            else f" (note: no lead {lead!r} in the lead table yet; "
            "the opt-out holds when it appears)"
        )
        out.print((f"{lead}: opted out" if changed else f"{lead}: already opted out") + note)
    finally:
        store.close()


def _print_optouts(store: SqlStore, as_json: bool) -> None:
    """Opted-out leads, then people recorded without a listed lead (imports, erasures)."""
    rows = store.optouts()
    listed = {r["lead_id"] for r in rows}
    people = [
        p for p in store.suppressions() if p["kind"] == "erasure" or p["lead_id"] not in listed
    ]
    if as_json:

        def plain(r: dict[str, Any]) -> dict[str, Any]:
            return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}

        _print_json(
            [plain(r) for r in rows]
            + [
                plain({k: v for k, v in p.items() if k not in ("person_key", "key_id")})
                for p in people
            ]
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


def _has_lead_table(store: SqlStore) -> bool:
    try:
        store.lead_columns()
        return True
    except ConfigError:
        return False


def _load_optional(config: str) -> LoadedConfig | None:
    """The config when it exists (for lead_table); commands that need none still work."""
    if Path(config).exists():
        return load_config(config)
    return None


# ----------------------------------------------------------------- sequences


@sequences_app.command("check")
def sequences_check(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Validate everything before deploy: schema, ids, conditions, templates, window fit;
    with --db (or FOLLOWUP_DB) also that the lead store opens and has the lead table."""
    from .crypto import storage_problems
    from .storecheck import SAMPLE_ROWS, check_against_leads
    from .tokens import unset_problems

    loaded = load_config(config)
    store_problem: str | None = None  # about the database, not a line of the file
    rows: list[dict[str, Any]] = []
    if db:
        try:
            store = _store(loaded, db, config, migrate=False, readonly=True)
            try:
                store_problem = store.quick_check()  # a file corrupted in the middle
                if store_problem is None:
                    store.lead_columns()
                    rows = store.sample_leads(SAMPLE_ROWS)
            finally:
                store.close()
        except errors.StoreConfigError as exc:
            store_problem = str(exc)
    # Custom attributes are data: with leads to look at, their figures replace the guesses.
    problems = (
        check_config(loaded, check_attributes=not rows)
        + unset_problems(loaded.config)
        + storage_problems(loaded)
    )
    stats = []
    if rows:
        found, stats = check_against_leads(loaded, rows)
        problems += found
    errors_ = [p for p in problems if p.level == "error"]
    warnings = [p for p in problems if p.level == "warning"]
    if as_json:
        _print_json(
            {
                "ok": not errors_ and not store_problem,
                "store": store_problem,
                "sampled_leads": len(rows) if db else None,
                "templates": [t.as_dict() for t in stats],
                "problems": [
                    {
                        "line": p.line,
                        "where": p.where,
                        "what": p.what,
                        "level": p.level,
                        "text": p.format(loaded.path),
                    }
                    for p in problems
                ],
            }
        )
        raise typer.Exit(2 if errors_ or store_problem else 0)
    for p in errors_ + warnings:
        err.print(p.format(loaded.path), markup=False)
    if store_problem:
        err.print(store_problem)
    cfg = loaded.config
    limit = cfg.channel.max_text_bytes
    for t in stats:  # what each template does with the store's leads
        out.print(
            f"{t.name}: {t.eligible} eligible of {len(rows)} sampled leads; longest "
            f"{t.longest} bytes"
            + (f" (lead {t.longest_lead})" if t.longest_lead else "")
            + (f"; {t.too_long} over {limit}" if limit else "; no channel limit"),
            markup=False,
        )
    if errors_ or store_problem:
        n = len(errors_) + bool(store_problem)
        err.print(f"{loaded.path}: {n} error(s); nothing was changed")
        raise typer.Exit(2)
    n_msgs = sum(len(s.messages) for s in cfg.sequences)
    out.print(
        f"{loaded.path}: OK ({len(cfg.sequences)} sequences, {n_msgs} messages, "
        f"{len(cfg.accounts)} accounts, channel {cfg.channel.type}"
        f"{', ' + str(len(warnings)) + ' warning(s)' if warnings else ''})"
    )


@sequences_app.command("show")
def sequences_show(config: ConfigOpt = "sequences.yaml", as_json: JsonOpt = False) -> None:
    """Show sequences, triggers and steps as a tree."""
    from .rules import describe_conditions

    loaded = load_config(config)
    cfg = loaded.config
    if as_json:
        _print_json(cfg.model_dump(mode="json"))
        return
    window = cfg.channel.window_hours
    tree = Tree(
        f"[bold]{loaded.path}[/bold] — channel {cfg.channel.type}"
        f"{f', window {window:g}h' if window else ', no window'}, "
        f"{cfg.channel.messages_per_hour}/h"
        f"{f', {cfg.channel.messages_per_day}/day' if cfg.channel.messages_per_day else ''}"
        " per account"
    )
    for seq in cfg.sequences_by_priority():
        state = "" if seq.active else " [red](inactive)[/red]"
        node = tree.add(
            f"[bold]{seq.id}[/bold] {seq.name or ''} — priority {seq.priority}, max {seq.limit}"
            f"{f', holdout {seq.holdout:.0%}' if seq.holdout else ''}{state}"
        )
        trig = node.add("trigger (all of)")
        for line in describe_conditions(seq.trigger) or ["always"]:
            trig.add(line)
        steps = node.add("messages")
        for i, m in enumerate(seq.messages, 1):
            late = (
                " [yellow]⚠ outside window[/yellow]" if window and m.delay_hours >= window else ""
            )
            off = " [red](inactive)[/red]" if not m.active else ""
            step = steps.add(f"{i}. {m.id} — +{m.delay_hours:g}h {m.type}{off}{late}")
            if m.media_url:
                step.add(f"media: {m.media_url}")
            if m.variants:
                total = sum(v.weight for v in m.variants)
                for v in m.variants:
                    step.add(
                        f"variant {v.id} ({v.weight / total:.0%}): "
                        f"{_one_line(v.template or m.template)}"
                    )
            elif m.template:
                step.add(_one_line(m.template))
    out.print(tree)


def _one_line(text: str | None, width: int = 80) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= width else t[: width - 1] + "…"


# ------------------------------------------------------------------- unknown


@unknown_app.command("list")
def unknown_list(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Follow-ups whose outcome is unknown (and claims still pending)."""
    loaded = _load_optional(config)
    store = _store(loaded, db, config)
    try:
        rows = store.followups(status="unknown") + store.followups(status="pending")
    finally:
        store.close()
    if as_json:
        _print_json(
            [
                {
                    k: (v.isoformat() if isinstance(v, datetime) else v)
                    for k, v in r.items()
                    if k != "body"
                }
                for r in rows
            ]
        )
        return
    if not rows:
        out.print("no follow-ups with an unknown outcome")
    for r in rows:
        out.print(
            f"{r['id']}\t{r['status']}\t{r['lead_id']}\t{r['sequence_id']}/{r['message_id']}\t"
            f"{_fmt(r['claimed_at'])}\t{r.get('reason') or r.get('error_message') or ''}"
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
    store = _store(loaded, db, config)
    try:
        row = store.resolve_unknown(followup_id, sent, actor(), datetime.now(UTC))
        if row is None:
            raise ConfigError(
                f"tracking row {followup_id} is not an unknown follow-up "
                "(see `followup unknown list`)"
            )
    finally:
        store.close()
    out.print(
        f"{followup_id}: {'marked sent' if sent else 'released: a later run may send this step'}"
    )


# ---------------------------------------------------------------- erase


@app.command()
def erase(
    lead: Annotated[
        str, typer.Argument(help="Lead id (with --lift: a lead id or a recipient id).")
    ],
    yes: Annotated[
        bool, typer.Option("--yes", help="Do it (without it, nothing changes).")
    ] = False,
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
    from .store.base import actor, erase_lead, lift_erasure

    loaded = _load_optional(config)
    if lift:
        if not yes:
            raise ConfigError(
                f"erase --lift {lead}: this lets sequences message the erased person again "
                "(their erased data does not come back); add --yes to do it"
            )
        if account is None and loaded is not None and len(loaded.config.accounts) == 1:
            account = loaded.config.accounts[0].id
        store = _store(loaded, db, config)
        try:
            lifted = lift_erasure(store, lead, account, actor(), datetime.now(UTC))
        finally:
            store.close()
        if lifted is None:
            raise ConfigError(
                f"{lead}: no erasure holds for this lead or recipient"
                + ("" if account else " (for a recipient id, give --account)")
            )
        out.print(
            f"{lead}: erasure lifted; sequences may message this person again. Their erased "
            "data does not come back. To keep them from being messaged: `followup optout`"
        )
        return
    if not yes:
        raise ConfigError(
            f"erase {lead}: this removes, for good, the message bodies, ids and notes of the "
            "person behind this lead from the tool's tables and stops messaging them; add --yes "
            "to do it"
        )
    store = _store(loaded, db, config)
    try:
        counts = erase_lead(store, lead, actor(), datetime.now(UTC))
    finally:
        store.close()
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


# ---------------------------------------------------------------- misc


@app.command()
def migrate(config: ConfigOpt = "sequences.yaml", db: DbOpt = None) -> None:
    """Create or upgrade the tool's own tables."""
    loaded = _load_optional(config)
    store = _store(loaded, db, config, migrate=False)
    try:
        store.lead_columns()  # the tool's tables go beside the lead table, nowhere else
        applied = store.migrate()
    finally:
        store.close()
    out.print(f"applied: {', '.join(applied)}" if applied else "up to date")


@app.command()
def keygen() -> None:
    """Print a new key for FOLLOWUP_ENCRYPTION_KEY: message texts, recipient and
    conversation ids and error texts are then stored encrypted. Several keys, comma-separated:
    all read, the first writes (`followup keys rotate` moves everything to it)."""
    from .crypto import new_key

    out.print(new_key())


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to put the demo's config and database.")
    ] = Path("followup-demo"),
    leads: Annotated[int, typer.Option("--leads", min=10, max=100_000)] = 200,
    days: Annotated[int, typer.Option("--days", min=1, max=30)] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print each message.")] = False,
) -> None:
    """Seed a local SQLite store with realistic leads; run a full cycle on the console channel."""
    from .demo import run_demo

    run_demo(directory, n_leads=leads, days=days, out=out, quiet=quiet)


# ------------------------------------------------------------------- handoff


@app.command()
def handoff(
    account: Annotated[str | None, typer.Option("--account", help="Only this account id.")] = None,
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
    if account is not None and loaded.config.account(account) is None:
        raise ConfigError(f"--account {account}: no such account in {loaded.path}")
    when = _now(now) or datetime.now(UTC)
    store = _store(loaded, db, config, migrate=False)
    try:
        rows = []
        if not _pending_migrations(store):
            rows = handoff_leads(loaded.config, store, when, since, account)
    finally:
        store.close()
    if as_json:
        _print_json(
            [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
                for r in rows
            ]
        )
        return
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


# ------------------------------------------------------- report, events, leads (outcomes)

events_app = typer.Typer(
    help="Outcome events from the host app or Instagram webhooks.", no_args_is_help=True
)
app.add_typer(events_app, name="events")


@app.command("report")
def report_command(
    date_: Annotated[
        str | None, typer.Option("--date", help="One day, YYYY-MM-DD (settings.timezone).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="The N days ending today (default 7).")
    ] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account id.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or html.")] = "table",
    now: NowOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (html: required).")
    ] = None,
    section: Annotated[
        str | None,
        typer.Option("--section", help="csv: one tidy table (summary, per_day, ab_tests, ...)."),
    ] = None,
) -> None:
    """KPIs: sent, response and conversion rates, messages, progression, hours, A/B, lift."""
    from .outcomes import reconcile
    from .report import build_report, tables, to_csv
    from .report_formats import check_format_options, write_output

    check_format_options(fmt, output, section)
    loaded = _load(config, strict=False)
    when = _now(now) or datetime.now(UTC)
    store = _store(loaded, db, config)
    try:
        reconcile(store, loaded.config, when)
        data = build_report(store, loaded.config, when, on=date_, days=days, account=account)
    finally:
        store.close()
    if fmt in ("html", "csv") and (output or section):
        write_output(data, fmt, output, section, sys.stdout, err)
    elif fmt == "json":
        _print_json(data)
    elif fmt == "csv":
        sys.stdout.write(to_csv(data))
    else:
        for part in tables(data):
            out.print(part)


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
    when = _now(now) or datetime.now(UTC)
    store = _store(loaded, db, config)
    try:
        name = "<stdin>" if source == "-" else source
        # A replay (--now) sees nothing after its instant; real time allows clock skew.
        skew = timedelta(0) if now else timedelta(minutes=5)
        result = ingest(store, loaded.config, text, name, when, actor(), skew)
    finally:
        store.close()
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


# Command families that live in their own modules register themselves on ``app``.
from . import cli_audit, cli_keys, cli_leads, cli_plan  # noqa: E402, F401
from .cli_examples import add_examples  # noqa: E402

add_examples(app)

# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    from . import operate

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FOLLOWUP_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    lines: list[str] = []
    try:
        # Standalone mode handles usage errors (exit 2), --help and typer.Exit itself and
        # always ends in SystemExit; our own errors and bugs come out here.
        app(args=args, prog_name="followup")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FollowupError as exc:
        if debug:
            traceback.print_exc()
        lines = str(exc).splitlines() or [type(exc).__name__]
        code = exc.exit_code
    except KeyboardInterrupt:
        lines = ["interrupted"]
        code = 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if debug:
            traceback.print_exc()
        lines = [f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)"]
        code = errors.EXIT_UNEXPECTED
    # A run records itself, writes its metrics and pings the end whatever way it ended.
    code, repeated = operate.finish_current(code, "; ".join(lines) if lines else None)
    if not repeated:
        for line in lines:
            err.print(f"followup: {line}", markup=False)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
