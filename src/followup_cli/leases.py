"""Which run serves an account: the account's lease.

Several live runs on one Postgres (cron on several hosts, a late run overlapping the next
slot) share the accounts instead of queuing behind each other at each account's claim lock:
a run serves an account only while it holds the account's lease (``SqlStore.try_lease``: a
session-level advisory lock, which the server drops with the connection, so a run killed
with SIGKILL leaves none behind), from planning the account to writing its last outcome.
An account whose lease another run holds is put aside and tried once more when the run has
nothing else to do; held still, it is left to the run that holds it (``left_to_another_run``
in the summary). A lease that no live run can hold (a connection pooler kept the session
that took it) does not stop the account: with no other run alive it is served anyway.

The lease saves the work two runs would both do (planning the account, claims the other
run already made); it is not what keeps a message from going out twice. The claim does
that, with or without a lease: a ``pending`` row, unique per lead and step, committed under
the account's transaction lock before the API call.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from . import logsetup
from .claims import STALE_HEARTBEAT_SECONDS, _pid_alive
from .clock import wall
from .store.base import SqlStore

if TYPE_CHECKING:  # pragma: no cover
    from .accountrun import AccountRun

log = logsetup.get("leases")
SHARE_SECONDS = 0.05


class Leases:
    """The accounts' leases one run holds, taken and given back on ``store``."""

    def __init__(self, store: SqlStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._share: tuple[float, int] | None = None  # (when, other runs alive)

    def take(self, run: AccountRun, last_try: bool) -> bool:
        """Whether this run serves ``run``'s account now. On the ``last_try``, an account
        another live run holds is marked as left to that run."""
        account = run.account.id
        if self.store.try_lease(account):
            with self._lock:
                self.held.add(account)
            return True
        if not last_try:
            return False
        if not self._another_run_alive():
            log.warning(
                "account %s: its lease is held but no other run is alive (a connection "
                "pooler's session?): served by this run",
                account,
            )
            return True
        run.result.left_to_another_run = True
        log.info("account %s: another run holds its lease and serves it", account)
        return False

    def share(self, accounts: int) -> int:
        """Accounts this run keeps open at once: all of them when it is alone (round robin
        over every account keeps the most requests in flight), its share of them while
        other runs are alive, so that runs started a moment apart split the accounts
        instead of the first taking them all. Counted again at most every
        ``SHARE_SECONDS`` (it grows as the other runs finish)."""
        if not self.store.leases_across_processes:
            return accounts  # one live run holds the database (SQLite's run lock)
        t = time.monotonic()
        if self._share is None or t - self._share[0] > SHARE_SECONDS:
            self._share = (t, self._other_runs_alive())
        return max(1, -(-accounts // (1 + self._share[1])))

    def release(self, run: AccountRun) -> None:
        """Done with the account: its lease given back (if the store cannot, the lease goes
        with the run's connection; until then other runs leave the account to this one)."""
        account = run.account.id
        with self._lock:
            if account not in self.held:
                return
            self.held.discard(account)
        try:
            self.store.release_lease(account)
        except Exception:  # noqa: BLE001 - an error of the run itself comes first
            log.debug("account %s: its lease could not be given back", account, exc_info=True)

    def close(self) -> None:
        """Every lease still held given back (the run ends, however)."""
        with self._lock:
            held, self.held = sorted(self.held), set()
        for account in held:
            try:
                self.store.release_lease(account)
            except Exception:  # noqa: BLE001, S110 - the connection's end drops it anyway
                pass

    def _another_run_alive(self) -> bool:
        return self._other_runs_alive() > 0

    def _other_runs_alive(self) -> int:
        since = wall() - timedelta(seconds=STALE_HEARTBEAT_SECONDS)
        host = socket.gethostname()
        return sum(
            1
            for r in self.store.other_runs_unfinished(self.run_id, since)
            if not (r.get("host") == host and r.get("pid") and not _pid_alive(int(r["pid"])))
        )
