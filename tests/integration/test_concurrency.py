"""Several `followup run` processes at once against one store, counting deliveries at the
fake Graph API on loopback.

* Postgres: the runs overlap for real (a barrier in the fake holds the first request of each
  until every process is mid-send) and together serve every due lead exactly once: on one
  account with the accounts' leases out of the way (what keeps a message from going out
  twice is the claim, not the lease), and on several accounts with them, each account then
  served by one run.
* SQLite: one run at a time. With ``--wait 0`` the others exit 75 with one line naming the
  holder; with ``--wait`` they wait for it and then find nothing left to do.

Either way: zero duplicate deliveries and one tracking row per delivery.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from subprocess import PIPE, Popen
from zoneinfo import ZoneInfo

import pytest

from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, graph_config, lead, spawn_followup, write_config

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # Monday 09:00: step m1 is due for every lead
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}
POSTGRES_ONLY = pytest.mark.parametrize("db", ["postgres"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def due_leads(db: LeadDB, n: int) -> list[str]:
    silent = T0.replace(hour=6)
    ids = [f"c{i:03d}" for i in range(n)]
    db.insert(
        *(
            lead(i, last_inbound_at=silent - timedelta(minutes=30), last_outbound_at=silent)
            for i in ids
        )
    )
    return ids


# The installed command with every account's lease granted to every run (leases.py): runs
# at once then claim the same account's leads side by side, as they did before the leases.
WITHOUT_LEASES = (
    "import sys; from followup_cli.store.base import SqlStore; "
    "SqlStore.try_lease = lambda self, account_id: True; "
    "from followup_cli.cli import main; main(sys.argv[1:])"
)


def start_runs(n: int, cfg: Path, db: LeadDB, *extra: str, leases: bool = True) -> list[Popen]:
    args = ("run", "--config", str(cfg), "--db", db.url, "--now", T0.isoformat(), "--json")
    if leases:
        return [spawn_followup(*args, *extra, env=ENV) for _ in range(n)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")} | ENV
    return [
        Popen(
            [sys.executable, "-c", WITHOUT_LEASES, *args, *extra],
            stdout=PIPE,
            stderr=PIPE,
            text=True,
            env=full_env,
        )
        for _ in range(n)
    ]


def finish(procs: list[Popen], timeout: float = 60) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def assert_each_once(graph: FakeGraphAPI, db: LeadDB, ids: list[str]) -> None:
    """Every due lead delivered exactly once, and one `sent` tracking row per delivery."""
    per_recipient = Counter(c.recipient_id for c in graph.deliveries)
    duplicates = {r: n for r, n in per_recipient.items() if n > 1}
    assert not duplicates, f"delivered more than once: {duplicates}"
    assert set(per_recipient) == {f"ig_{i}" for i in ids}
    rows = db.tracking()
    assert len(rows) == len(graph.deliveries)
    assert {(r["lead_id"], r["message_id"], r["status"]) for r in rows} == {
        (i, "m1", "sent") for i in ids
    }


def run_intervals(db: LeadDB) -> list[tuple[datetime, datetime]]:
    rows = db.query("SELECT started_at, finished_at FROM followup_runs ORDER BY started_at")
    out = []
    for r in rows:
        start, end = r["started_at"], r["finished_at"]
        if isinstance(start, str):
            start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
        out.append((start, end))
    return out


@POSTGRES_ONLY
def test_postgres__overlapping_runs_split_the_due_leads_and_serve_each_exactly_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """One account, five runs claiming its leads side by side (the leases out of the way):
    the claims alone keep every message to one delivery."""
    workers = 5
    ids = due_leads(db, 100)
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    barrier = threading.Barrier(workers, timeout=30)
    seen = iter(range(1 << 30))

    @graph.on_request
    def _all_mid_send(call: Call) -> None:
        # Each process sends one message at a time, so the first `workers` requests come
        # from `workers` different processes: the barrier opens only when all are mid-send.
        if next(seen) < workers:
            barrier.wait()

    graph.delay(0.005, times=None)  # keep the rest interleaved
    results = finish(start_runs(workers, cfg, db, leases=False))

    assert not graph.hook_errors, "not every run reached a send at the same time"
    assert [rc for rc, _, _ in results] == [0] * workers, [err for _, _, err in results]
    assert_each_once(graph, db, ids)
    summaries = [json.loads(out) for _, out, _ in results]
    assert sum(s["sent"] for s in summaries) == len(ids)
    # The work was split: every run sent some of it, under its own run id.
    assert all(s["sent"] > 0 for s in summaries), [s["sent"] for s in summaries]
    by_run = Counter(r["run_id"] for r in db.query("SELECT run_id FROM followup_tracking"))
    assert by_run == Counter({s["run_id"]: s["sent"] for s in summaries})
    # and the runs really overlapped in time
    intervals = run_intervals(db)
    assert max(start for start, _ in intervals) < min(end for _, end in intervals)


@POSTGRES_ONLY
def test_postgres__overlapping_runs_share_the_accounts_each_served_by_one_run(
    tmp_path: Path, db: LeadDB
) -> None:
    """Five runs, ten accounts: each account's lease goes to one run, which serves all of
    its due leads; the others take other accounts. Each run sends one message at a time
    (``max_in_flight: 1``), so the first five requests come from five runs: the barrier
    opens only when every run is mid-send on an account of its own."""
    workers, accounts, per_account = 5, 10, 6
    ids = [f"c{i:03d}" for i in range(accounts * per_account)]
    silent = T0.replace(hour=6)
    db.insert(
        *(
            lead(
                i,
                account_id=f"acct_{n % accounts}",
                last_inbound_at=silent - timedelta(minutes=30),
                last_outbound_at=silent,
            )
            for n, i in enumerate(ids)
        )
    )
    with FakeGraphAPI() as graph:
        channel = {
            "type": "instagram",
            "api_base": graph.base_url,
            "api_version": "v21.0",
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": 10_000,
            "timeout_seconds": 30,
        }
        cfg = base_config(
            channel=channel,
            settings={"max_in_flight": 1},
            accounts=[
                {
                    "id": f"acct_{a}",
                    "user_id": "u_1",
                    "ig_user_id": f"178410000000{a:05d}",
                    "token_env": "FOLLOWUP_TOKEN_A",
                }
                for a in range(accounts)
            ],
        )
        path = write_config(tmp_path / "sequences.yaml", cfg)
        barrier = threading.Barrier(workers, timeout=30)
        seen = iter(range(1 << 30))

        @graph.on_request
        def _all_mid_send(call: Call) -> None:
            if next(seen) < workers:
                barrier.wait()

        graph.delay(0.005, times=None)
        results = finish(start_runs(workers, path, db))

        assert not graph.hook_errors, "not every run reached a send at the same time"
        assert [rc for rc, _, _ in results] == [0] * workers, [err for _, _, err in results]
        assert_each_once(graph, db, ids)
    summaries = [json.loads(out) for _, out, _ in results]
    assert all(s["sent"] > 0 for s in summaries), [s["sent"] for s in summaries]
    assert sum(s["sent"] for s in summaries) == len(ids)
    # every account served by one run, which sent all of its leads
    rows = db.query("SELECT account_id, run_id FROM followup_tracking")
    runs_of: dict[str, set[str]] = {}
    for r in rows:
        runs_of.setdefault(r["account_id"], set()).add(r["run_id"])
    assert len(runs_of) == accounts and all(len(v) == 1 for v in runs_of.values()), runs_of
    for s in summaries:
        mine = {a for a, v in runs_of.items() if v == {s["run_id"]}}
        assert {a for a, x in s["accounts"].items() if x["sent"]} == mine
        assert set(s["left_to_other_runs"]) <= set(runs_of) - mine
    intervals = run_intervals(db)
    assert max(start for start, _ in intervals) < min(end for _, end in intervals)


def open_paths(pid: int) -> set[str]:
    """Paths a live process holds open (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    out = set()
    try:
        for fd in fd_dir.iterdir():
            try:
                out.add(os.readlink(fd))
            except OSError:
                continue
    except OSError:
        pass
    return out


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@SQLITE_ONLY
def test_sqlite__overlapping_runs_exit_75_naming_the_run_that_holds_the_lock(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    runs = 4
    ids = due_leads(db, 40)
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    others_gone = threading.Event()
    seen = iter(range(1 << 30))

    @graph.on_request
    def _hold_first_send(call: Call) -> None:
        if next(seen) == 0:  # the lock holder is mid-send until every other run has given up
            others_gone.wait(30)

    graph.delay(0.002, times=None)
    procs = start_runs(runs, cfg, db, "--wait", "0")
    assert wait_until(lambda: sum(p.poll() is not None for p in procs) >= runs - 1)
    others_gone.set()
    results = finish(procs)

    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0] + [75] * (runs - 1), [err for _, _, err in results]
    holder = next(p for p, (rc, _, _) in zip(procs, results, strict=True) if rc == 0)
    for rc, stdout, stderr in results:
        if rc != 75:
            continue
        assert stdout == ""
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("followup: another run holds the lock on ")
        assert f"(pid {holder.pid} on " in lines[0]
    assert_each_once(graph, db, ids)
    # The others sent nothing, and each left a row saying exit 75 (issue 10: every run that
    # starts is recorded, whatever its exit code).
    codes = sorted(r["exit_code"] for r in db.query("SELECT exit_code FROM followup_runs"))
    assert codes == [0] + [75] * (runs - 1)


@SQLITE_ONLY
def test_sqlite__overlapping_runs_with_wait_queue_up_and_never_overlap(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    runs = 4
    ids = due_leads(db, 40)
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    lock_file = f"{db.url}.lock"
    procs: list[Popen] = []
    all_waiting = threading.Event()
    seen = iter(range(1 << 30))

    @graph.on_request
    def _hold_first_send(call: Call) -> None:
        if next(seen) == 0:
            all_waiting.wait(30)

    graph.delay(0.002, times=None)
    procs = start_runs(runs, cfg, db, "--wait", "60")

    def others_wait_on_the_lock() -> bool:
        holding = [p for p in procs if lock_file in open_paths(p.pid)]
        return len(holding) == runs and len(graph.calls) >= 1

    waited = wait_until(others_wait_on_the_lock)
    all_waiting.set()
    results = finish(procs)
    assert waited, "the later runs never reached the run lock"
    assert [rc for rc, _, _ in results] == [0] * runs, [err for _, _, err in results]
    assert_each_once(graph, db, ids)
    summaries = [json.loads(out) for _, out, _ in results]
    assert sorted(s["sent"] for s in summaries) == [0] * (runs - 1) + [len(ids)]
    intervals = run_intervals(db)
    assert len(intervals) == runs
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end <= start, "two SQLite runs held the store at the same time"
