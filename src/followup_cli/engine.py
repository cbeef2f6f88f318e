"""One run: select -> decide -> claim -> send -> record.

* Select (here): per account, the SQL prefilter pages through candidate leads
  (``plan_account``), leaving out those that cannot be due yet.
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
  one send at a time per account (``Engine._serve``); a live run serves an account only
  while it holds the account's lease, so runs at once share the accounts (``leases.py``).

Dry-run is a way of running the engine: the same planning, a ``DryExecutor`` that
simulates claims in memory, sends nothing and writes nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from queue import SimpleQueue
from typing import Any

from .accountrun import AccountRun
from .channels.base import Channel, OutgoingMessage, idempotency_key
from .claims import recover_stale_claims
from .clock import Clock, wall
from .config import Account, Config, LoadedConfig, Settings
from .crypto import Cipher
from .handoff import handoff
from .leases import Leases
from .models import DELIVERED, UNKNOWN, BadLead, Lead, parse_lead
from .ratewindow import TICK as _TICK
from .render import Renderer
from .results import (
    AccountResult,
    PlannedSend,
    RunContext,
    RunOptions,
    RunSummary,
    decide_or_name,
)
from .rules import Check, Decision, local_midnight, next_local_midnight, next_run_slot
from .store.base import SqlStore, actor
from .store.memory import MemoryStore
from .turns import Turns

CANDIDATE_PAGE = 1000
DB_CONNECTIONS = 8  # store connections one run opens at most, however many sends in flight
# A dry run plans this many accounts ahead of the one it walks, each on a connection of its
# own (an account's candidate query, the scan of its lead rows, runs without the GIL). Two
# ahead overlapped more of the scans at 1M leads / 100k due (7.0 against 7.9 s), but cost
# more where most rows are candidates (100k / 100k: 5.9 against 5.1 s, +1.3 s system time:
# three threads passing the GIL back and forth at every row a planner fetches), so one.
PLAN_AHEAD = 1


ProgressFn = Callable[[str, int, int], None]


class Engine:
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
        if options.dry_run:
            results, runs = self._account_runs(accounts, run)
            self._in_turn(runs, now)  # a dry run writes nothing: it plans them all
            self._summarise(summary, results, runs)
            return summary
        self._begin(summary, now, run_id)
        results, runs = self._account_runs(accounts, run)
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
        self, accounts: list[Account], run: RunContext
    ) -> tuple[list[AccountResult], list[AccountRun]]:
        """The results of the disabled accounts, and a walk (``AccountRun``) for each
        enabled one, in the run's context (its ``--limit`` shared, guarded by self._lock)."""
        results = [AccountResult(a.id, stopped=None) for a in accounts if not a.enabled]
        runs = [AccountRun(self, a, run) for a in accounts if a.enabled]
        return results, runs

    def _serve_live(self, runs: list[AccountRun], now: datetime, run_id: str) -> None:
        """A live run's accounts served, one by one or on ``max_in_flight`` threads. A live
        run serves an account only while it holds the account's lease, so that runs at once
        on one store share the accounts (leases.py; the claims stay the guarantee against
        sending twice). Whatever ends it, the claims never handed to the API are freed."""
        workers = min(self.config.settings.max_in_flight, len(runs))
        leases = Leases(self.store, run_id)
        with self._reconciling(now):  # the responses and conversions since the last run
            try:
                if workers <= 1:
                    self._one_by_one(runs, leases)
                else:
                    self._serve(runs, workers, leases)
            finally:
                leases.close()
                self._release_unattempted(run_id)

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

    @contextmanager
    def _reconciling(self, now: datetime) -> Iterator[None]:
        """A live run brings outcomes up to date (``outcomes.reconcile``: responses and
        conversions since the last run) on a connection of its own while it serves the
        accounts: it reads the whole lead table as the accounts' candidate queries do, and
        one after the other they were 0.4 s of 2.1 at a million leads. Nothing a run decides
        or claims reads what it writes (follow-ups' outcome times and statuses among those
        counted alike, enrollments' outcome times, marks); its transactions keep the one
        lock order, as another run's reconcile beside this one would. Done when the block
        ends: its error then, unless the run's own comes first."""
        from .outcomes import reconcile

        second = self._second_stores(1)
        if not second:
            reconcile(self.store, self.config, now)
            yield
            return
        store = second[0]
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile")
        done = pool.submit(reconcile, store, self.config, now)
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, Exception):  # interrupted: stop it (its chunk rolls back)
                store.interrupt()
            raise
        finally:
            pool.shutdown(wait=True)
            store.close()
        done.result()

    def _in_turn(self, runs: list[AccountRun], now: datetime) -> None:
        """A dry run: the accounts one after the other, in order, on this thread; the next
        ``PLAN_AHEAD`` accounts are planned meanwhile, each on a connection of its own (their
        SQL releases the GIL), when the store can open ones that see the same tables."""
        planners = self._second_stores(min(PLAN_AHEAD, len(runs) - 1))
        if not planners:
            for r in runs:
                while r.step(self.store):
                    pass
            return
        free: SimpleQueue[SqlStore] = SimpleQueue()
        for p in planners:
            free.put(p)

        def plan(r: AccountRun) -> tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]:
            store = free.get()  # as many workers as connections: one is always free here
            try:
                return self.plan_account(r.account, store, now, r.result, False)
            finally:
                free.put(store)

        ahead = 1  # the next account to plan ahead (the first is planned on this thread)
        with ThreadPoolExecutor(max_workers=len(planners), thread_name_prefix="plan") as pool:
            try:
                for k, r in enumerate(runs):
                    # at most PLAN_AHEAD plans wait (their leads and decisions in memory)
                    while ahead < len(runs) and ahead <= k + len(planners):
                        runs[ahead].planned = pool.submit(plan, runs[ahead])
                        ahead += 1
                    while r.step(self.store):
                        pass
            finally:
                for r in runs:  # an error: the plans not taken yet are not waited for
                    if r.planned is not None:
                        r.planned.cancel()
                pool.shutdown(wait=True)
                for p in planners:
                    p.close()

    def _second_stores(self, n: int) -> list[SqlStore]:
        """Up to ``n`` more connections (planning ahead, the reconcile), or none: an in-memory
        store shares its one connection, and a dry run on a fresh store (``scratch``) has the
        tool's (empty) tables only in its own connection: in TEMP on SQLite, in a transaction
        that is rolled back on Postgres."""
        if n <= 0 or isinstance(self.store, MemoryStore) or self.store.in_scratch:
            return []
        planners: list[SqlStore] = []
        for _ in range(n):
            try:
                planner = self.store.clone()
            except Exception:  # noqa: BLE001 - no more connections: plan with fewer
                break
            planner.cipher = self.store.cipher
            planners.append(planner)
        return planners

    def _one_by_one(self, runs: list[AccountRun], leases: Leases | None) -> None:
        """One account after the other on this thread; those whose lease another run held
        tried again at the end (``leases.py``)."""
        later: list[AccountRun] = []
        for last_try, queue in ((False, runs), (True, later)):
            for r in queue:
                if leases is not None and not leases.take(r, last_try):
                    if not last_try:
                        later.append(r)
                    continue
                try:
                    while r.step(self.store):
                        pass
                finally:
                    if leases is not None:
                        leases.release(r)

    def _serve(self, runs: list[AccountRun], workers: int, leases: Leases | None = None) -> None:
        """Step the accounts on ``workers`` threads, round robin: a thread takes the account
        that has waited longest, handles its leads up to and including one API call, and
        puts it back at the end of the line. An account is on one thread at a time, so its
        sends stay one at a time and in its order, and at most ``workers`` requests are in
        flight whatever the number of accounts. The threads share ``DB_CONNECTIONS`` store
        connections at most (each store serialises its own use: a transaction holds its
        connection, a send holds none).

        With ``leases`` (a live run), an account is started only once its lease is taken,
        and while other runs are alive no more than this run's share of the accounts are
        open at once (``Leases.share``): the others stay free for another run to take. An
        account another run holds is tried again once this run has nothing else left to
        do."""
        stores = [self.store.clone() for _ in range(min(workers, DB_CONNECTIONS))]
        for s in stores:
            s.cipher = self.store.cipher
        turns = Turns(runs, leases)
        threads = [
            threading.Thread(
                target=turns.serve,
                args=(stores[i % len(stores)],),
                name=f"send-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            # Interrupted: each thread finishes the lead it holds, then takes no other; the
            # outcomes still held are written (an account that ran out of leads wrote its own).
            turns.stop()
            for t in threads:
                t.join()
            try:
                for r in turns.ready:
                    r.flush(stores[0])
            finally:
                for s in stores:
                    s.close()
        if turns.errors:
            raise turns.errors[0]

    # ----------------------------------------------------------- stale claims
    def expire_stale_claims(self, now: datetime, run_id: str) -> int:
        """Other runs' claims whose run is gone: ``unknown`` when attempted (never resent
        blindly), released when never handed to the API (``claims.py``). Returns the
        number marked unknown."""
        return recover_stale_claims(self.store, self.actor, now, run_id)[0]

    def _release_unattempted(self, run_id: str) -> None:
        """Whatever ended the run: the claims it never handed to the API are freed (each
        account releases its own as its turn ends; this catches one that could not).
        If the store refuses, the next run releases them (its run is then gone)."""
        try:
            self.store.release_unattempted(run_id)
        except Exception:  # noqa: BLE001, S110 - an error already ending the run comes first
            pass

    # ---------------------------------------------------------------- planning
    def plan_account(
        self,
        account: Account,
        store: SqlStore,
        now: datetime,
        result: AccountResult,
        live: bool = False,
    ) -> tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]:
        """All decisions for an account: (actions to execute in order, bookkeeping actions).

        Only leads that may be due are read (see ``SqlStore.candidate_leads``); a ``live``
        run stores, for each active enrollment it finds not due yet, when it can be due at
        the earliest, so the next runs leave it out until then."""
        st = self.config.settings_for(account)
        actionable: list[tuple[Lead, Decision]] = []
        bookkeeping: list[tuple[Lead, Decision]] = []
        digest = self.loaded.digest
        nameless = store.leads_without_id(account.id)
        if nameless:
            result.bad("?", f"lead rows of account {account.id} without an id: {nameless}")
        for page in self._candidate_pages(account, store, now, st, digest):
            leads: list[Lead] = []
            for row in page:
                try:
                    leads.append(parse_lead(row))
                except BadLead as exc:
                    result.bad(exc.lead_id, str(exc))
            acts, books = self._decide_page(leads, store, now, st, digest, result, live)
            actionable += acts
            bookkeeping += books
        far = datetime.max.replace(tzinfo=now.tzinfo)
        # Windows closing soonest first, then the longest-overdue step, then lead id.
        actionable.sort(
            key=lambda ld: (ld[1].window_closes_at or far, ld[1].due_at or far, ld[0].id)
        )
        return actionable, bookkeeping

    def _candidate_pages(
        self, account: Account, store: SqlStore, now: datetime, st: Settings, digest: str
    ) -> Iterator[list[dict[str, Any]]]:
        """The account's lead rows that may be due (``SqlStore.candidate_leads``), a page at
        a time in id order; the next page is read once the caller is done with this one."""
        after: Any = None
        while True:
            page = store.candidate_leads(
                account.id,
                st.min_score,
                st.max_score,
                after,
                CANDIDATE_PAGE,
                keywords=st.all_optout_keywords,
                now=now,
                config=digest,
                new_due_before=self.new_leads_due_before(account, now),
            )
            if not page:
                return
            last = store.page_key(page[-1]["id"])
            if last == after:
                return  # a page of rows without an id: none past it (``plan_account`` names them)
            after = last
            yield page
            if len(page) < CANDIDATE_PAGE:
                return

    def _decide_page(
        self,
        leads: list[Lead],
        store: SqlStore,
        now: datetime,
        st: Settings,
        digest: str,
        result: AccountResult,
        live: bool,
    ) -> tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]:
        """A page of leads decided on their states (read for the page at once): (actions to
        execute, bookkeeping actions), in the page's order. A ``live`` run stores, for each
        active enrollment not due yet, when it can be due at the earliest."""
        actionable: list[tuple[Lead, Decision]] = []
        bookkeeping: list[tuple[Lead, Decision]] = []
        ids = [lead.id for lead in leads]
        versions = store.enrollment_versions(ids) if live else {}  # before the state
        states = store.lead_states(
            ids,
            {lead.id: store.person_key(lead.account_id, lead.recipient_id) for lead in leads},
        )
        hints: list[tuple[str, str, int, datetime]] = []
        for lead in leads:
            d = decide_or_name(lead, states[lead.id], self.config, now, result)
            if d is None:
                continue
            if d.action in ("send", "skip"):
                actionable.append((lead, d))
            elif d.action in ("end", "holdout") or d.keyword_optout:
                bookkeeping.append((lead, d))
            elif d.action == "wait":
                result.waiting[d.reason] += 1
            version = versions.get((lead.id, d.sequence_id or ""))
            if version is not None:
                hint = self.next_due_hint(d, st)
                if hint is not None and hint > now:
                    hints.append((lead.id, d.sequence_id or "", version, hint))
        if hints:
            store.set_next_due(hints, digest)
        return actionable, bookkeeping

    def new_leads_due_before(self, account: Account, now: datetime) -> datetime:
        """A lead not in a sequence can be due only if we wrote to it before this time: the
        shortest delay of any active step of any active sequence (less the pull-forward
        allowance) before ``now``."""
        delays = [
            m.delay_hours for s in self.config.sequences if s.active for m in s.messages if m.active
        ]
        if not delays:
            return now - timedelta(days=365 * 100)
        st = self.config.settings_for(account)
        earliest = min(delays) - (st.pull_forward_hours if st.pull_forward else 0)
        return now - timedelta(hours=earliest)

    def next_due_hint(self, d: Decision, st: Any) -> datetime | None:
        """For an enrolled lead that is not due: the earliest time a run can act on it
        (send, skip or end a holdout), as long as its tracking rows and the config stay
        the same; None when a run must look again every time (a step in flight or unknown,
        a cap, quiet hours...). A terminal change (reply, conversion, score, opt-out) is
        caught by the candidate query itself."""
        if d.action == "wait" and d.reason == "not_due" and d.due_at is not None:
            pull = st.pull_forward_hours if st.pull_forward else 0
            return d.due_at - timedelta(hours=pull)
        if d.action == "none" and d.reason == "holdout" and d.anchor_at and d.sequence:
            last = max((m.delay_hours for m in d.sequence.messages), default=0)
            return d.anchor_at + timedelta(hours=last)
        return None

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


def account_windows(
    config: Config, store: SqlStore, account_id: str | None, now: datetime
) -> tuple[list[Check], tuple[str, str, datetime | None] | None]:
    """The account's hourly and daily windows as ``explain`` shows them: a check line each,
    and (reason, detail, room again at) when one of them is full: what holds a due lead back
    even though every rule of its own holds."""
    account = config.account(account_id)
    if account is None:
        return [], None
    hour, day = config.rate_limits(account)
    checks: list[Check] = []
    blocked: tuple[str, str, datetime | None] | None = None
    since = now - timedelta(hours=1)
    used = store.recent_sends(account.id, since)
    if used >= hour:
        oldest = store.oldest_recent_send(account.id, since)
        again = oldest + timedelta(hours=1) if oldest else None
        when = f"; room again at {_fmt_utc(again)}" if again else ""
        checks.append(
            Check(
                "account hourly cap",
                False,
                f"{account.id} sent {used} of {hour} in the last hour{when}",
            )
        )
        blocked = (
            "account_hourly_cap",
            f"account {account.id}'s hourly cap is full ({used} of {hour}){when}",
            again,
        )
    else:
        checks.append(
            Check("account hourly cap", True, f"{account.id}: {used} of {hour} in the last hour")
        )
    if day is not None:
        tz = config.settings_for(account).timezone
        used_day = store.recent_sends(account.id, local_midnight(now, tz) - _TICK)
        if used_day >= day:
            again = next_local_midnight(now, tz)
            checks.append(
                Check(
                    "account daily cap",
                    False,
                    f"{account.id} sent {used_day} of {day} today ({tz}); "
                    f"room again at {_fmt_utc(again)}",
                )
            )
            blocked = blocked or (
                "account_daily_cap",
                f"account {account.id}'s daily cap is full ({used_day} of {day} today, {tz}); "
                f"room again at {_fmt_utc(again)}",
                again,
            )
        else:
            checks.append(
                Check("account daily cap", True, f"{account.id}: {used_day} of {day} today ({tz})")
            )
    return checks, blocked


def _fmt_utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "never"


__all__ = [
    "Engine",
    "RunOptions",
    "RunSummary",
    "AccountResult",
    "PlannedSend",
    "DELIVERED",
    "handoff",
]
