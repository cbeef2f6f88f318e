"""One run: select -> decide -> claim -> send -> record.

* Select: per account, the SQL prefilter pages through candidate leads.
* Decide: ``rules.decide`` per lead (pure).
* Claim: inside ``store.lead_tx`` the lead, its state and the account's rate window are
  re-read, the decision is made again with fresh rows (the rules hold *at the moment of
  sending*), and a ``pending`` tracking row is inserted and committed before any API call.
* Send: the channel is called outside any transaction.
* Record: the outcome completes the claim (sent / failed / unknown), or releases it when
  the message surely did not go out (deferred); written in the transaction of the
  account's next claim (or its own, at the account's end). A run killed between claim and
  record leaves a ``pending`` row that the next run marks ``unknown``: never resent blindly.
* Concurrency: at most ``settings.max_in_flight`` requests in flight, accounts round robin,
  one send at a time per account (``Engine._serve``).

Dry-run is a way of running the engine: the same planning, a ``DryExecutor`` that
simulates claims in memory, sends nothing and writes nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .channels.base import Channel, OutgoingMessage, SendResult, idempotency_key
from .clock import Clock, wall
from .config import Account, Config, LoadedConfig
from .crypto import Cipher, stored_body
from .models import (
    DELIVERED,
    FAILED,
    PENDING,
    SENT,
    SKIPPED,
    UNKNOWN,
    BadLead,
    Lead,
    parse_lead,
    printable,
)
from .render import Renderer, TemplateProblem
from .rules import Check, Decision, decide, local_midnight, next_local_midnight, next_run_slot
from .store.base import SqlStore, actor

STALE_HEARTBEAT_SECONDS = 300
UNREACHABLE_STREAK = 3  # sends in a row that found no API stop an account that it once reached
_TICK = timedelta(microseconds=1)  # ``claimed_at > since - tick``: the day's first instant counts
CANDIDATE_PAGE = 1000
DB_CONNECTIONS = 8  # store connections one run opens at most, however many sends in flight


@dataclass
class RunOptions:
    now: datetime | None = None
    dry_run: bool = False
    account: str | None = None
    limit: int | None = None
    budget_seconds: float | None = None
    run_id: str | None = None  # chosen by the caller, so that its logs carry it from the start


@dataclass
class PlannedSend:
    lead_id: str
    account_id: str
    recipient_id: str
    username: str | None
    sequence_id: str
    message_id: str
    step: int
    variant_id: str | None
    text: str | None
    media_url: str | None
    due_at: datetime | None
    reason: str
    outcome: str = "planned"
    error_code: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["due_at"] = self.due_at.isoformat() if self.due_at else None
        return d

    @classmethod
    def of(
        cls,
        lead: Lead,
        account_id: str,
        d: Decision,
        text: str | None,
        media: str | None,
        **outcome: Any,
    ) -> PlannedSend:
        """The send a decision makes (``outcome``, ``error_code``, ``error`` once known)."""
        assert d.sequence is not None and d.message is not None
        return cls(
            lead.id,
            account_id,
            lead.recipient_id,
            lead.username,
            d.sequence.id,
            d.message.id,
            d.step or 0,
            d.variant_id,
            text,
            media,
            d.due_at,
            d.reason,
            **outcome,
        )


@dataclass
class AccountResult:
    account_id: str
    sent: int = 0
    failed: Counter = field(default_factory=Counter)  # by error code
    unknown: int = 0
    skipped: Counter = field(default_factory=Counter)  # by reason
    deferred: Counter = field(default_factory=Counter)  # by reason
    ended: Counter = field(default_factory=Counter)  # enrollments ended, by reason
    waiting: Counter = field(default_factory=Counter)  # not due yet, by reason
    holdout: int = 0
    optouts: int = 0
    bad_leads: list[str] = field(default_factory=list)
    bad_lead_ids: list[str] = field(default_factory=list)  # the lead of each bad_leads line
    stopped: str | None = None
    planned: list[PlannedSend] = field(default_factory=list)
    would_send: int = 0  # a dry run's planned sends (streamed to ``on_planned`` when set)
    attempts: int = 0
    breaker_failures: int = 0
    reached: bool = False  # some attempt of this run got an answer from the API
    unreachable_streak: int = 0  # sends in a row whose every attempt found no API

    def bad(self, lead_id: str, problem: str) -> None:
        """A lead row skipped for a problem in it (named, counted, reported once)."""
        self.bad_leads.append(problem)
        self.bad_lead_ids.append(lead_id)


@dataclass
class RunSummary:
    run_id: str
    now: datetime
    dry_run: bool
    accounts: list[AccountResult] = field(default_factory=list)
    stale_marked_unknown: int = 0
    unknown_open: int = 0
    bad_leads_new: list[str] = field(default_factory=list)  # first seen by this run
    elapsed_seconds: float = 0.0

    def total(self, attr: str) -> int:
        out = 0
        for a in self.accounts:
            v = getattr(a, attr)
            out += (
                sum(v.values())
                if isinstance(v, Counter)
                else (len(v) if isinstance(v, list) else v)
            )
        return out

    def merged(self, attr: str) -> dict[str, int]:
        c: Counter = Counter()
        for a in self.accounts:
            c.update(getattr(a, attr))
        return {str(k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}

    @property
    def planned(self) -> list[PlannedSend]:
        return [p for a in self.accounts for p in a.planned]

    @property
    def stopped_accounts(self) -> dict[str, str]:
        return {a.account_id: a.stopped for a in self.accounts if a.stopped}

    @property
    def exit_code(self) -> int:
        if self.dry_run:
            return 0
        # A dead run's claims this run found and marked unknown are news for the operator
        # too (someone has to resolve them): the same exit 3 and one line as its own.
        if (
            self.total("failed")
            or self.total("unknown")
            or self.stale_marked_unknown
            or self.stopped_accounts
        ):
            return 3
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "sent": self.total("sent"),
            "would_send": self.total("would_send") if self.dry_run else None,
            "failed": self.merged("failed"),
            "unknown": self.total("unknown"),
            "skipped": self.merged("skipped"),
            "deferred": self.merged("deferred"),
            "ended": self.merged("ended"),
            "waiting": self.merged("waiting"),
            "holdout": self.total("holdout"),
            "optouts": self.total("optouts"),
            "bad_leads": [b for a in self.accounts for b in a.bad_leads],
            "bad_leads_new": list(self.bad_leads_new),
            "stopped_accounts": self.stopped_accounts,
            "stale_claims_marked_unknown": self.stale_marked_unknown,
            "unknown_open": self.unknown_open,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "exit_code": self.exit_code,
            "accounts": {
                a.account_id: {
                    "sent": a.sent,
                    "failed": dict(a.failed),
                    "unknown": a.unknown,
                    "skipped": dict(a.skipped),
                    "deferred": dict(a.deferred),
                    "stopped": a.stopped,
                }
                for a in self.accounts
            },
            "messages": [p.as_dict() for p in self.planned],
        }


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
        now = options.now or self.clock.now()
        run_id = options.run_id or uuid.uuid4().hex[:12]
        summary = RunSummary(run_id=run_id, now=now, dry_run=options.dry_run)
        accounts = [a for a in self.config.accounts if options.account in (None, a.id)]
        budget = options.budget_seconds
        if budget is None:
            budget = self.default_budget_seconds(now)
        if not options.dry_run:
            self.store.start_run(run_id, socket.gethostname(), os.getpid(), self.actor, wall(), now)
            from .outcomes import reconcile  # responses and conversions since the last run

            reconcile(self.store, self.config, now)
            summary.stale_marked_unknown = self.expire_stale_claims(now, run_id)
            if self.store.config_seen(self.loaded.digest, self.loaded.path, self.actor, now):
                self.store.audit(
                    "config_seen",
                    now,
                    self.actor,
                    run_id,
                    detail={"digest": self.loaded.digest, "path": self.loaded.path},
                )
        remaining = [options.limit]  # shared across accounts, guarded by self._lock
        results = [AccountResult(a.id, stopped=None) for a in accounts if not a.enabled]
        runs = [
            _AccountRun(self, a, now, run_id, options, budget, remaining)
            for a in accounts
            if a.enabled
        ]
        workers = min(self.config.settings.max_in_flight, len(runs))
        if workers <= 1 or options.dry_run:
            for r in runs:
                while r.step(self.store):
                    pass
        else:
            self._serve(runs, workers)
        results.extend(r.result for r in runs)
        order = {a.id: i for i, a in enumerate(self.config.accounts)}
        summary.accounts = sorted(results, key=lambda r: order.get(r.account_id, 1 << 30))
        summary.elapsed_seconds = self.clock.elapsed()
        if not options.dry_run:
            summary.unknown_open = self.store.count_open(UNKNOWN)
            summary.bad_leads_new = self.store.note_bad_leads(
                [(i, b) for a in results for i, b in zip(a.bad_lead_ids, a.bad_leads, strict=True)],
                now,
                self.actor,
                run_id,
            )
            self.store.finish_run(
                run_id, wall(), summary.exit_code, summary.as_dict() | {"messages": []}
            )
        return summary

    def default_budget_seconds(self, now: datetime) -> float:
        """End a run before the next cron slot (5 minutes early), within run_budget_minutes."""
        st = self.config.settings
        to_next = (next_run_slot(now, st) - now).total_seconds() - 300
        return max(60.0, min(st.run_budget_minutes * 60, to_next))

    def _serve(self, runs: list[_AccountRun], workers: int) -> None:
        """Step the accounts on ``workers`` threads, round robin: a thread takes the account
        that has waited longest, handles its leads up to and including one API call, and
        puts it back at the end of the line. An account is on one thread at a time, so its
        sends stay one at a time and in its order, and at most ``workers`` requests are in
        flight whatever the number of accounts. The threads share ``DB_CONNECTIONS`` store
        connections at most (each store serialises its own use: a transaction holds its
        connection, a send holds none)."""
        stores = [self.store.clone() for _ in range(min(workers, DB_CONNECTIONS))]
        for s in stores:
            s.cipher = self.store.cipher
        ready = deque(runs)
        cond = threading.Condition()
        state = {"busy": 0, "stop": False}
        errors: list[BaseException] = []

        def serve(store: SqlStore) -> None:
            while True:
                with cond:
                    while not ready and state["busy"] and not state["stop"]:
                        cond.wait()
                    if not ready or state["stop"]:
                        return
                    r = ready.popleft()
                    state["busy"] += 1
                more = False
                try:
                    more = r.step(store)
                except BaseException as exc:  # noqa: BLE001 - raised by run() once all stop
                    errors.append(exc)
                finally:
                    with cond:
                        state["busy"] -= 1
                        if more:
                            ready.append(r)
                        cond.notify_all()

        threads = [
            threading.Thread(
                target=serve, args=(stores[i % len(stores)],), name=f"send-{i}", daemon=True
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
            with cond:
                state["stop"] = True
                cond.notify_all()
            for t in threads:
                t.join()
            try:
                for r in ready:
                    r.flush(stores[0])
            finally:
                for s in stores:
                    s.close()
        if errors:
            raise errors[0]

    # ----------------------------------------------------------- stale claims
    def expire_stale_claims(self, now: datetime, run_id: str) -> int:
        """Pending claims whose run is gone become ``unknown`` (never resent blindly)."""
        host = socket.gethostname()
        marked = 0
        for c in self.store.open_claims():
            if c["run_id"] == run_id:
                continue
            why = None
            if c.get("finished_at") is not None:
                why = "its run ended without recording the outcome"
            elif c.get("host") == host and c.get("pid") and not _pid_alive(int(c["pid"])):
                why = f"its run (pid {c['pid']}) died during the send"
            elif c.get("heartbeat_at") is None or (
                wall() - c["heartbeat_at"] > timedelta(seconds=STALE_HEARTBEAT_SECONDS)
            ):
                why = "its run stopped heartbeating during the send"
            if why is None:
                continue
            # one transaction: a run killed in between leaves the claim pending for the
            # next run to mark, never an unknown row the audit log does not explain
            with self.store.transaction():
                if not self.store.mark_unknown(c["id"], why, now):
                    continue
                self.store.audit(
                    "claim_unknown",
                    now,
                    self.actor,
                    run_id,
                    lead_id=c["lead_id"],
                    account_id=c["account_id"],
                    sequence_id=c["sequence_id"],
                    message_id=c["message_id"],
                    detail={"why": why, "claim_run": c["run_id"]},
                )
            marked += 1
        return marked

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
                break
            last = store.page_key(page[-1]["id"])
            if last == after:
                break  # rows without an id filled a page: no way past them (named below)
            after = last
            leads: list[Lead] = []
            for row in page:
                try:
                    leads.append(parse_lead(row))
                except BadLead as exc:
                    result.bad(exc.lead_id, str(exc))
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
            if len(page) < CANDIDATE_PAGE:
                break
        far = datetime.max.replace(tzinfo=now.tzinfo)
        # Windows closing soonest first, then the longest-overdue step, then lead id.
        actionable.sort(
            key=lambda ld: (ld[1].window_closes_at or far, ld[1].due_at or far, ld[0].id)
        )
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


class _AccountRun:
    """One account's part of a run: its plan, then its due leads one at a time in its own
    order (windows closing soonest first), within its hourly and daily caps, the run's
    ``--limit`` and time budget. ``step`` does the next piece of work on the store it is
    given; the engine never steps one account on two threads at once."""

    def __init__(
        self,
        engine: Engine,
        account: Account,
        now: datetime,
        run_id: str,
        options: RunOptions,
        budget: float,
        remaining: list[int | None],
    ) -> None:
        self.engine = engine
        self.account = account
        self.now = now
        self.run_id = run_id
        self.options = options
        self.budget = budget
        self.remaining = remaining  # the run's --limit, shared (engine._lock)
        self.result = AccountResult(account.id)
        self.live = not options.dry_run
        self.executor: _Executor | None = None
        self.actionable: list[tuple[Lead, Decision]] = []
        self.i = 0  # the next lead of ``actionable``
        self.batch_size = engine.config.settings_for(account).batch_size
        self.rate_blocked = False  # the account is at its hourly limit and cannot wait for it
        self.day_blocked = False  # the account's daily cap is reached
        self.beat = 0.0

    def _start(self, store: SqlStore) -> _Executor:
        engine, result = self.engine, self.result
        self.actionable, bookkeeping = engine.plan_account(
            self.account, store, self.now, result, self.live
        )
        # Real time moves during a run (a send takes time, a wait takes longer); with --now
        # the run happens at one instant and never waits.
        self.real_time = self.options.now is None and not engine.clock.simulated
        args = (engine, store, self.account, self.now, self.run_id, result)
        executor = _LiveExecutor(*args, self.real_time) if self.live else _DryExecutor(*args)
        for lead, d in bookkeeping:
            executor.bookkeep(lead, d)
        self.beat = engine.clock.elapsed()
        return executor

    def _sends_from(self, i: int) -> int:
        return sum(1 for _, x in self.actionable[i:] if x.action == "send")

    def step(self, store: SqlStore) -> bool:
        """Plan the account if not yet done, then handle its next leads up to and including
        the first that calls the API. True while leads are left; once none is, the last
        outcome is written too."""
        try:
            more = self._step(store)
        except BaseException:
            self._flush_quietly()
            raise
        if not more:
            self.flush(store)
        return more

    def flush(self, store: SqlStore) -> None:
        """Write the last send's outcome if it is still held (the run stops early)."""
        if self.executor is not None:
            self.executor.store = store
            self.executor.flush()

    def _flush_quietly(self) -> None:
        """After an error: the last outcome if the store still takes it; else its claim stays
        pending, for the next run to mark unknown (as after a crash)."""
        try:
            if self.executor is not None:
                self.executor.flush()
        except Exception:  # noqa: BLE001, S110 - the first error is the one to report
            pass

    def _step(self, store: SqlStore) -> bool:
        if self.executor is None:
            self.executor = self._start(store)
        executor, engine, result, account = self.executor, self.engine, self.result, self.account
        executor.store = store
        calls = executor.calls
        total = len(self.actionable)
        while self.i < total:
            if executor.calls != calls:
                return True  # one API call a turn: the next account's turn
            i = self.i
            self.i += 1
            lead, d = self.actionable[i]
            if self.live and (i % self.batch_size == 0 or engine.clock.elapsed() - self.beat > 30):
                # Each batch (and every 30 s within one) the run shows it is alive, so that
                # other runs never take its open claims for a dead run's.
                self.beat = engine.clock.elapsed()
                store.heartbeat(self.run_id, wall())
            if result.stopped:
                result.deferred["account_stopped"] += self._sends_from(i)
                break
            if engine.clock.elapsed() > self.budget:
                result.deferred["time_budget"] += self._sends_from(i)
                break
            if d.action == "send" and (self.rate_blocked or self.day_blocked):
                result.deferred["daily_cap" if self.day_blocked else "rate_limit"] += 1
                if engine.progress:
                    engine.progress(account.id, i + 1, total)
                continue
            if d.action == "send":
                with engine._lock:
                    if self.remaining[0] is not None and self.remaining[0] <= 0:
                        result.deferred["limit"] += self._sends_from(i)
                        break
                    if self.remaining[0] is not None:
                        self.remaining[0] -= 1
            while (verdict := executor.execute(lead, d)) in ("rate_limit", "daily_cap"):
                if verdict == "daily_cap":
                    # The account's day is used up: nothing to wait for in this run.
                    self.day_blocked = True
                    result.deferred["daily_cap"] += 1
                    self._give_back()
                    break
                # At the limit: wait for the sliding window only when time is real and the
                # run's budget allows; otherwise the rest of the account waits for a later run.
                can_wait = self.live and self.real_time
                if not (
                    can_wait
                    and engine._wait_for_rate_window(account, store, self.run_id, self.budget)
                ):
                    self.rate_blocked = True
                    result.deferred["rate_limit"] += 1
                    self._give_back()
                    break
            if engine.progress:
                engine.progress(account.id, i + 1, total)
        self.i = total
        return False

    def _give_back(self) -> None:
        """A send the --limit counted did not happen: it counts for another lead."""
        with self.engine._lock:
            if self.remaining[0] is not None:
                self.remaining[0] += 1


class _Executor:
    def __init__(
        self,
        engine: Engine,
        store: SqlStore,
        account: Account,
        now: datetime,
        run_id: str,
        result: AccountResult,
        real_time: bool = False,
    ) -> None:
        self.engine = engine
        self.real_time = real_time  # refresh ``now`` from the clock before each claim
        self.store = store
        self.account = account
        self.now = now
        self.run_id = run_id
        self.result = result
        self.config = engine.config
        self.rate_limit, self.day_limit = engine.config.rate_limits(account)
        self.day_tz = engine.config.settings_for(account).timezone
        self.calls = 0  # messages handed to the channel (the scheduler's unit of a turn)

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write what is still held in memory (a live run's last outcome)."""
        return None

    def execute(self, lead: Lead, d: Decision) -> str | None:
        """Handle one due lead; returns "rate_limit" when the account's hourly window is full,
        "daily_cap" when its day is (nothing was claimed: the caller waits or defers)."""
        raise NotImplementedError

    def day_start(self) -> datetime:
        """The start of the account's current day (its settings.timezone)."""
        return local_midnight(self.now, self.day_tz)

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


class _DryExecutor(_Executor):
    """Plans what a live run would do, simulating claims in memory; writes nothing."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.window_used = self.store.recent_sends(self.account.id, self.now - timedelta(hours=1))
        self.day_used = self.store.recent_sends(self.account.id, self.day_start() - _TICK)

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        if d.keyword_optout:
            self.result.optouts += 1
        if d.action == "end":
            self.result.ended[d.reason] += 1
        elif d.action == "holdout":
            self.result.holdout += 1

    def execute(self, lead: Lead, d: Decision) -> str | None:
        assert d.sequence is not None and d.message is not None
        if d.action == "skip":
            self.result.skipped[d.reason] += 1
            return None
        if self.window_used >= self.rate_limit:
            return "rate_limit"
        if self.day_limit is not None and self.day_used >= self.day_limit:
            return "daily_cap"
        rendered = self.render(lead, d)
        if rendered is None:
            return
        self.window_used += 1
        self.day_used += 1
        self.result.would_send += 1
        planned = PlannedSend.of(lead, self.account.id, d, *rendered)
        if self.engine.on_planned is not None:
            self.engine.on_planned(planned)
        else:
            self.result.planned.append(planned)


class _LiveExecutor(_Executor):
    """Claims, sends and records, one lead at a time, each claim committed before its send.

    A send's outcome is written in the same transaction as the account's next claim (or in
    one of its own when the account has no next claim, or the run stops): one write
    transaction per message instead of two. Until then the claim stays ``pending``, as
    during the call: a run that dies in between leaves it for the next run to mark
    ``unknown``, never to resend."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # the last send's rows to write, and its line for ``on_sent``
        self._unrecorded: tuple[Callable[[], Callable[[], None]], PlannedSend] | None = None
        self._announce: list[PlannedSend] = []
        self._audit_due: Callable[[], None] | None = None

    def _record_locked(self) -> None:
        """Inside a transaction: the last send's outcome rows; its audit row waits for
        ``_audit_recorded``, as late in the transaction as its order allows (appending to
        the audit chain holds the chain's head until the commit)."""
        if self._unrecorded is not None:
            record, planned = self._unrecorded
            self._unrecorded = None
            self._audit_due = record()
            self._announce.append(planned)

    def _audit_recorded(self) -> None:
        audit, self._audit_due = self._audit_due, None
        if audit is not None:
            audit()

    @contextmanager
    def _claim_tx(self, lead_id: str) -> Iterator[bool]:
        """``lead_tx`` that also writes the account's last outcome (rows first, audit row
        last)."""
        held = self._unrecorded
        with self.store.lead_tx(lead_id, self.account.id) as got:
            try:
                self._record_locked()
                yield got
            except BaseException:
                # rolled back with the claim: the outcome is held again, for ``flush`` to
                # try on its own (else its claim stays pending, for the next run to mark
                # unknown, as after a crash)
                self._unrecorded, self._audit_due, self._announce = held, None, []
                raise
            self._audit_recorded()

    def _announced(self) -> None:
        """After the commit: tell ``on_sent`` about the outcomes it wrote."""
        done, self._announce = self._announce, []
        if self.engine.on_sent:
            for planned in done:
                self.engine.on_sent(planned)

    def flush(self) -> None:
        if self._unrecorded is not None:
            with self.store.transaction():
                self._record_locked()
                self._audit_recorded()
        self._announced()

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        store, now = self.store, self.now
        with store.lead_tx(lead.id, None) as got:
            if not got:
                return
            row = store.lead_row(lead.id)
            if row is None:
                return
            try:
                fresh = parse_lead(row)
            except BadLead:
                return
            person = store.person_key(fresh.account_id, fresh.recipient_id)
            d = decide_or_name(fresh, store.lead_state(lead.id, person), self.config, now, None)
            if d is not None:
                self._bookkeep_locked(fresh, d)

    def _bookkeep_locked(self, lead: Lead, d: Decision) -> None:
        store, now = self.store, self.now
        if d.keyword_optout and store.add_optout(
            lead.id,
            f"keyword: {d.keyword_optout}",
            "keyword",
            self.engine.actor,
            now,
            person=(lead.account_id, lead.recipient_id),
        ):
            store.audit(
                "optout",
                now,
                self.engine.actor,
                self.run_id,
                lead.id,
                lead.account_id,
                detail={"source": "keyword", "keyword": d.keyword_optout},
            )
            self.result.optouts += 1
        if d.action == "end" and d.sequence is not None:
            if store.end_enrollment(lead.id, d.sequence.id, d.reason, now):
                self.result.ended[d.reason] += 1
                store.audit(
                    "enrollment_end",
                    now,
                    self.engine.actor,
                    self.run_id,
                    lead.id,
                    lead.account_id,
                    d.sequence.id,
                    detail={"reason": d.reason},
                )
        elif d.action == "holdout" and d.sequence is not None and d.anchor_at is not None:
            if store.start_enrollment(
                lead.id,
                d.sequence.id,
                lead.account_id,
                d.anchor_at,
                now,
                holdout=True,
                person_key=store.person_key(lead.account_id, lead.recipient_id),
            ):
                self.result.holdout += 1
                store.audit(
                    "holdout",
                    now,
                    self.engine.actor,
                    self.run_id,
                    lead.id,
                    lead.account_id,
                    d.sequence.id,
                )

    def execute(self, lead: Lead, d: Decision) -> str | None:
        verdict = self._execute(lead, d)
        self._announced()
        return verdict

    def _execute(self, lead: Lead, d: Decision) -> str | None:
        if self.real_time:
            self.now = self.engine.clock.now()
        store, now, res = self.store, self.now, self.result
        claim: dict[str, Any] | None = None
        with self._claim_tx(lead.id) as got:  # with the account's last outcome
            if not got:
                res.skipped["claimed_by_another_run"] += 1
                return
            row = store.lead_row(lead.id)
            if row is None:
                res.skipped["lead_gone"] += 1
                return
            try:
                fresh = parse_lead(row)
            except BadLead as exc:
                res.bad(exc.lead_id, str(exc))
                return
            # The person's state too, inside the claim transaction: on Postgres the account
            # lock (taken by lead_tx) serialises every claim of the account, so two lead rows
            # of one person cannot both pass the person's caps.
            person = store.person_key(fresh.account_id, fresh.recipient_id)
            d = decide_or_name(fresh, store.lead_state(lead.id, person), self.config, now, res)
            if d is None:
                return
            if d.action not in ("send", "skip"):
                # Something changed since planning (opt-out, reply, another run): obey it.
                self._bookkeep_locked(fresh, d)
                if d.action == "wait":
                    res.waiting[d.reason] += 1
                return
            assert d.sequence is not None and d.message is not None
            if d.action == "skip":
                if d.new_enrollment and d.anchor_at is not None:
                    store.start_enrollment(
                        fresh.id, d.sequence.id, fresh.account_id, d.anchor_at, now,
                        person_key=person,
                    )  # fmt: skip
                row = self._row(fresh, d, SKIPPED, reason=d.reason, person_key=person)
                fid = store.insert_followup(row)
                if fid is not None:
                    res.skipped[d.reason] += 1
                    store.end_enrollment(fresh.id, d.sequence.id, "window_closed", now)
                    self._audit_recorded()  # the audit chain in the order things happened
                    store.audit(
                        "skip",
                        now,
                        self.engine.actor,
                        self.run_id,
                        fresh.id,
                        fresh.account_id,
                        d.sequence.id,
                        d.message.id,
                        {"reason": d.reason, "detail": d.detail},
                    )
                return
            since = now - timedelta(hours=1)
            if store.recent_sends(self.account.id, since, self.rate_limit) >= self.rate_limit:
                return "rate_limit"
            if (
                self.day_limit is not None
                and store.recent_sends(self.account.id, self.day_start() - _TICK, self.day_limit)
                >= self.day_limit
            ):
                return "daily_cap"
            rendered = self.render(fresh, d)
            if rendered is None:
                return
            text, media = rendered
            if d.new_enrollment and d.anchor_at is not None:
                store.start_enrollment(
                    fresh.id, d.sequence.id, fresh.account_id, d.anchor_at, now, person_key=person
                )
            body, encrypted = stored_body(
                store.cipher,
                _body(text, media),
                self.engine.config.settings.store_bodies,
                store.person_secret(),
            )
            row_data = self._row(
                fresh, d, PENDING, body=body, body_encrypted=encrypted, person_key=person
            )
            fid = store.insert_followup(row_data)
            if fid is None:
                res.skipped["already_claimed"] += 1
                return
            claim = {"id": fid, "lead": fresh, "d": d, "text": text, "media": media}
            self._audit_recorded()  # the audit chain in the order things happened
            store.audit(
                "claim",
                now,
                self.engine.actor,
                self.run_id,
                fresh.id,
                fresh.account_id,
                d.sequence.id,
                d.message.id,
                {"followup_id": fid, "variant": d.variant_id},
            )
        # committed: the claim exists before the API call
        self._announced()
        self._send(claim)

    def _row(self, lead: Lead, d: Decision, status: str, **extra: Any) -> dict[str, Any]:
        assert d.sequence is not None and d.message is not None
        return {
            "lead_id": lead.id,
            "sequence_id": d.sequence.id,
            "message_id": d.message.id,
            "step": d.step,
            "variant_id": d.variant_id,
            "account_id": lead.account_id,
            "user_id": lead.user_id or self.account.user_id,
            "conversation_id": lead.conversation_id,
            "recipient_id": lead.recipient_id,
            "status": status,
            "followup_number": d.followup_number,
            "scheduled_at": d.due_at,
            "claimed_at": self.now,
            "last_followup_at": d.last_followup_at,
            "next_followup_at": self.engine.next_followup_at(d),
            "run_id": self.run_id,
            "updated_at": self.now,
            **extra,
        }

    def _complete(self, fid: int, fields: dict[str, Any]) -> None:
        """Record the outcome on this run's claim. It is ``pending``, or ``unknown`` when
        another run took this one for dead during the call: the real outcome beats the guess."""
        if not self.store.update_followup(fid, fields, PENDING):
            self.store.update_followup(fid, fields, UNKNOWN)

    def _release(self, fid: int) -> None:
        """The message surely did not go out: free the step for a later run."""
        if not self.store.delete_followup(fid, PENDING):
            self.store.delete_followup(fid, UNKNOWN)

    def _send(self, claim: dict[str, Any]) -> None:
        store, now, res = self.store, self.now, self.result
        lead: Lead = claim["lead"]
        d: Decision = claim["d"]
        assert d.sequence is not None and d.message is not None
        person = store.person_key(lead.account_id, lead.recipient_id)
        msg = replace(
            self.engine.outgoing(self.account, lead, d, claim["text"], claim["media"]),
            # asked again right before each attempt: an opt-out that lands after the claim
            # (or while a retry waits for Retry-After) still stops the message
            still_wanted=lambda: not store.is_opted_out(lead.id, person),
        )
        self.calls += 1
        try:
            result = self.engine.channel.send(msg)
        except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the claim
            result = SendResult(
                "unknown", error_message=f"channel error: {type(exc).__name__}: {exc}"
            )
        fid = claim["id"]
        planned = PlannedSend.of(
            lead,
            self.account.id,
            d,
            claim["text"],
            claim["media"],
            outcome=result.outcome,
            error_code=result.error_code,
            error=result.error_message,
        )
        common = {
            "attempts": result.attempts,
            "error_code": result.error_code,
            "error_subcode": result.error_subcode,
            "error_message": result.error_message,
            "updated_at": now,
        }
        audit_detail = {
            "followup_id": fid,
            "outcome": result.outcome,
            "code": result.error_code,
            "subcode": result.error_subcode,
            "attempts": result.attempts,
        }
        if result.kind != "unreachable" and result.outcome != "cancelled" and result.attempts:
            res.reached, res.unreachable_streak = True, 0
        # What the answer means for the rest of the account: counted now (the next lead
        # depends on it); the rows are written by ``record``, with the account's next claim.
        if result.outcome == "sent":
            res.sent += 1
            res.attempts += 1
        elif result.outcome == "failed":
            res.failed[str(result.error_code or result.http_status or "error")] += 1
            res.attempts += 1
            res.breaker_failures += 1
        elif result.outcome == "unknown":
            res.unknown += 1
            res.attempts += 1
        elif result.outcome == "deferred" and result.kind == "unreachable":
            res.deferred["unreachable"] += 1
            res.unreachable_streak += 1
            if not res.reached or res.unreachable_streak >= UNREACHABLE_STREAK:
                res.stopped = res.stopped or _unreachable_line(self.account, res, result)
        elif result.outcome == "deferred":
            res.deferred["throttled" if result.kind == "throttle" else "transient"] += 1
            if result.kind == "throttle":
                res.stopped = res.stopped or (
                    f"throttled by the API (code {result.error_code or result.http_status}); "
                    "the rest waits for the next run"
                )
        elif result.outcome == "cancelled":
            res.skipped["opted_out_during_send"] += 1
        else:  # account_fatal
            res.deferred["account_stopped"] += 1
            res.stopped = _account_stop_line(self.account, result)

        def record() -> Callable[[], None]:
            """The outcome's rows, inside the caller's transaction (on the store of the
            account's current step); returns the writing of its audit row."""
            store = self.store
            if result.outcome == "sent":
                sent = {"status": SENT, "sent_at": now, "external_id": result.message_id}
                self._complete(fid, {**common, **sent})
                if _last_active_step(d) and store.end_enrollment(
                    lead.id, d.sequence.id, "completed", now
                ):
                    res.ended["completed"] += 1  # now, not at the next run
            elif result.outcome == "failed":
                failed = {"status": FAILED, "reason": result.kind or "permanent"}
                self._complete(fid, {**common, **failed})
                store.end_enrollment(lead.id, d.sequence.id, "failed", now)
            elif result.outcome == "unknown":
                self._complete(fid, {**common, "status": UNKNOWN, "reason": result.error_message})
            else:  # deferred, cancelled, account_fatal: surely not sent
                self._release(fid)
            return lambda: self.store.audit(
                "send",
                now,
                self.engine.actor,
                self.run_id,
                lead.id,
                lead.account_id,
                d.sequence.id,
                d.message.id,
                audit_detail,
            )

        self._unrecorded = (record, planned)
        res.planned.append(planned)
        st = self.config.settings_for(self.account)
        if (
            not res.stopped
            and res.attempts >= st.breaker_min_sends
            and res.breaker_failures / res.attempts > st.breaker_failure_rate
        ):
            res.stopped = (
                f"circuit breaker: {res.breaker_failures} of {res.attempts} sends failed "
                f"(over {st.breaker_failure_rate:.0%}); "
                f"account {self.account.id} stopped for this run"
            )


def handoff(
    config: Config,
    store: SqlStore,
    now: datetime,
    since_hours: float | None = None,
    account_id: str | None = None,
) -> list[dict[str, Any]]:
    """Leads whose messaging window closed with a step still due: a hand-off for human agents.

    From the ``skipped`` / ``outside_window`` tracking rows recorded since ``now - since_hours``
    (all when None), joined with the lead table; a lead who replied, converted or opted out
    since is no longer listed. Each entry carries the step's text, rendered for the lead, that
    a human may send (with the HUMAN_AGENT tag, which automation never uses).
    """
    sql = (
        "SELECT id, lead_id, account_id, sequence_id, message_id, step, variant_id, "
        "scheduled_at, claimed_at FROM followup_tracking "
        "WHERE status = :status AND reason = :reason AND claimed_at <= :now"
    )
    params: dict[str, Any] = {"status": SKIPPED, "reason": "outside_window", "now": now}
    if since_hours is not None:
        sql += " AND claimed_at >= :since"
        params["since"] = now - timedelta(hours=since_hours)
    if account_id is not None:
        sql += " AND account_id = :a"
        params["a"] = account_id
    rows = store.rows(sql + " ORDER BY claimed_at, lead_id, id", params)
    leads: dict[str, Lead] = {}
    for raw in store.lead_rows(sorted({r["lead_id"] for r in rows})):
        try:
            parsed = parse_lead(raw)
        except BadLead:
            continue
        leads[parsed.id] = parsed
    opted_out = {o["lead_id"] for o in store.optouts()}
    suppressed = {o["person_key"] for o in store.suppressions()}
    renderer = Renderer(config)
    window = config.channel.window_hours
    out: list[dict[str, Any]] = []
    for r in rows:
        lead = leads.get(r["lead_id"])
        if lead is None or lead.id in opted_out:
            continue
        if store.person_key(lead.account_id, lead.recipient_id) in suppressed:
            continue  # the person opted out or was erased under another lead row
        if lead.converted_at is not None or (lead.status or "").lower() == "converted":
            continue
        if lead.last_inbound_at is not None and lead.last_inbound_at > r["claimed_at"]:
            continue  # the lead wrote again: the conversation is open, not a hand-off
        closed = (
            lead.last_inbound_at + timedelta(hours=window)
            if window is not None and lead.last_inbound_at is not None
            else None
        )
        text = media = None
        seq = next((x for x in config.sequences if x.id == r["sequence_id"]), None)
        msg = next((m for m in seq.messages if m.id == r["message_id"]), None) if seq else None
        if seq is not None and msg is not None:
            try:
                rendered = renderer.render(
                    seq, msg, r["variant_id"], lead.context(), config.account(lead.account_id), now
                )
                text, media = rendered.text, rendered.media_url
            except TemplateProblem:
                pass
        out.append(
            {
                "lead_id": lead.id,
                "account_id": lead.account_id,
                "user_id": lead.user_id,
                "conversation_id": lead.conversation_id,
                "recipient_id": lead.recipient_id,
                "username": lead.username,
                "first_name": lead.first_name,
                "sequence_id": r["sequence_id"],
                "message_id": r["message_id"],
                "step": r["step"],
                "variant_id": r["variant_id"],
                "due_at": r["scheduled_at"],
                "last_inbound_at": lead.last_inbound_at,
                "window_closed_at": closed,
                # Meta's HUMAN_AGENT tag lets a person reply up to 7 days after the lead's
                # last message; after that nobody can message the lead until it writes.
                "human_reply_until": (
                    lead.last_inbound_at + timedelta(days=7) if lead.last_inbound_at else None
                ),
                "skipped_at": r["claimed_at"],
                "text": text,
                "media_url": media,
            }
        )
    return out


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


def decide_or_name(
    lead: Lead, state: Any, config: Config, now: datetime, result: AccountResult | None
) -> Decision | None:
    """``decide`` for one lead, isolated: a value in the row that the rules cannot compute
    with (a date that overflows once hours are added, a structure too deep to compare) skips
    that lead, named, instead of ending the run for everyone (None)."""
    try:
        return decide(lead, state, config, now, explain=False)
    except Exception as exc:  # noqa: BLE001 - one row must not stop the run for the others
        if result is not None:
            what = f"{type(exc).__name__}: {printable(str(exc), 120)}"
            result.bad(lead.id, f"lead {printable(lead.id, 200)}: cannot be decided ({what})")
        return None


def _unreachable_line(account: Account, res: AccountResult, result: SendResult) -> str:
    """One line naming the account and the URL nothing answered at."""
    what = result.error_message or "no connection"
    if res.reached:
        return (
            f"account {account.id} stopped: the API became unreachable ({what}) for "
            f"{res.unreachable_streak} sends in a row; the rest waits for the next run"
        )
    return (
        f"account {account.id} stopped: the API was unreachable on every attempt of this run "
        f"({what}); check channel.api_base and the network; its due follow-ups wait"
    )


def _account_stop_line(account: Account, result: SendResult) -> str:
    """One line naming the account, what the API said, and the token variable to look at."""
    code = result.error_code
    what = result.error_message or "account error"
    if code is not None:
        what += f" (code {code})"
    var = f"${account.token_env}" if account.token_env else "its token (no token_env configured)"
    if code == 368:
        hint = f"Meta blocked the account for policy reasons; sending resumes when lifted ({var})"
    elif code == 10 or code == 3 or (code is not None and 200 <= code <= 299):
        hint = f"the token in {var} lacks a messaging permission"
    else:
        hint = f"check its token in {var}"
    return f"account {account.id} stopped: {what}; {hint}"


def _last_active_step(d: Decision) -> bool:
    """Whether ``d``'s message is the last active one of its sequence."""
    assert d.sequence is not None and d.message is not None
    active = [m.id for m in d.sequence.messages if m.active]
    return bool(active) and active[-1] == d.message.id


def _body(text: str | None, media: str | None) -> str | None:
    if media and text:
        return f"{text}\n[{media}]"
    return text or (f"[{media}]" if media else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "Engine",
    "RunOptions",
    "RunSummary",
    "AccountResult",
    "PlannedSend",
    "DELIVERED",
    "handoff",
]
