"""`followup plan`: the next days' cron slots replayed against the lead store, each slot
seeing what the earlier ones would send; nothing sent, nothing written. Both stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

START = "2026-03-02T08:30:00+01:00"  # a Monday, before the 09:00 slot (Madrid)
# The lead wrote at 06:50Z, we answered at 07:00Z, and it has been silent since.
SILENT = {"last_inbound_at": "2026-03-02T06:50:00Z", "last_outbound_at": "2026-03-02T07:00:00Z"}


def _plan(cfg: Path, db: LeadDB, *extra: str) -> dict[str, Any]:
    r = followup("plan", "--config", str(cfg), "--db", db.url, "--now", START, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _column(data: dict[str, Any], account: str, key: str) -> list[int]:
    return [s["accounts"][account][key] for s in data["slots"]]


def _tool_rows(db: LeadDB) -> int:
    try:
        return len(db.query("SELECT id FROM followup_tracking"))
    except Exception:  # noqa: BLE001 - the tool's tables were never created: nothing written
        return 0


def test_plan__a_sent_step_is_not_due_again_and_the_window_loses_the_late_one(
    db: LeadDB, tmp_path: Path
) -> None:
    # m1 is due 3 h after the silence (10:00Z), m2 20 h after it (03:00Z next day), but the
    # window closes 24 h after the lead's message (06:50Z): the 09:00 slot is too late.
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(lead("l1", **SILENT))
    data = _plan(cfg, db, "--days", "2")
    assert [s["at"] for s in data["slots"]][:4] == [
        "2026-03-02T08:00:00+00:00",
        "2026-03-02T13:00:00+00:00",
        "2026-03-02T17:00:00+00:00",
        "2026-03-03T08:00:00+00:00",
    ]
    assert len(data["slots"]) == 6
    assert _column(data, "acct_a", "due") == [0, 1, 0, 1, 0, 0]
    assert _column(data, "acct_a", "sent") == [0, 1, 0, 0, 0, 0]
    assert _column(data, "acct_a", "window_lost") == [0, 0, 0, 1, 0, 0]
    assert data["accounts"]["acct_a"]["backlog_clears_at"] == data["slots"][0]["at"]
    assert _tool_rows(db) == 0  # nothing written


def test_plan__hourly_limit_defers_to_later_slots_until_the_backlog_clears(
    db: LeadDB, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        base_config(channel={"type": "console", "window_hours": 48, "messages_per_hour": 2}),
    )
    db.insert(*(lead(f"l{i}", **SILENT) for i in range(5)))
    data = _plan(cfg, db, "--days", "2")
    # day 2 at 09:00: the last m1 and the four m2s of the leads served on day 1
    # (l4's m1 is the oldest due step: it goes first, its m2 is due 4 h later)
    assert _column(data, "acct_a", "due") == [0, 5, 3, 5, 4, 2]
    assert _column(data, "acct_a", "sent") == [0, 2, 2, 2, 2, 2]
    assert _column(data, "acct_a", "deferred") == [0, 3, 1, 3, 2, 0]
    totals = data["accounts"]["acct_a"]
    assert totals["sent"] == 10 and totals["window_lost"] == 0  # 5 leads x 2 steps
    # from the last slot on, nothing waits for the hourly limit
    assert totals["backlog_clears_at"] == "2026-03-03T17:00:00+00:00"
    shorter = _plan(cfg, db, "--days", "1")
    assert shorter["accounts"]["acct_a"]["backlog_clears_at"] is None
    r = followup("plan", "--config", str(cfg), "--db", db.url, "--now", START, "--days", "1")
    assert "the backlog does not clear within 1 day (1 still waiting at 2/h)" in r.stdout
    assert _tool_rows(db) == 0


def test_plan__the_per_lead_daily_cap_holds_across_slots(db: LeadDB, tmp_path: Path) -> None:
    cfg = base_config(
        settings={"max_per_lead_per_day": 1, "min_interval_hours": 1},
        channel={"type": "console", "window_hours": 48},
    )
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 4  # m2 due 11:00Z, the same day
    path = write_config(tmp_path / "c.yaml", cfg)
    db.insert(lead("l1", **SILENT))
    data = _plan(path, db, "--days", "2")
    assert _column(data, "acct_a", "sent")[:4] == [0, 1, 0, 1]  # m2 waits for the next day


def test_plan__table_names_slots_and_the_backlog_and_refuses_bad_days(
    db: LeadDB, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(lead("l1", **SILENT))
    r = followup("plan", "--config", str(cfg), "--db", db.url, "--now", START, "--days", "1")
    assert r.returncode == 0, r.stderr
    assert "Mon 02 Mar 14:00" in r.stdout and "acct_a" in r.stdout
    assert "acct_a: 1 would go out, 0 lost to the window; no backlog" in r.stdout
    assert "nothing sent or written" in r.stdout
    bad = followup("plan", "--config", str(cfg), "--db", db.url, "--days", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert _tool_rows(db) == 0


def test_plan__the_account_daily_cap_holds_until_the_next_day(db: LeadDB, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        base_config(channel={"type": "console", "window_hours": 48, "messages_per_day": 3}),
    )
    db.insert(*(lead(f"l{i}", **SILENT) for i in range(5)))
    data = _plan(cfg, db, "--days", "2")
    assert _column(data, "acct_a", "sent")[:4] == [0, 3, 0, 3]  # a new day, a new cap
    assert _column(data, "acct_a", "deferred")[:3] == [0, 2, 2]


def test_plan__two_lead_rows_of_one_person_are_forecast_what_the_runs_send(
    db: LeadDB, tmp_path: Path
) -> None:
    """The caps are the person's (daily allowance, interval, one sequence at a time): two
    rows of one person are forecast what one row is, and what running the slots sends."""
    cfg = base_config(
        settings={"max_per_lead_per_day": 1, "min_interval_hours": 1},
        channel={"type": "console", "window_hours": 48},
    )
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 4  # m2 due the same day
    path = write_config(tmp_path / "c.yaml", cfg)
    db.insert(
        lead("twin_a", recipient_id="ig_twin", **SILENT),
        lead("twin_b", recipient_id="ig_twin", **SILENT),
    )
    data = _plan(path, db, "--days", "2")
    forecast = _column(data, "acct_a", "sent")
    assert forecast[:4] == [0, 1, 0, 1], forecast  # one a day, as for one row
    ran = []
    for slot in data["slots"]:
        r = followup("run", "--config", str(path), "--db", db.url, "--now", slot["at"], "--json")
        assert r.returncode == 0, r.stderr
        ran.append(json.loads(r.stdout)["sent"])
    assert ran == forecast
