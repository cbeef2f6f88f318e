"""Operating a run under cron or systemd: its id, its logs, its slot, its record, its
metrics file and its ping, whatever way it ends.

``cli.run`` calls :func:`begin` first; ``cli.main`` calls :func:`finish_current` with the
exit code once the command is over (normally, by a ``FollowupError`` such as a config error
or a held lock, or by a bug), so that every run that starts leaves a row in
``followup_runs``, a metrics file and an end ping, exit 0, 2, 3, 75 or 1 alike.

Under cron: stdout stays silent on success; stderr gets the lines cron should mail (a bad
lead row once per problem, the one-line reason of a failure); the log destination
(``--log-file``, or stderr with ``-v`` / JSON) gets the full record.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import logsetup
from .config import Settings
from .schedule import Slot, latest_slot
from .store.base import SqlStore

log = logsetup.get("run")


@dataclass
class RunOps:
    """A live run's operation: it claims its slot, pings, says the backlog and leaves its
    record, metrics and end ping. ``DryRunOps`` does none of that; the choice is made once,
    where the command starts (``cli_run_modes``)."""

    config_path: str
    db: str | None
    on_schedule: bool = False
    account: str | None = None
    metrics_file: str | None = None
    ping_url: str | None = None
    ping_timeout: float = 5.0
    quiet: bool = False
    stderr_logs: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_mono: float = field(default_factory=time.monotonic)
    printer: Callable[[str], None] | None = None
    now: datetime | None = None
    lead_table: str = "leads"
    slot: Slot | None = None
    slot_claimed: bool = False
    idle: bool = False
    summary: dict[str, Any] | None = None
    backlog: dict[str, dict[str, int]] = field(default_factory=dict)
    news: list[str] = field(default_factory=list)  # lines that make the run exit 3
    pinger: Any = None
    finished: bool = False

    # ---------------------------------------------------------------- lines
    def say(self, level: int, line: str, account: str | None = None) -> None:
        """A line for the operator: logged; a warning or an error is also printed on stderr
        (what cron mails) unless stderr is already a log destination; ``-q`` keeps only
        errors there."""
        log.log(level, line, extra={"account": account or "-"})
        if self.stderr_logs or self.printer is None or level < logging.WARNING:
            return
        if self.quiet and level < logging.ERROR:
            return
        self.printer(line)

    # ---------------------------------------------------------------- slot
    def take_slot(self, store: SqlStore, settings: Settings, now: datetime) -> bool:
        """``--on-schedule``: whether a slot is due and this run took it. When not, the run
        is idle: it ends at once with exit 0 and writes nothing."""
        from . import runs

        slot = latest_slot(now, settings)
        if slot is None:
            self.idle = True
            return False
        key = slot.key if self.account is None else f"{slot.key} account={self.account}"
        self.slot = slot
        taken = runs.slot_taken_by(store, key) if runs.has_slots(store) else None
        return self._take_slot(store, key, taken, now)

    def _take_slot(self, store: SqlStore, key: str, taken: str | None, now: datetime) -> bool:
        from . import runs

        if taken is None and runs.claim_slot(store, key, self.run_id, now):
            self.slot_claimed = True
            self.slot_key = key
            log.info("slot %s is due: running it", key)
            return True
        self.idle = True
        return False

    @property
    def slot_label(self) -> str | None:
        return getattr(self, "slot_key", None)

    # ---------------------------------------------------------------- start
    def started(self, now: datetime) -> None:
        """The run is going ahead: ping start, log it."""
        self.now = now
        self._ping_start()
        log.info(
            "run started at %s%s%s",
            now.isoformat(),
            f" for slot {self.slot_label}" if self.slot_label else "",
            self.kind_note,
        )

    kind_note = ""  # in the log's start line

    def _ping_start(self) -> None:
        if self.ping_url:
            from .ping import Pinger

            self.pinger = Pinger(self.ping_url, self.run_id, self.ping_timeout)
            self.pinger.start()

    def on_sent(self, planned: Any) -> None:
        """One line per API attempt's outcome (engine callback, from account threads); a
        logging problem never stops a run."""
        try:
            self._log_sent(planned)
        except Exception:  # noqa: BLE001
            pass

    def _log_sent(self, planned: Any) -> None:
        extra = {
            "account": planned.account_id,
            "lead": planned.lead_id,
            "sequence": planned.sequence_id,
            "step": planned.message_id,
            "outcome": planned.outcome,
        }
        if planned.outcome == "sent":
            log.info(
                "sent %s/%s to lead %s",
                planned.sequence_id,
                planned.message_id,
                planned.lead_id,
                extra=extra,
            )
        else:
            log.warning(
                "%s %s/%s to lead %s%s",
                planned.outcome,
                planned.sequence_id,
                planned.message_id,
                planned.lead_id,
                f" (code {planned.error_code})" if planned.error_code else "",
                extra=extra | {"code": planned.error_code},
            )

    def done(self, summary: Any, store: SqlStore | None = None, config: Any = None) -> int:
        """The engine finished: log per account, say the backlog; the run's exit code."""
        data = summary.as_dict(messages=False)
        self.summary = {k: v for k, v in data.items() if k != "messages"}
        for acct, a in data.get("accounts", {}).items():
            log.info(
                "account %s: %d sent, %d failed, %d unknown, %d skipped, %d deferred",
                acct,
                a["sent"],
                sum(a["failed"].values()),
                a["unknown"],
                sum(a["skipped"].values()),
                sum(a["deferred"].values()),
                extra={"account": acct, "counts": a},
            )
            if a.get("stopped"):
                log.error("account %s stopped: %s", acct, a["stopped"], extra={"account": acct})
        if store is None or config is None:
            return summary.exit_code
        return self._say_backlog(store, config, summary)

    def _say_backlog(self, store: SqlStore, config: Any, summary: Any) -> int:
        """The backlog said (``backlog.say_backlog``); exit 3 when it has news."""
        from .backlog import say_backlog

        code = summary.exit_code
        self.backlog, self.news = say_backlog(self, store, config, summary)
        if self.summary is not None:
            self.summary["backlog"] = self.backlog
        if self.news and code == 0:
            code = 3
        return code

    # ---------------------------------------------------------------- end
    def finish(self, code: int, error: str | None) -> tuple[int, bool]:
        """Record the run, write metrics, ping the end. Never raises. Returns the code and
        whether ``error`` repeats the last scheduled run's (then it is not printed again:
        a broken config under a 5-minute tick is mailed once, not 12 times an hour)."""
        if self.finished:
            return code, False
        self.finished = True
        elapsed = time.monotonic() - self.started_mono
        if self.idle:
            log.debug("no slot due; nothing done")
            return code, False
        line = error or _summary_line(self.summary, code)
        level = logging.INFO if code == 0 else logging.ERROR
        log.log(level, "run finished with exit %d in %.1fs: %s", code, elapsed, line)
        return self._leave_trace(code, error, elapsed, line)

    def _leave_trace(
        self, code: int, error: str | None, elapsed: float, line: str
    ) -> tuple[int, bool]:
        """The run's row, its metrics file and its end ping (``finish``)."""
        last_ok = None
        repeated = False
        try:
            last_ok, repeated = self._record(code, error)
        except Exception as exc:  # noqa: BLE001 - the record must not hide the run's outcome
            log.error("could not record the run: %s: %s", type(exc).__name__, exc)
        if self.metrics_file:
            try:
                from . import metrics

                finished = datetime.now(UTC)
                if code == 0:
                    last_ok = finished
                reg = metrics.build(
                    exit_code=code,
                    duration_seconds=elapsed,
                    finished=finished,
                    last_success=last_ok,
                    summary=self.summary,
                    backlog=self.backlog,
                    slot=self.slot_label,
                )
                metrics.write(self.metrics_file, reg)
            except Exception as exc:  # noqa: BLE001
                self.say(
                    logging.WARNING,
                    f"warning: could not write --metrics-file {self.metrics_file}: {exc}",
                )
        if self.pinger is None and self.ping_url:
            from .ping import Pinger

            self.pinger = Pinger(self.ping_url, self.run_id, self.ping_timeout)
        if self.pinger is not None:
            self.pinger.finish(code, line)
        return code, repeated

    def _record(self, code: int, error: str | None) -> tuple[datetime | None, bool]:
        """Write the run's row (and give back a slot a run that never ran took); returns the
        last success's finish time for the metrics, and whether the error repeats."""

        from . import runs
        from .errors import StoreConfigError
        from .store import open_store, resolve_db, sqlite_path

        target = resolve_db(self.db, self.config_path)
        try:
            path = sqlite_path(target)
        except StoreConfigError:
            return None, False  # a mistyped --db creates nothing
        if path is not None and not path.exists():
            return None, False
        store = open_store(target, self.lead_table, migrate=False)
        try:
            if not runs.has_runs_table(store):
                return None, False
            if self.slot_claimed and code == 75:
                runs.release_slot(store, self.slot_label or "", self.run_id)
            ok = runs.last_success(store)
            last_ok = ok["finished_at"] if ok else None
            if self.on_schedule and error and not self.slot_claimed:
                newest = runs.runs(store, 1)
                if (
                    newest
                    and newest[0]["exit_code"] == code
                    and newest[0]["summary"].get("error") == error
                ):
                    return last_ok, True  # the same failure as the last tick: said already
            summary = dict(self.summary or {})
            if error:
                summary["error"] = error
            runs.record(
                store,
                self.run_id,
                started=self.started_wall,
                finished=datetime.now(UTC),
                now=self.now,
                exit_code=code,
                slot=self.slot_label,
                summary=summary,
            )
            return last_ok, False
        finally:
            store.close()


class DryRunOps(RunOps):
    """A dry run's operation: it shows what its slot would send and takes nothing; no ping,
    no backlog, no record, no metrics."""

    kind_note = " (dry run)"

    def _take_slot(self, store: SqlStore, key: str, taken: str | None, now: datetime) -> bool:
        self.slot_key = key
        self.idle = taken is not None
        return taken is None

    def _ping_start(self) -> None:
        return None

    def _say_backlog(self, store: SqlStore, config: Any, summary: Any) -> int:
        return summary.exit_code  # type: ignore[no-any-return]

    def _leave_trace(
        self, code: int, error: str | None, elapsed: float, line: str
    ) -> tuple[int, bool]:
        return code, False


def _summary_line(summary: dict[str, Any] | None, code: int) -> str:
    if not summary:
        return f"exit {code}"
    failed = sum((summary.get("failed") or {}).values())
    deferred = sum((summary.get("deferred") or {}).values())
    return (
        f"{summary.get('sent', 0)} sent, {failed} failed, {summary.get('unknown', 0)} unknown, "
        f"{deferred} deferred"
    )


_current: RunOps | None = None


def begin(
    ops: RunOps, verbose: int = 0, log_format: str = "text", log_file: str | None = None
) -> RunOps:
    """Set up logging for this run and make it the one :func:`finish_current` ends."""
    global _current
    ops.stderr_logs = logsetup.configure(verbose, ops.quiet, log_format, log_file)
    logsetup.set_run_id(ops.run_id)
    _current = ops
    return ops


def finish_current(code: int, error: str | None = None) -> tuple[int, bool]:
    """End the current run, if a run command started one (called by ``cli.main``): the exit
    code, and whether ``error`` repeats the last scheduled run's (not to print again)."""
    global _current
    ops, _current = _current, None
    if ops is None:
        return code, False
    try:
        return ops.finish(code, error)
    finally:
        logsetup.reset()


__all__ = ["DryRunOps", "RunOps", "begin", "finish_current"]
