"""Every write transaction that may run again does: one the database aborts for a conflict
with another writer (40P01 deadlock, 40001 serialization: rolled back whole) is run again
(``store.base.retried``) instead of ending the command with exit 1, and what it writes is
written once: opt-out rows, audit rows, outcomes, messages.

The conflict is the server's own on Postgres (``tests.helpers.conflict_at``: the
transaction is aborted for real, in pipeline mode too), the store's error on SQLite (where
``BEGIN IMMEDIATE`` keeps it from happening: the same code path, rolled back and run again).
``tests/integration/test_lock_order.py`` builds real ones on two connections.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.store import base
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, conflict_at, graph_config, lead
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))  # Monday 10:00
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}
AUDIT_ROW = "INTO followup_audit "  # the append of an audit row (the last write)


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.time, "sleep", lambda s: None)  # the jitter between attempts


def _due(*ids: str) -> list[dict[str, Any]]:
    return [
        lead(i, last_inbound_at=NOW - timedelta(hours=5), last_outbound_at=NOW - timedelta(hours=4))
        for i in ids
    ]


def _run(cfg: Path, db: LeadDB, at: datetime = NOW) -> Any:
    return followup(
        "run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), "--json", env=ENV
    )


def _write(db: LeadDB, sql: str) -> None:
    """A raw write to the tool's tables (a state no command leaves, set up for a test)."""
    if db.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(db.url) as conn:
            conn.execute(sql)
        conn.close()
    else:
        db.query(sql)


def _once_again(met: list[str]) -> bool:
    """The statement met the conflict, then ran again (once)."""
    return len(met) == 2 and met[0].startswith("!") and not met[1].startswith("!")


def _audits(db: LeadDB, action: str) -> list[str | None]:
    rows = db.query("SELECT lead_id FROM followup_audit WHERE action = ? ORDER BY id", (action,))
    return [r["lead_id"] for r in rows]


@pytest.fixture
def sent_m1(tmp_path: Path, db: LeadDB, graph: FakeGraphAPI) -> tuple[Path, LeadDB]:
    """p1 and p2 got m1 at NOW (each enrolled in s1)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*_due("p1", "p2"))
    r = _run(cfg, db)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 2
    return cfg, db


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_an_optout_met_by_a_conflict_runs_again_and_writes_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch, sqlstate: str
) -> None:
    """`followup optout` while a run writes the same rows: never exit 1 for that. The
    conflict meets its last write (the audit row): the opt-out row and the ended enrollment
    before it were rolled back with it, and are written once by the second attempt."""
    cfg, db = sent_m1
    met = conflict_at(monkeypatch, AUDIT_ROW, sqlstate=sqlstate)
    r = followup("optout", "p1", "--reason", "phone", "--config", str(cfg), "--db", db.url)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "p1: opted out", "")
    assert _once_again(met), "the audit row: met the conflict, then written"
    assert db.query("SELECT lead_id, reason FROM followup_optouts") == [
        {"lead_id": "p1", "reason": "phone"}
    ]
    assert len(db.query("SELECT person_key FROM followup_suppressions")) == 1
    assert _audits(db, "optout") == ["p1"]
    ended = db.query("SELECT lead_id, ended_reason FROM followup_enrollments ORDER BY lead_id")
    assert ended == [
        {"lead_id": "p1", "ended_reason": "opted_out"},
        {"lead_id": "p2", "ended_reason": None},
    ]


def test_an_optout_undo_met_by_a_conflict_runs_again_and_writes_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, db = sent_m1
    common = ("--config", str(cfg), "--db", db.url)
    assert followup("optout", "p1", *common).returncode == 0
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = followup("optout", "p1", "--undo", *common)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "p1: opt-out removed", "")
    assert _once_again(met)
    assert db.query("SELECT lead_id FROM followup_optouts") == []
    assert db.query("SELECT person_key FROM followup_suppressions") == []
    assert _audits(db, "optout_undo") == ["p1"]


@pytest.mark.parametrize("verdict", ["--sent", "--release"])
def test_an_unknown_resolve_met_by_a_conflict_runs_again_and_writes_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch, verdict: str
) -> None:
    cfg, db = sent_m1
    _write(
        db, "UPDATE followup_tracking SET status = 'unknown', sent_at = NULL WHERE lead_id = 'p1'"
    )
    fid = db.query("SELECT id FROM followup_tracking WHERE lead_id = 'p1'")[0]["id"]
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = followup("unknown", "resolve", str(fid), verdict, "--config", str(cfg), "--db", db.url)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert _once_again(met)
    rows = db.query("SELECT status FROM followup_tracking WHERE lead_id = 'p1'")
    assert rows == ([{"status": "sent"}] if verdict == "--sent" else [])
    assert _audits(db, "unknown_resolved") == ["p1"]


def test_an_erasure_met_by_a_conflict_runs_again_and_writes_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, db = sent_m1
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = followup("erase", "p1", "--yes", "--config", str(cfg), "--db", db.url)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "p1: personal data erased" in r.stdout
    assert met[0].startswith("!")
    assert db.query("SELECT lead_id, source FROM followup_optouts") == [
        {"lead_id": "p1", "source": "erasure"}
    ]
    assert [r["kind"] for r in db.query("SELECT kind FROM followup_suppressions")] == ["erasure"]
    assert _audits(db, "erase") == ["p1"]
    rows = db.query("SELECT recipient_id, body FROM followup_tracking WHERE lead_id = 'p1'")
    assert rows == [{"recipient_id": None, "body": None}]


def test_a_runs_bookkeeping_met_by_a_conflict_runs_again_and_counts_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch
) -> None:
    """p1 replied: the next run ends its enrollment (bookkeeping, no message), audited. The
    transaction met a conflict at its audit row and ran again: ended and audited once."""
    cfg, db = sent_m1
    later = NOW + timedelta(hours=1)
    db.update("p1", last_inbound_at=later - timedelta(minutes=30))
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = _run(cfg, db, later)
    assert r.returncode == 0, r.stderr
    assert _once_again(met)
    assert _audits(db, "enrollment_end") == ["p1"]
    ended = db.query("SELECT ended_reason FROM followup_enrollments WHERE lead_id = 'p1'")
    assert ended == [{"ended_reason": "replied"}]


def test_an_attempt_met_by_a_conflict_runs_again_and_sends_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt of the second lead (which also writes the first one's outcome: in
    pipeline mode on Postgres) meets a conflict at its mark: rolled back whole before the
    API call, nothing sent, the first outcome held again. It runs again: each lead gets its
    message once, each outcome and its audit row are written once."""
    from followup_cli.store.postgres import PostgresStore

    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*_due("p1", "p2"))
    met = conflict_at(monkeypatch, "SET attempted_at = ", skip=1)
    piped: list[str | None] = []  # what ended a transaction in pipeline mode (Postgres)
    real = PostgresStore._pipelined_tx

    def pipelined_tx(self: PostgresStore) -> Any:
        try:
            yield from real(self)
        except Exception as exc:
            piped.append(getattr(exc, "sqlstate", None))
            raise

    monkeypatch.setattr(PostgresStore, "_pipelined_tx", pipelined_tx)
    r = _run(cfg, db)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 2
    assert _once_again(met[1:]), "the second lead's mark met it, then ran again"
    assert piped == (["40P01"] if db.backend == "postgres" else [])
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_p1", "ig_p2"]
    assert [(t["lead_id"], t["status"]) for t in db.tracking()] == [("p1", "sent"), ("p2", "sent")]
    assert sorted(_audits(db, "send")) == ["p1", "p2"]


def test_a_stale_claim_met_by_a_conflict_is_marked_again_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished run's attempted claim becomes unknown at the next run's start; that
    transaction met a conflict and ran again: one claim_unknown audit row, exit 3 as
    always for a dead run's claim (not 1)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*_due("p1", "p2"))
    assert _run(cfg, db).returncode == 0
    _write(
        db, "UPDATE followup_tracking SET status = 'pending', sent_at = NULL WHERE lead_id = 'p1'"
    )
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = _run(cfg, db, NOW + timedelta(minutes=1))
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout)["stale_claims_marked_unknown"] == 1
    assert met[0].startswith("!")
    assert _audits(db, "claim_unknown") == ["p1"]
    assert len(graph.deliveries) == 2


@pytest.mark.parametrize("skip", [1, 2])
def test_the_end_of_a_turn_met_by_a_conflict_writes_the_last_outcome_once(
    tmp_path: Path,
    db: LeadDB,
    graph: FakeGraphAPI,
    monkeypatch: pytest.MonkeyPatch,
    skip: int,
) -> None:
    """One lead: its outcome is written by the end of the account's turn (no next lead
    carries it), whose transaction met a conflict at its audit row (the third of the run,
    after config_seen and the opening of the account's audit chain) and ran again: the
    outcome and its audit row once. (skip=1: the opening of the chain met it, and ran
    again: opened once.)"""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*_due("p1"))
    met = conflict_at(monkeypatch, AUDIT_ROW, skip=skip)
    r = _run(cfg, db)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 1
    assert _audits(db, "config_seen") == [None]
    assert _audits(db, "audit_chain_open") == [None]
    assert len(met) == 4 and _once_again(met[skip : skip + 2]), met
    assert [c.recipient_id for c in graph.deliveries] == ["ig_p1"]
    assert [(t["lead_id"], t["status"]) for t in db.tracking()] == [("p1", "sent")]
    assert _audits(db, "send") == ["p1"]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", ["optout", "optout --undo", "erase", "unknown resolve"])
def test_an_operators_command_waits_for_a_runs_write_transaction_on_sqlite(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """SQLite: while a run holds the write lock (another connection in BEGIN IMMEDIATE),
    `followup optout` (and the other operator's commands that write) waits for it (the
    busy timeout of every connection the tool opens) instead of failing with "database is
    locked". The holder lets go from a thread once the command's write transaction has
    begun to run (SQLite's statement trace: from there on, SQLite's own C code tries the
    lock and waits)."""
    import sqlite3
    import threading

    from followup_cli.store.sqlite import SQLiteStore

    cfg, db = sent_m1
    common = ("--config", str(cfg), "--db", db.url)
    if command == "optout --undo":
        assert followup("optout", "p1", *common).returncode == 0
    args = {
        "optout": ("optout", "p1"),
        "optout --undo": ("optout", "p1", "--undo"),
        "erase": ("erase", "p1", "--yes"),
        "unknown resolve": ("unknown", "resolve", "1", "--release"),
    }[command]
    if command == "unknown resolve":
        _write(db, "UPDATE followup_tracking SET status = 'unknown', sent_at = NULL WHERE id = 1")
    begun = threading.Event()
    real_connect = SQLiteStore._connect

    def connect(self: SQLiteStore) -> sqlite3.Connection:
        conn = real_connect(self)
        conn.set_trace_callback(lambda sql: begun.set() if sql == "BEGIN IMMEDIATE" else None)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", connect)
    holder = sqlite3.connect(db.url, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a run's write transaction
    released: list[bool] = []

    def release() -> None:
        if begun.wait(60):  # the command's first write transaction is running: waiting
            released.append(True)
        holder.execute("COMMIT")

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        r = followup(*args, *common)
    finally:
        thread.join(60)
        holder.close()
    assert released == [True]
    assert r.returncode == 0 and "locked" not in r.stderr, r.stderr
    optouts = db.query("SELECT lead_id, source FROM followup_optouts")
    assert (
        optouts
        == {
            "optout": [{"lead_id": "p1", "source": "cli"}],
            "optout --undo": [],
            "erase": [{"lead_id": "p1", "source": "erasure"}],
            "unknown resolve": [],
        }[command]
    )


def test_a_runs_record_met_by_a_conflict_runs_again(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's own record at its end (its row finished with the final exit code) met a
    conflict and ran again: the row holds it (before: "could not record the run")."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*_due("p1"))
    met = conflict_at(monkeypatch, "SET finished_at = COALESCE(")
    r = _run(cfg, db)
    assert r.returncode == 0, r.stderr
    assert _once_again(met)
    rows = db.query("SELECT exit_code, summary FROM followup_runs")
    assert len(rows) == 1 and rows[0]["exit_code"] == 0
    assert json.loads(rows[0]["summary"])["exit_code"] == 0


def test_an_optout_import_met_by_a_conflict_runs_again_and_writes_once(
    sent_m1: tuple[Path, LeadDB], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg, db = sent_m1
    src = tmp_path / "stops.csv"
    src.write_text("lead_id,reason\np1,asked by email\np2,spam complaint\n")
    met = conflict_at(monkeypatch, AUDIT_ROW)
    r = followup("optout", "--import", str(src), "--config", str(cfg), "--db", db.url)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "2 line(s): 2 new opt-out(s), 0 already recorded" in r.stdout
    assert _once_again(met)
    rows = db.query("SELECT lead_id FROM followup_optouts ORDER BY lead_id")
    assert rows == [{"lead_id": "p1"}, {"lead_id": "p2"}]
    assert _audits(db, "optout_import") == [None]
