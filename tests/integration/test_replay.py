"""The cron job replayed over days at 9:00, 14:00 and 18:00 (Madrid) with --now, through the
installed command, against the fake Graph API on loopback, on SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, followup, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # Monday 09:00


def slots(days: int) -> list[datetime]:
    return [(T0 + timedelta(days=d)).replace(hour=h) for d in range(days) for h in (9, 14, 18)]


def instagram_config(tmp_path: Path, graph: FakeGraphAPI) -> Path:
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": graph.base_url,
            "api_version": "v21.0",
            "window_hours": 24,
            "max_retries": 0,
        }
    )
    return write_config(tmp_path / "sequences.yaml", cfg)


def test_replay__each_lead_gets_exactly_the_due_steps_at_the_right_slots(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = instagram_config(tmp_path, graph)
    day0 = T0.replace(hour=6)  # 06:00 Madrid on Monday
    db.insert(
        # Wrote at 05:30, we answered at 06:00: m1 due 09:00 (Mon 09:00 run), m2 due Tue 02:00
        # -> Tue 09:00 run; the window (05:30 + 24h) is closed by then: skipped, not sent.
        lead("a1", last_inbound_at=day0 - timedelta(minutes=30), last_outbound_at=day0),
        # Wrote at 08:00, we answered 08:10: m1 due 11:10 -> 14:00 run; m2 due Tue 04:10,
        # window closes Tue 08:00: skipped at Tue 09:00.
        lead(
            "a2",
            last_inbound_at=day0 + timedelta(hours=2),
            last_outbound_at=day0 + timedelta(hours=2, minutes=10),
        ),
        # The lead wrote last: waits for a human, never messaged.
        lead("a3", last_inbound_at=day0 + timedelta(hours=1), last_outbound_at=day0),
        # Out of score range.
        lead("a4", score=8, last_inbound_at=day0 - timedelta(minutes=30), last_outbound_at=day0),
        # Converted.
        lead(
            "a5",
            converted_at=day0,
            last_inbound_at=day0 - timedelta(minutes=30),
            last_outbound_at=day0,
        ),
        # Wrote "stop".
        lead(
            "a6",
            last_inbound_text="STOP please",
            last_inbound_at=day0 - timedelta(minutes=30),
            last_outbound_at=day0,
        ),
    )
    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    seen: list[tuple[str, str, str]] = []
    for at in slots(2):
        before = len(graph.deliveries)
        r = followup("run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "", "cron runs are silent on success"
        for call in graph.deliveries[before:]:
            seen.append((at.strftime("%a %H:%M"), call.recipient_id, call.text))
    assert seen == [
        ("Mon 09:00", "ig_a1", "Hi Ana, step one"),
        ("Mon 14:00", "ig_a2", "Hi Ana, step one"),
    ]
    rows = {(r["lead_id"], r["message_id"]): r["status"] for r in db.tracking()}
    assert rows == {
        ("a1", "m1"): "sent",
        ("a1", "m2"): "skipped",
        ("a2", "m1"): "sent",
        ("a2", "m2"): "skipped",
    }
    assert all(c.header("Authorization") == "Bearer tok-a" for c in graph.calls)
    assert not graph.human_agent_calls
    optouts = db.query("SELECT lead_id, source FROM followup_optouts")
    assert optouts == [{"lead_id": "a6", "source": "keyword"}]


def test_replay__second_step_goes_out_when_the_window_allows(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": graph.base_url,
            "window_hours": 24,
            "max_retries": 0,
        }
    )
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 8
    path = write_config(tmp_path / "sequences.yaml", cfg)
    t = T0.replace(hour=5)
    db.insert(lead("b1", last_inbound_at=t, last_outbound_at=t + timedelta(minutes=5)))
    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    for at in slots(1):
        r = followup(
            "run", "--config", str(path), "--db", db.url, "--now", at.isoformat(), "--json", env=env
        )
        assert r.returncode == 0, r.stderr
        json.loads(r.stdout)
    texts = [c.text for c in graph.deliveries_to("ig_b1")]
    # m1 due 08:05 -> 09:00; m2 due 13:05 -> 14:00 (4h interval since 09:00 holds)
    assert texts == ["Hi Ana, step one", "Hi Ana, step two"]
