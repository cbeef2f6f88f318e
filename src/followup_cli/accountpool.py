"""How a run's accounts are served (``AccountPool``, part of ``engine.Engine``).

* A dry run (``_in_turn``): the accounts one after the other on the run's thread, the next
  ``PLAN_AHEAD`` planned meanwhile on connections of their own.
* A live run (``_serve_live``): under the accounts' leases (``leases.py``), one by one or
  round robin on ``settings.max_in_flight`` threads sharing at most ``DB_CONNECTIONS``
  connections (``_serve``, ``turns.py``), the reconcile beside them (``_reconciling``); the
  claims never handed to the API freed whatever ends it (``_release_unattempted``).
* Both select every account's candidates together first, where the store can
  (``_censused``, ``census.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from queue import SimpleQueue
from typing import TYPE_CHECKING

from .census import take_census
from .leases import Leases
from .models import Lead
from .rules import Decision
from .store.base import SqlStore
from .store.memory import MemoryStore
from .turns import Turns

if TYPE_CHECKING:
    from .accountrun import AccountRun
    from .config import Config, LoadedConfig

DB_CONNECTIONS = 8  # store connections one run opens at most, however many sends in flight
# A dry run plans this many accounts ahead of the one it walks, each on a connection of its
# own (an account's candidate query, the scan of its lead rows, runs without the GIL). Two
# ahead overlapped more of the scans at 1M leads / 100k due (7.0 against 7.9 s), but cost
# more where most rows are candidates (100k / 100k: 5.9 against 5.1 s, +1.3 s system time:
# three threads passing the GIL back and forth at every row a planner fetches), so one.
PLAN_AHEAD = 1


class AccountPool:
    """The serving half of ``Engine``: which thread steps which account, on which store
    connection. Uses the engine's ``store``, ``config`` and ``plan_account``."""

    store: SqlStore
    config: Config
    loaded: LoadedConfig
    _census: dict[str, list[str]] | None

    def _serve_live(self, runs: list[AccountRun], now: datetime, run_id: str) -> None:
        """A live run's accounts served, one by one or on ``max_in_flight`` threads. A live
        run serves an account only while it holds the account's lease, so that runs at once
        on one store share the accounts (leases.py; the claims stay the guarantee against
        sending twice). Whatever ends it, the claims never handed to the API are freed."""
        workers = min(self.config.settings.max_in_flight, len(runs))
        leases = Leases(self.store, run_id)
        # the responses and conversions since the last run reconciled beside the accounts
        with self._reconciling(now), self._censused(runs, now):
            try:
                if workers <= 1:
                    self._one_by_one(runs, leases)
                else:
                    self._serve(runs, workers, leases)
            finally:
                leases.close()
                self._release_unattempted(run_id)

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

    @contextmanager
    def _censused(self, runs: list[AccountRun], now: datetime) -> Iterator[None]:
        """The accounts' candidates selected together, when the store can (``census.py``):
        what ``_candidate_pages`` reads inside the block, instead of a pass over each
        account's rows."""
        self._census = take_census(
            self.store,
            self._second_stores,
            self.config,
            [r.account for r in runs],
            now,
            self.loaded.digest,
            self.new_leads_due_before,  # type: ignore[attr-defined]  # AccountPlanner's
        )
        try:
            yield
        finally:
            self._census = None

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
        stores = self._clones(min(workers, DB_CONNECTIONS))
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

    def _clones(self, n: int) -> list[SqlStore]:
        """``n`` more connections for the serving threads, opened side by side: a Postgres
        connection is a round trip and a new backend, and eight opened one after the other
        were ~0.2 s of an idle run at a million leads (bench/RESULTS-select.md). None is
        left open when one fails."""
        with ThreadPoolExecutor(max_workers=max(n, 1), thread_name_prefix="connect") as pool:
            futures = [pool.submit(self.store.clone) for _ in range(n)]
        stores = [f.result() for f in futures if f.exception() is None]
        failed = [e for f in futures if (e := f.exception()) is not None]
        if failed:
            for s in stores:
                s.close()
            raise failed[0]
        for s in stores:
            s.cipher = self.store.cipher
        return stores

    def _release_unattempted(self, run_id: str) -> None:
        """Whatever ended the run: the claims it never handed to the API are freed (each
        account releases its own as its turn ends; this catches one that could not).
        If the store refuses, the next run releases them (its run is then gone)."""
        try:
            self.store.release_unattempted(run_id)
        except Exception:  # noqa: BLE001, S110 - an error already ending the run comes first
            pass
