"""Batched claims (issue 11 part 2), on SQLite and Postgres, counted at the fake Graph API.

A run claims an account's next leads in one transaction (``pending``, attempted_at NULL),
then marks each claim attempted right before its API call, in a conditional UPDATE that
re-checks the opt-outs. So:

* a run SIGKILLed in the middle of a batch leaves its unattempted claims released by the
  next run (not ``unknown``: they surely never went out), which sends them exactly once;
  the claim in flight when it died becomes ``unknown``;
* an opt-out landing between the batch claim and the attempt stops that send, and so does
  a STOP the host writes into the lead's row (the attempt reads the row again);
* an hourly or daily cap reached in the middle of a batch never lets more through.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, graph_config, lead, spawn_followup
from tests.helpers import followup_in_process as followup
from tests.integration.test_crash import claim, delivered, due_leads, rows_by_lead

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # Monday 09:00: step m1 is due for every lead
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}


def run_args(cfg: Path, db: LeadDB, now: datetime = T0) -> tuple[str, ...]:
    return ("run", "--config", str(cfg), "--db", db.url, "--now", now.isoformat(), "--json")


def test_batch__a_run_killed_mid_batch_leaves_its_unattempted_claims_released_then_sent_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    ids = due_leads(db, 6, prefix="b")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    state: dict[str, Any] = {"proc": None, "claims": None}

    @graph.on_request
    def _kill_in_the_first_call(call: Call) -> None:
        proc = state["proc"]
        if proc is None or state["claims"] is not None:
            return
        # the run claimed its batch before this first call: all six leads, one attempted
        state["claims"] = db.query(
            "SELECT lead_id, attempted_at FROM followup_tracking WHERE status = 'pending' "
            "ORDER BY lead_id"
        )
        proc.send_signal(signal.SIGKILL)  # delivered by the fake, the answer lost

    proc = spawn_followup(*run_args(cfg, db), env=ENV)
    state["proc"] = proc
    proc.communicate(timeout=60)
    state["proc"] = None
    assert proc.returncode == -signal.SIGKILL
    claims = state["claims"]
    assert [c["lead_id"] for c in claims] == ids, "the batch claimed every due lead at once"
    assert [c["attempted_at"] is not None for c in claims] == [True] + [False] * 5
    assert delivered(graph) == {"ig_b000": 1}

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 3, r.stderr  # the claim in flight is news: it became unknown
    s = json.loads(r.stdout)
    assert s["stale_claims_marked_unknown"] == 1
    assert s["stale_claims_released"] == 5
    assert s["sent"] == 5
    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 0

    assert delivered(graph) == {f"ig_{i}": 1 for i in ids}, "each lead messaged exactly once"
    status = {lid: [x["status"] for x in rs] for lid, rs in rows_by_lead(db).items()}
    assert status == {"b000": ["unknown"], **{i: ["sent"] for i in ids[1:]}}
    audits = db.query("SELECT lead_id FROM followup_audit WHERE action = 'claim_unknown'")
    assert audits == [{"lead_id": "b000"}]  # a release is not an event: nothing was sent


def test_batch__a_stale_claim_written_without_attempted_at_is_taken_as_attempted(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """A claim written by a writer that does not set attempted_at (a version before the
    batch claims, a script) may have been sent: the conservative reading, ``unknown``."""
    from followup_cli.store import open_store
    from tests.integration.test_crash import dead_pid

    due_leads(db, 2, prefix="v")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    store = open_store(db.url)
    try:
        import socket
        from datetime import UTC

        store.start_run("r_old", socket.gethostname(), dead_pid(), "cron", datetime.now(UTC), T0)
        assert store.insert_followup(claim("v000", "r_old")) is not None
        assert store.insert_followup({**claim("v001", "r_old"), "attempted_at": None})
    finally:
        store.close()
    r = followup(*run_args(cfg, db), env=ENV)
    s = json.loads(r.stdout)
    assert (s["stale_claims_marked_unknown"], s["stale_claims_released"]) == (1, 1), r.stderr
    assert delivered(graph) == {"ig_v001": 1}
    status = {lid: rs[0]["status"] for lid, rs in rows_by_lead(db).items()}
    assert status == {"v000": "unknown", "v001": "sent"}


def test_batch__an_optout_between_the_batch_claim_and_the_attempt_stops_that_send(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    ids = due_leads(db, 5, prefix="o")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    seen: list[Any] = []

    @graph.on_request
    def _opt_out_o003_while_o000_is_in_flight(call: Call) -> None:
        if seen:
            return
        # o003 is claimed (pending, not attempted) by the batch already
        seen.append(
            db.query("SELECT status, attempted_at FROM followup_tracking WHERE lead_id = 'o003'")
        )
        opted = followup(
            "optout", "o003", "--reason", "asked", "--config", str(cfg), "--db", db.url
        )
        assert opted.returncode == 0, opted.stderr

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert seen == [[{"status": "pending", "attempted_at": None}]]
    s = json.loads(r.stdout)
    assert s["sent"] == 4 and s["skipped"] == {"opted_out_during_send": 1}
    assert sorted(delivered(graph)) == [f"ig_{i}" for i in ids if i != "o003"]
    assert "o003" not in rows_by_lead(db), "the claim was released, nothing recorded as sent"


def test_batch__a_stop_the_host_writes_after_the_batch_claim_stops_that_send(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """The host's lead row changed between the claim and the attempt (the lead wrote STOP):
    the attempt reads the row again, the claim is released and the lead decided again."""
    ids = due_leads(db, 5, prefix="s")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    seen: list[Any] = []

    @graph.on_request
    def _s003_writes_stop_while_s000_is_in_flight(call: Call) -> None:
        if seen:
            return
        seen.append(db.query("SELECT attempted_at FROM followup_tracking WHERE lead_id = 's003'"))
        db.update("s003", last_inbound_text="STOP", last_inbound_at=T0 - timedelta(minutes=1))

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert seen == [[{"attempted_at": None}]]  # claimed in the batch, not attempted yet
    s = json.loads(r.stdout)
    assert s["sent"] == 4 and s["optouts"] == 1
    assert sorted(delivered(graph)) == [f"ig_{i}" for i in ids if i != "s003"]
    assert "s003" not in rows_by_lead(db)
    assert db.query("SELECT lead_id, source FROM followup_optouts") == [
        {"lead_id": "s003", "source": "keyword"}
    ]


def _cap_config(tmp_path: Path, graph: FakeGraphAPI, **channel: Any) -> Path:
    return graph_config(tmp_path / "sequences.yaml", graph.base_url, **channel)


def _sent_before(db: LeadDB, n: int, at: datetime) -> None:
    """n leads of this account messaged at ``at`` (they count in its windows)."""
    from followup_cli.store import open_store

    db.insert(*(lead(f"p{i:02d}", last_outbound_at=at) for i in range(n)))
    store = open_store(db.url)
    try:
        for i in range(n):
            row = {**claim(f"p{i:02d}", "r_before"), "status": "sent"}
            assert store.insert_followup({**row, "claimed_at": at, "sent_at": at})
    finally:
        store.close()


def test_batch__an_hourly_cap_reached_mid_batch_never_lets_more_through(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    _sent_before(db, 3, T0 - timedelta(minutes=20))
    due_leads(db, 12, prefix="h")
    cfg = _cap_config(tmp_path, graph, messages_per_hour=7)
    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["sent"] == 4 and s["deferred"] == {"rate_limit": 8}
    assert len(graph.deliveries) == 4
    assert db.query("SELECT COUNT(*) AS n FROM followup_tracking WHERE status = 'pending'") == [
        {"n": 0}
    ]
    # an hour later the window has room for the rest, still never more than the cap
    r = followup(*run_args(cfg, db, T0 + timedelta(minutes=61)), env=ENV)
    assert json.loads(r.stdout)["sent"] == 7
    assert len(graph.deliveries) == 11


def test_batch__a_daily_cap_reached_mid_batch_never_lets_more_through(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    _sent_before(db, 2, T0.replace(hour=7))
    due_leads(db, 20, prefix="d")
    cfg = _cap_config(tmp_path, graph, messages_per_day=5)
    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode in (0, 3), r.stderr  # 3: the backlog will miss its window (said)
    s = json.loads(r.stdout)
    assert s["sent"] == 3 and s["deferred"] == {"daily_cap": 17}
    r = followup(*run_args(cfg, db, T0 + timedelta(hours=2)), env=ENV)
    assert json.loads(r.stdout)["sent"] == 0
    assert len(graph.deliveries) == 3
    sent = db.query(
        "SELECT COUNT(*) AS n FROM followup_tracking WHERE status = 'sent' AND run_id <> 'r_before'"
    )
    assert sent == [{"n": 3}]


def test_batch__racing_runs_on_one_account_never_pass_its_hourly_cap(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Three runs at once, each claiming batches for the same account: the claims of all of
    them count in the window (pending like sent), so together they send the cap, no more."""
    due_leads(db, 40, prefix="r")
    cfg = _cap_config(tmp_path, graph, messages_per_hour=9)
    graph.delay(0.01, times=None)
    procs = [spawn_followup(*run_args(cfg, db), "--wait", "60", env=ENV) for _ in range(3)]
    threads = [threading.Thread(target=p.communicate, kwargs={"timeout": 60}) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(graph.deliveries) == 9
    assert max(delivered(graph).values()) == 1
