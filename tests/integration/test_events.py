"""`followup events ingest`: host-app JSON lines and Instagram webhook payloads become
outcomes on the right follow-up; re-ingesting the same events changes nothing; opt-outs
from events stop the lead. Parsing is checked without a database first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from followup_cli.config import load_config
from followup_cli.eventparse import BadEvent, IngestResult, parse, parse_event
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

IG = "17841000000000001"


def t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def ingest_cli(
    cfg: Path, db: LeadDB, source: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    if stdin is None:
        return followup("events", "ingest", source, "--config", str(cfg), "--db", db.url, "--json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "followup_cli",
            "events",
            "ingest",
            "-",
            "--config",
            str(cfg),
            "--db",
            db.url,
            "--json",
        ],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def sent(store: SqlStore, lead_id: str, msg: str, at: datetime, variant: str | None = None) -> None:
    row = {
        "lead_id": lead_id,
        "sequence_id": "s1",
        "message_id": msg,
        "step": 1 if msg == "m1" else 2,
        "variant_id": variant,
        "account_id": "acct_a",
        "recipient_id": f"ig_{lead_id}",
        "status": "sent",
        "claimed_at": at,
        "sent_at": at,
        "external_id": f"mid.{lead_id}.{msg}",
    }
    assert store.insert_followup(row) is not None


def snapshot(db: LeadDB) -> dict[str, Any]:
    """Everything an ingest may change, as plain comparable data."""

    def q(sql: str) -> list[tuple]:
        return [tuple(str(v) for v in r.values()) for r in db.query(sql)]

    return {
        "tracking": q(
            "SELECT lead_id, message_id, status, delivered_at, read_at, responded_at, converted_at, "
            "updated_at FROM followup_tracking ORDER BY id"
        ),
        "enrollments": q("SELECT * FROM followup_enrollments ORDER BY lead_id, sequence_id"),
        "optouts": q(
            "SELECT lead_id, reason, source, created_at FROM followup_optouts ORDER BY lead_id"
        ),
        "audit": q("SELECT action, lead_id, sequence_id FROM followup_audit ORDER BY id"),
        "events": q("SELECT event_key, type, lead_id, outcome FROM followup_events ORDER BY id"),
    }


# ------------------------------------------------------------------ parsing


def test_parse_event__times_ids_and_problems() -> None:
    ev = parse_event({"type": "read", "mid": "m.1", "at": ms(t(3, 9))}, "x:1")
    assert (ev.type, ev.lead_id, ev.message_id, ev.at) == ("read", None, "m.1", t(3, 9))
    ev = parse_event({"type": "converted", "lead_id": 42, "at": "2026-03-03T10:00:00+01:00"}, "x:2")
    assert (ev.lead_id, ev.at) == ("42", t(3, 9))
    same = parse_event(
        {"type": "converted", "lead_id": "42", "at": "2026-03-03T09:00:00Z", "x": 1}, "x:3"
    )
    assert same.key == ev.key, "the key ignores formatting and unknown fields"
    for doc, why in (
        ({"type": "clicked", "lead_id": "a", "at": "2026-03-03T10:00:00Z"}, "type 'clicked'"),
        ({"type": "replied", "lead_id": "a"}, "at is missing"),
        ({"type": "replied", "lead_id": "a", "at": "yesterday"}, "not ISO 8601"),
        ({"type": "replied", "at": "2026-03-03T10:00:00Z"}, "give lead_id"),
    ):
        with pytest.raises(BadEvent, match=why):
            parse_event(doc, "f:9")


def test_parse__webhook_payloads_and_lines_mixed() -> None:
    config = load_config_dict(base_config())
    webhook = {
        "object": "instagram",
        "entry": [
            {
                "id": IG,
                "time": ms(t(3, 10)),
                "messaging": [
                    {
                        "sender": {"id": "u1"},
                        "recipient": {"id": IG},
                        "timestamp": ms(t(3, 9)),
                        "read": {"mid": "m.1"},
                    },
                    {
                        "sender": {"id": "u1"},
                        "recipient": {"id": IG},
                        "timestamp": ms(t(3, 10)),
                        "message": {"mid": "m.2", "text": "hi"},
                    },
                    {
                        "sender": {"id": IG},
                        "recipient": {"id": "u1"},
                        "timestamp": ms(t(3, 10)),
                        "message": {"mid": "m.3", "is_echo": True},
                    },
                    {
                        "sender": {"id": "u2"},
                        "recipient": {"id": IG},
                        "timestamp": ms(t(3, 11)),
                        "postback": {"mid": "p.1", "title": "Yes"},
                    },
                    {
                        "sender": {"id": "u2"},
                        "recipient": {"id": IG},
                        "timestamp": ms(t(3, 11)),
                        "delivery": {"mids": ["m.4", "m.5"]},
                    },
                    {
                        "sender": {"id": "u2"},
                        "recipient": {"id": IG},
                        "timestamp": ms(t(3, 11)),
                        "reaction": {"mid": "m.4"},
                    },
                ],
            }
        ],
    }
    text = "\n".join(
        [
            json.dumps(webhook),
            "",
            json.dumps({"type": "opted_out", "lead_id": "L1", "at": "2026-03-03T12:00:00Z"}),
            "{not json",
        ]
    )
    result = IngestResult()
    events = parse(text, "in.jsonl", config, result)
    assert [(e.type, e.recipient_id or e.lead_id, e.message_id, e.account_id) for e in events] == [
        ("read", "u1", "m.1", "acct_a"),
        ("replied", "u1", None, "acct_a"),
        ("replied", "u2", None, "acct_a"),
        ("delivered", "u2", "m.4", "acct_a"),
        ("delivered", "u2", "m.5", "acct_a"),
        ("opted_out", "L1", None, None),
    ]
    assert events[1].key == "ig:message:m.2" and events[1].text == "hi"
    assert result.ignored == Counter({"echo": 1, "reaction": 1})
    assert result.documents == 3 and len(result.problems) == 1
    assert result.problems[0].startswith("in.jsonl:4: not JSON")
    # One pretty-printed document (or an array of them) is read whole.
    whole = IngestResult()
    assert len(parse(json.dumps([webhook, webhook], indent=2), "p.json", config, whole)) == 10
    assert whole.documents == 2 and not whole.problems


def test_parse__the_changes_shape_of_a_webhook_is_a_reply_too() -> None:
    """`entry[].changes[{field: messages, value: {...}}]`, as the App Dashboard's test
    button sends it: the same item as in `messaging`."""
    config = load_config_dict(base_config())
    doc = {
        "object": "instagram",
        "entry": [
            {
                "id": IG,
                "time": ms(t(3, 10)),
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "sender": {"id": "u7"},
                            "recipient": {"id": IG},
                            "timestamp": str(ms(t(3, 10)) // 1000),
                            "message": {"mid": "m.7", "text": "interested!"},
                        },
                    },
                    {"field": "comments", "value": {"text": "nice"}},
                ],
            }
        ],
    }
    result = IngestResult()
    events = parse(json.dumps(doc), "hook.json", config, result)
    assert [(e.type, e.recipient_id, e.account_id, e.at) for e in events] == [
        ("replied", "u7", "acct_a", t(3, 10))
    ]
    assert events[0].key == "ig:message:m.7" and events[0].where.endswith("changes 1")
    assert result.ignored == Counter({"change:comments": 1}) and not result.problems


def load_config_dict(cfg: dict[str, Any]) -> Any:
    path = write_config(Path("cfg.yaml"), cfg)
    return load_config(str(path)).config


# ------------------------------------------------------------------ ingest


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "sequences.yaml", base_config())


def test_ingest__json_lines_mark_the_right_followups_and_reingest_changes_nothing(
    cfg: Path, db: LeadDB, tmp_path: Path
) -> None:
    db.insert(
        *(
            lead(x, last_outbound_at=t(3, 5), last_inbound_at=t(3, 4))
            for x in ("E1", "E2", "E3", "E4")
        )
    )
    store = open_store(db.url)
    try:
        for x in ("E1", "E2", "E3"):
            assert store.start_enrollment(x, "s1", "acct_a", t(3, 5), t(3, 8))
        assert store.start_enrollment("E4", "s1", "acct_a", t(3, 5), t(3, 8), holdout=True)
        sent(store, "E1", "m1", t(3, 8))
        sent(store, "E2", "m1", t(3, 8))
        sent(store, "E2", "m2", t(3, 13), variant="a")
        sent(store, "E3", "m1", t(3, 8))
    finally:
        store.close()
    lines = [
        {"type": "delivered", "mid": "mid.E1.m1", "at": "2026-03-03T08:01:00Z"},
        {"type": "read", "lead_id": "E1", "message_id": "mid.E1.m1", "at": "2026-03-03T09:00:00Z"},
        {"type": "replied", "lead_id": "E1", "at": "2026-03-03T09:30:00Z", "text": "sounds good"},
        # The reply came before m2 went out: it belongs to m1; the conversion to m2.
        {"type": "replied", "lead_id": "E2", "at": "2026-03-03T12:00:00Z"},
        {"type": "converted", "lead_id": "E2", "at": "2026-03-04T10:00:00Z"},
        {
            "type": "opted_out",
            "lead_id": "E3",
            "at": int(t(3, 10).timestamp()),
            "reason": "asked by phone",
        },
        {"type": "converted", "lead_id": "E4", "at": "2026-03-03T20:00:00Z"},
        {"type": "replied", "lead_id": "nobody-we-know", "at": "2026-03-03T10:00:00Z"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = ingest_cli(cfg, db, str(path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["new"], out["duplicates"], out["no_change"], out["unmatched"]) == (8, 0, 1, 0)
    assert out["applied"] == {
        "converted": 2,
        "delivered": 1,
        "opted_out": 1,
        "read": 1,
        "replied": 2,
    }
    assert out["optouts"] == 1
    assert out["enrollments_ended"] == {"converted": 1, "opted_out": 1, "replied": 2}

    rows = {
        (r["lead_id"], r["message_id"]): r
        for r in db.query(
            "SELECT lead_id, message_id, status, delivered_at, read_at, responded_at, converted_at "
            "FROM followup_tracking"
        )
    }

    def at(v: Any) -> datetime:
        from followup_cli.models import parse_time

        return parse_time(v)  # type: ignore[return-value]

    e1 = rows[("E1", "m1")]
    assert e1["status"] == "responded"
    assert (at(e1["delivered_at"]), at(e1["read_at"]), at(e1["responded_at"])) == (
        t(3, 8, 1),
        t(3, 9),
        t(3, 9, 30),
    )
    assert rows[("E2", "m1")]["status"] == "responded" and at(
        rows[("E2", "m1")]["responded_at"]
    ) == t(3, 12)
    assert rows[("E2", "m2")]["status"] == "converted" and at(
        rows[("E2", "m2")]["converted_at"]
    ) == t(4, 10)
    assert rows[("E3", "m1")]["status"] == "sent"
    enr = {r["lead_id"]: r for r in db.query("SELECT * FROM followup_enrollments")}
    assert {k: v["ended_reason"] for k, v in enr.items()} == {
        "E1": "replied",
        "E2": "replied",
        "E3": "opted_out",
        "E4": "converted",
    }
    assert at(enr["E4"]["converted_at"]) == t(3, 20), "holdout conversions count for the lift"
    assert db.query("SELECT lead_id, reason, source FROM followup_optouts") == [
        {"lead_id": "E3", "reason": "asked by phone", "source": "event"}
    ]
    audit = db.query("SELECT action, lead_id FROM followup_audit WHERE action = 'optout'")
    assert audit == [{"action": "optout", "lead_id": "E3"}]

    before = snapshot(db)
    again = ingest_cli(cfg, db, str(path))
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert (out["new"], out["duplicates"], out["applied"]) == (0, 8, {})
    assert snapshot(db) == before


def test_ingest__instagram_webhook_from_stdin_maps_igsids_and_keywords_opt_out(
    cfg: Path, db: LeadDB
) -> None:
    db.insert(
        *(lead(x, last_outbound_at=t(3, 5), last_inbound_at=t(3, 4)) for x in ("W1", "W2")),
        lead("W3", last_outbound_at=t(3, 5), last_inbound_at=t(3, 4)),
    )
    store = open_store(db.url)
    try:
        for x in ("W1", "W2"):
            assert store.start_enrollment(x, "s1", "acct_a", t(3, 5), t(3, 8))
            sent(store, x, "m1", t(3, 8))
    finally:
        store.close()

    def item(sender: str, at: datetime, **kind: Any) -> dict[str, Any]:
        return {"sender": {"id": sender}, "recipient": {"id": IG}, "timestamp": ms(at), **kind}

    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": IG,
                "time": ms(t(3, 12)),
                "messaging": [
                    item("ig_W1", t(3, 9), read={"mid": "mid.W1.m1"}),
                    item("ig_W1", t(3, 10), message={"mid": "m_w1", "text": "Please STOP writing"}),
                    {
                        "sender": {"id": IG},
                        "recipient": {"id": "ig_W1"},
                        "timestamp": ms(t(3, 10)),
                        "message": {"mid": "m_echo", "text": "ok", "is_echo": True},
                    },
                    item("ig_W2", t(3, 11), message={"mid": "m_w2", "text": "how much is it?"}),
                    # Known only to the lead store: matched, but no follow-up to credit.
                    item("ig_W3", t(3, 11), message={"mid": "m_w3", "text": "hello"}),
                    item("ig_stranger", t(3, 11), message={"mid": "m_x", "text": "hey"}),
                ],
            }
        ],
    }
    res = ingest_cli(cfg, db, "-", stdin=json.dumps(payload, indent=2))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["events"], out["new"], out["unmatched"], out["no_change"]) == (5, 5, 1, 1)
    assert out["applied"] == {"read": 1, "replied": 2} and out["ignored"] == {"echo": 1}
    rows = {
        r["lead_id"]: r
        for r in db.query("SELECT lead_id, status, read_at, responded_at FROM followup_tracking")
    }
    assert rows["W1"]["status"] == "responded" and rows["W1"]["read_at"] is not None
    assert rows["W2"]["status"] == "responded"
    assert db.query("SELECT lead_id, reason, source FROM followup_optouts") == [
        {"lead_id": "W1", "reason": "keyword: stop", "source": "keyword"}
    ]
    enr = {
        r["lead_id"]: r["ended_reason"]
        for r in db.query("SELECT lead_id, ended_reason FROM followup_enrollments")
    }
    assert enr == {"W1": "opted_out", "W2": "replied"}
    events = {
        r["event_key"]: (r["lead_id"], r["outcome"])
        for r in db.query("SELECT * FROM followup_events")
    }
    assert events["ig:message:m_x"] == (None, "unmatched")
    assert events["ig:message:m_w3"] == ("W3", "no_change")
    assert all(
        "STOP" not in json.dumps(r, default=str) for r in db.query("SELECT * FROM followup_events")
    ), "message texts are not stored"
    # The same webhook delivered twice (Meta retries) changes nothing.
    before = snapshot(db)
    res = ingest_cli(cfg, db, "-", stdin=json.dumps(payload))
    assert json.loads(res.stdout)["duplicates"] == 5 and snapshot(db) == before


def test_ingest__bad_documents_are_named_and_the_rest_is_ingested(
    cfg: Path, db: LeadDB, tmp_path: Path
) -> None:
    db.insert(lead("B1", last_outbound_at=t(3, 5), last_inbound_at=t(3, 4)))
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"type": "opted_out", "lead_id": "B1", "at": "2026-03-03T10:00:00Z"})
        + "\nnot json\n"
        + json.dumps({"type": "bounced", "lead_id": "B1", "at": "2026-03-03T10:00:00Z"})
        + "\n"
    )
    res = followup("events", "ingest", str(path), "--config", str(cfg), "--db", db.url)
    assert res.returncode == 2
    assert f"{path}:2: not JSON" in res.stderr and f"{path}:3: type 'bounced'" in res.stderr
    assert "2 document(s) rejected" in res.stderr
    assert "1 new event(s)" in res.stdout
    assert [r["lead_id"] for r in db.query("SELECT lead_id FROM followup_optouts")] == ["B1"]
    missing = followup(
        "events", "ingest", str(tmp_path / "nope.jsonl"), "--config", str(cfg), "--db", db.url
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_ingest__events_after_now_wait_until_their_time(cfg: Path, db: LeadDB) -> None:
    """A replay sees nothing after its --now: a reply dated later is not recorded (nor
    does it end the enrollment); ingested again once its time has come, it applies."""
    db.insert(lead("F1", last_outbound_at=t(3, 5), last_inbound_at=t(3, 4)))
    store = open_store(db.url)
    try:
        assert store.start_enrollment("F1", "s1", "acct_a", t(3, 5), t(3, 8))
        sent(store, "F1", "m1", t(3, 8))
    finally:
        store.close()
    path = cfg.parent / "later.jsonl"
    path.write_text(json.dumps({"type": "replied", "lead_id": "F1", "at": "2026-03-05T10:00:00Z"}))
    common = ("events", "ingest", str(path), "--config", str(cfg), "--db", db.url)
    early = followup(*common, "--now", "2026-03-03T15:00:00Z", "--json")
    assert early.returncode == 0, early.stderr
    assert json.loads(early.stdout)["after_now"] == 1 and "not recorded" in early.stderr
    assert db.query("SELECT status FROM followup_tracking") == [{"status": "sent"}]
    assert db.query("SELECT ended_at FROM followup_enrollments") == [{"ended_at": None}]
    late = followup(*common, "--now", "2026-03-05T11:00:00Z", "--json")
    assert json.loads(late.stdout)["applied"] == {"replied": 1}, late.stdout
    assert db.query("SELECT status FROM followup_tracking") == [{"status": "responded"}]
