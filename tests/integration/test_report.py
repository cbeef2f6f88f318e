"""`followup report` on a seeded dataset whose every number is known by construction, on
SQLite and Postgres; the JSON output checked against docs/report-schema.json; outcomes
reconciled from the lead store, also by the cron run itself.

The dataset (times UTC; Madrid is UTC+1, New York UTC-5 in early March 2026; "now" is
Wed 4 March 17:30, the report covers Mon 2 - Wed 4 March in Madrid):

    lead  seq  silence   follow-ups (sent unless said)        lead store            ended
    L1    s1   2/05:00   m1 2/08                              replied 2/10          replied
    L2    s1   2/05:00   m1 2/08, m2/a 3/08                   replied 3/09, conv 3/20  converted
    L3    s1   2/10:00   m1 2/13, m2/b 3/13                   replied 5/10 (future) -
    L4    s1   2/10:00   m1 2/13, m2/b 3/13                   replied 3/16          replied
    L5    s1   3/05:00   m1 3/08, m2 failed 551 4/08          -                     failed
    L6    s1   3/10:00   m1 3/13                              conv 4/13             converted
    L7    s1   4/05:00   m1 unknown 4/08                      -                     -
    L8    s1   1/12:00   m1 1/15 (before the period), m2 skipped 2/08 (outside_window)
    L11   s1   3/05:00   m1 failed 10 3/08                    -                     failed
    L9    s2   2/12:00   c1 2/17 (New York)                   replied 2/18, conv 2/19  converted
    L10   s2   4/12:00   c1 4/17 (New York)                   -                     -
    H1-4  s1   holdout: H1 converts 3/10; H2 nothing; H3 replied before step 1 was due;
               H4's step 1 is not due yet (the last two are not comparable)
    Q1 qualified, never enrolled; Q2 score 9; Q3 opted out; Q4 status "converted"
    B1    s2   (account acct_b) c1 3/08
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from followup_cli.config import Config, load_config
from followup_cli.outcomes import reconcile
from followup_cli.report import build_report
from followup_cli.stats import newcombe_diff, wilson
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report-schema.json").read_text())
NOW = datetime(2026, 3, 4, 17, 30, tzinfo=UTC)


def t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def report_config() -> dict[str, Any]:
    cfg = base_config(
        accounts=[
            {
                "id": "acct_a",
                "user_id": "u_1",
                "ig_user_id": "17841000000000001",
                "token_env": "FOLLOWUP_TOKEN_A",
            },
            {
                "id": "acct_b",
                "user_id": "u_2",
                "ig_user_id": "17841000000000002",
                "token_env": "FOLLOWUP_TOKEN_B",
            },
        ],
        sequences=[
            {
                "id": "s1",
                "name": "Warm",
                "priority": 2,
                "holdout": 0.2,
                "trigger": [{"field": "score", "op": "between", "value": [4, 6]}],
                "messages": [
                    {"id": "m1", "delay_hours": 3, "template": "Hi {{ lead.first_name }}"},
                    {
                        "id": "m2",
                        "delay_hours": 20,
                        "variants": [
                            {"id": "a", "template": "Still there, {{ lead.first_name }}?"},
                            {"id": "b", "template": "A last word, {{ lead.first_name }}."},
                        ],
                    },
                ],
            },
            {
                "id": "s2",
                "name": "Cold",
                "priority": 1,
                "trigger": [{"field": "score", "op": "between", "value": [2, 3]}],
                "messages": [
                    {"id": "c1", "delay_hours": 5, "template": "Hello {{ lead.first_name }}"}
                ],
            },
        ],
    )
    return cfg


def followup_row(
    store: SqlStore,
    lead_id: str,
    seq: str,
    msg: str,
    step: int,
    at: datetime,
    status: str = "sent",
    variant: str | None = None,
    account: str = "acct_a",
    **extra: Any,
) -> None:
    sent = status == "sent"
    row = {
        "lead_id": lead_id,
        "sequence_id": seq,
        "message_id": msg,
        "step": step,
        "variant_id": variant,
        "account_id": account,
        "recipient_id": f"ig_{lead_id}",
        "status": status,
        "followup_number": step,
        "claimed_at": at,
        "sent_at": at if sent else None,
        "external_id": f"mid.{lead_id}.{msg}" if sent else None,
        "updated_at": at,
        **extra,
    }
    assert store.insert_followup(row) is not None


def seed(db: LeadDB, store: SqlStore) -> None:
    madrid, ny = "Europe/Madrid", "America/New_York"

    def silent(lead_id: str, anchor: datetime, **over: Any) -> dict[str, Any]:
        cols = {
            "last_inbound_at": anchor - timedelta(minutes=30),
            "last_outbound_at": anchor,
            "timezone": madrid,
        }
        cols.update(over)
        return lead(lead_id, **cols)

    db.insert(
        silent("L1", t(2, 5), last_inbound_at=t(2, 10)),
        silent(
            "L2",
            t(2, 5),
            score=5,
            last_inbound_at=t(3, 9),
            converted_at=t(3, 20),
            status="converted",
        ),
        silent("L3", t(2, 10), last_inbound_at=t(5, 10)),
        silent("L4", t(2, 10), last_inbound_at=t(3, 16)),
        silent("L5", t(3, 5)),
        silent("L6", t(3, 10), score=6, converted_at=t(4, 13)),
        silent("L7", t(4, 5)),
        silent("L8", t(1, 12)),
        silent("L11", t(3, 5)),
        silent(
            "L9", t(2, 12), score=3, timezone=ny, last_inbound_at=t(2, 18), converted_at=t(2, 19)
        ),
        silent("L10", t(4, 12), score=3, timezone=ny),
        silent("H1", t(2, 5), converted_at=t(3, 10)),
        silent("H2", t(2, 5)),
        silent("H3", t(3, 5), last_inbound_at=t(3, 6)),
        silent("H4", t(4, 16)),
        silent("Q1", t(4, 9)),
        silent("Q2", t(4, 9), score=9),
        silent("Q3", t(4, 9)),
        silent("Q4", t(4, 9), status="converted"),
        silent("B1", t(3, 3), account_id="acct_b"),
    )
    enroll = [
        # lead, seq, anchor, started, ended (reason, at), holdout
        ("L1", "s1", t(2, 5), t(2, 8), ("replied", t(2, 13)), False),
        ("L2", "s1", t(2, 5), t(2, 8), ("converted", t(4, 8)), False),
        ("L3", "s1", t(2, 10), t(2, 13), None, False),
        ("L4", "s1", t(2, 10), t(2, 13), ("replied", t(3, 17)), False),
        ("L5", "s1", t(3, 5), t(3, 8), ("failed", t(4, 8)), False),
        ("L6", "s1", t(3, 10), t(3, 13), ("converted", t(4, 17)), False),
        ("L7", "s1", t(4, 5), t(4, 8), None, False),
        ("L8", "s1", t(1, 12), t(1, 15), ("window_closed", t(2, 8)), False),
        ("L11", "s1", t(3, 5), t(3, 8), ("failed", t(3, 8)), False),
        ("L9", "s2", t(2, 12), t(2, 17), ("converted", t(3, 8)), False),
        ("L10", "s2", t(4, 12), t(4, 17), None, False),
        ("H1", "s1", t(2, 5), t(2, 8), ("converted", t(3, 13)), True),
        ("H2", "s1", t(2, 5), t(2, 8), ("completed", t(3, 8)), True),
        ("H3", "s1", t(3, 5), t(3, 8), ("replied", t(3, 8)), True),
        ("H4", "s1", t(4, 16), t(4, 17), None, True),
    ]
    for lead_id, seq, anchor, started, ended, holdout in enroll:
        assert store.start_enrollment(lead_id, seq, "acct_a", anchor, started, holdout=holdout)
        if ended:
            assert store.end_enrollment(lead_id, seq, ended[0], ended[1])
    assert store.start_enrollment("B1", "s2", "acct_b", t(3, 3), t(3, 8))

    followup_row(store, "L1", "s1", "m1", 1, t(2, 8))
    followup_row(store, "L2", "s1", "m1", 1, t(2, 8))
    followup_row(store, "L2", "s1", "m2", 2, t(3, 8), variant="a")
    followup_row(store, "L3", "s1", "m1", 1, t(2, 13))
    followup_row(store, "L3", "s1", "m2", 2, t(3, 13), variant="b")
    followup_row(store, "L4", "s1", "m1", 1, t(2, 13))
    followup_row(store, "L4", "s1", "m2", 2, t(3, 13), variant="b")
    followup_row(store, "L5", "s1", "m1", 1, t(3, 8))
    followup_row(
        store,
        "L5",
        "s1",
        "m2",
        2,
        t(4, 8),
        "failed",
        variant="a",
        error_code=551,
        reason="permanent",
    )
    followup_row(store, "L6", "s1", "m1", 1, t(3, 13))
    followup_row(store, "L7", "s1", "m1", 1, t(4, 8), "unknown", reason="timed out")
    followup_row(store, "L8", "s1", "m1", 1, t(1, 15))
    followup_row(
        store, "L8", "s1", "m2", 2, t(2, 8), "skipped", variant="b", reason="outside_window"
    )
    followup_row(
        store, "L11", "s1", "m1", 1, t(3, 8), "failed", error_code=10, error_subcode=2534022
    )
    followup_row(store, "L9", "s2", "c1", 1, t(2, 17))
    followup_row(store, "L10", "s2", "c1", 1, t(4, 17))
    followup_row(store, "B1", "s2", "c1", 1, t(3, 8), account="acct_b")
    assert store.add_optout("Q3", "asked", "cli", "tester", t(1, 9))


@pytest.fixture
def seeded(db: LeadDB, tmp_path: Path) -> Iterator[tuple[SqlStore, Config, Path]]:
    path = write_config(tmp_path / "sequences.yaml", report_config())
    store = open_store(db.url)
    try:
        seed(db, store)
        yield store, load_config(str(path)).config, path
    finally:
        store.close()


def by(items: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(i[k] for k in keys) if len(keys) > 1 else i[keys[0]]: i for i in items}


# ---------------------------------------------------------------- outcomes


def test_reconcile__attributes_each_outcome_to_the_last_followup_before_it_once(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    store, config, _ = seeded
    counts = reconcile(store, config, NOW)
    assert (counts.responded, counts.converted) == (4, 3)
    # L1, L2, L4, L9 and H3 answered after their silence started; L2, L6, L9, H1 converted.
    assert (counts.enrollments_responded, counts.enrollments_converted) == (5, 4)
    rows = {
        (r["lead_id"], r["message_id"]): r
        for r in db.query(
            "SELECT lead_id, message_id, status, responded_at, converted_at FROM followup_tracking"
        )
    }
    changed = {k: r["status"] for k, r in rows.items() if r["responded_at"] or r["converted_at"]}
    assert changed == {
        ("L1", "m1"): "responded",
        ("L2", "m2"): "converted",  # replied 1h after m2, converted 12h after it
        ("L4", "m2"): "responded",  # not m1: the reply came after m2
        ("L6", "m1"): "converted",
        ("L9", "c1"): "converted",
    }
    assert rows[("L3", "m2")]["status"] == "sent", "a reply after `now` is not seen yet"
    again = reconcile(store, config, NOW)
    assert again.responded == again.converted == 0
    assert again.enrollments_responded == again.enrollments_converted == 0
    enr = {
        r["lead_id"]: r
        for r in db.query("SELECT lead_id, responded_at, converted_at FROM followup_enrollments")
    }
    assert enr["H1"]["converted_at"] is not None and enr["H1"]["responded_at"] is None
    assert enr["H3"]["responded_at"] is not None and enr["H2"]["converted_at"] is None


def test_reconcile__reads_only_leads_whose_times_changed(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    store, config, _ = seeded
    first = reconcile(store, config, NOW)
    assert first.leads_checked > 5
    # L3 replied after `now`: no mark, so it is looked at again; nobody else is.
    assert reconcile(store, config, NOW).leads_checked == 1
    db.update("L5", last_inbound_at=NOW - timedelta(minutes=30))
    again = reconcile(store, config, NOW)
    assert again.leads_checked == 2 and again.responded == 1
    status = db.query(
        "SELECT status FROM followup_tracking WHERE lead_id = 'L5' AND message_id = 'm1'"
    )[0]["status"]
    assert status == "responded"
    # The replay reaches L3's reply: it is attributed then, and L3 is settled.
    later = reconcile(store, config, NOW + timedelta(days=2))
    assert later.responded == 1
    assert reconcile(store, config, NOW + timedelta(days=2)).leads_checked == 0


def test_a_live_run_reconciles_on_a_thread_beside_its_accounts_and_is_done_when_it_ends(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's reconcile (engine._reconciling) goes on beside the accounts, on a connection
    of its own; its outcomes are written when the run returns, and its error is the run's."""
    import threading

    from followup_cli import outcomes
    from followup_cli.clock import Clock
    from followup_cli.engine import Engine, RunOptions
    from followup_cli.errors import StoreError
    from tests.unit.test_engine import RecordingChannel

    _, _, path = seeded
    loaded = load_config(str(path))
    threads: list[str] = []
    real = outcomes.reconcile

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    def broken(*args: Any) -> Any:
        raise StoreError("the reconcile failed")

    def run() -> Any:
        store = open_store(db.url)
        try:
            return Engine(loaded, store, RecordingChannel(), Clock(fixed=NOW)).run(
                RunOptions(now=NOW)
            )
        finally:
            store.close()

    monkeypatch.setattr(outcomes, "reconcile", spy)
    run()
    assert [t.split("_")[0] for t in threads] == ["reconcile"]
    enr = {
        r["lead_id"]: r
        for r in db.query("SELECT lead_id, responded_at, converted_at FROM followup_enrollments")
    }
    assert enr["H1"]["converted_at"] is not None and enr["H3"]["responded_at"] is not None
    monkeypatch.setattr(outcomes, "reconcile", broken)
    with pytest.raises(StoreError, match="the reconcile failed"):
        run()


def test_reconcile__a_new_followup_or_enrollment_forgets_the_leads_mark(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    """Migration 0011: Q1 and Q2 have no rows when first reconciled (marked, as seen); a follow-up or an enrollment written later, before their reply (another host's
    row, arriving late), makes the next reconcile look at them again on both stores."""
    store, config, _ = seeded
    reconcile(store, config, NOW)
    assert reconcile(store, config, NOW).leads_checked == 1  # L3, replying after `now`
    followup_row(store, "Q1", "s1", "m1", 1, t(4, 8))  # before Q1's reply at 08:30
    assert store.start_enrollment("Q2", "s1", "acct_a", t(4, 8), t(4, 8))
    again = reconcile(store, config, NOW)
    assert again.leads_checked == 3
    assert (again.responded, again.enrollments_responded) == (1, 1)
    status = db.query("SELECT status FROM followup_tracking WHERE lead_id = 'Q1'")[0]["status"]
    assert status == "responded"
    assert reconcile(store, config, NOW).leads_checked == 1


def test_a_new_followup_never_waits_for_a_mark_a_reconcile_holds(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    """Postgres (migration 0013): a claim's row forgets the lead's mark without waiting for
    a reconcile that holds it (a claim batch and a reconcile over many leads, each waiting
    for the other, would deadlock); that mark is then left as the reconcile writes it."""
    if db.backend != "postgres":
        pytest.skip("row locks: Postgres (SQLite serialises writers)")
    import psycopg

    store, config, _ = seeded
    reconcile(store, config, NOW)
    with psycopg.connect(db.url) as other:  # a reconcile's transaction, left open
        other.execute("SET lock_timeout = '5s'")
        other.execute("SELECT 1 FROM followup_outcome_marks WHERE lead_id = 'L5' FOR UPDATE")
        store.execute("SET lock_timeout = '2s'")  # a wait would fail, not hang
        followup_row(store, "L5", "s1", "m9", 9, t(4, 9))
        followup_row(store, "L6", "s1", "m9", 9, t(4, 9))
    marks = {r["lead_id"] for r in db.query("SELECT lead_id FROM followup_outcome_marks")}
    assert "L5" in marks and "L6" not in marks


def test_reconcile__a_conversion_by_status_alone_counts_from_when_it_is_first_seen(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    store, config, _ = seeded
    reconcile(store, config, NOW)
    db.update("L5", status="converted")  # the host app sets no converted_at
    assert reconcile(store, config, NOW).converted == 1
    row = db.query(
        "SELECT status, converted_at FROM followup_tracking "
        "WHERE lead_id = 'L5' AND message_id = 'm1'"
    )[0]
    assert row["status"] == "converted" and row["converted_at"] is not None
    later = reconcile(store, config, NOW + timedelta(hours=5))
    assert later.converted == 0 and later.leads_checked <= 1, "seen once, kept"


# ------------------------------------------------------------------ report


def test_report__every_kpi_matches_the_dataset(seeded: tuple[SqlStore, Config, Path]) -> None:
    store, config, _ = seeded
    reconcile(store, config, NOW)
    r = build_report(store, config, NOW, days=3, account="acct_a")
    jsonschema.validate(r, SCHEMA)
    assert r["period"] == {"start": "2026-03-02", "end": "2026-03-04", "days": 3}
    assert r["timezone"] == "Europe/Madrid" and r["account"] == "acct_a"

    s = r["summary"]
    assert s["today"] == "2026-03-04" and s["sent_today"] == 1
    assert (s["followups_sent"], s["followups_responded"], s["followups_converted"]) == (11, 4, 3)
    assert (s["leads_messaged"], s["leads_responded"], s["leads_converted"]) == (8, 4, 3)
    assert s["response_rate"] == 0.5 and s["conversion_rate"] == 0.375
    # Response times 2h (L1), 1h (L9), 1h (L2), 3h (L4); conversions 2h, 12h, 24h.
    assert s["response_time_hours"] == {"n": 4, "median": 1.5, "p90": 2.7}
    assert s["time_to_conversion_hours"] == {"n": 3, "median": 12.0, "p90": 21.6}

    assert r["per_day"] == [
        {"date": "2026-03-02", "sent": 5, "responded": 2, "converted": 1},
        {"date": "2026-03-03", "sent": 5, "responded": 2, "converted": 2},
        {"date": "2026-03-04", "sent": 1, "responded": 0, "converted": 0},
    ]

    seqs = by(r["sequences"], "sequence_id")
    assert list(seqs) == ["s1", "s2"]
    assert seqs["s1"] == {
        "sequence_id": "s1",
        "name": "Warm",
        "followups_sent": 9,
        "leads_messaged": 6,
        "leads_responded": 3,
        "response_rate": 0.5,
        "leads_converted": 2,
        "conversion_rate": pytest.approx(1 / 3, abs=1e-6),
    }
    assert (seqs["s2"]["leads_messaged"], seqs["s2"]["conversion_rate"]) == (2, 0.5)

    msgs = [
        (m["rank"], m["sequence_id"], m["message_id"], m["sent"], m["responded"], m["converted"])
        for m in r["messages"]
    ]
    assert msgs == [(1, "s1", "m2", 3, 2, 1), (2, "s2", "c1", 2, 1, 1), (3, "s1", "m1", 6, 1, 1)]
    m1 = by(r["messages"], "message_id")["m1"]
    assert m1["response_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert m1["response_ci"] == pytest.approx(list(wilson(1, 6)), abs=1e-6)  # type: ignore[arg-type]

    prog = by(r["progression"], "sequence_id")
    assert prog["s1"]["enrolled"] == 8 and prog["s1"]["active"] == 2
    assert prog["s1"]["ended"] == {"converted": 2, "failed": 2, "replied": 2}
    assert [
        (x["step"], x["message_id"], x["reached"], x["responded"], x["converted"])
        for x in prog["s1"]["steps"]
    ] == [
        (1, "m1", 6, 1, 1),
        (2, "m2", 3, 2, 1),
    ]
    assert prog["s2"]["enrolled"] == 2 and prog["s2"]["ended"] == {"converted": 1}
    assert [(x["reached"], x["responded"], x["converted"]) for x in prog["s2"]["steps"]] == [
        (2, 1, 1)
    ]

    bt = r["best_times"]
    assert "cron" in bt["caveat"] and "09:00, 14:00, 18:00" in bt["caveat"]
    # Madrid 09:00 and 14:00 for the Madrid leads; 12:00 in New York for L9 and L10.
    assert [(h["hour"], h["sent"], h["responded"]) for h in bt["hours"]] == [
        (9, 4, 2),
        (12, 2, 1),
        (14, 5, 1),
    ]
    assert [(w["name"], w["sent"], w["responded"]) for w in bt["weekdays"]] == [
        ("Mon", 5, 2),
        ("Tue", 5, 2),
        ("Wed", 1, 0),
    ]

    (ab,) = r["ab_tests"]
    assert (ab["sequence_id"], ab["message_id"]) == ("s1", "m2")
    va, vb = ab["variants"]
    assert (va["variant_id"], va["sent"], va["responded"], va["converted"]) == ("a", 1, 1, 1)
    assert (vb["variant_id"], vb["sent"], vb["responded"], vb["converted"]) == ("b", 2, 1, 0)
    assert (vb["ci_low"], vb["ci_high"]) == pytest.approx(wilson(1, 2), abs=1e-6)
    cmp_ = ab["comparison"]
    assert (cmp_["leader"], cmp_["runner_up"], cmp_["difference"]) == ("a", "b", 0.5)
    assert cmp_["z"] == pytest.approx(0.5 / math.sqrt(1 / 3), abs=1e-4)
    assert cmp_["p_value"] == pytest.approx(
        math.erfc(0.5 / math.sqrt(1 / 3) / math.sqrt(2)), abs=1e-6
    )
    assert cmp_["significant"] is False and ab["winner"] is None and "keep testing" in ab["verdict"]

    # Qualified (score 2-6, not converted, not opted out): L1 L3 L4 L5 L7 L8 L10 L11 H2 H3 H4
    # Q1; followed up (a follow-up went out, ever): L1 L3 L4 L5 L8 L10.
    assert r["coverage"] == {"qualified": 12, "followed_up": 6, "share": 0.5}
    targets = by(r["targets"], "name")
    assert (targets["coverage"]["target"], targets["coverage"]["met"]) == (0.8, False)
    assert (targets["response_rate"]["actual"], targets["response_rate"]["met"]) == (0.5, True)
    assert targets["response_rate"]["target"] == 0.25
    assert (targets["conversion_rate"]["numerator"], targets["conversion_rate"]["denominator"]) == (
        3,
        8,
    )
    assert (targets["conversion_rate"]["target"], targets["conversion_rate"]["met"]) == (0.15, True)

    assert r["problems"] == {
        "unknown": 1,
        "pending": 0,
        "failed": {"total": 2, "by_code": {"10": 1, "551": 1}},
        "skipped": {"total": 1, "by_reason": {"outside_window": 1}},
    }

    # Messaged s1 enrollments whose silence started in the period: L1-L7, L11 (2 converted);
    # comparable holdout: H1 (converted), H2; H3 replied before step 1, H4 is not due yet.
    ho = r["holdout"]
    assert [x["sequence_id"] for x in ho["sequences"]] == ["s1"]
    lift = ho["overall"]
    assert lift["messaged"] == {"enrollments": 8, "converted": 2, "conversion_rate": 0.25}
    assert lift["holdout"] == {"enrollments": 2, "converted": 1, "conversion_rate": 0.5}
    assert lift["holdout_excluded"] == 2
    d, lo, hi = newcombe_diff(2, 8, 1, 2)  # type: ignore[misc]
    assert (lift["difference"], lift["ci_low"], lift["ci_high"]) == pytest.approx(
        (-0.25, lo, hi), abs=1e-6
    )
    assert d == -0.25 and lift["relative_lift"] == -0.5 and lift["significant"] is False
    assert ho["sequences"][0] | {"sequence_id": None} == lift | {"sequence_id": None}


def test_report__accounts_and_single_days(seeded: tuple[SqlStore, Config, Path]) -> None:
    store, config, _ = seeded
    reconcile(store, config, NOW)
    everyone = build_report(store, config, NOW, days=3)
    assert (
        everyone["summary"]["followups_sent"] == 12 and everyone["summary"]["leads_messaged"] == 9
    )
    assert everyone["per_day"][1] == {
        "date": "2026-03-03",
        "sent": 6,
        "responded": 2,
        "converted": 2,
    }
    assert everyone["coverage"] == {
        "qualified": 13,
        "followed_up": 7,
        "share": pytest.approx(7 / 13, abs=1e-6),
    }
    b = build_report(store, config, NOW, days=3, account="acct_b")
    assert (b["summary"]["followups_sent"], b["summary"]["response_rate"]) == (1, 0.0)
    assert [s["sequence_id"] for s in b["sequences"]] == ["s2"] and b["coverage"]["share"] == 1.0
    assert b["holdout"]["overall"] is None and b["ab_tests"] == []
    day = build_report(store, config, NOW, on="2026-03-03", account="acct_a")
    assert day["period"] == {"start": "2026-03-03", "end": "2026-03-03", "days": 1}
    assert day["summary"]["followups_sent"] == 5 and day["summary"]["sent_today"] == 1
    assert [d["date"] for d in day["per_day"]] == ["2026-03-03"]
    # Replayed at Tue 3 March 12:00: later sends and outcomes do not exist yet.
    past = build_report(store, config, t(3, 12), days=2, account="acct_a")
    assert past["summary"]["followups_sent"] == 7 and past["summary"]["sent_today"] == 2
    assert past["summary"]["leads_converted"] == 1  # L9 only: L2 converts at 20:00
    empty = build_report(store, config, NOW, on="2026-02-01")
    jsonschema.validate(empty, SCHEMA)
    assert empty["summary"]["response_rate"] is None and empty["messages"] == []


def test_report_cli__json_validates_and_csv_and_table_agree(
    seeded: tuple[SqlStore, Config, Path], db: LeadDB
) -> None:
    _, _, path = seeded
    common = ("--config", str(path), "--db", db.url, "--now", NOW.isoformat(), "--days", "3")
    res = followup("report", *common, "--account", "acct_a", "--format", "json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["summary"]["followups_responded"] == 4, "the report reconciles outcomes first"
    res = followup("report", *common, "--account", "acct_a", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == ["section", "segment", "metric", "value"]
    cells = {(s, seg, m): v for s, seg, m, v in rows[1:]}
    assert len(cells) == len(rows) - 1, "one row per metric and segment"
    assert cells[("summary", "", "followups_sent")] == "11"
    assert cells[("sequence", "s1", "conversion_rate")] == str(
        data["sequences"][0]["conversion_rate"]
    )
    assert cells[("message", "s1/m2", "rank")] == "1"
    assert cells[("progression_step", "s1/2/m2", "reached")] == "3"
    assert cells[("hour", "09", "response_rate")] == "0.5"
    assert cells[("ab_test", "s1/m2", "significant")] == "false"
    assert cells[("ab_variant", "s1/m2/b", "sent")] == "2"
    assert cells[("failed", "551", "count")] == "1"
    assert cells[("skipped", "outside_window", "count")] == "1"
    assert cells[("target", "coverage", "met")] == "false"
    assert cells[("holdout", "s1", "messaged_enrollments")] == "8"
    res = followup("report", *common)
    assert res.returncode == 0, res.stderr
    for heading in ("Targets", "Top messages", "Progression: s1", "A/B s1/m2", "Holdout lift"):
        assert heading in res.stdout
    bad = followup("report", *common, "--date", "2026-03-03")
    assert bad.returncode == 2 and "--date or --days" in bad.stderr
    bad = followup("report", "--config", str(path), "--db", db.url, "--format", "xml")
    assert bad.returncode == 2 and "--format" in bad.stderr


# --------------------------------------------------------- the cron run reconciles


def test_run__marks_the_followup_responded_at_the_start_of_the_next_run(
    tmp_path: Path, db: LeadDB
) -> None:
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    day0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    db.insert(
        lead("r1", last_inbound_at=day0 - timedelta(minutes=30), last_outbound_at=day0),
        lead(
            "r2",
            last_inbound_at=day0 - timedelta(minutes=30),
            last_outbound_at=day0,
            converted_at=None,
        ),
    )
    common = ("--config", str(cfg), "--db", db.url)
    first = followup("run", *common, "--now", "2026-03-02T09:00:00+01:00")
    assert first.returncode == 0, first.stderr
    db.update("r1", last_inbound_at=datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    db.update("r2", converted_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC), status="converted")
    second = followup("run", *common, "--now", "2026-03-02T14:00:00+01:00")
    assert second.returncode == 0, second.stderr
    rows = {
        r["lead_id"]: r
        for r in db.query(
            "SELECT lead_id, status, sent_at, responded_at, converted_at FROM followup_tracking"
        )
    }
    assert rows["r1"]["status"] == "responded" and rows["r1"]["responded_at"] is not None
    assert rows["r2"]["status"] == "converted" and rows["r2"]["converted_at"] is not None
    enr = {
        r["lead_id"]: r["ended_reason"]
        for r in db.query("SELECT lead_id, ended_reason FROM followup_enrollments")
    }
    assert enr == {"r1": "replied", "r2": "converted"}
    res = followup(
        "report",
        *common,
        "--now",
        "2026-03-02T14:05:00+01:00",
        "--date",
        "2026-03-02",
        "--format",
        "json",
    )
    data = json.loads(res.stdout)
    jsonschema.validate(data, SCHEMA)
    s = data["summary"]
    assert (s["followups_sent"], s["followups_responded"], s["followups_converted"]) == (2, 1, 1)
    # Sent at the 09:00 Madrid slot (08:00Z); replied 10:30Z, converted 12:00Z.
    assert s["response_time_hours"] == {"n": 1, "median": 2.5, "p90": 2.5}
    assert s["time_to_conversion_hours"] == {"n": 1, "median": 4.0, "p90": 4.0}
