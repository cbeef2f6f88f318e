"""The accounts of a live run served on worker threads, round robin (``Engine._serve``): a
thread takes the account that has waited longest, handles its leads up to and including one
API call, and puts it back at the end of the line. An account is on one thread at a time,
so its sends stay one at a time and in its order.

With ``leases``, an account is started only once its lease is taken, and while other runs
are alive no more than this run's share of the accounts are open at once
(``Leases.share``); an account another run holds is tried again once this run has nothing
else left to do."""

from __future__ import annotations

import threading
from collections import deque

from .accountrun import AccountRun
from .leases import Leases
from .store.base import SqlStore


class Turns:
    """The line of accounts the worker threads share: ``serve`` is each thread's loop,
    ``next_turn`` (under ``cond``) the account it takes next; ``errors`` what the accounts
    raised (the run raises the first once every thread stopped)."""

    def __init__(self, runs: list[AccountRun], leases: Leases | None) -> None:
        self.runs = runs
        self.leases = leases
        self.fresh = deque(runs)  # not started yet
        self.ready: deque[AccountRun] = deque()  # started, waiting for their next turn
        # another run held the lease: once more at the end
        self.later: deque[AccountRun] = deque()
        self.cond = threading.Condition()
        self.state = {"busy": 0, "open": 0, "stop": False, "share": len(runs), "last": False}
        self.errors: list[BaseException] = []

    def next_turn(self) -> tuple[AccountRun, str] | None:
        """Under ``cond``: the next account to step, and how it is taken."""
        while not self.state["stop"]:
            if self.fresh and (self.leases is None or self.state["open"] < self.state["share"]):
                return self.fresh.popleft(), "new"
            if self.ready:
                return self.ready.popleft(), "turn"
            if not self.fresh and not self.state["busy"]:
                self.state["last"] = True  # the rest of this run: the accounts put aside
            if self.later and self.state["last"]:
                return self.later.popleft(), "last"
            if not self.state["busy"]:
                return None
            self.cond.wait()
        return None

    def serve(self, store: SqlStore) -> None:
        """One worker thread: turns until no account is left (or ``stop``)."""
        while True:
            if self.leases is not None and self.fresh:
                share = self.leases.share(len(self.runs))
                with self.cond:
                    self.state["share"] = share
            with self.cond:
                turn = self.next_turn()
                if turn is None:
                    return
                r, how = turn
                self.state["busy"] += 1
                if how != "turn":
                    self.state["open"] += 1
            more: bool | None = False
            try:
                if (
                    how != "turn"
                    and self.leases is not None
                    and not self.leases.take(r, how == "last")
                ):
                    more = None  # not this run's to serve (now, or at all)
                else:
                    more = r.step(store)
            except BaseException as exc:  # noqa: BLE001 - raised by run() once all stop
                self.errors.append(exc)
            finally:
                if not more and self.leases is not None:
                    self.leases.release(r)
                with self.cond:
                    self.state["busy"] -= 1
                    if more:
                        self.ready.append(r)
                    else:
                        self.state["open"] -= 1
                        if more is None and how == "new":
                            self.later.append(r)
                    self.cond.notify_all()

    def stop(self) -> None:
        """Each thread finishes the lead it holds, then takes no other."""
        with self.cond:
            self.state["stop"] = True
            self.cond.notify_all()
