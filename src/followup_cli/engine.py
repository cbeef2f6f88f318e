"""One run: select -> decide -> claim -> send -> record.

* Select (``accountplan.AccountPlanner``): per account, the SQL prefilter pages through
  candidate leads (``plan_account``), leaving out those that cannot be due yet.
* Decide (``rules.decide``, pure): send, skip, end, hold out or wait, per lead.
* Per account (``accountrun.AccountRun``): the plan walked in order, one API call a turn.
* Claim (``sending.LiveExecutor``): the account's next leads in one transaction under its
  lock: re-read, decided again with fresh rows (the rules hold *at the moment of sending*),
  the rate window (``ratewindow.RateWindow``) counted once, a ``pending`` row each,
  committed before any API call and not yet marked attempted.
* Send: per message, one transaction marks the claim attempted unless the lead opted out
  since (and writes the previous outcome); then the channel, outside any transaction.
* Record: the outcome completes the claim (sent / failed / unknown), or releases it when
  the message surely did not go out; written with the account's next transaction. A run
  killed after the mark leaves a ``pending`` row the next run marks ``unknown`` (never
  resent blindly); before it, a claim the next run releases (``claims.py``).
* Concurrency: at most ``settings.max_in_flight`` requests in flight, accounts round robin,
  one send at a time per account (``accountpool.AccountPool._serve``); a live run serves an
  account only while it holds the account's lease, so runs at once share the accounts
  (``leases.py``).

Here: ``Engine`` (the run's phases: begin, serve, summarise, end; the time budget; the
helpers the executors share), made of ``AccountPlanner`` (accountplan.py: select and
decide) and ``AccountPool`` (accountpool.py: the accounts served in turn, or on threads
under leases). ``explain``'s account windows are in accountwindows.py.

Dry-run is a way of running the engine: the same planning, a ``DryExecutor`` that
simulates claims in memory, sends nothing and writes nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from .accountplan import AccountPlanner
from .accountpool import AccountPool
from .accountrun import AccountRun
from .accountwindows import account_windows
from .channels.base import Channel, OutgoingMessage, idempotency_key
from .claims import recover_stale_claims
from .clock import Clock, wall
from .config import Account, Config, LoadedConfig
from .crypto import Cipher
from .handoff import handoff
from .models import DELIVERED, UNKNOWN, Lead
from .render import Renderer
from .results import (
    AccountResult,
    PlannedSend,
    RunContext,
    RunOptions,
    RunSummary,
    decide_or_name,
)
from .rules import Decision, next_run_slot
from .sending import DryExecutor, Executor, LiveExecutor
from .store.base import SqlStore, actor

ProgressFn = Callable[[str, int, int], None]


class Engine(AccountPool, AccountPlanner):
    """Runs the cron job against one store and one channel. Knows nothing of Typer or Rich."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: SqlStore,
        channel: Channel,
        clock: Clock | None = None,
        cipher: Cipher | None = None,
        progress: ProgressFn | None = None,
        on_sent: Callable[[PlannedSend], None] | None = None,
        on_planned: Callable[[PlannedSend], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self.store = store
        self.channel = channel
        self.clock = clock or Clock()
        if cipher is not None:  # else the store's: the keys of FOLLOWUP_ENCRYPTION_KEY
            store.cipher = cipher
        self.renderer = Renderer(self.config)
        self.progress = progress
        self.on_sent = on_sent
        # A dry run hands each planned send here instead of holding them all (the CLI
        # streams them); without it they are kept in ``AccountResult.planned``.
        self.on_planned = on_planned
        self.actor = actor()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ run
    def run(self, options: RunOptions) -> RunSummary:
        """One run of every account ``options`` names. Whether it is a dry run is decided
        here, once: a dry run plans the accounts in turn and writes nothing; a live run
        begins (``_begin``: its row, a dead run's claims), serves the accounts under their
        leases while it reconciles beside them (``_serve_live``) and ends (``_end``: its
        row closed)."""
        now = options.now or self.clock.now()
        run_id = options.run_id or uuid.uuid4().hex[:12]
        summary = RunSummary(run_id=run_id, now=now, dry_run=options.dry_run)
        accounts = [a for a in self.config.accounts if options.account in (None, a.id)]
        budget = options.budget_seconds
        if budget is None:
            budget = self.default_budget_seconds(now)
        run = RunContext(now, run_id, options, budget, remaining=[options.limit])
        if options.dry_run:  # the one place a dry run differs: its executor, and no run row
            results, runs = self._account_runs(accounts, run, DryExecutor)
            with self._censused(runs, now):
                self._in_turn(runs, now)  # a dry run writes nothing: it plans them all
            self._summarise(summary, results, runs)
            return summary
        self._begin(summary, now, run_id)
        results, runs = self._account_runs(accounts, run, LiveExecutor)
        self._serve_live(runs, now, run_id)
        self._summarise(summary, results, runs)
        self._end(summary, results, now, run_id)
        return summary

    def _begin(self, summary: RunSummary, now: datetime, run_id: str) -> None:
        """A live run's start: its row, the claims of runs that are gone, the config
        version seen."""
        self.store.start_run(run_id, socket.gethostname(), os.getpid(), self.actor, wall(), now)
        summary.stale_marked_unknown, summary.stale_released = recover_stale_claims(
            self.store, self.actor, now, run_id
        )
        if self.store.config_seen(self.loaded.digest, self.loaded.path, self.actor, now):
            self.store.audit(
                "config_seen",
                now,
                self.actor,
                run_id,
                detail={"digest": self.loaded.digest, "path": self.loaded.path},
            )

    def _account_runs(
        self, accounts: list[Account], run: RunContext, executor: type[Executor]
    ) -> tuple[list[AccountResult], list[AccountRun]]:
        """The results of the disabled accounts, and a walk (``AccountRun``) for each
        enabled one, in the run's context (its ``--limit`` shared, guarded by self._lock),
        handing its leads to ``executor`` (live or dry)."""
        results = [AccountResult(a.id, stopped=None) for a in accounts if not a.enabled]
        runs = [AccountRun(self, a, run, executor) for a in accounts if a.enabled]
        return results, runs

    def _summarise(
        self, summary: RunSummary, results: list[AccountResult], runs: list[AccountRun]
    ) -> None:
        """The accounts' results in the config's order, and the run's time, in ``summary``."""
        results.extend(r.result for r in runs)
        order = {a.id: i for i, a in enumerate(self.config.accounts)}
        summary.accounts = sorted(results, key=lambda r: order.get(r.account_id, 1 << 30))
        summary.elapsed_seconds = self.clock.elapsed()

    def _end(
        self, summary: RunSummary, results: list[AccountResult], now: datetime, run_id: str
    ) -> None:
        """A live run's end: the open unknowns counted, the bad lead rows noted (each once),
        its row closed with the exit code and the summary."""
        summary.unknown_open = self.store.count_open(UNKNOWN)
        summary.bad_leads_new = self.store.note_bad_leads(
            [(i, b) for a in results for i, b in zip(a.bad_lead_ids, a.bad_leads, strict=True)],
            now,
            self.actor,
            run_id,
        )
        self.store.finish_run(run_id, wall(), summary.exit_code, summary.as_dict(messages=False))

    def default_budget_seconds(self, now: datetime) -> float:
        """End a run before the next cron slot (5 minutes early), within run_budget_minutes."""
        st = self.config.settings
        to_next = (next_run_slot(now, st) - now).total_seconds() - 300
        return max(60.0, min(st.run_budget_minutes * 60, to_next))

    # ----------------------------------------------------------- stale claims
    def expire_stale_claims(self, now: datetime, run_id: str) -> int:
        """Other runs' claims whose run is gone: ``unknown`` when attempted (never resent
        blindly), released when never handed to the API (``claims.py``). Returns the
        number marked unknown."""
        return recover_stale_claims(self.store, self.actor, now, run_id)[0]

    def _wait_for_rate_window(
        self, account: Account, store: SqlStore, run_id: str, budget: float
    ) -> bool:
        """Sleep until the account's sliding 60-minute window has room again.

        False (without sleeping) when the wait would overrun the run's time budget. Sleeps
        in slices of at most 30 s, heartbeating between them.
        """
        limit, _ = self.config.rate_limits(account)
        while True:
            now = self.clock.now()
            since = now - timedelta(hours=1)
            if store.recent_sends(account.id, since, limit) < limit:
                return True
            oldest = store.oldest_recent_send(account.id, since)
            wait = (oldest + timedelta(hours=1) - now).total_seconds() if oldest else 1.0
            wait = max(wait, 0.01)
            if self.clock.elapsed() + wait > budget:
                return False
            while wait > 0:
                step = min(wait, 30.0)
                self.clock.sleep(step)
                wait -= step
                store.heartbeat(run_id, wall())

    # ------------------------------------------------------------- helpers
    def outgoing(
        self,
        account: Account,
        lead: Lead,
        d: Decision,
        text: str | None,
        media: str | None,
    ) -> OutgoingMessage:
        assert d.message is not None and d.sequence is not None
        return OutgoingMessage(
            account_id=account.id,
            recipient_id=lead.recipient_id,
            text=text,
            media_type=d.message.type if media else None,
            media_url=media,
            ig_user_id=account.ig_user_id,
            token_env=account.token_env,
            lead_id=lead.id,
            username=lead.username,
            sequence_id=d.sequence.id,
            message_id=d.message.id,
            variant_id=d.variant_id,
            idempotency_key=idempotency_key(account.id, lead.id, d.sequence.id, d.message.id),
        )

    def next_followup_at(self, d: Decision) -> datetime | None:
        """When the step after this one will be due (for the tracking row)."""
        if d.sequence is None or d.step is None or d.anchor_at is None:
            return None
        for msg in d.sequence.messages[d.step :]:
            if msg.active:
                return d.anchor_at + timedelta(hours=msg.delay_hours)
        return None


__all__ = [
    "Engine",
    "RunOptions",
    "RunSummary",
    "AccountResult",
    "PlannedSend",
    "DELIVERED",
    "handoff",
    "account_windows",
    "decide_or_name",
]
