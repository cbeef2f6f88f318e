"""``followup run``: its options and the run on an open store. How a live or a dry run
runs and shows is ``cli_run_modes`` (decided once); what it prints, ``cli_run_output``."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

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
    _load,
    _now,
    _store,
    app,
    err,
)
from .cli_run_modes import _DryRun, _LiveRun
from .clock import Clock
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .engine import RunOptions, RunSummary
    from .operate import RunOps
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
    mode = _DryRun(as_json) if dry_run else _LiveRun(as_json)  # decided here, once
    ops = _begin(
        mode.operation(
            config,
            db,
            on_schedule=on_schedule,
            account=account,
            metrics_file=metrics_file,
            ping_url=ping_url,
            ping_timeout=ping_timeout,
            quiet=quiet,
            printer=lambda line: err.print(f"followup: {line}", markup=False),
        ),
        verbose,
        log_format,
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


def _begin(ops: RunOps, verbose: int, log_format: str, log_file: str | None) -> RunOps:
    """The run's operation begun: its logging set up (``operate.begin``)."""
    from . import operate

    return operate.begin(ops, verbose, _log_format(log_format), log_file)


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


def _wall() -> datetime:
    return datetime.now(UTC)


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ConfigError(f"--log-format {value!r}: use text or json")
    return value
