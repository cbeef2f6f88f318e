"""A reply is the person's, not the row's: the silence of a lead row is judged on the latest
inbound message of the person (the account's recipient id), whatever lead row of the host
app carries it. Both stores, the fake Graph API on a real socket, the CLI's main in this
process.

Row A got message 1; the person then writes, and the host app records it on row B (same
account, same recipient, a newer lead id) only: A's message 2 never goes out, in the live
run, at the claim, in the dry run, and `explain A` says the person replied as lead B. A
person who spoke last under B waits for a human under every row. A "STOP" under a row that
is no candidate itself (score out of range, converted, never written to) stops the person.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, pg_available, write_config
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))  # Monday 10:00
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}
STEP2 = NOW + timedelta(hours=16)  # m2 (20 h after the silence that starts at NOW - 4 h)


def config(path: Path, base_url: str, **settings: Any) -> Path:
    """m1 3 h and m2 20 h after the silence starts, a 24 h window, no quiet hours (m2 is due
    at night), the fake Graph API."""
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": base_url,
            "api_version": "v21.0",
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": 10_000,
        }
    )
    cfg["settings"].pop("quiet_hours")
    cfg["settings"].update(settings)
    return write_config(path, cfg)


def row(lead_id: str, recipient: str, **over: Any) -> dict[str, Any]:
    """A lead we wrote to 4 h ago, after its message 5 h ago: m1 is due at NOW."""
    r = lead(
        lead_id,
        recipient_id=recipient,
        last_inbound_at=NOW - timedelta(hours=5),
        last_outbound_at=NOW - timedelta(hours=4),
        timezone="UTC",
    )
    r.update(over)
    return r


def run(cfg: Path, db: LeadDB, at: datetime, *extra: str) -> dict[str, Any]:
    r = followup(
        "run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), "--json",
        *extra, env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def explain(cfg: Path, db: LeadDB, lead_id: str, at: datetime, *extra: str) -> str:
    r = followup(
        "explain", lead_id, "--config", str(cfg), "--db", db.url, "--now", at.isoformat(),
        *extra, env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def planned(summary: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((m["lead_id"], m["message_id"]) for m in summary["messages"])


def texts(graph: FakeGraphAPI, recipient: str) -> list[str]:
    return [c.text or "" for c in graph.deliveries_to(recipient)]


def step1_sent_then_reply_under_b(cfg: Path, db: LeadDB, graph: FakeGraphAPI) -> None:
    """A gets m1 at NOW; the person answers two hours later, recorded on row B only (a
    newer lead id the host app made for the same account and recipient)."""
    db.insert(row("lead_a", "ig_person"), row("lead_z", "ig_other"))
    first = run(cfg, db, NOW)
    assert planned(first) == [("lead_a", "m1"), ("lead_z", "m1")]
    db.insert(
        row(
            "lead_b",
            "ig_person",
            last_inbound_at=NOW + timedelta(hours=2),
            last_inbound_text="yes! what does the big one cost?",
            last_outbound_at=None,
        )
    )


# ------------------------------------------------------ a reply under another row


def test_a_reply_under_another_row_of_the_person_ends_the_enrollment(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    step1_sent_then_reply_under_b(cfg, db, graph)

    dry = run(cfg, db, STEP2, "--dry-run")
    assert planned(dry) == [("lead_z", "m2")]  # what the live run sends, nothing to A

    said = explain(cfg, db, "lead_a", STEP2, "--json")
    verdict = json.loads(said)
    assert (verdict["action"], verdict["reason"]) == ("end", "replied"), verdict
    assert "lead_b" in verdict["detail"], verdict
    text = explain(cfg, db, "lead_a", STEP2)
    assert "ENROLLMENT ENDS" in text
    lines = [ln for ln in text.splitlines() if "lead_b" in ln]
    assert lines and any("replied" in ln for ln in lines), text

    live = run(cfg, db, STEP2)
    assert planned(live) == [("lead_z", "m2")]
    assert live["ended"]["replied"] == 1
    assert texts(graph, "ig_person") == ["Hi Ana, step one"]
    assert len(texts(graph, "ig_other")) == 2
    ended = db.query("SELECT lead_id, ended_reason FROM followup_enrollments ORDER BY lead_id")
    assert ended == [
        {"lead_id": "lead_a", "ended_reason": "replied"},
        {"lead_id": "lead_z", "ended_reason": "completed"},
    ]
    # and never later either (the window is open till B's message + 24 h)
    assert planned(run(cfg, db, STEP2 + timedelta(hours=4))) == []
    assert texts(graph, "ig_person") == ["Hi Ana, step one"]


def test_the_follow_up_answered_under_another_row_counts_as_a_response(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """The report's response rate: A's m1 was answered, as lead B."""
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    step1_sent_then_reply_under_b(cfg, db, graph)
    run(cfg, db, STEP2)
    statuses = db.query(
        "SELECT lead_id, message_id, status FROM followup_tracking ORDER BY lead_id, message_id"
    )
    assert {(s["lead_id"], s["message_id"]): s["status"] for s in statuses}[
        ("lead_a", "m1")
    ] == "responded", statuses


def test_a_person_who_wrote_last_under_another_row_waits_for_a_human(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """We wrote last under A (4 h ago); the person wrote since, under B (3 h ago): the person
    waits for a human, so A gets no automated follow-up, not even m1."""
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(
        row("lead_a", "ig_person", last_inbound_at=NOW - timedelta(hours=6)),
        row(
            "lead_b",
            "ig_person",
            last_inbound_at=NOW - timedelta(hours=3),
            last_inbound_text="hello? anyone there?",
            last_outbound_at=NOW - timedelta(hours=7),
        ),
        row("lead_z", "ig_other"),
    )
    dry = run(cfg, db, NOW, "--dry-run")
    assert planned(dry) == [("lead_z", "m1")]
    verdict = json.loads(explain(cfg, db, "lead_a", NOW, "--json"))
    assert (verdict["action"], verdict["reason"]) == ("none", "waiting_for_human"), verdict
    assert "lead_b" in verdict["detail"], verdict
    assert any("lead_b" in ln for ln in explain(cfg, db, "lead_a", NOW).splitlines())
    live = run(cfg, db, NOW)
    assert planned(live) == [("lead_z", "m1")]
    assert texts(graph, "ig_person") == []
    assert planned(run(cfg, db, NOW + timedelta(hours=5))) == []
    assert texts(graph, "ig_person") == []


@pytest.mark.parametrize("when", ["before_the_claim", "after_the_claim"])
def test_a_reply_under_another_row_during_the_run_stops_the_send(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, when: str
) -> None:
    """The plan saw A due; while the run sends to someone else, the person writes under B.
    Before A's claim (one claim a batch): the claim decides again on the person's rows.
    After it (A claimed in the same batch as z): the attempt reads B again, releases the
    claim, and A is decided again. Either way A gets nothing."""
    batch = {"before_the_claim": 1, "after_the_claim": 100}[when]
    cfg = config(tmp_path / "sequences.yaml", graph.base_url, batch_size=batch)
    db.insert(
        # z's window closes first: the run sends to z first
        row("lead_z", "ig_other", last_inbound_at=NOW - timedelta(hours=6)),
        row("lead_a", "ig_person"),
        row(
            "lead_b", "ig_person", last_inbound_at=NOW - timedelta(hours=30), last_outbound_at=None
        ),
    )
    seen: list[str] = []

    @graph.on_request
    def _the_person_writes_under_b(call: Call) -> None:
        seen.append(call.recipient_id or "")
        if call.recipient_id == "ig_other":
            db.update(
                "lead_b", last_inbound_at=NOW - timedelta(minutes=1), last_inbound_text="wait!"
            )

    live = run(cfg, db, NOW)
    assert seen == ["ig_other"]
    assert planned(live) == [("lead_z", "m1")]
    assert texts(graph, "ig_person") == []
    assert [r["lead_id"] for r in db.tracking()] == ["lead_z"]  # A's claim released


# ----------------------------------------------- STOP under a row that is no candidate


NOT_A_CANDIDATE = {
    "score_out_of_range": {"score": 9},
    "converted": {"status": "converted", "converted_at": NOW - timedelta(days=3)},
    "never_written_to": {"last_outbound_at": None},
}


@pytest.mark.parametrize("why", sorted(NOT_A_CANDIDATE))
def test_stop_under_a_row_that_is_no_candidate_stops_the_person(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, why: str
) -> None:
    """B says STOP (before our last message under A, so A's silence alone would let m1 go):
    A gets nothing, in this run or any later one; the dry run says so first."""
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    b = row(
        "lead_b",
        "ig_person",
        last_inbound_at=NOW - timedelta(hours=4, minutes=30),
        last_inbound_text="STOP",
        last_outbound_at=NOW - timedelta(hours=6),
    )
    b.update(NOT_A_CANDIDATE[why])
    db.insert(row("lead_a", "ig_person"), b, row("lead_z", "ig_other"))
    assert "DUE NOW" not in explain(cfg, db, "lead_a", NOW)
    dry = run(cfg, db, NOW, "--dry-run")
    assert planned(dry) == [("lead_z", "m1")]
    live = run(cfg, db, NOW)
    assert planned(live) == [("lead_z", "m1")] and live["optouts"] == 1
    # later: the person's opt-out holds, whatever the rows say now
    db.update(
        "lead_b", last_inbound_text="ok", last_inbound_at=NOW - timedelta(hours=4, minutes=10)
    )
    for at in (NOW + timedelta(hours=5), STEP2, NOW + timedelta(days=1)):
        assert planned(run(cfg, db, at)) in ([], [("lead_z", "m2")])
    assert texts(graph, "ig_person") == []
    assert "DUE NOW" not in explain(cfg, db, "lead_a", NOW + timedelta(days=1))


def test_rows_without_recipient_or_with_garbage_times_never_stop_the_run(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Other rows of the account that cannot be read (no recipient, a time that is no time,
    an erased row's blanks) stop nobody and nothing: the person's good rows still count."""
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    silent = {"last_outbound_at": None}
    db.insert(
        row("lead_a", "ig_person"),
        row("lead_b", "ig_person", last_inbound_at=NOW - timedelta(hours=3), **silent),
        row("lead_d", "", last_inbound_at=NOW - timedelta(minutes=5), **silent),
        row("lead_e", "  ", last_inbound_at=NOW - timedelta(minutes=5), **silent),
        row("lead_f", None, last_inbound_at=NOW - timedelta(minutes=5), **silent),
        row("lead_g", "ig_solo", last_inbound_at=None, score=None, **silent),
        row("lead_h", "ig_solo2"),
    )
    # an erased row's blanks, and times that are no times (text in SQLite; Postgres holds
    # infinity, which Python cannot)
    garbage = "not a time" if db.backend == "sqlite" else "infinity"
    db.insert(
        row("lead_c", "ig_person", last_inbound_at=garbage, **silent),
        row("lead_i", "ig_solo2", last_inbound_at=garbage, **silent),
        row("lead_j", "ig_solo2", last_inbound_at=None, first_name=None, username=None,
            score=None, status=None, **silent),
    )  # fmt: skip
    dry = run(cfg, db, NOW, "--dry-run")
    live = run(cfg, db, NOW)
    # A: the person wrote under B after our last message (waits for a human); h: due
    assert planned(dry) == planned(live) == [("lead_h", "m1")]
    assert texts(graph, "ig_person") == []
    verdict = json.loads(explain(cfg, db, "lead_a", NOW, "--json"))
    assert verdict["reason"] == "waiting_for_human" and "lead_b" in verdict["detail"]


# ------------------------------------------------- the property: split == merged

PERSONS = itertools.count()
HOUR = st.integers(min_value=-40, max_value=30)  # an inbound message, hours from NOW


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgres" and (why := pg_available()):
        pytest.skip(why)
    made: list[LeadDB] = []

    def fresh() -> LeadDB:
        d = tmp_path / f"s{len(made)}"
        d.mkdir()
        db = LeadDB.sqlite(d) if request.param == "sqlite" else LeadDB.postgres()
        made.append(db)
        return db

    yield request.param, fresh
    for db in made:
        db.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    out_before=st.integers(min_value=1, max_value=30),  # our last message under A, hours ago
    inbound=st.lists(st.tuples(HOUR, st.integers(min_value=0, max_value=2)), max_size=4),
    later=st.sampled_from([3, 10, 17, 22]),  # the second run, hours after the first
)
def test_any_split_of_the_persons_messages_over_rows_plans_as_one_row_would(
    tmp_path: Path, stores: Any, graph: FakeGraphAPI, out_before: int, inbound: list, later: int
) -> None:
    """One person's inbound messages, each recorded on one of three lead rows (A carries our
    last message; B and C carry only what the person wrote), against the same messages on one
    row: a live run at NOW and, after the messages since, a dry run and a live run later plan
    and send the same steps."""
    backend, fresh = stores
    n = next(PERSONS)
    cfg = config(tmp_path / f"cfg{n}.yaml", graph.base_url)
    t_out = NOW - timedelta(hours=out_before)
    t2 = NOW + timedelta(hours=later)

    def at(rows: list[int], until: datetime) -> datetime | None:
        times = [NOW + timedelta(hours=h) for h, r in inbound if r in rows]
        return max((t for t in times if t <= until), default=None)

    outcomes = []
    for split in (True, False):
        db = fresh()
        who = f"ig_{'split' if split else 'one'}_{n}"

        def rows(until: datetime, who: str = who, split: bool = split) -> list[dict[str, Any]]:
            a = at([0] if split else [0, 1, 2], until)
            out = [row("A", who, last_inbound_at=a, last_outbound_at=t_out)]
            if split:
                for k, name in ((1, "B"), (2, "C")):
                    t = at([k], until)
                    out.append(row(name, who, last_inbound_at=t, last_outbound_at=None, score=0))
            return out

        db.insert(*rows(NOW))
        first = planned(run(cfg, db, NOW))
        for r in rows(t2):
            db.update(r["id"], last_inbound_at=r["last_inbound_at"])
        dry = planned(run(cfg, db, t2, "--dry-run"))
        second = planned(run(cfg, db, t2))
        outcomes.append((first, dry, second, len(graph.deliveries_to(who))))
        db.close()  # (one Postgres connection and schema at a time)
    assert outcomes[0] == outcomes[1], (backend, outcomes)
    assert outcomes[0][1] == outcomes[0][2]  # the dry run lists what the run sends


# ------------------------------------------------------ `followup leads` sees the person


def leads_view(cfg: Path, db: LeadDB, at: datetime) -> dict[str, dict[str, Any]]:
    r = followup(
        "leads", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), "--json",
        env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return {item["lead_id"]: item for item in json.loads(r.stdout)}


def test_leads_view_decides_a_row_on_the_persons_other_rows(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """`followup leads` says what the run would do: A's person replied under B, so A's
    enrollment ends (not "due"); the person opted out under B, so A is stopped too."""
    cfg = config(tmp_path / "sequences.yaml", graph.base_url)
    step1_sent_then_reply_under_b(cfg, db, graph)
    view = leads_view(cfg, db, STEP2)
    assert (view["lead_z"]["action"], view["lead_z"]["next_message_id"]) == ("send", "m2")
    assert (view["lead_a"]["action"], view["lead_a"]["reason"]) == ("end", "replied"), view

    # Another person: m1 sent under C; the person then opts out under D (a newer row).
    db.insert(row("lead_c", "ig_third"))
    assert planned(run(cfg, db, NOW + timedelta(minutes=5))) == [("lead_c", "m1")]
    db.insert(row("lead_d", "ig_third", last_inbound_at=None, last_outbound_at=None))
    r = followup("optout", "lead_d", "--config", str(cfg), "--db", db.url, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    view = leads_view(cfg, db, STEP2)
    assert view["lead_c"]["action"] != "send", view["lead_c"]
    assert "opt" in str(view["lead_c"]["reason"]), view["lead_c"]
    assert planned(run(cfg, db, STEP2, "--dry-run")) == [("lead_z", "m2")]
