"""``followup run``: one run, live or dry, and how it is printed."""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
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
    LogFileOpt,
    LogFormatOpt,
    NowOpt,
    QuietOpt,
    VerboseOpt,
    _check_account,
    _fmt,
    _load,
    _now,
    _print_json_listing,
    _store,
    app,
    err,
    out,
)
from .clock import Clock
from .errors import ConfigError
from .store import resolve_db, sqlite_path
from .store.access import READ, WRITE, reading

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .engine import Engine, RunOptions, RunSummary
    from .operate import RunOps
    from .runlock import RunLock
    from .store.base import SqlStore

# ----------------------------------------------------------------------- run

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be sent; send and write nothing.")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=0, help="Send at most N messages.")]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget",
        min=1,
        help="Run time budget in seconds (default: until the next cron slot).",
    ),
]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", min=0, help="Seconds to wait for another run's lock (SQLite)."),
]
OnScheduleOpt = Annotated[
    bool,
    typer.Option(
        "--on-schedule",
        help="For a frequent cron tick or timer: run only when a slot of settings.run_times "
        "(settings.timezone) is due and no run took it; otherwise exit 0 at once, writing "
        "nothing.",
    ),
]
MetricsFileOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics-file",
        envvar="FOLLOWUP_METRICS_FILE",
        help="Write Prometheus metrics of the run here (node_exporter textfile collector).",
    ),
]
PingUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--ping-url",
        envvar="FOLLOWUP_PING_URL",
        help="Healthchecks-style URL pinged at start (/start) and end (/<exit code>).",
    ),
]
PingTimeoutOpt = Annotated[
    float,
    typer.Option("--ping-timeout", min=0.1, help="Seconds a run waits for its pings at most."),
]


@app.command()
def run(
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    dry_run: DryRunOpt = False,
    now: NowOpt = None,
    account: AccountOpt = None,
    limit: LimitOpt = None,
    budget: BudgetOpt = None,
    wait: WaitOpt = 5.0,
    as_json: JsonOpt = False,
    on_schedule: OnScheduleOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = "text",
    log_file: LogFileOpt = None,
    metrics_file: MetricsFileOpt = None,
    ping_url: PingUrlOpt = None,
    ping_timeout: PingTimeoutOpt = 5.0,
) -> None:
    """The cron job: send every follow-up that is due now."""
    from . import operate

    mode = _DryRun(as_json) if dry_run else _LiveRun(as_json)  # decided here, once
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
    mode.preview(ops, loaded, account)
    _check_account(loaded, account)
    options = _options(now, dry_run, account, limit, budget, ops.run_id)
    mode.take_lock(db, config, wait)
    store = _store(loaded, db, config, need=mode.need)
    try:
        with mode.checked(store), _fewer_collections():
            summary = _run_on(store, loaded, ops, options, mode, on_schedule)
        code = ops.done(summary, store, loaded)
    except BaseException:
        mode.abort()  # e.g. the check found the file corrupt: nothing of the plan is shown
        raise
    finally:
        store.close()
    mode.show(summary, ops)
    raise typer.Exit(code)


def _options(
    now: str | None,
    dry_run: bool,
    account: str | None,
    limit: int | None,
    budget: float | None,
    run_id: str,
) -> RunOptions:
    from .engine import RunOptions

    return RunOptions(
        now=_now(now),
        dry_run=dry_run,
        account=account,
        limit=limit,
        budget_seconds=budget,
        run_id=run_id,
    )


class _LiveRun:
    """How ``followup run`` runs and shows a live run: under the run lock (SQLite), with
    write access, a progress bar on a terminal; then the JSON or, on a terminal, the
    summary; under cron only the bad rows not reported before."""

    need = WRITE

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock: RunLock | None = None
        self.bar: tuple[Any, Any] | None = None

    def preview(self, ops: RunOps, loaded: LoadedConfig, account: str | None) -> None:
        return None

    def take_lock(self, db: str | None, config: str, wait: float) -> None:
        self.lock = _run_lock(resolve_db(db, config), wait)

    def checked(self, store: SqlStore) -> AbstractContextManager[None]:
        return nullcontext()

    def hooks(self) -> dict[str, Any]:
        """The engine's callbacks: a progress bar on a terminal."""
        self.bar = _progress() if sys.stderr.isatty() and not self.as_json else None
        return {"progress": self.bar and self.bar[1]}

    def run(self, engine: Engine, options: RunOptions, store: SqlStore) -> RunSummary:
        if self.lock is None:
            return engine.run(options)
        with self.lock:
            return engine.run(options)

    def finished(self) -> None:
        if self.bar:
            self.bar[0].stop()

    def abort(self) -> None:
        return None

    def show(self, summary: RunSummary, ops: RunOps) -> None:
        data = summary.as_dict(messages=False)
        if self.as_json:
            _print_json_listing(data, "messages", summary.message_dicts())
        elif sys.stdout.isatty():
            _print_summary(data)
        # On a terminal every bad row; under cron only those not reported before, so a row
        # that stays bad is mailed once rather than three times a day.
        _print_closing(
            summary, data, data["bad_leads" if sys.stderr.isatty() else "bad_leads_new"], ops
        )


class _DryRun:
    """How ``followup run --dry-run`` runs and shows a dry run: first the warnings the real
    run would stop at; read access only, no lock, the file checked beside the run; the
    planned messages streamed (``_PlanSink``), on a fresh store inside a transaction rolled
    back; then the JSON or the table, and every bad row."""

    need = READ

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.plan: _PlanSink | None = None

    def preview(self, ops: RunOps, loaded: LoadedConfig, account: str | None) -> None:
        _warn_unset_tokens(ops, loaded, account)  # what the real run would stop at

    def take_lock(self, db: str | None, config: str, wait: float) -> None:
        return None

    def checked(self, store: SqlStore) -> AbstractContextManager[None]:
        return _quick_checked(store)

    def hooks(self) -> dict[str, Any]:
        """The engine's callbacks: each planned message to the sink."""
        self.plan = _PlanSink(spool=self.as_json)
        return {"on_planned": self.plan.add}

    def run(self, engine: Engine, options: RunOptions, store: SqlStore) -> RunSummary:
        # A fresh store: the tool's tables exist in a transaction that is rolled back.
        with reading(store):
            return engine.run(options)

    def finished(self) -> None:
        return None

    def abort(self) -> None:
        if self.plan is not None:
            self.plan.close()

    def show(self, summary: RunSummary, ops: RunOps) -> None:
        assert self.plan is not None
        data = summary.as_dict(messages=False)
        if self.as_json:
            self.plan.print_json(data)
        else:
            _print_dry_run(summary, self.plan)
        _print_closing(summary, data, data["bad_leads"], ops)


@contextmanager
def _quick_checked(store: SqlStore) -> Iterator[None]:
    """A dry run checks the file (``SqlStore.quick_check``): a preview reads less than the
    run writes, and a corrupt page must show. On a second connection while the run plans
    (SQLite checks without the GIL; 0.75 s of a dry run of a million leads, one after the
    other before): what it finds ends the command (exit 2, one line) before anything is
    printed, in place of any error the run met on the same file."""
    try:
        checker = store.checker()
    except Exception:  # noqa: BLE001 - no second connection: check on this one, first
        checker = None
    if checker is None:
        problem = store.quick_check()
        if problem is not None:
            raise errors.StoreCorrupt(problem)
        yield
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quick-check") as pool:
        check = pool.submit(checker.quick_check)
        try:
            yield
        except Exception:
            if check.result() is None:
                raise
        except BaseException:  # interrupted: the check is no longer wanted
            checker.interrupt()
            raise
        finally:
            check.exception()  # waits for it (an interrupted check ends at once)
            checker.close()
        problem = check.result()
        if problem is not None:
            raise errors.StoreCorrupt(problem) from None


# Container objects allocated between two collections of the youngest generation, during a
# run. A run makes a few dozen per due lead (rows, leads, states, decisions), nearly all
# freed by their reference counts; at Python's default (700) the collector ran ~1,000
# times for 100k due leads, and its full passes over every object of the process: 0.56 s,
# 12 % of the run's CPU, against 0.08 s at this threshold. Cyclic garbage waits longer.
GC_YOUNG_THRESHOLD = 50_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Inside: the garbage collector runs less often (``GC_YOUNG_THRESHOLD``); restored after
    (a command run in process leaves the process as it found it)."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_YOUNG_THRESHOLD), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _warn_unset_tokens(ops: RunOps, loaded: LoadedConfig, account: str | None) -> None:
    """A dry run warns of the tokens the real run would stop at."""
    from .tokens import unset_problems

    for p in unset_problems(loaded.config):
        if account in (None, p.where.removeprefix("accounts: ")):
            ops.say(logging.WARNING, f"warning: {p.where}: {p.what}")


def _run_lock(target: str, wait: float) -> RunLock | None:
    """A live run's lock: on SQLite a file beside the database; None elsewhere (Postgres
    runs take their claims row by row; a database in memory is the process's own)."""
    from .runlock import RunLock

    path = sqlite_path(target)
    return None if path is None else RunLock(f"{path}.lock", wait_seconds=wait)


def _run_on(
    store: SqlStore,
    loaded: LoadedConfig,
    ops: RunOps,
    options: RunOptions,
    mode: _LiveRun | _DryRun,
    on_schedule: bool,
) -> RunSummary:
    """The run itself on an open store: keys checked, the slot taken (``--on-schedule``),
    the engine run as ``mode`` runs it (live: under the lock; dry: in a transaction rolled
    back when the store is fresh)."""
    from .channels import make_channel
    from .engine import Engine
    from .store.sealing import check_keys

    store.lead_columns()
    check_keys(store)  # a key that cannot read the rows: exit 2 before anything is sent
    when = options.now
    if on_schedule and not loaded.config.settings.run_times:
        raise errors.ConfigError(
            f"{loaded.path}: settings.run_times is empty: --on-schedule has no slot to run "
            "(nothing was sent); list the times, or have cron call `followup run` at them"
        )
    if on_schedule and not ops.take_slot(store, loaded.config.settings, when or _wall()):
        raise typer.Exit(0)  # no slot due, or another run took it: nothing to do
    ops.started(when or _wall())
    # --json owns stdout: the console channel then prints to stderr
    channel = make_channel(loaded.config, stream=sys.stderr if mode.as_json else None)
    engine = Engine(loaded, store, channel, Clock(fixed=when), on_sent=ops.on_sent, **mode.hooks())
    try:
        summary = mode.run(engine, options, store)
    except BaseException:
        mode.abort()
        raise
    mode.finished()
    channel.close()
    return summary


def _print_closing(summary: RunSummary, data: dict[str, Any], bad: list[str], ops: RunOps) -> None:
    """A run's last lines, after the JSON, the table or the summary: the ``bad`` lead rows
    and the failure line for cron."""
    for line in bad[:20]:
        ops.say(logging.WARNING, f"warning: skipped {line}")
    if len(bad) > 20:
        ops.say(logging.WARNING, f"warning: … and {len(bad) - 20} more bad lead rows")
    if summary.exit_code == errors.EXIT_SEND_FAILURES:
        ops.say(logging.ERROR, _failure_line(data))


def _wall() -> datetime:
    return datetime.now(UTC)


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ConfigError(f"--log-format {value!r}: use text or json")
    return value


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
    left = data.get("left_to_other_runs") or []
    if left:
        names = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        out.print(f"  served by another run (it holds their lease): {escape(names)}")
    busy = ("sent", "failed", "unknown", "skipped", "deferred")
    if not any(data[k] for k in busy) and not data.get("left_to_other_runs"):
        out.print("  nothing was due; `followup explain LEAD` shows why a lead waits")


DRY_RUN_ROWS = 50  # rows of the dry-run table; --json lists every planned message


# json.dumps(x, default=str), without building an encoder for every planned message
_LINE = json.JSONEncoder(default=str)


def _line_encoder() -> Callable[[Any], str]:
    """``_LINE.encode`` for a planned message's dict. ``JSONEncoder.encode`` builds a new C
    encoder at every call (a third of its time for one message); this one is built once,
    without the circular-reference check (a planned message is a flat dict). Where the C
    encoder is missing, or does not encode a sample as ``_LINE`` does, ``_LINE.encode``."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    sample = {"a": 'é\u2028"', "n": None, "i": -3, "f": 1.5, "t": True, "o": datetime(2026, 1, 1)}
    try:
        c = c_make_encoder(  # the arguments JSONEncoder.iterencode passes it
            None,
            _LINE.default,
            encode_basestring_ascii,
            _LINE.indent,
            _LINE.key_separator,
            _LINE.item_separator,
            _LINE.sort_keys,
            _LINE.skipkeys,
            _LINE.allow_nan,
        )

        def encode(o: Any) -> str:
            return "".join(c(o, 0))

        if encode(sample) == _LINE.encode(sample):
            return encode
    except Exception:  # noqa: BLE001, S110 - no C encoder, or another signature: the slow path
        pass
    return _LINE.encode


_encode_line = _line_encoder()


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
            self.spool.write(_encode_line(planned.as_dict()) + "\n")

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

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
