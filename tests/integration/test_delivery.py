"""Delivery the way the Graph API behaves, against the loopback fake on both stores: every
class of the error table (throttle, transient, ambiguous, permanent, account-fatal), the
circuit breaker, accounts served in parallel, and the run's output (silent under cron,
``--json``, the terminal summary).

Each test asserts the final state of every tracking row and how many calls the fake got.
Retry waits go through an injected ``sleep`` that records them, so Retry-After and the
backoff are checked without sleeping; the few runs that go through the installed command
use Retry-After values of a few milliseconds.
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import load_config
from followup_cli.engine import Engine, RunOptions, RunSummary
from followup_cli.store import open_store
from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, followup, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00, outside quiet hours
IG_A, IG_B = "17841000000000001", "17841000000000002"
TOKENS = {"FOLLOWUP_TOKEN_A": "tok-a", "FOLLOWUP_TOKEN_B": "tok-b"}


def ig_config(api_base: str, **channel: Any) -> dict[str, Any]:
    """Two accounts on the Instagram channel; m1 at +3h, m2 at +6h (both inside the window)."""
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": api_base,
            "api_version": "v21.0",
            "window_hours": 24,
            "max_retries": 2,
            "max_retry_wait_seconds": 5,
            **channel,
        }
    )
    cfg["accounts"].append(
        {"id": "acct_b", "user_id": "u_2", "ig_user_id": IG_B, "token_env": "FOLLOWUP_TOKEN_B"}
    )
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 6
    return cfg


def due(lead_id: str, account: str = "acct_a", inbound_h: float = 5, outbound_h: float = 4) -> dict:
    """A lead whose step m1 is due at NOW (silence started ``outbound_h`` hours ago)."""
    return lead(
        lead_id,
        account_id=account,
        last_inbound_at=NOW - timedelta(hours=inbound_h),
        last_outbound_at=NOW - timedelta(hours=outbound_h),
    )


class Runner:
    """Runs the engine in-process on the test's store, recording every retry wait."""

    def __init__(self, tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path, self.db = tmp_path, db
        self.slept: list[float] = []
        for k, v in TOKENS.items():
            monkeypatch.setenv(k, v)

    def run(self, cfg: dict[str, Any], now: datetime = NOW, **options: Any) -> RunSummary:
        loaded = load_config(write_config(self.tmp_path / "sequences.yaml", cfg))
        store = open_store(self.db.url, "leads")
        channel = make_channel(loaded.config, sleep=self.slept.append)
        try:
            engine = Engine(loaded, store, channel, Clock(fixed=now))
            return engine.run(RunOptions(now=now, **options))
        finally:
            channel.close()
            store.close()


@pytest.fixture
def runner(tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch) -> Runner:
    return Runner(tmp_path, db, monkeypatch)


def rows(db: LeadDB) -> dict[tuple[str, str], dict[str, Any]]:
    out = db.query(
        "SELECT lead_id, message_id, status, error_code, error_subcode, attempts, reason "
        "FROM followup_tracking"
    )
    return {(r["lead_id"], r["message_id"]): r for r in out}


def statuses(db: LeadDB) -> dict[tuple[str, str], str]:
    return {k: r["status"] for k, r in rows(db).items()}


def calls_to(graph: FakeGraphAPI, recipient: str) -> int:
    return sum(1 for c in graph.calls if c.recipient_id == recipient)


def assert_no_tag(graph: FakeGraphAPI) -> None:
    """Automation never sets a messaging tag (HUMAN_AGENT is for humans)."""
    assert not graph.human_agent_calls
    assert all(isinstance(c.json, dict) and "tag" not in c.json for c in graph.calls if c.json)


# ------------------------------------------------------------------- throttling


def test_throttle__retry_after_is_honoured_then_the_send_succeeds(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"))
    graph.throttle(retry_after=0.05, recipient_id="ig_l1")
    s = runner.run(ig_config(graph.base_url))
    assert runner.slept == [pytest.approx(0.05)]
    assert calls_to(graph, "ig_l1") == 2
    assert [c.recipient_id for c in graph.deliveries] == ["ig_l1"]
    r = rows(db)[("l1", "m1")]
    assert (r["status"], r["attempts"]) == ("sent", 2)
    assert s.exit_code == 0
    assert_no_tag(graph)


def test_throttle__an_opt_out_during_the_retry_wait_cancels_the_send(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator runs `followup optout` while the send waits for Retry-After: the retry
    never goes out, the claim is released, and the next lead is served as usual."""
    for k, v in TOKENS.items():
        monkeypatch.setenv(k, v)
    db.insert(due("l1"), due("l2"))
    graph.throttle(retry_after=0.05, recipient_id="ig_l1")
    loaded = load_config(write_config(tmp_path / "sequences.yaml", ig_config(graph.base_url)))

    def operator_opts_out_while_waiting(seconds: float) -> None:
        other = open_store(db.url, "leads")
        try:
            with other.transaction():
                other.add_optout("l1", "asked by phone", "cli", "operator", NOW)
        finally:
            other.close()

    store = open_store(db.url, "leads")
    channel = make_channel(loaded.config, sleep=operator_opts_out_while_waiting)
    try:
        s = Engine(loaded, store, channel, Clock(fixed=NOW)).run(RunOptions(now=NOW))
    finally:
        channel.close()
        store.close()
    assert calls_to(graph, "ig_l1") == 1, "the throttled first call only: no retry"
    assert [c.recipient_id for c in graph.deliveries] == ["ig_l2"]
    assert statuses(db) == {("l2", "m1"): "sent"}, "l1's claim was released, not sent"
    assert s.as_dict()["skipped"] == {"opted_out_during_send": 1}
    again = runner_free_run(tmp_path, db, loaded)
    assert again.as_dict()["sent"] == 0 and calls_to(graph, "ig_l1") == 1, "nor any later run"


def runner_free_run(tmp_path: Path, db: LeadDB, loaded: Any) -> RunSummary:
    store = open_store(db.url, "leads")
    channel = make_channel(loaded.config, sleep=lambda s: None)
    try:
        later = NOW + timedelta(hours=1)
        return Engine(loaded, store, channel, Clock(fixed=later)).run(RunOptions(now=later))
    finally:
        channel.close()
        store.close()


def test_throttle__every_rate_limit_code_is_retried(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    codes = {"l4": 4, "l17": 17, "l32": 32, "l613": 613}
    db.insert(*(due(lid) for lid in codes))
    for lid, code in codes.items():  # a Graph rate-limit code on an HTTP 400, without 429
        graph.throttle(retry_after=0.01, code=code, http_status=400, recipient_id=f"ig_{lid}")
    runner.run(ig_config(graph.base_url))
    assert {lid: calls_to(graph, f"ig_{lid}") for lid in codes} == dict.fromkeys(codes, 2)
    assert runner.slept == [pytest.approx(0.01)] * 4
    assert statuses(db) == {(lid, "m1"): "sent" for lid in codes}


def test_throttle__a_long_retry_after_defers_instead_of_sleeping(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"), due("l2"))
    graph.throttle(retry_after=3600, ig_user_id=IG_A)
    s = runner.run(ig_config(graph.base_url, max_retry_wait_seconds=60))
    assert runner.slept == []
    assert len(graph.calls) == 1  # the account stopped after the first answer
    assert statuses(db) == {}  # the claim was released: nothing went out
    assert s.as_dict()["deferred"] == {"account_stopped": 1, "throttled": 1}
    assert "throttled" in s.stopped_accounts["acct_a"]


def test_throttle__a_429_storm_defers_the_account_and_the_next_run_sends(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("a1"), due("a2", inbound_h=6), due("b1", account="acct_b"))
    cfg = write_config(tmp_path / "sequences.yaml", ig_config(graph.base_url))
    graph.throttle(retry_after=0.01, ig_user_id=IG_A, times=None)
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), env=TOKENS)
    assert r.returncode == 3, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "acct_a" in lines[0] and "throttled" in lines[0], r.stderr
    # max_retries 2: three calls for the first lead of acct_a, none for the second one
    assert calls_to(graph, "ig_a2") == 3 and calls_to(graph, "ig_a1") == 0
    assert [c.recipient_id for c in graph.deliveries] == ["ig_b1"]
    assert statuses(db) == {("b1", "m1"): "sent"}  # the throttled claim was released

    graph.reset()  # the storm is over
    later = (NOW + timedelta(minutes=30)).isoformat()
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", later, "--json", env=TOKENS)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 2
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_a1", "ig_a2"]
    assert statuses(db) == {("a1", "m1"): "sent", ("a2", "m1"): "sent", ("b1", "m1"): "sent"}


# -------------------------------------------------------------------- transient


def test_transient__retried_with_backoff_then_sent(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    answers = {
        "c2": lambda **kw: graph.fail(2, http_status=500, is_transient=True, **kw),
        "c1": lambda **kw: graph.fail(1, http_status=500, **kw),
        "c1200": lambda **kw: graph.fail(1200, **kw),
        "h503": lambda **kw: graph.server_error(503, **kw),
        "h500": lambda **kw: graph.server_error(500, **kw),
    }
    db.insert(*(due(lid) for lid in answers))
    for lid, script in answers.items():
        script(recipient_id=f"ig_{lid}", times=1)
    runner.run(ig_config(graph.base_url))
    assert {lid: calls_to(graph, f"ig_{lid}") for lid in answers} == dict.fromkeys(answers, 2)
    assert len(runner.slept) == 5
    assert all(0.5 <= w <= 1.0 for w in runner.slept)  # first backoff step, jittered
    assert {k[0]: (r["status"], r["attempts"]) for k, r in rows(db).items()} == dict.fromkeys(
        answers, ("sent", 2)
    )


def test_transient__retries_are_bounded_then_the_lead_waits_for_the_next_run(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"), due("l2", inbound_h=6))
    graph.fail(1200, recipient_id="ig_l2", times=None)  # l2 first: its window closes sooner
    s = runner.run(ig_config(graph.base_url))
    assert calls_to(graph, "ig_l2") == 3  # 1 + max_retries
    assert len(runner.slept) == 2 and 1.0 <= runner.slept[1] <= 2.0
    assert s.as_dict()["deferred"] == {"transient": 1}
    assert not s.stopped_accounts  # a transient error does not stop the account
    assert statuses(db) == {("l1", "m1"): "sent"}  # l2's claim was released
    assert s.exit_code == 0

    graph.reset()
    runner.run(ig_config(graph.base_url), now=NOW + timedelta(minutes=30))
    assert [c.recipient_id for c in graph.deliveries] == ["ig_l2"]
    assert statuses(db) == {("l1", "m1"): "sent", ("l2", "m1"): "sent"}


def test_unreachable__a_refused_api_stops_the_account_with_exit_3_and_the_next_run_sends(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Issue 8: a dead api_base was deferred silently with exit 0 at every run, for ever.
    Now: retried (the request surely did not leave), counted, and an account that nothing
    answered for the whole run stops with one line naming it and the URL (exit 3)."""
    db.insert(due("l1"), due("l2"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    summary = runner.run(ig_config(closed))
    assert summary.as_dict()["deferred"] == {"unreachable": 1, "account_stopped": 1}
    assert len(runner.slept) == 2  # bounded retries for l1; l2 is not tried against it
    assert statuses(db) == {}  # both claims released: nothing went out
    assert summary.exit_code == 3
    line = summary.stopped_accounts["acct_a"]
    assert "acct_a" in line and closed in line and "connection refused" in line
    assert "unreachable on every attempt" in line

    runner.run(ig_config(graph.base_url), now=NOW + timedelta(minutes=30))
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_l1", "ig_l2"]
    assert statuses(db) == {("l1", "m1"): "sent", ("l2", "m1"): "sent"}


# -------------------------------------------------------------------- ambiguous


def test_ambiguous__a_read_timeout_is_unknown_and_never_resent(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"), due("l2", inbound_h=4.5))
    graph.delay(1.0, recipient_id="ig_l1")  # delivered, but the answer comes too late
    cfg = ig_config(graph.base_url, timeout_seconds=0.3)
    s = runner.run(cfg)
    assert calls_to(graph, "ig_l1") == 1  # no retry of a request that left
    assert runner.slept == []
    assert statuses(db) == {("l1", "m1"): "unknown", ("l2", "m1"): "sent"}
    assert s.as_dict()["unknown"] == 1 and s.exit_code == 3
    assert "timeout" in (rows(db)[("l1", "m1")]["reason"] or "")

    # Later runs (m2 is due at NOW+2h for both) never send m1 to l1 again.
    for hours in (1, 5):
        runner.run(cfg, now=NOW + timedelta(hours=hours))
    m1_text = "Hi Ana, step one"
    assert [c.text for c in graph.calls if c.recipient_id == "ig_l1"].count(m1_text) == 1
    assert statuses(db)[("l1", "m1")] == "unknown"
    assert_no_tag(graph)


def test_ambiguous__a_connection_dropped_after_the_request_is_unknown(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"))
    graph.drop(recipient_id="ig_l1")  # the message went through, the answer was lost
    s = runner.run(ig_config(graph.base_url))
    assert calls_to(graph, "ig_l1") == 1
    assert statuses(db) == {("l1", "m1"): "unknown"}
    assert s.total("unknown") == 1
    runner.run(ig_config(graph.base_url), now=NOW + timedelta(minutes=30))
    assert calls_to(graph, "ig_l1") == 1


def test_ambiguous__a_5xx_without_a_graph_error_is_unknown_not_retried(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"))
    graph.server_error(502, html=True, recipient_id="ig_l1")
    runner.run(ig_config(graph.base_url))
    assert calls_to(graph, "ig_l1") == 1
    assert statuses(db) == {("l1", "m1"): "unknown"}


# -------------------------------------------------------------------- permanent


def test_permanent__failed_with_the_code_no_retry_and_the_enrollment_ends(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    answers = {
        "p551": (551, None),
        "p10a": (10, 2534022),
        "p10b": (10, 2018278),
        "p100": (100, None),
    }
    db.insert(*(due(lid) for lid in answers), due("ok", inbound_h=4.5))
    for lid, (code, subcode) in answers.items():
        graph.fail(code, subcode, recipient_id=f"ig_{lid}", times=None)
    cfg = ig_config(graph.base_url)
    s = runner.run(cfg)
    assert {lid: calls_to(graph, f"ig_{lid}") for lid in answers} == dict.fromkeys(answers, 1)
    assert runner.slept == []
    for lid, (code, subcode) in answers.items():
        r = rows(db)[(lid, "m1")]
        assert (r["status"], r["error_code"], r["error_subcode"]) == ("failed", code, subcode)
    assert statuses(db)[("ok", "m1")] == "sent"
    assert s.as_dict()["failed"] == {"10": 2, "100": 1, "551": 1}
    assert s.exit_code == 3
    ended = db.query(
        "SELECT lead_id, ended_reason FROM followup_enrollments WHERE ended_at IS NOT NULL"
    )
    assert sorted((e["lead_id"], e["ended_reason"]) for e in ended) == sorted(
        (lid, "failed") for lid in answers
    )

    # m2 is due at NOW+2h: 'ok' gets it; the failed leads get nothing ever again (no endless
    # rescheduling, no second call).
    for hours in (4, 8):
        runner.run(cfg, now=NOW + timedelta(hours=hours))
    assert {lid: calls_to(graph, f"ig_{lid}") for lid in answers} == dict.fromkeys(answers, 1)
    assert statuses(db) == {(lid, "m1"): "failed" for lid in answers} | {
        ("ok", "m1"): "sent",
        ("ok", "m2"): "sent",
    }


# --------------------------------------------------------------- account-fatal


def test_account_fatal__bad_token_stops_that_account_only_exit_3_one_line(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("a1"), due("a2"), due("b1", account="acct_b"), due("b2", account="acct_b"))
    cfg = write_config(tmp_path / "sequences.yaml", ig_config(graph.base_url))
    env = {"FOLLOWUP_TOKEN_A": "revoked-token-a", "FOLLOWUP_TOKEN_B": "tok-b"}
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), env=env)
    assert r.returncode == 3
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "acct_a" in lines[0] and "$FOLLOWUP_TOKEN_A" in lines[0] and "190" in lines[0]
    assert "revoked-token-a" not in r.stderr
    assert sum(1 for c in graph.calls if c.ig_user_id == IG_A) == 1  # stopped after one answer
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_b1", "ig_b2"]
    assert statuses(db) == {("b1", "m1"): "sent", ("b2", "m1"): "sent"}  # a1/a2 stay due


@pytest.mark.parametrize(
    ("code", "subcode", "status", "hint"),
    [
        (10, None, 400, "lacks a messaging permission"),
        (200, None, 403, "lacks a messaging permission"),
        (368, None, 400, "policy"),
    ],
)
def test_account_fatal__each_account_code_stops_the_account(
    runner: Runner,
    db: LeadDB,
    graph: FakeGraphAPI,
    code: int,
    subcode: int | None,
    status: int,
    hint: str,
) -> None:
    db.insert(due("a1"), due("a2"), due("b1", account="acct_b"))
    graph.fail(code, subcode, http_status=status, ig_user_id=IG_A, times=None)
    s = runner.run(ig_config(graph.base_url))
    why = s.stopped_accounts["acct_a"]
    assert "acct_a" in why and "$FOLLOWUP_TOKEN_A" in why and hint in why and str(code) in why
    assert sum(1 for c in graph.calls if c.ig_user_id == IG_A) == 1
    assert runner.slept == []
    assert statuses(db) == {("b1", "m1"): "sent"}
    assert s.as_dict()["deferred"] == {"account_stopped": 2}
    assert s.exit_code == 3


def test_account_fatal__a_missing_token_variable_makes_no_call(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOLLOWUP_TOKEN_A")
    db.insert(due("a1"), due("b1", account="acct_b"))
    s = runner.run(ig_config(graph.base_url))
    assert "FOLLOWUP_TOKEN_A" in s.stopped_accounts["acct_a"]
    assert [c.recipient_id for c in graph.calls] == ["ig_b1"]
    assert statuses(db) == {("b1", "m1"): "sent"}


# ------------------------------------------------------------- circuit breaker


def test_circuit_breaker__a_failure_spike_stops_the_account_for_the_run(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(*(due(f"a{i}", inbound_h=5 + i / 10) for i in range(6)), due("b1", account="acct_b"))
    graph.fail(551, ig_user_id=IG_A, times=None)
    cfg = ig_config(graph.base_url)
    cfg["settings"].update(breaker_min_sends=3, breaker_failure_rate=0.5)
    s = runner.run(cfg)
    assert sum(1 for c in graph.calls if c.ig_user_id == IG_A) == 3
    assert "circuit breaker" in s.stopped_accounts["acct_a"]
    assert s.as_dict()["accounts"]["acct_a"]["deferred"] == {"account_stopped": 3}
    # window closing soonest first: a5, a4, a3 were tried (and failed); a2..a0 stay due
    assert statuses(db) == {
        ("a5", "m1"): "failed",
        ("a4", "m1"): "failed",
        ("a3", "m1"): "failed",
        ("b1", "m1"): "sent",
    }
    assert s.exit_code == 3


def test_circuit_breaker__holds_while_failures_stay_under_the_share(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(*(due(f"a{i}", inbound_h=5 + i / 10) for i in range(6)))
    graph.fail(551, recipient_id="ig_a5")
    graph.fail(551, recipient_id="ig_a2")
    cfg = ig_config(graph.base_url)
    cfg["settings"].update(breaker_min_sends=3, breaker_failure_rate=0.5)
    s = runner.run(cfg)
    assert not s.stopped_accounts
    assert len(graph.calls) == 6
    assert sorted(statuses(db).values()) == ["failed"] * 2 + ["sent"] * 4


# ------------------------------------------------------------ accounts in parallel


def test_parallel__a_slow_account_does_not_hold_back_another(
    runner: Runner, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(
        due("a1"),
        due("a2"),
        # acct_b, inserted out of order: the order of sends must not depend on it
        due("b_late", account="acct_b"),
        due("b_a", account="acct_b"),
        due("b_early_due", account="acct_b", outbound_h=4.5),
        due("b_soon", account="acct_b", inbound_h=10, outbound_h=9),
    )
    # acct_a's first answer is held until acct_b's last request has arrived (or 30 s):
    # a run that served one account after the other would reach acct_b only after that
    b_requests = iter(range(1, 5))
    all_b_in = threading.Event()

    @graph.on_request
    def _hold_acct_a(call: Call) -> None:
        if call.ig_user_id == IG_B and next(b_requests, 4) == 4:
            all_b_in.set()
        elif call.ig_user_id == IG_A:
            all_b_in.wait(30)

    s = runner.run(ig_config(graph.base_url))
    assert s.total("sent") == 6
    a_calls = [c for c in graph.calls if c.ig_user_id == IG_A]
    b_calls = [c for c in graph.calls if c.ig_user_id == IG_B]
    # acct_b was served entirely while acct_a waited for its first answer
    assert all_b_in.is_set()
    assert max(c.at for c in b_calls) < a_calls[1].at
    # per account: window closing soonest, then due time, then lead id
    assert [c.recipient_id for c in b_calls] == [
        "ig_b_soon",
        "ig_b_early_due",
        "ig_b_a",
        "ig_b_late",
    ]
    assert [c.recipient_id for c in a_calls] == ["ig_a1", "ig_a2"]


# ----------------------------------------------------------------- run output


def test_output__silent_under_cron_on_success(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(due("l1"))
    cfg = write_config(tmp_path / "sequences.yaml", ig_config(graph.base_url))
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), env=TOKENS)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert len(graph.deliveries) == 1


def test_output__json_summary_shape(tmp_path: Path, db: LeadDB, graph: FakeGraphAPI) -> None:
    db.insert(
        due("ok"),
        due("ok2", inbound_h=4.5),
        due("gone", inbound_h=6),
        due("late", inbound_h=30, outbound_h=29),  # window closed: skipped, no call
        due("b1", account="acct_b"),
    )
    graph.fail(551, recipient_id="ig_gone")
    cfg = ig_config(graph.base_url)
    cfg["channel"]["messages_per_hour"] = 1
    path = write_config(tmp_path / "sequences.yaml", cfg)
    r = followup(
        "run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat(), "--json", env=TOKENS
    )
    assert r.returncode == 3
    data = json.loads(r.stdout)
    assert data["sent"] == 2 and data["failed"] == {"551": 1} and data["unknown"] == 0
    assert data["skipped"] == {"outside_window": 1}
    assert data["deferred"] == {"rate_limit": 1}  # one message an hour: 'ok2' waits
    assert data["exit_code"] == 3 and data["dry_run"] is False
    assert isinstance(data["elapsed_seconds"], float)
    assert set(data["accounts"]) == {"acct_a", "acct_b"}
    assert data["accounts"]["acct_a"] == {
        "sent": 1,
        "failed": {"551": 1},
        "unknown": 0,
        "skipped": {"outside_window": 1},
        "deferred": {"rate_limit": 1},
        "stopped": None,
        "left_to_another_run": False,
    }
    assert data["left_to_other_runs"] == []
    assert data["accounts"]["acct_b"]["sent"] == 1
    outcomes = {m["lead_id"]: (m["outcome"], m["error_code"]) for m in data["messages"]}
    assert outcomes == {"gone": ("failed", 551), "ok": ("sent", None), "b1": ("sent", None)}
    # the one-line reason still goes to stderr
    assert "1 send(s) failed (code 551: 1)" in r.stderr


def test_output__terminal_summary_lists_every_outcome(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(
        due("ok"),
        due("gone", inbound_h=6),
        due("late", inbound_h=30, outbound_h=29),
        due("slow", inbound_h=5.5),
        due("wait1", inbound_h=4.5),
        due("wait2", inbound_h=4.4),
    )
    graph.fail(551, recipient_id="ig_gone")
    graph.drop(recipient_id="ig_slow")
    cfg = ig_config(graph.base_url)
    cfg["channel"]["messages_per_hour"] = 2  # 'slow' (unknown) and 'ok' fill the hour
    path = write_config(tmp_path / "sequences.yaml", cfg)
    args = ["run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat()]
    code, out = run_on_a_terminal(args, env=TOKENS)
    assert code == 3
    assert re.search(r"followup run \S+: 1 sent in \d+\.\d+s\n", out), out
    assert "skipped: outside_window 1" in out
    assert "failed: 1 with code 551" in out
    assert "unknown: 1" in out
    assert "deferred: rate_limit 2" in out


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the installed command with stdout on a pseudo-terminal: (exit code, its output)."""
    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    full_env.update(env, COLUMNS="200", TERM="dumb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "followup_cli", *args],
        stdout=slave,
        stderr=subprocess.PIPE,
        env=full_env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=60)
    assert proc.stderr is not None
    proc.stderr.read()
    proc.stderr.close()
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
