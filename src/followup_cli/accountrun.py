"""One account's part of a run: its plan walked in its own order, one API call a turn.

``AccountRun`` plans the account (``Engine.plan_account``), then hands its due leads one at
a time to the run's executor (``sending.LiveExecutor`` or ``DryExecutor``: the only thing
that makes the walk live or dry, chosen by ``Engine.run``), within the account's
hourly and daily caps (waiting for the sliding hour when time is real and the budget
allows), the run's ``--limit`` and time budget; whatever ends its turn, the last outcome is
written and the claims it will not attempt are released (``flush``).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from .config import Account
from .models import Lead
from .results import AccountResult, RunContext
from .rules import Decision
from .sending import Executor
from .store.base import SqlStore

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine


class AccountRun:
    """One account's part of a run: its plan, then its due leads one at a time in its own
    order (windows closing soonest first), within its hourly and daily caps, the run's
    ``--limit`` and time budget. ``step`` does the next piece of work on the store it is
    given; the engine never steps one account on two threads at once."""

    def __init__(
        self, engine: Engine, account: Account, run: RunContext, executor: type[Executor]
    ) -> None:
        self.engine = engine
        self.account = account
        self.now = run.now
        self.run_id = run.run_id
        self.options = run.options
        self.budget = run.budget
        self.remaining = run.remaining  # the run's --limit, shared (engine._lock)
        self.result = AccountResult(account.id)
        self.executor_type = executor  # live or dry: chosen once, by ``Engine.run``
        self.executor: Executor | None = None
        self.planned: (
            Future[tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]] | None
        ) = None
        # The plan; a lead's entry is dropped (None) once the walk has moved past it, so
        # that a long run does not hold every lead it has sent to until its end.
        self.actionable: list[tuple[Lead, Decision] | None] = []
        self.i = 0  # the next lead of ``actionable``
        self.batch_size = engine.config.settings_for(account).batch_size
        self.rate_blocked = False  # the account is at its hourly limit and cannot wait for it
        self.day_blocked = False  # the account's daily cap is reached
        self.beat = 0.0

    def _start(self, store: SqlStore) -> Executor:
        engine, result = self.engine, self.result
        if self.planned is not None:  # planned ahead (a dry run) on another connection
            self.actionable, bookkeeping = self.planned.result()
            self.planned = None
        else:
            self.actionable, bookkeeping = engine.plan_account(
                self.account, store, self.now, result, self.executor_type.writes
            )
        # Real time moves during a run (a send takes time, a wait takes longer); with --now
        # the run happens at one instant and never waits.
        self.real_time = self.options.now is None and not engine.clock.simulated
        executor = self.executor_type(engine, store, self, result, self.real_time)
        if self.actionable or bookkeeping:  # (a live run will write: its audit chain opened)
            executor.open_chain()
        for lead, d in bookkeeping:
            executor.bookkeep(lead, d)
        self.beat = engine.clock.elapsed()
        return executor

    def _sends_from(self, i: int) -> int:
        return sum(1 for ld in self.actionable[i:] if ld is not None and ld[1].action == "send")

    def limit_left(self) -> int | None:
        """Sends the run's --limit still allows after the current lead (None: no limit)."""
        with self.engine._lock:
            return self.remaining[0]

    def step(self, store: SqlStore) -> bool:
        """Plan the account if not yet done, then handle its next leads up to and including
        the first that calls the API. True while leads are left; once none is, the last
        outcome is written (and claims never attempted are released) too."""
        try:
            more = self._step(store)
        except BaseException:
            self._flush_quietly()
            raise
        if not more:
            self.flush(store)
            # Done: its plan is no longer read. A run holds every account until the end, so
            # keeping each one's leads and decisions was most of a dry run's peak memory.
            self.actionable = []
        return more

    def flush(self, store: SqlStore) -> None:
        """Write the last send's outcome if it is still held, and release the claims this
        account's turn will not attempt (the run stops early)."""
        if self.executor is not None:
            self.executor.store = store
            self.executor.flush()

    def _flush_quietly(self) -> None:
        """After an error: the last outcome if the store still takes it; else its claim stays
        pending, for the next run to mark unknown (as after a crash), and the claims never
        attempted for it to release."""
        try:
            if self.executor is not None:
                self.executor.flush()
        except Exception:  # noqa: BLE001, S110 - the first error is the one to report
            pass

    def _step(self, store: SqlStore) -> bool:
        """Walk the plan until one API call is made (True: the next account's turn) or the
        walk ends (False)."""
        if self.executor is None:
            self.executor = self._start(store)
        executor = self.executor
        executor.store = store
        calls = executor.calls
        total = len(self.actionable)
        while self.i < total:
            if executor.calls != calls:
                return True  # one API call a turn: the next account's turn
            i = self.i
            self.i += 1
            if i:
                self.actionable[i - 1] = None  # walked past: read by nothing any more
            entry = self.actionable[i]
            assert entry is not None
            if not self._lead(store, i, total, *entry):
                break
        self.i = total
        return False

    def _lead(self, store: SqlStore, i: int, total: int, lead: Lead, d: Decision) -> bool:
        """The plan's ``i``-th lead: deferred, given to the executor, or the walk's end
        (False: the account stopped, the time budget or the run's --limit is used up)."""
        result, executor = self.result, self.executor
        assert executor is not None
        self._heartbeat(i)
        if self._ended(i):
            return False
        if d.action == "send" and (self.rate_blocked or self.day_blocked):
            result.deferred["daily_cap" if self.day_blocked else "rate_limit"] += 1
            self._progress(i, total)
            return True
        counted = self._count_send(i) if d.action == "send" else False
        if counted is None:
            return False
        planned, handed = result.would_send, executor.calls
        verdict = self._execute(store, lead, d)
        if (
            counted
            and verdict not in ("rate_limit", "daily_cap")  # (given back in _execute)
            and executor.calls == handed
            and result.would_send == planned
        ):
            # Decided again at the claim and not sent (a second row of one person, a
            # reply or STOP since the plan, a template this lead cannot fill; in a dry run,
            # a person already planned or who said stop): --limit counts messages, so the
            # room goes to the next lead.
            self._give_back()
        self._progress(i, total)
        return True

    def _heartbeat(self, i: int) -> None:
        engine, executor = self.engine, self.executor
        assert executor is not None
        if i % self.batch_size == 0 or engine.clock.elapsed() - self.beat > 30:
            # Each batch (and every 30 s within one) the run shows it is alive, so that
            # other runs never take its open claims for a dead run's.
            self.beat = engine.clock.elapsed()
            executor.heartbeat()

    def _ended(self, i: int) -> bool:
        """Whether the walk ends at the ``i``-th lead (the account stopped, the time budget
        used up), the sends left deferred."""
        result = self.result
        if result.stopped:
            result.deferred["account_stopped"] += self._sends_from(i)
            return True
        if self.engine.clock.elapsed() > self.budget:
            result.deferred["time_budget"] += self._sends_from(i)
            return True
        return False

    def _count_send(self, i: int) -> bool | None:
        """One of the run's --limit sends taken for the ``i``-th lead: True; False when the
        run has no limit; None when it is used up (the sends left deferred: the walk ends)."""
        with self.engine._lock:
            if self.remaining[0] is not None and self.remaining[0] <= 0:
                self.result.deferred["limit"] += self._sends_from(i)
                return None
            if self.remaining[0] is not None:
                self.remaining[0] -= 1
                return True
        return False

    def _execute(self, store: SqlStore, lead: Lead, d: Decision) -> str | None:
        """The executor's handling of one lead, waiting for the hourly window when time is
        real and the budget allows; a full window or day defers the account's rest."""
        result, executor = self.result, self.executor
        assert executor is not None
        while (verdict := executor.execute(lead, d)) in ("rate_limit", "daily_cap"):
            if verdict == "daily_cap":
                # The account's day is used up: nothing to wait for in this run.
                self.day_blocked = True
                result.deferred["daily_cap"] += 1
                self._give_back()
                break
            # At the limit: wait for the sliding window when the executor can (a live run,
            # time real, the budget allows); otherwise the rest of the account waits for a
            # later run.
            if not executor.wait_for_window(self.budget):
                self.rate_blocked = True
                result.deferred["rate_limit"] += 1
                self._give_back()
                break
        return verdict

    def _progress(self, i: int, total: int) -> None:
        if self.engine.progress:
            self.engine.progress(self.account.id, i + 1, total)

    def _give_back(self) -> None:
        """A send the --limit counted did not happen: it counts for another lead."""
        with self.engine._lock:
            if self.remaining[0] is not None:
                self.remaining[0] += 1
