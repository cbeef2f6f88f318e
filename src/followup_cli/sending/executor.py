"""The executor ``accountrun.AccountRun`` hands each due lead to: ``Executor`` (what a live
and a dry run share: the account's rate windows, the rendering) and ``DryExecutor`` (the
same walk, claims simulated in memory; writes nothing).

The executor is what makes a run dry or live, chosen once (``Engine.run``): the walk
(``AccountRun``) asks it, never a flag, whether the plan stores next-due hints
(``writes``), how a heartbeat is written (``heartbeat``) and whether to wait for a full
hourly window (``wait_for_window``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..models import Lead
from ..ratewindow import RateWindow
from ..render import TemplateProblem
from ..results import AccountResult, PlannedSend
from ..rules import Decision, local_midnight
from ..store.base import SqlStore

if TYPE_CHECKING:  # pragma: no cover
    from ..accountrun import AccountRun
    from ..engine import Engine


class Executor:
    writes = False  # whether the run writes: its plan stores next-due hints (``plan_account``)

    def __init__(
        self,
        engine: Engine,
        store: SqlStore,
        run: AccountRun,
        result: AccountResult,
        real_time: bool = False,
    ) -> None:
        self.engine = engine
        self.real_time = real_time  # refresh ``now`` from the clock before each claim
        self.store = store
        self.run = run
        self.account = run.account
        self.now = run.now
        self.run_id = run.run_id
        self.result = result
        self.config = engine.config
        self.rate_limit, self.day_limit = engine.config.rate_limits(self.account)
        self.day_tz = engine.config.settings_for(self.account).timezone
        self.calls = 0  # messages handed to the channel (the scheduler's unit of a turn)

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        raise NotImplementedError

    def open_chain(self) -> None:
        """The account's audit chain opened before its first write (a dry run writes none)."""
        return None

    def heartbeat(self) -> None:
        """The run shows it is alive (a live run's row; a dry run has none)."""
        return None

    def wait_for_window(self, budget: float) -> bool:
        """Wait for the account's full hourly window to have room; False: it cannot (the
        rest of the account waits for a later run)."""
        return False

    def flush(self) -> None:
        """Write what is still held in memory (a live run's last outcome, its claims)."""
        return None

    def execute(self, lead: Lead, d: Decision) -> str | None:
        """Handle one due lead; returns "rate_limit" when the account's hourly window is full,
        "daily_cap" when its day is (nothing was claimed: the caller waits or defers)."""
        raise NotImplementedError

    def window(self, store: SqlStore, now: datetime) -> RateWindow:
        """The account's hourly and daily windows, counted now."""
        day_start = local_midnight(now, self.day_tz)
        return RateWindow.count(
            store, self.account.id, now, day_start, self.rate_limit, self.day_limit
        )

    def render(self, lead: Lead, d: Decision) -> tuple[str | None, str | None] | None:
        assert d.sequence is not None and d.message is not None
        try:
            r = self.engine.renderer.render(
                d.sequence, d.message, d.variant_id, lead.context(), self.account, self.now
            )
        except TemplateProblem as tp:  # template_error, too_long, missing_attribute:<key>
            self.result.skipped[tp.reason] += 1
            self.result.bad(lead.id, f"lead {lead.id}: {d.sequence.id}/{d.message.id}: {tp.what}")
            return None
        if not r.text and not r.media_url:
            self.result.skipped["empty_message"] += 1
            return None
        return r.text, r.media_url


class DryExecutor(Executor):
    """Plans what a live run would do, simulating claims in memory; writes nothing. It never
    waits: a dry run happens at the plan's instant."""

    def __init__(
        self,
        engine: Engine,
        store: SqlStore,
        run: AccountRun,
        result: AccountResult,
        real_time: bool = False,
    ) -> None:
        super().__init__(engine, store, run, result)
        self.rate = self.window(self.store, self.now)
        # The people (recipient ids) that said stop or have a message planned: the live
        # run decides each claim again, and sends such a person nothing more.
        self.persons: set[str] = set()

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        if d.keyword_optout:
            self.result.optouts += 1
            self.persons.add((lead.recipient_id or "").strip())
        if d.action == "end":
            self.result.ended[d.reason] += 1
        elif d.action == "holdout":
            self.result.holdout += 1

    def execute(self, lead: Lead, d: Decision) -> str | None:
        assert d.sequence is not None and d.message is not None
        if d.action == "skip":
            self.result.skipped[d.reason] += 1
            return None
        person = (lead.recipient_id or "").strip()
        if person in self.persons:
            return None  # the live run's claim would decide it again: no send to this person
        full = self.rate.full()
        if full is not None:
            return full
        rendered = self.render(lead, d)
        if rendered is None:
            return None
        self.rate.take()
        self.result.would_send += 1
        self.persons.add(person)
        planned = PlannedSend.of(lead, self.account.id, d, *rendered)
        if self.engine.on_planned is not None:
            self.engine.on_planned(planned)
        else:
            self.result.planned.append(planned)
        return None
