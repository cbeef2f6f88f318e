"""The messaging window as an ally, on both stores: no API call outside it (a skipped row,
counted), pull-forward of a due-soon step to the last cron slot before the window closes,
the hand-off list for human agents, and the checker's warnings for timing that cannot fit.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import load_config
from followup_cli.crypto import new_key
from followup_cli.engine import Engine, RunOptions, RunSummary, handoff
from followup_cli.store import open_store
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

MADRID = ZoneInfo("Europe/Madrid")
MON = datetime(2026, 3, 2, 0, 0, tzinfo=MADRID)
ENV = {"FOLLOWUP_TOKEN_A": "tok-a", "FOLLOWUP_TOKEN_B": "tok-b"}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MON + timedelta(days=day, hours=hour, minutes=minute)


def ig_config(graph: FakeGraphAPI) -> dict[str, Any]:
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": graph.base_url,
            "window_hours": 24,
            "max_retries": 0,
        }
    )
    cfg["accounts"].append(
        {
            "id": "acct_b",
            "user_id": "u_2",
            "ig_user_id": "17841000000000002",
            "token_env": "FOLLOWUP_TOKEN_B",
        }
    )
    return cfg


def run_engine(
    tmp_path: Path,
    db: LeadDB,
    cfg: dict[str, Any],
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> RunSummary:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    loaded = load_config(write_config(tmp_path / "sequences.yaml", cfg))
    store = open_store(db.url, "leads")
    channel = make_channel(loaded.config)
    try:
        return Engine(loaded, store, channel, Clock(fixed=now)).run(RunOptions(now=now))
    finally:
        channel.close()
        store.close()


# ------------------------------------------------------------- outside the window


def test_window__outside_it_no_api_call_a_skipped_row_counted(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    now = at(0, 10)
    db.insert(
        # wrote 30 h ago, we answered 29 h ago: m1 was due 26 h ago; the window closed 6 h ago
        lead(
            "late",
            last_inbound_at=now - timedelta(hours=30),
            last_outbound_at=now - timedelta(hours=29),
        ),
        # never wrote to us: there is no window to message in
        lead("cold", last_inbound_at=None, last_outbound_at=now - timedelta(hours=4)),
        lead(
            "fresh",
            last_inbound_at=now - timedelta(hours=5),
            last_outbound_at=now - timedelta(hours=4),
        ),
    )
    path = write_config(tmp_path / "sequences.yaml", ig_config(graph))
    r = followup(
        "run", "--config", str(path), "--db", db.url, "--now", now.isoformat(), "--json", env=ENV
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["sent"] == 1
    assert data["skipped"] == {"outside_window": 2}
    assert [c.recipient_id for c in graph.calls] == ["ig_fresh"]
    assert db.tracking() == [
        {"lead_id": "cold", "sequence_id": "s1", "message_id": "m1", "variant_id": None,
         "status": "skipped", "error_code": None, "reason": "outside_window"},
        {"lead_id": "fresh", "sequence_id": "s1", "message_id": "m1", "variant_id": None,
         "status": "sent", "error_code": None, "reason": None},
        {"lead_id": "late", "sequence_id": "s1", "message_id": "m1", "variant_id": None,
         "status": "skipped", "error_code": None, "reason": "outside_window"},
    ]  # fmt: skip
    ended = db.query(
        "SELECT lead_id, ended_reason FROM followup_enrollments WHERE ended_at IS NOT NULL"
    )
    assert sorted((e["lead_id"], e["ended_reason"]) for e in ended) == [
        ("cold", "window_closed"),
        ("late", "window_closed"),
    ]
    assert not graph.human_agent_calls

    # The hand-off list for human agents, from the same rows.
    r = followup(
        "handoff", "--config", str(path), "--db", db.url, "--now", now.isoformat(), "--json"
    )
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert [(i["lead_id"], i["message_id"]) for i in items] == [("cold", "m1"), ("late", "m1")]
    late = items[1]
    assert late["account_id"] == "acct_a" and late["recipient_id"] == "ig_late"
    assert late["username"] == "user_late" and late["text"] == "Hi Ana, step one"
    closed = datetime.fromisoformat(late["window_closed_at"])
    assert closed == now - timedelta(hours=6)
    assert datetime.fromisoformat(late["human_reply_until"]) == now + timedelta(days=7, hours=-30)
    assert items[0]["window_closed_at"] is None  # 'cold' never wrote: no window at all
    assert items[0]["human_reply_until"] is None

    r = followup("handoff", "--config", str(path), "--db", db.url, "--now", now.isoformat())
    assert r.returncode == 0, r.stderr
    assert "late" in r.stdout and "cold" in r.stdout and "Hi Ana, step one" in r.stdout


def test_handoff__filters_and_leads_that_moved_on(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = at(0, 10)
    closed = {
        "last_inbound_at": now - timedelta(hours=30),
        "last_outbound_at": now - timedelta(hours=29),
    }
    db.insert(
        lead("a_closed", **closed),
        lead("a_replied", **closed),
        lead("a_optout", **closed),
        lead("a_converted", **closed),
        lead("b_closed", account_id="acct_b", **closed),
    )
    cfg = ig_config(graph)
    run_engine(tmp_path, db, cfg, now, monkeypatch)
    assert graph.calls == []
    # Afterwards one lead writes again, one opts out, one converts: no longer hand-offs.
    db.update("a_replied", last_inbound_at=now + timedelta(minutes=30), last_inbound_text="hi!")
    db.update("a_converted", converted_at=now + timedelta(minutes=30), status="converted")
    assert followup("optout", "a_optout", "--db", db.url).returncode == 0

    loaded = load_config(tmp_path / "sequences.yaml")
    store = open_store(db.url, "leads")
    try:
        later = now + timedelta(hours=2)

        def ids(**kw: Any) -> list[str]:
            return [h["lead_id"] for h in handoff(loaded.config, store, later, **kw)]

        assert ids() == ["a_closed", "b_closed"]
        assert ids(account_id="acct_b") == ["b_closed"]
        assert ids(since_hours=3) == ["a_closed", "b_closed"]
        assert ids(since_hours=1) == []  # skipped two hours before `later`
        assert [h["lead_id"] for h in handoff(loaded.config, store, now - timedelta(hours=1))] == []
    finally:
        store.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_handoff__nothing_to_hand_off_before_any_run(tmp_path: Path, db: LeadDB) -> None:
    path = write_config(tmp_path / "sequences.yaml", base_config())
    r = followup("handoff", "--config", str(path), "--db", db.url, "--account", "acct_a")
    assert (r.returncode, r.stderr) == (0, "")
    assert "no hand-offs" in r.stdout
    r = followup("handoff", "--config", str(path), "--db", db.url, "--account", "nope")
    assert r.returncode == 2 and "--account nope" in r.stderr


# ------------------------------------------------------------------ pull-forward


def test_pull_forward__a_due_soon_step_goes_at_the_last_slot_before_the_window_closes(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ig_config(graph)
    cfg["accounts"][0]["settings"] = {"pull_forward": True, "pull_forward_hours": 12}
    # Both wrote Monday 08:00, we answered 08:10: m1 due 11:10 (-> the 14:00 run); m2 due
    # Tuesday 04:10, inside the window (closes Tue 08:00) but before any run: the next run
    # after Monday 18:00 is Tuesday 09:00, when the window is closed.
    talk = {"last_inbound_at": at(0, 8), "last_outbound_at": at(0, 8, 10)}
    db.insert(lead("pa", **talk), lead("pb", account_id="acct_b", **talk))
    log: list[tuple[str, str, str, str]] = []
    for when in (at(0, 9), at(0, 14), at(0, 18), at(1, 9), at(1, 14)):
        s = run_engine(tmp_path, db, cfg, when, monkeypatch)
        for p in s.planned:
            log.append((when.strftime("%a %H:%M"), p.lead_id, p.message_id, p.reason))
    assert sorted(log) == [
        ("Mon 14:00", "pa", "m1", "due"),
        ("Mon 14:00", "pb", "m1", "due"),
        ("Mon 18:00", "pa", "m2", "pulled_forward"),  # acct_a pulls m2 forward
    ]
    assert {(r["lead_id"], r["message_id"]): r["status"] for r in db.tracking()} == {
        ("pa", "m1"): "sent",
        ("pa", "m2"): "sent",
        ("pb", "m1"): "sent",
        ("pb", "m2"): "skipped",  # acct_b does not pull forward: the window closed first
    }
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_pa", "ig_pa", "ig_pb"]


# ------------------------------------------------------------------ the checker


def test_check__warns_when_timing_can_never_fit_the_window_and_says_what_would(
    tmp_path: Path,
) -> None:
    cfg = base_config(channel={"type": "console", "window_hours": 24})
    cfg["settings"]["no_response_hours"] = 24
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 30
    path = write_config(tmp_path / "sequences.yaml", cfg)
    r = followup("sequences", "check", "--config", str(path))
    assert r.returncode == 0, r.stderr  # warnings, not errors: the file is valid
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    step = next(w for w in warnings if "delay_hours" in w)
    assert step.startswith(f"{path}:") and "messages[1].delay_hours" in step
    assert "can never be sent" in step and "delay_hours below 24" in step
    silence = next(w for w in warnings if "settings.no_response_hours" in w)
    assert "no lead can ever be messaged" in silence and "below 24" in silence
    assert "warning(s)" in r.stdout

    r = followup("sequences", "check", "--config", str(path), "--json")
    data = json.loads(r.stdout)
    assert data["ok"] is True
    assert {p["level"] for p in data["problems"]} == {"warning"}
    assert any("delay_hours" in p["where"] for p in data["problems"])


def test_check__timing_that_fits_gives_no_window_warning(tmp_path: Path) -> None:
    path = write_config(tmp_path / "sequences.yaml", base_config())
    keyed = {"FOLLOWUP_ENCRYPTION_KEY": new_key()}  # no "bodies are not stored" warning
    r = followup("sequences", "check", "--config", str(path), env=keyed)
    assert r.returncode == 0 and "warning" not in r.stderr + r.stdout
