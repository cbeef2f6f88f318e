"""Work in proportion to what is due (issue 11): a run reads only leads that may be due.

A live run stores, for an enrolled lead that is not due yet, when it can be due at the
earliest; later runs leave the lead out until then. These tests hold the promise that
leaving a lead out never costs a message or an ending: a reply, a conversion, an opt-out,
a change of its tracking rows (a release, a resolve, an erasure) or of the config brings
it back at once, and a stored time written from stale state is refused. SQLite and Postgres.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from followup_cli.store import open_store
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

ANCHOR = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # we wrote last; the lead wrote at 07:30
M1_DUE = ANCHOR + timedelta(hours=3)
M2_DUE = ANCHOR + timedelta(hours=20)  # inside the 24 h window (closes 07:30 next day)


def config(tmp_path: Path, m2_delay: float = 20, m1_delay: float = 3) -> Path:
    cfg = base_config(settings={"quiet_hours": None, "timezone": "UTC"})
    cfg["sequences"][0]["messages"][0]["delay_hours"] = m1_delay
    cfg["sequences"][0]["messages"][1]["delay_hours"] = m2_delay
    return write_config(tmp_path / "sequences.yaml", cfg)


def run(cfg: Path, db: LeadDB, at: datetime, *extra: str) -> dict[str, Any]:
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def sent(db: LeadDB) -> list[tuple[str, str]]:
    return [
        (r["lead_id"], r["message_id"]) for r in db.tracking() if r["status"] in ("sent", "pending")
    ]


def execute(db: LeadDB, sql: str, params: tuple = ()) -> None:
    """A committed write to the tool's tables, as another program would make it."""
    if db.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.url)
        conn.execute(sql, params)
        conn.commit()
        conn.close()
    else:
        db.query(sql, params)


def seeded(tmp_path: Path, db: LeadDB, *ids: str) -> Path:
    cfg = config(tmp_path)
    db.insert(
        *(
            lead(i, last_inbound_at=ANCHOR - timedelta(minutes=30), last_outbound_at=ANCHOR)
            for i in ids
        )
    )
    assert run(cfg, db, M1_DUE)["sent"] == len(ids)
    # The next run finds m2 not due and stores when it will be.
    assert run(cfg, db, M1_DUE + timedelta(hours=1))["waiting"] == {"not_due": len(ids)}
    due = db.query("SELECT next_due_at FROM followup_enrollments WHERE ended_at IS NULL")
    assert len(due) == len(ids) and all(r["next_due_at"] is not None for r in due)
    return cfg


def test_a_lead_not_due_is_left_out_until_its_step_is_due_then_sent(
    tmp_path: Path, db: LeadDB
) -> None:
    cfg = seeded(tmp_path, db, "L1")
    # Later runs do not even read it ...
    assert run(cfg, db, M1_DUE + timedelta(hours=2))["waiting"] == {}
    assert run(cfg, db, M2_DUE - timedelta(minutes=1))["waiting"] == {}
    # ... and at its time it is sent, once.
    assert run(cfg, db, M2_DUE)["sent"] == 1
    assert sent(db) == [("L1", "m1"), ("L1", "m2")]
    assert run(cfg, db, M2_DUE + timedelta(hours=1))["sent"] == 0


def test_a_reply_conversion_or_optout_ends_a_left_out_enrollment_at_once(
    tmp_path: Path, db: LeadDB
) -> None:
    cfg = seeded(tmp_path, db, "R", "C", "S", "O", "Q")
    later = M1_DUE + timedelta(hours=2)
    db.update("R", last_inbound_at=later - timedelta(minutes=5), last_inbound_text="thanks")
    db.update("C", converted_at=later - timedelta(minutes=5), status="converted")
    db.update("S", score=9)
    db.update("Q", last_inbound_text="please STOP")  # keyword opt-out, before any reply time
    r = followup("optout", "O", "--config", str(cfg), "--db", db.url)
    assert r.returncode == 0, r.stderr
    data = run(cfg, db, later)
    # (`followup optout` ends O's enrollment itself; the run ends Q's)
    assert data["ended"] == {
        "converted": 1,
        "opted_out": 1,
        "replied": 1,
        "score_out_of_range": 1,
    }
    assert data["optouts"] == 1
    assert db.query("SELECT count(*) AS n FROM followup_enrollments WHERE ended_at IS NULL") == [
        {"n": 0}
    ]


def test_a_config_change_brings_every_left_out_lead_back(tmp_path: Path, db: LeadDB) -> None:
    cfg = seeded(tmp_path, db, "L1")
    # The admin shortens m2's delay: the stored time (M2_DUE) no longer holds.
    config(tmp_path, m2_delay=6)
    assert run(cfg, db, M1_DUE + timedelta(hours=4))["sent"] == 1  # (min_interval_hours: 4)
    assert sent(db) == [("L1", "m1"), ("L1", "m2")]


def test_a_released_step_brings_the_lead_back_at_once(tmp_path: Path, db: LeadDB) -> None:
    """An operator (or anything else) removing a tracking row: the database clears the stored
    time itself, so the released m1 is sent again by the next run, not at m2's time."""
    cfg = seeded(tmp_path, db, "L1")
    execute(db, "DELETE FROM followup_tracking WHERE lead_id = ? AND message_id = ?", ("L1", "m1"))
    row = db.query("SELECT next_due_at, state_version FROM followup_enrollments")[0]
    assert row["next_due_at"] is None and row["state_version"] > 0
    data = run(cfg, db, M1_DUE + timedelta(hours=4))
    assert data["sent"] == 1
    assert sent(db) == [("L1", "m1")]


def test_a_next_due_time_from_stale_state_is_refused(tmp_path: Path, db: LeadDB) -> None:
    """The planner reads the version before the state; if a tracking row changes in between
    (another run claims, an operator resolves), its stored time would be from stale state:
    the write matches no row."""
    store = open_store(db.url, "leads")
    try:
        store.start_enrollment("L1", "s1", "acct_a", ANCHOR, ANCHOR)
        versions = store.enrollment_versions(["L1"])
        assert versions == {("L1", "s1"): 0}
        store.insert_followup(
            {
                "lead_id": "L1",
                "sequence_id": "s1",
                "message_id": "m1",
                "account_id": "acct_a",
                "status": "pending",
                "claimed_at": ANCHOR,
                "updated_at": ANCHOR,
                "run_id": "other",
            }
        )
        assert store.set_next_due([("L1", "s1", 0, M2_DUE)], "digest") == 0
        fresh = store.enrollment_versions(["L1"])[("L1", "s1")]
        assert fresh > 0
        assert store.set_next_due([("L1", "s1", fresh, M2_DUE)], "digest") == 1
    finally:
        store.close()


def test_every_tracking_column_but_the_attempt_mark_invalidates_the_stored_time(
    db: LeadDB,
) -> None:
    """Migration 0010: the trigger fires on an UPDATE of any followup_tracking column (the
    schema's own list: a column added later and not given to the trigger fails here), not
    on the attempt mark, which sets ``attempted_at`` alone and changes nothing planned."""
    store = open_store(db.url, "leads")
    try:
        store.start_enrollment("L1", "s1", "acct_a", ANCHOR, ANCHOR)
        fid = store.insert_followup(
            {
                "lead_id": "L1",
                "sequence_id": "s1",
                "message_id": "m1",
                "account_id": "acct_a",
                "recipient_id": "r1",
                "status": "pending",
                "claimed_at": ANCHOR,
                "updated_at": ANCHOR,
                "run_id": "run1",
                "attempted_at": None,
            }
        )
        columns = store._table_columns("followup_tracking")
        assert columns and "attempted_at" in columns

        def bumped(sql: str, params: dict[str, Any]) -> bool:
            before = store.enrollment_versions(["L1"])[("L1", "s1")]
            with store.transaction():
                store.execute(sql, params)
            return store.enrollment_versions(["L1"])[("L1", "s1")] != before

        assert not bumped(
            "UPDATE followup_tracking SET attempted_at = :t WHERE id = :id",
            {"t": ANCHOR, "id": fid},
        )
        store.execute(
            "UPDATE followup_tracking SET attempted_at = NULL WHERE id = :id", {"id": fid}
        )
        before = store.enrollment_versions(["L1"])
        assert store.mark_attempted(fid, "L1", None, ANCHOR)  # the engine's own mark
        assert store.enrollment_versions(["L1"]) == before
        quiet = [
            c
            for c in columns
            if c not in ("id", "attempted_at")
            and not bumped(f"UPDATE followup_tracking SET {c} = {c} WHERE id = :id", {"id": fid})
        ]
        assert quiet == []
    finally:
        store.close()


def test_a_dry_run_stores_nothing(tmp_path: Path, db: LeadDB) -> None:
    cfg = config(tmp_path)
    db.insert(lead("L1", last_inbound_at=ANCHOR - timedelta(minutes=30), last_outbound_at=ANCHOR))
    assert run(cfg, db, M1_DUE)["sent"] == 1
    r = followup(
        "run", "--dry-run", "--config", str(cfg), "--db", db.url, "--now",
        (M1_DUE + timedelta(hours=1)).isoformat(), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["waiting"] == {"not_due": 1}
    assert db.query("SELECT next_due_at FROM followup_enrollments") == [{"next_due_at": None}]


def test_new_leads_we_wrote_to_too_recently_are_not_read(tmp_path: Path, db: LeadDB) -> None:
    """A lead in no sequence is due at the earliest the shortest step delay after our last
    message: before that it is not a candidate at all (and not counted as waiting)."""
    cfg = config(tmp_path, m1_delay=3)
    now = ANCHOR + timedelta(hours=2)
    db.insert(
        lead("early", last_inbound_at=now - timedelta(hours=3), last_outbound_at=now - timedelta(hours=2)),
        lead("ready", last_inbound_at=now - timedelta(hours=4), last_outbound_at=now - timedelta(hours=3)),
    )  # fmt: skip
    data = run(cfg, db, now)
    assert data["sent"] == 1 and data["waiting"] == {}
    assert sent(db) == [("ready", "m1")]
    # two hours on, the other one is due and sent
    assert run(cfg, db, now + timedelta(hours=1))["sent"] == 1


def test_storing_next_due_never_waits_for_a_lead_another_transaction_holds(
    tmp_path: Path, db: LeadDB
) -> None:
    """Postgres: another run's transaction holding a lead's enrollment (a claim, a reconcile
    over many leads) makes the planner skip that lead's stored time, not wait for it (two
    runs locking many leads in different orders would deadlock)."""
    if db.backend != "postgres":
        pytest.skip("row locks: Postgres (SQLite serialises writers)")
    import psycopg

    store = open_store(db.url, "leads")
    try:
        store.start_enrollment("L1", "s1", "acct_a", ANCHOR, ANCHOR)
        store.start_enrollment("L2", "s1", "acct_a", ANCHOR, ANCHOR)
        with psycopg.connect(db.url) as other:  # a transaction, left open
            other.execute("SET lock_timeout = '5s'")
            other.execute("SELECT 1 FROM followup_enrollments WHERE lead_id = 'L1' FOR UPDATE")
            store.execute("SET lock_timeout = '2s'")  # noqa: SLF001 - a wait would fail, not hang
            rows = [("L1", "s1", 0, M2_DUE), ("L2", "s1", 0, M2_DUE)]
            assert store.set_next_due(rows, "digest") == 1
        due = {
            r["lead_id"]: r["next_due_at"]
            for r in db.query("SELECT lead_id, next_due_at FROM followup_enrollments")
        }
        assert due["L1"] is None and due["L2"] is not None
    finally:
        store.close()
