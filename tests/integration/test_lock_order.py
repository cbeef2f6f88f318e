"""Writers that meet on the same rows take them in one order, so two of them never wait for
each other (Postgres would abort one with "deadlock detected", SQLSTATE 40P01, and the run
or the command would end with exit 1).

The order: the account's lock, then the leads' rows (enrollments, tracking) by lead id,
then the audit chain's head, last, just before the commit (one chain a transaction: the
account's own for a run's account transactions, the main one for every other writer).

Each test sets two transactions against each other step by step, on two connections: the
second is started where the first one stands and let go once it waits for a lock (polled
in ``pg_locks``) or has finished; then the first goes on. Postgres only: SQLite serialises
every writer with ``BEGIN IMMEDIATE``, so nothing there can wait in a cycle.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.cli_people import _add_optout
from followup_cli.config import load_config
from followup_cli.engine import Engine, RunOptions, RunSummary
from followup_cli.store import open_store
from followup_cli.store.postgres import PostgresStore
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00: m1 due for Y
T1 = T0 + timedelta(days=1)  # Tuesday 10:00: m2 due for Y; X's window closed long ago
POSTGRES_ONLY = pytest.mark.parametrize("db", ["postgres"], indirect=True)


def _config(tmp_path: Path, fake: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FOLLOWUP_TOKEN_A", "tok-a")
    cfg = base_config(
        channel={"type": "instagram", "api_base": fake.base_url, "window_hours": 72},
    )
    return load_config(write_config(tmp_path / "sequences.yaml", cfg))


def _run(loaded: Any, db: LeadDB, now: datetime) -> RunSummary:
    store = open_store(db.url, "leads")
    channel = make_channel(loaded.config, sleep=lambda s: None)
    try:
        return Engine(loaded, store, channel).run(RunOptions(now=now))
    finally:
        channel.close()
        store.close()


def _own_reconcile_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's own reconcile done before its accounts, as one step, instead of beside them
    (``Engine._reconciling``): started beside, under load it may read the replies a test lands
    mid-run and attribute them before the other run's reconcile the test sets against the
    batch, which then finds nothing to do (and takes none of the locks the test is about)."""
    from contextlib import contextmanager

    from followup_cli.outcomes import reconcile

    @contextmanager
    def first(self: Engine, now: datetime) -> Any:
        reconcile(self.store, self.config, now)
        yield

    monkeypatch.setattr(Engine, "_reconciling", first)


def _m1_sent(loaded: Any, db: LeadDB, *rows: dict[str, Any]) -> None:
    """These leads got m1 at T0 (each enrolled in s1)."""
    db.insert(*rows)
    assert _run(loaded, db, T0).as_dict()["accounts"]["acct_a"]["sent"] == len(rows)


def _silent(lead_id: str, hours: int = 5) -> dict[str, Any]:
    """A lead whose m1 is due at T0 (it wrote ``hours`` before T0, we answered an hour later)."""
    return lead(
        lead_id,
        last_inbound_at=T0 - timedelta(hours=hours),
        last_outbound_at=T0 - timedelta(hours=4),
    )


def _past_window(lead_id: str) -> dict[str, Any]:
    """A lead due at T1 whose messaging window closed long ago (skipped: a row, an audit row)."""
    return lead(
        lead_id,
        last_inbound_at=T1 - timedelta(hours=100),
        last_outbound_at=T1 - timedelta(hours=99),
    )


def _again_once_done(real: Callable[..., Any], done: threading.Event) -> tuple[Any, list[int]]:
    """``real`` counted; a second call waits for ``done`` first (the other transaction has
    finished: run again at once, it could meet it again). Returns the wrapper and the count."""
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            assert done.wait(30)
        return real(*args)

    return counted, calls


def _cycle_with(
    db: LeadDB, first: str, work: Callable[[Any], None], second: str, done: threading.Event
) -> BaseException | None:
    """A writer outside the tool's order: a session takes the rows ``first`` locks, ``work``
    starts beside it (on a store of its own) and waits for them, then the session takes
    the rows ``second`` locks, which ``work`` holds: a lock cycle, in which Postgres aborts
    ``work``'s transaction (the session's deadlock_timeout is the longer). The session
    commits, sets ``done``; returns what ``work`` raised (joined)."""
    import psycopg

    with psycopg.connect(db.url) as other:
        other.execute("SET deadlock_timeout = '60s'")  # ``work``'s transaction is the one aborted
        other.execute(first)
        join = _beside(db, work)
        other.execute(second)
        other.commit()
        done.set()
    return join()


def _until_waiting(conn: Any, pid: int, alive: Callable[[], bool] = lambda: True) -> None:
    """Return once the server backend ``pid`` waits for a lock (or ``alive()`` turns false;
    30 s at most), polling ``pg_locks`` on ``conn``."""
    waiting = "SELECT count(*) AS n FROM pg_locks WHERE pid = %s AND NOT granted"
    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        if conn.execute(waiting, [pid]).fetchone()[0]:
            return
        time.sleep(0.005)  # polling pg_locks, not a wait for timing


def _beside(db: LeadDB, work: Callable[[Any], None]) -> Callable[[], BaseException | None]:
    """Start ``work`` on a store of its own in a thread; return once it waits for a lock
    or has finished. The returned function joins it and gives what it raised."""
    store = open_store(db.url, "leads")
    assert isinstance(store, PostgresStore)
    pid = store.conn.info.backend_pid
    raised: list[BaseException] = []

    def body() -> None:
        try:
            work(store)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    _until_waiting(db._pg, pid, thread.is_alive)

    def join() -> BaseException | None:
        thread.join(60)
        if thread.is_alive():
            return TimeoutError("still waiting after 60 s")
        store.close()
        return raised[0] if raised else None

    return join


def _optout_cli(store: Any) -> None:
    _add_optout(store, "Y", "stop", "tester", T1)


def _optout_event(store: Any) -> None:
    from followup_cli import events

    doc = {"type": "opted_out", "lead_id": "Y", "at": (T1 - timedelta(minutes=1)).isoformat()}
    loaded = load_config(Path("sequences.yaml"))
    events.ingest(store, loaded.config, json.dumps(doc), "events.jsonl", T1, "tester")


@POSTGRES_ONLY
@pytest.mark.parametrize("optout", [_optout_cli, _optout_event], ids=["cli", "event"])
def test_a_claim_batch_and_an_optout_of_its_next_lead_never_deadlock(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch, optout: Callable[[Any], None]
) -> None:
    """A claim batch skips X (outside the window: a skipped row and an audit row), then
    claims Y; meanwhile Y opts out (`followup optout Y`, or an opted_out event ingested):
    its enrollment ended, audited. Before, the batch held the audit head from X's audit row
    while it waited for Y's enrollment, and the opt-out held Y's enrollment while it waited
    for the head (the event: the other way round, its audit row written before it ended the
    enrollment); Postgres aborted one of them. Now every writer here writes its audit rows
    last (and the batch locks Y's rows first): the opt-out waits for the batch, and once it
    is done Y's attempt finds it: Y gets nothing."""
    from followup_cli.sending import LiveExecutor

    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("Y"))
        db.insert(_past_window("X"))
        joins: list[Callable[[], BaseException | None]] = []
        real = PostgresStore.insert_followups

        def insert_followups(self: PostgresStore, rows: Any) -> Any:
            if not joins and any(r["lead_id"] == "Y" for r in rows):
                joins.append(_beside(db, optout))
            return real(self, rows)

        ended: list[BaseException | None] = []
        real_attempt = LiveExecutor._attempt_tx

        def attempt_tx(self: LiveExecutor, *args: Any) -> Any:
            if joins and not ended:  # the opt-out is done before Y's attempt begins
                ended.append(joins[0]())
            return real_attempt(self, *args)

        monkeypatch.setattr(PostgresStore, "insert_followups", insert_followups)
        monkeypatch.setattr(LiveExecutor, "_attempt_tx", attempt_tx)
        summary = _run(loaded, db, T1)
        assert joins, "the batch claimed Y"
        assert ended == [None]
        delivered = [c.recipient_id for c in fake.deliveries]

    assert delivered == ["ig_Y"]  # m1 at T0; m2 never: Y opted out before its attempt
    acct = summary.as_dict()["accounts"]["acct_a"]
    assert acct["sent"] == 0 and acct["skipped"].get("outside_window") == 1
    rows = {(r["lead_id"], r["message_id"]): r["status"] for r in db.tracking()}
    assert rows == {("Y", "m1"): "sent", ("X", "m1"): "skipped"}
    assert db.query("SELECT lead_id FROM followup_optouts") == [{"lead_id": "Y"}]


@POSTGRES_ONLY
def test_a_claim_batch_meeting_stop_and_followup_optout_of_the_lead_never_deadlock(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Y's m2 is planned; before the batch reads Y again, Y writes STOP, and the operator
    runs `followup optout Y`. The batch holds Y's enrollment (locked first) and records the
    keyword opt-out (Y's opt-out row); the operator's opt-out wrote Y's opt-out row first,
    then waited for Y's enrollment: each waited for the other and Postgres aborted the
    operator's command (exit 1, "run it again"). Now the opt-out takes Y's enrollment first
    too: it waits for the batch, then finds Y opted out already, and ends cleanly (an
    operator's stop never fails because a run is busy). Y gets nothing more."""
    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("Y"))
        joins: list[Callable[[], BaseException | None]] = []
        real = PostgresStore.try_lock_leads

        def try_lock_leads(self: PostgresStore, lead_ids: Any) -> Any:
            if not joins:  # the batch holds Y's enrollment: STOP lands, and the opt-out
                self.execute("SET deadlock_timeout = '60s'")  # (the opt-out the one aborted)
                db.update("Y", last_inbound_at=T1 - timedelta(minutes=5), last_inbound_text="STOP")
                joins.append(_beside(db, _optout_cli))
            return real(self, lead_ids)

        monkeypatch.setattr(PostgresStore, "try_lock_leads", try_lock_leads)
        summary = _run(loaded, db, T1)
        assert joins, "the batch read Y again"
        assert joins[0]() is None, "the operator's opt-out failed"
        delivered = [c.recipient_id for c in fake.deliveries]

    assert delivered == ["ig_Y"]  # m1 at T0 only
    acct = summary.as_dict()["accounts"]["acct_a"]
    assert acct["sent"] == 0 and summary.as_dict()["optouts"] == 1
    optouts = db.query("SELECT lead_id, source FROM followup_optouts")
    assert optouts == [{"lead_id": "Y", "source": "keyword"}]
    audited = db.query(
        "SELECT action, actor FROM followup_audit WHERE lead_id = 'Y' AND action = 'optout' "
        "ORDER BY id"
    )
    assert len(audited) == 2 and audited[-1]["actor"] == "tester"  # the run's, the operator's


@POSTGRES_ONLY
def test_a_claim_batch_and_another_runs_reconcile_never_deadlock(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A and B got m1 at T0; at T1, m2 is planned for both (B's window closes first, so B
    comes first), and both reply before the batch claims them: the batch ends B's
    enrollment, then A's. Meanwhile another run's reconcile attributes the replies, lead by
    lead in id order: A's follow-up and enrollment, then B's. Before, each held the lead the
    other wanted next and Postgres aborted one (the run's batch, or the other run's
    reconcile: exit 1). Now the batch locks the rows of every lead it may write in id
    order first: the reconcile waits for it, and both end cleanly."""
    from followup_cli.outcomes import reconcile

    _own_reconcile_first(monkeypatch)
    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("A"), _silent("B", hours=6))
        replied: list[bool] = []
        joins: list[Callable[[], BaseException | None]] = []
        counts: list[Any] = []
        real_lock, real_end = PostgresStore.try_lock_leads, PostgresStore.end_enrollment

        def try_lock_leads(self: PostgresStore, lead_ids: Any) -> Any:
            if not replied:  # planned as due; the replies land before the batch reads them
                replied.append(True)
                for lid in ("A", "B"):
                    db.update(lid, last_inbound_at=T1 - timedelta(minutes=10))
            return real_lock(self, lead_ids)

        def end_enrollment(self: PostgresStore, lead_id: str, *args: Any) -> Any:
            done = real_end(self, lead_id, *args)
            if not joins and lead_id == "B":
                joins.append(_beside(db, lambda s: counts.append(reconcile(s, loaded.config, T1))))
            return done

        monkeypatch.setattr(PostgresStore, "try_lock_leads", try_lock_leads)
        monkeypatch.setattr(PostgresStore, "end_enrollment", end_enrollment)
        summary = _run(loaded, db, T1)
        assert joins, "the batch ended B's enrollment"
        assert joins[0]() is None
        delivered = sorted(c.recipient_id for c in fake.deliveries)

    assert delivered == ["ig_A", "ig_B"]  # m1 only
    assert summary.as_dict()["ended"] == {"replied": 2}
    assert counts[0].responded == 2
    statuses = {r["lead_id"]: r["status"] for r in db.tracking()}
    assert statuses == {"A": "responded", "B": "responded"}
    ended = db.query(
        "SELECT lead_id, ended_reason, responded_at IS NOT NULL AS r FROM followup_enrollments ORDER BY lead_id"
    )
    assert ended == [
        {"lead_id": "A", "ended_reason": "replied", "r": True},
        {"lead_id": "B", "ended_reason": "replied", "r": True},
    ]


@POSTGRES_ONLY
def test_an_attempt_and_another_runs_reconcile_never_deadlock(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B got m2 (its outcome written by the next attempt, A's), then A and B replied; A's
    row changed since its claim, so A's attempt releases its claim (A's enrollment, by the
    trigger) after writing B's outcome (B's enrollment). Meanwhile another run's reconcile
    attributes the replies lead by lead in id order: A's rows, then B's. Before, each held
    the lead the other wanted next and Postgres aborted the attempt (the run ended with
    exit 1). Now the attempt locks its rows first, in the one order (the claims' tracking
    rows, then A's and B's enrollments by lead id): the reconcile waits for it."""
    from followup_cli.outcomes import reconcile

    _own_reconcile_first(monkeypatch)
    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("A"), _silent("B", hours=6))  # B's window closes first
        joins: list[Callable[[], BaseException | None]] = []
        counts: list[Any] = []
        real_mark, real_delete = PostgresStore.mark_attempted_later, PostgresStore.delete_followup

        def mark_attempted_later(self: PostgresStore, fid: int, lead_id: str, *args: Any) -> Any:
            if lead_id == "A" and not joins:  # B got m2; both reply now
                for lid in ("A", "B"):
                    db.update(lid, last_inbound_at=T1 + timedelta(minutes=1))
            return real_mark(self, fid, lead_id, *args)

        def other_run(store: Any) -> None:
            store.execute("SET deadlock_timeout = '60s'")  # (the attempt the one aborted)
            counts.append(reconcile(store, loaded.config, T1 + timedelta(minutes=2)))

        def delete_followup(self: PostgresStore, *args: Any) -> Any:
            if not joins:  # A's attempt holds B's rows; A's it is about to write
                joins.append(_beside(db, other_run))
            return real_delete(self, *args)

        monkeypatch.setattr(PostgresStore, "mark_attempted_later", mark_attempted_later)
        monkeypatch.setattr(PostgresStore, "delete_followup", delete_followup)
        summary = _run(loaded, db, T1)
        assert joins, "A's attempt released its claim"
        assert joins[0]() is None
        delivered = sorted(c.recipient_id for c in fake.deliveries)

    assert delivered == ["ig_A", "ig_B", "ig_B"]  # A's m2 never: it replied before its call
    acct = summary.as_dict()["accounts"]["acct_a"]
    assert acct["sent"] == 1
    assert counts[0].responded == 2
    rows = sorted((r["lead_id"], r["message_id"], r["status"]) for r in db.tracking())
    # (B's m2 was not written yet when the reconcile read B: the reply is m1's)
    assert rows == [("A", "m1", "responded"), ("B", "m1", "responded"), ("B", "m2", "sent")]


@POSTGRES_ONLY
def test_a_reconcile_aborted_for_a_deadlock_runs_its_chunk_again(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer outside the tool's order (here a session that locks B's enrollment, then
    A's) can still make Postgres abort a reconcile's chunk (40P01: rolled back whole). The
    reconcile runs the chunk again, once the other one is done, and counts each outcome
    once; before, the run (or `followup report`) ended with exit 1."""
    from followup_cli import outcomes

    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("A"), _silent("B", hours=6))
    for lid in ("A", "B"):
        db.update(lid, last_inbound_at=T1 - timedelta(minutes=10))
    committed = threading.Event()
    counted, chunks = _again_once_done(outcomes._reconcile_chunk, committed)
    monkeypatch.setattr(outcomes, "_reconcile_chunk", counted)
    counts: list[Any] = []
    raised = _cycle_with(
        db,
        "SELECT 1 FROM followup_enrollments WHERE lead_id = 'B' FOR UPDATE",
        lambda s: counts.append(outcomes.reconcile(s, loaded.config, T1)),
        # the reconcile holds A's rows and waits for B's: take A's too (a cycle)
        "SELECT 1 FROM followup_enrollments WHERE lead_id = 'A' FOR UPDATE",
        committed,
    )
    assert raised is None
    assert len(chunks) == 2, "the chunk ran again"
    assert (counts[0].responded, counts[0].enrollments_responded) == (2, 2)
    statuses = {r["lead_id"]: r["status"] for r in db.tracking()}
    assert statuses == {"A": "responded", "B": "responded"}


@POSTGRES_ONLY
def test_an_event_aborted_for_a_deadlock_is_applied_again_once(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for an ingested event: its transaction, aborted for a lock cycle with a
    writer outside the tool's order, runs again once that one is done; the event is
    recorded, counted and audited once (before: `followup events ingest` exited 1)."""
    from followup_cli import events

    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("A"))
    doc = {"type": "replied", "lead_id": "A", "at": (T1 - timedelta(minutes=10)).isoformat()}
    committed = threading.Event()
    counted, applied = _again_once_done(events._apply_event, committed)
    monkeypatch.setattr(events, "_apply_event", counted)
    results: list[Any] = []

    def ingest(store: Any) -> None:
        results.append(events.ingest(store, loaded.config, json.dumps(doc), "e.jsonl", T1, "t"))

    raised = _cycle_with(
        db,
        "SELECT 1 FROM followup_enrollments WHERE lead_id = 'A' FOR UPDATE",
        ingest,
        # the event holds A's follow-up and waits for A's enrollment: take the follow-up too
        "SELECT 1 FROM followup_tracking WHERE lead_id = 'A' FOR UPDATE",
        committed,
    )
    assert raised is None
    assert len(applied) == 2, "the event's transaction ran again"
    got = results[0].as_dict()
    assert (got["new"], got["applied"], got["enrollments_ended"]) == (
        1,
        {"replied": 1},
        {"replied": 1},
    )
    assert [r["outcome"] for r in db.query("SELECT outcome FROM followup_events")] == ["applied"]
    ends = db.query("SELECT lead_id FROM followup_audit WHERE action = 'enrollment_end'")
    assert ends == [{"lead_id": "A"}]


@POSTGRES_ONLY
def test_a_claim_batch_aborted_for_a_deadlock_claims_again_once(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim batch aborted for a lock cycle (here a session that holds Y's enrollment,
    then waits for the account's lock the batch holds) is rolled back whole: nothing was
    claimed or sent. The run claims the batch again once the other one is done, and
    counts each decision once (X skipped once, Y sent once); before, the run ended with
    exit 1 and Y's step waited for the next run."""
    import psycopg

    from followup_cli.sending import LiveExecutor

    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("Y"))
        db.insert(_past_window("X"))
        calls: list[int] = []
        committed = threading.Event()
        threads: list[threading.Thread] = []
        real = LiveExecutor._claim_in_tx
        other = psycopg.connect(db.url)

        def claim_in_tx(self: LiveExecutor, *args: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                other.execute("SET deadlock_timeout = '60s'")  # the batch is the one aborted
                other.execute("SELECT 1 FROM followup_enrollments WHERE lead_id = 'Y' FOR UPDATE")
                pid = self.store.conn.info.backend_pid

                def take_the_account() -> None:  # once the batch waits for Y's row
                    with psycopg.connect(db.url, autocommit=True) as probe:
                        _until_waiting(probe, pid)
                    other.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended("
                        "COALESCE(current_schema(), '') || ':acct:acct_a', 0))"
                    )
                    other.commit()
                    committed.set()

                threads.append(threading.Thread(target=take_the_account, daemon=True))
                threads[0].start()
            else:
                assert committed.wait(30)
            return real(self, *args)

        monkeypatch.setattr(LiveExecutor, "_claim_in_tx", claim_in_tx)
        try:
            summary = _run(loaded, db, T1)
        finally:
            other.close()
        threads[0].join(30)
        delivered = [c.recipient_id for c in fake.deliveries]

    assert len(calls) == 2, "the batch ran again"
    assert delivered == ["ig_Y", "ig_Y"]  # m1 at T0, m2 now: once
    acct = summary.as_dict()["accounts"]["acct_a"]
    assert acct["sent"] == 1 and acct["skipped"] == {"outside_window": 1}
    rows = sorted((r["lead_id"], r["message_id"], r["status"]) for r in db.tracking())
    assert rows == [("X", "m1", "skipped"), ("Y", "m1", "sent"), ("Y", "m2", "sent")]
    skips = db.query("SELECT lead_id FROM followup_audit WHERE action = 'skip'")
    assert skips == [{"lead_id": "X"}]


@POSTGRES_ONLY
def test_an_erasure_aborted_for_a_deadlock_runs_again_once(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure takes the person's rows in the one order (tracking rows, then
    enrollments); a writer outside that order (here a session that locks A's enrollment,
    then A's follow-up) can still make Postgres abort it (40P01: rolled back whole). It
    runs again once that one is done: A erased once, one erasure audit row; before,
    `followup erase` ended with exit 1."""
    from followup_cli.store import erasure

    with FakeGraphAPI() as fake:
        loaded = _config(tmp_path, fake, monkeypatch)
        _m1_sent(loaded, db, _silent("A"))
    committed = threading.Event()
    counted, tries = _again_once_done(erasure._person_lead_ids, committed)
    monkeypatch.setattr(erasure, "_person_lead_ids", counted)
    raised = _cycle_with(
        db,
        "SELECT 1 FROM followup_enrollments WHERE lead_id = 'A' FOR UPDATE",
        lambda s: erasure.erase_lead(s, "A", "tester", T1, purge=False),
        # the erasure holds A's follow-up and waits for A's enrollment: take the follow-up
        "SELECT 1 FROM followup_tracking WHERE lead_id = 'A' FOR UPDATE",
        committed,
    )
    assert raised is None
    assert len(tries) == 2, "the erasure ran again"
    assert db.query("SELECT lead_id, source FROM followup_optouts") == [
        {"lead_id": "A", "source": "erasure"}
    ]
    assert db.query("SELECT lead_id FROM followup_audit WHERE action = 'erase'") == [
        {"lead_id": "A"}
    ]
    assert db.query("SELECT recipient_id FROM followup_tracking") == [{"recipient_id": None}]
