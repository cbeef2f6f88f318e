"""`followup leads` and the `followup_lead_labels` view the host app joins for its
"in follow-up" label: the same rows on SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from followup_cli.models import parse_time
from followup_cli.store import open_store
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

DAY0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # the silence starts: we wrote at 06:00 Madrid


def silent(lead_id: str, **over: object) -> dict[str, object]:
    return lead(
        lead_id, last_inbound_at=DAY0 - timedelta(minutes=30), last_outbound_at=DAY0, **over
    )


def test_lead_labels__one_row_per_lead_in_a_sequence_with_step_state_and_next_time(
    tmp_path: Path, db: LeadDB
) -> None:
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    common = ("--config", str(cfg), "--db", db.url)
    db.insert(silent("a1"), silent("a2"))
    run = followup("run", *common, "--now", "2026-03-02T09:00:00+01:00")
    assert run.returncode == 0, run.stderr
    assert [(r["lead_id"], r["status"]) for r in db.tracking()] == [("a1", "sent"), ("a2", "sent")]
    # States a run passes through, seeded afterwards so no run touches them.
    others = ("v_enrolled", "v_holdout", "v_sending", "v_unknown", "v_ended")
    db.insert(*(silent(x) for x in others))
    store = open_store(db.url)
    try:
        claim = DAY0 + timedelta(hours=4)
        for x in ("v_enrolled", "v_sending", "v_unknown", "v_ended"):
            assert store.start_enrollment(x, "s1", "acct_a", DAY0, claim)
        assert store.start_enrollment("v_holdout", "s1", "acct_a", DAY0, claim, holdout=True)
        assert store.end_enrollment("v_ended", "s1", "replied", claim)
        for x, status in (("v_sending", "pending"), ("v_unknown", "unknown")):
            row = {
                "lead_id": x,
                "sequence_id": "s1",
                "message_id": "m1",
                "step": 1,
                "account_id": "acct_a",
                "recipient_id": f"ig_{x}",
                "status": status,
                "claimed_at": claim,
                "next_followup_at": DAY0 + timedelta(hours=20),
            }
            assert store.insert_followup(row) is not None
    finally:
        store.close()

    view = db.query(
        "SELECT lead_id, sequence_id, account_id, step, state, next_followup_at FROM followup_lead_labels ORDER BY lead_id"
    )
    m2_due = DAY0 + timedelta(hours=20)
    got = [
        (
            r["lead_id"],
            r["sequence_id"],
            r["account_id"],
            int(r["step"]),
            r["state"],
            parse_time(r["next_followup_at"]) if r["next_followup_at"] is not None else None,
        )
        for r in view
    ]
    assert got == [
        ("a1", "s1", "acct_a", 1, "in_progress", m2_due),
        ("a2", "s1", "acct_a", 1, "in_progress", m2_due),
        ("v_enrolled", "s1", "acct_a", 0, "enrolled", None),
        ("v_holdout", "s1", "acct_a", 0, "holdout", None),
        ("v_sending", "s1", "acct_a", 0, "sending", m2_due),
        ("v_unknown", "s1", "acct_a", 0, "unknown", m2_due),
    ]
    # The host app's join: leads with their label, ended enrollments have none.
    joined = db.query(
        "SELECT l.id, f.state FROM leads l LEFT JOIN followup_lead_labels f ON f.lead_id = l.id "
        "WHERE l.id IN ('a1', 'v_ended') ORDER BY l.id"
    )
    assert joined == [{"id": "a1", "state": "in_progress"}, {"id": "v_ended", "state": None}]

    res = followup("leads", *common, "--now", "2026-03-02T14:00:00+01:00", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["lead_id"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"a1", "a2", "v_enrolled", "v_holdout", "v_sending", "v_unknown"}
    a1 = rows["a1"]
    assert (a1["step"], a1["steps"], a1["state"], a1["next_message_id"]) == (
        1,
        2,
        "in_progress",
        "m2",
    )
    assert parse_time(a1["next_due_at"]) == m2_due
    assert (a1["action"], a1["reason"]) == ("wait", "not_due")
    assert rows["v_holdout"]["state"] == "holdout" and rows["v_holdout"]["next_message_id"] is None

    only = followup("leads", *common, "--sequence", "nope", "--json")  # a typo is named
    assert only.returncode == 2 and only.stdout == "", only.stderr
    assert "nope" in only.stderr and "no such sequence" in only.stderr
    table = followup("leads", *common, "--account", "acct_a", "--now", "2026-03-02T14:00:00+01:00")
    assert table.returncode == 0, table.stderr
    assert "6 lead(s) in a sequence" in table.stdout and "in_progress" in table.stdout


def test_lead_labels__the_last_step_ends_the_enrollment_in_the_same_run(
    tmp_path: Path, db: LeadDB
) -> None:
    """After its last step a lead leaves the "in follow-up" label at once, not a run later."""
    raw = base_config()
    raw["sequences"][0]["messages"][1]["delay_hours"] = 8  # 14:00 Madrid, inside the window
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    common = ("--config", str(cfg), "--db", db.url)
    db.insert(silent("z1"))
    first = followup("run", *common, "--now", "2026-03-02T09:00:00+01:00", "--json")
    assert json.loads(first.stdout)["sent"] == 1
    assert [r["lead_id"] for r in db.query("SELECT lead_id FROM followup_lead_labels")] == ["z1"]
    last = followup("run", *common, "--now", "2026-03-02T14:00:00+01:00", "--json")
    summary = json.loads(last.stdout)
    assert summary["sent"] == 1 and summary["ended"] == {"completed": 1}, summary
    assert db.query("SELECT lead_id FROM followup_lead_labels") == []
    ended = db.query("SELECT ended_reason FROM followup_enrollments WHERE lead_id = 'z1'")
    assert ended == [{"ended_reason": "completed"}]
    again = followup("run", *common, "--now", "2026-03-02T18:00:00+01:00", "--json")
    assert json.loads(again.stdout)["sent"] == 0 and json.loads(again.stdout)["ended"] == {}
