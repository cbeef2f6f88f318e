"""How ``followup run`` runs and shows a run, decided once: ``_LiveRun`` (the run lock,
write access, a progress bar) or ``_DryRun`` (read access, the file checked beside the run,
the plan streamed)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from . import errors
from .cli_common import _print_json_listing
from .cli_run_output import _PlanSink, _print_closing, _print_dry_run, _print_summary, _progress
from .store import resolve_db, sqlite_path
from .store.access import READ, WRITE, reading

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .engine import Engine, RunOptions, RunSummary
    from .operate import RunOps
    from .runlock import RunLock
    from .store.base import SqlStore


class _LiveRun:
    """How ``followup run`` runs and shows a live run: under the run lock (SQLite), with
    write access, a progress bar on a terminal; then the JSON or, on a terminal, the
    summary; under cron only the bad rows not reported before."""

    need = WRITE

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock: RunLock | None = None
        self.bar: tuple[Any, Any] | None = None

    def operation(self, config: str, db: str | None, **settings: Any) -> RunOps:
        """The run's operation (``operate.RunOps``): slot, pings, record, metrics."""
        from .operate import RunOps

        return RunOps(config, db, **settings)

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

    def operation(self, config: str, db: str | None, **settings: Any) -> RunOps:
        """The dry run's operation (``operate.DryRunOps``): it takes no slot, pings
        nothing and leaves no record."""
        from .operate import DryRunOps

        return DryRunOps(config, db, **settings)

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
