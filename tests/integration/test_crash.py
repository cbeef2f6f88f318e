"""Crash safety, on SQLite and Postgres, counted at the fake Graph API on loopback.

* Runs killed with SIGKILL at random instants (a seeded RNG), then clean runs: no recipient
  is messaged twice, every delivery has a tracking row (``sent``, or ``unknown`` when its
  answer was lost: never missing), and a dead run's ``pending`` claims become ``unknown``
  and are never resent when it handed them to the API; those of a claimed batch it never
  attempted are released and sent once by a later run.
* Stale claims left by dead runs (same host and a dead pid, a finished run, a run on
  another host that stopped heartbeating) are not resent; a live run's claim is left alone;
  an operator resolves unknowns (``--sent`` / ``--release``).
* A lead opted out while a run is in progress gets nothing from that run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any
from zoneinfo import ZoneInfo

from followup_cli.store import open_store
from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, followup, graph_config, lead, spawn_followup

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # Monday 09:00: step m1 is due for every lead
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}


def due_leads(db: LeadDB, n: int, prefix: str = "k") -> list[str]:
    silent = T0.replace(hour=6)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    db.insert(
        *(
            lead(i, last_inbound_at=silent - timedelta(minutes=30), last_outbound_at=silent)
            for i in ids
        )
    )
    return ids


def run_args(cfg: Path, db: LeadDB) -> tuple[str, ...]:
    return ("run", "--config", str(cfg), "--db", db.url, "--now", T0.isoformat(), "--json")


def rows_by_lead(db: LeadDB) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in db.query(
        "SELECT id, lead_id, message_id, status, reason FROM followup_tracking ORDER BY id"
    ):
        out.setdefault(r["lead_id"], []).append(r)
    return out


def delivered(graph: FakeGraphAPI) -> Counter:
    return Counter(c.recipient_id for c in graph.deliveries)


def assert_never_twice_never_unrecorded(graph: FakeGraphAPI, db: LeadDB) -> None:
    per_recipient = delivered(graph)
    twice = {r: n for r, n in per_recipient.items() if n > 1}
    assert not twice, f"messaged more than once: {twice}"
    rows = rows_by_lead(db)
    for recipient in per_recipient:
        lead_id = recipient.removeprefix("ig_")
        statuses = [r["status"] for r in rows.get(lead_id, [])]
        assert statuses in (["sent"], ["unknown"], ["pending"]), (
            f"{lead_id} was messaged but its tracking rows are {statuses}"
        )


# ------------------------------------------------------------------ random kills


def test_crash__runs_killed_at_random_instants_never_message_anyone_twice(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    rng = random.Random(20260302)
    ids = due_leads(db, 30)
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    plan: dict[str, Any] = {"proc": None, "mode": None, "at": 0, "seen": 0}
    lock = threading.Lock()

    def kill(proc: Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    @graph.on_request
    def _kill_during_the_send_phase(call: Call) -> None:
        with lock:
            plan["seen"] += 1
            proc, mode, seen = plan["proc"], plan["mode"], plan["seen"]
        if proc is None:
            return
        if mode == "in_call" and seen == plan["at"]:
            # killed while its request is in flight: the fake still delivers, the answer
            # is lost. The claim must end up `unknown`: never resent, never missing.
            kill(proc)
        elif mode == "after_first_call" and seen == 1:
            # a random instant of the send phase: in a call, between calls, in a commit
            threading.Timer(plan["at"], kill, (proc,)).start()

    graph.delay(0.03, times=None)  # slow answers, so that kills land mid-send
    modes = ("in_call", "after_first_call", "from_start")
    kills = 0
    pending_after_kill: set[int] = set()
    unattempted_after_kill: set[int] = set()
    for i in range(6):
        mode = modes[i % 3]
        at = {
            "in_call": rng.randint(1, 3),
            "after_first_call": rng.uniform(0.0, 0.4),
            "from_start": rng.uniform(0.3, 1.0),  # start-up, migrations, planning, claims
        }[mode]
        proc = spawn_followup(*run_args(cfg, db), env=ENV)
        with lock:
            plan.update(proc=proc, mode=mode, at=at, seen=0)
        if mode == "from_start":
            threading.Timer(at, kill, (proc,)).start()
        _, err = proc.communicate(timeout=60)
        db.settled()  # a commit the killed run had on the wire lands before we look
        with lock:
            plan.update(proc=None)
        kills += proc.returncode == -signal.SIGKILL
        # 3 only for the claims of a run killed before it (marked unknown), said in one line
        assert proc.returncode in (-signal.SIGKILL, 0, 3), proc.returncode
        if proc.returncode == 3:
            assert "died mid-call" in str(err) and "failed" not in str(err), err
        assert_never_twice_never_unrecorded(graph, db)
        # claims handed to the API (attempted) and claims of a batch that were not
        pending = "SELECT id FROM followup_tracking WHERE status = 'pending' AND attempted_at IS"
        pending_after_kill |= {r["id"] for r in db.query(pending + " NOT NULL")}
        unattempted_after_kill |= {r["id"] for r in db.query(pending + " NULL")}
    assert kills >= 5, "the kills did not land before the runs finished"

    in_kill_loop = delivered(graph)
    # leads nobody claimed, or whose claim was never handed to the API (released next run)
    without_row = set(ids) - {
        r["lead_id"]
        for r in db.query(
            "SELECT lead_id FROM followup_tracking "
            "WHERE status <> 'pending' OR attempted_at IS NOT NULL"
        )
    }
    graph.reset()  # clean runs: no delays, no kills (the fake forgets its calls: kept above)
    summaries = []
    for _ in range(2):
        r = followup(*run_args(cfg, db), env=ENV)
        s = json.loads(r.stdout)
        assert r.returncode == (3 if s["stale_claims_marked_unknown"] else 0), r.stderr
        assert s["failed"] == {} and s["unknown"] == 0
        summaries.append(s)
    assert summaries[1]["stale_claims_marked_unknown"] == 0

    everything = in_kill_loop + delivered(graph)
    assert max(everything.values()) == 1, "a recipient was messaged twice"
    # the clean runs sent exactly the leads nobody had claimed, and nothing the second time
    assert set(delivered(graph)) == {f"ig_{i}" for i in without_row}
    assert [s["sent"] for s in summaries] == [len(without_row), 0]
    rows = rows_by_lead(db)
    # every lead is served exactly once: one row for step m1, sent or unknown
    assert {lid: [x["message_id"] for x in rs] for lid, rs in rows.items()} == {
        lid: ["m1"] for lid in ids
    }
    status = {lid: rs[0]["status"] for lid, rs in rows.items()}
    assert set(status.values()) <= {"sent", "unknown"}
    for lid, st in status.items():
        if st == "sent":  # sent means delivered, once
            assert everything[f"ig_{lid}"] == 1, lid
    # a delivery whose answer was lost shows as unknown (the mid-call kills guarantee some)
    assert any(status[r.removeprefix("ig_")] == "unknown" for r in in_kill_loop)
    # a dead run's pending claims became unknown at the next run, with an audit entry each
    assert pending_after_kill
    for rid in pending_after_kill:
        [row] = db.query("SELECT status FROM followup_tracking WHERE id = ?", (rid,))
        assert row["status"] == "unknown"
    # a dead run's claims never handed to the API were released (then sent once, above)
    for rid in unattempted_after_kill:
        assert db.query("SELECT status FROM followup_tracking WHERE id = ?", (rid,)) == []
    unknown = [rs[0] for rs in rows.values() if rs[0]["status"] == "unknown"]
    assert all(r["reason"].startswith("its run") for r in unknown), unknown
    audits = db.query("SELECT COUNT(*) AS n FROM followup_audit WHERE action = 'claim_unknown'")
    assert audits[0]["n"] == len(unknown)
    assert summaries[-1]["unknown_open"] == len(unknown)


# ------------------------------------------------------------------ stale claims


def claim(lead_id: str, run_id: str) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "sequence_id": "s1",
        "message_id": "m1",
        "step": 1,
        "account_id": "acct_a",
        "recipient_id": f"ig_{lead_id}",
        "status": "pending",
        "claimed_at": T0,
        "run_id": run_id,
        "updated_at": T0,
    }


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_claims__of_dead_runs_become_unknown_and_are_never_resent(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    ids = due_leads(db, 5, prefix="s")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    wall = datetime.now(UTC)
    here = socket.gethostname()
    store = open_store(db.url)
    try:
        store.start_run("r_dead", here, dead_pid(), "cron", wall - timedelta(minutes=1), T0)
        store.start_run("r_silent", "other-host", 4242, "cron", wall - timedelta(minutes=10), T0)
        store.start_run("r_live", "other-host", 4243, "cron", wall, T0)
        store.start_run("r_done", here, os.getpid(), "cron", wall - timedelta(minutes=2), T0)
        store.finish_run("r_done", wall - timedelta(minutes=1), 0, {})
        for lead_id, run_id in zip(ids, ("r_dead", "r_silent", "r_live", "r_done"), strict=False):
            assert store.insert_followup(claim(lead_id, run_id)) is not None
    finally:
        store.close()

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 3, "claims left by dead runs are news for the operator"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "3 send(s) of a run that died mid-call" in lines[0], r.stderr
    summary = json.loads(r.stdout)
    assert [c.recipient_id for c in graph.deliveries] == ["ig_s004"]  # the only unclaimed lead
    assert summary["stale_claims_marked_unknown"] == 3
    assert summary["unknown_open"] == 3
    rows = {lid: rs[0] for lid, rs in rows_by_lead(db).items()}
    assert {lid: r["status"] for lid, r in rows.items()} == {
        "s000": "unknown",  # same host, its process is gone
        "s001": "unknown",  # another host that stopped heartbeating
        "s002": "pending",  # another host's run, alive: left alone, and not sent again
        "s003": "unknown",  # its run finished without recording the outcome
        "s004": "sent",
    }
    assert "died" in rows["s000"]["reason"]
    assert "heartbeat" in rows["s001"]["reason"]
    assert "ended" in rows["s003"]["reason"]

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stale_claims_marked_unknown"] == 0
    assert len(graph.deliveries) == 1, "a stale claim was resent"

    # The operator's side: list, then resolve one as sent and release another for a retry.
    listed = followup("unknown", "list", "--config", str(cfg), "--db", db.url, "--json")
    assert listed.returncode == 0, listed.stderr
    by_lead = {x["lead_id"]: x for x in json.loads(listed.stdout)}
    assert {k: v["status"] for k, v in by_lead.items()} == {
        "s000": "unknown",
        "s001": "unknown",
        "s003": "unknown",
        "s002": "pending",
    }
    resolve = ("unknown", "resolve", "--config", str(cfg), "--db", db.url)
    assert followup(*resolve, str(by_lead["s000"]["id"]), "--release").returncode == 0
    assert followup(*resolve, str(by_lead["s001"]["id"]), "--sent").returncode == 0

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_s000", "ig_s004"]
    status = {lid: rs[0]["status"] for lid, rs in rows_by_lead(db).items()}
    assert status == {
        "s000": "sent",  # released: sent once by the next run
        "s001": "sent",  # marked sent by the operator: never sent by us
        "s002": "pending",
        "s003": "unknown",
        "s004": "sent",
    }


def test_unknown__a_send_whose_answer_never_came_is_recorded_and_not_resent(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    due_leads(db, 3, prefix="t")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=0.3)
    graph.delay(1.0, recipient_id="ig_t001")  # delivered, but the answer comes too late

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 3, r.stderr
    assert "1 send(s) with unknown outcome" in r.stderr
    assert json.loads(r.stdout)["unknown"] == 1
    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unknown_open"] == 1
    assert sorted(delivered(graph).items()) == [("ig_t000", 1), ("ig_t001", 1), ("ig_t002", 1)]
    status = {lid: rs[0]["status"] for lid, rs in rows_by_lead(db).items()}
    assert status == {"t000": "sent", "t001": "unknown", "t002": "sent"}


# ----------------------------------------------------------------- opt-out mid-run


def test_optout__during_a_run_in_progress_stops_a_later_lead(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    ids = due_leads(db, 8, prefix="o")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)
    optout_results: list[Any] = []

    @graph.on_request
    def _operator_opts_out_o006(call: Call) -> None:
        # While the run's first message is in flight, an operator stops a later lead.
        if not optout_results:
            optout_results.append(
                followup(
                    "optout", "o006", "--reason", "asked", "--config", str(cfg), "--db", db.url
                )
            )

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    [opt] = optout_results
    assert opt.returncode == 0 and "o006: opted out" in opt.stdout, opt.stderr
    assert graph.calls[0].recipient_id == "ig_o000"  # the opt-out came mid-run, after a send
    assert sorted(delivered(graph)) == sorted(f"ig_{i}" for i in ids if i != "o006")
    assert max(delivered(graph).values()) == 1
    rows = rows_by_lead(db)
    assert "o006" not in rows
    assert db.query("SELECT lead_id, source FROM followup_optouts") == [
        {"lead_id": "o006", "source": "cli"}
    ]
    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0 and "ig_o006" not in delivered(graph)


def test_unknown__a_run_taken_for_dead_mid_call_still_records_the_real_outcome(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    due_leads(db, 2, prefix="w")
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url, timeout_seconds=30)

    @graph.on_request
    def _another_run_gives_up_on_this_claim(call: Call) -> None:
        # What a run on another host does when this one misses its heartbeats mid-call.
        if call.recipient_id == "ig_w000":
            db.query(
                "UPDATE followup_tracking SET status = 'unknown', reason = 'its run stopped "
                "heartbeating during the send' WHERE lead_id = 'w000' AND status = 'pending'"
            )

    r = followup(*run_args(cfg, db), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 2
    rows = db.query("SELECT lead_id, status, external_id FROM followup_tracking ORDER BY lead_id")
    assert [(x["lead_id"], x["status"]) for x in rows] == [("w000", "sent"), ("w001", "sent")]
    assert rows[0]["external_id"] == graph.deliveries[0].message_id
