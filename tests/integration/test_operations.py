"""Cron you can trust, on both stores: `run --on-schedule` runs each slot once (DST
included, a missed slot caught up once, nothing written when no slot is due), every run
that starts leaves a row in followup_runs whatever its exit code, logs carry the run id and
the account, metrics parse with prometheus-client, pings reach a real loopback server and
never hold the run."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from followup_cli import operate
from followup_cli.config import Settings
from followup_cli.store import open_store
from tests.helpers import LeadDB, base_config, graph_config, lead, write_config
from tests.helpers import followup_in_process as followup

MADRID = Settings(timezone="Europe/Madrid", run_times=("02:30", "09:00", "14:00", "18:00"))


def run_at(
    cfg: Path, db: LeadDB, now: datetime | str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``followup run --config CFG --db DB --now NOW EXTRA...``."""
    at = now if isinstance(now, str) else now.isoformat()
    return followup("run", "--config", str(cfg), "--db", db.url, "--now", at, *extra, env=env)


def due_lead(lead_id: str, now: datetime) -> dict[str, Any]:
    """A lead whose first step is due at ``now``, inside the messaging window."""
    return lead(
        lead_id,
        last_inbound_at=now - timedelta(hours=5),
        last_outbound_at=now - timedelta(hours=4),
    )


def runs_table(db: LeadDB) -> list[dict[str, Any]]:
    return db.query(
        "SELECT run_id, exit_code, slot, summary FROM followup_runs ORDER BY started_at, run_id"
    )


def tick_all_day(db: LeadDB, day: datetime, every_minutes: int = 5) -> list[tuple[str, str]]:
    """A cron tick every few minutes for 24 hours; (UTC time, slot) of the ticks that ran."""
    store = open_store(db.url)
    ran: list[tuple[str, str]] = []
    try:
        t = day
        while t < day + timedelta(hours=24):
            ops = operate.RunOps("sequences.yaml", db.url, on_schedule=True)
            if ops.take_slot(store, MADRID, t):
                ran.append((t.strftime("%H:%M"), ops.slot_label or ""))
            t += timedelta(minutes=every_minutes)
    finally:
        store.close()
    return ran


# ------------------------------------------------------------------ the schedule


def test_on_schedule__spring_dst_day_runs_each_slot_once_at_its_local_time(db):
    # The first tick catches up the day before's 18:00 slot (no run took it yet).
    ran = tick_all_day(db, datetime(2026, 3, 29, tzinfo=UTC))
    assert ran == [
        ("00:00", "2026-03-28 18:00 Europe/Madrid"),
        ("01:30", "2026-03-29 02:30 Europe/Madrid"),  # not a wall time that day: 03:30 CEST
        ("07:00", "2026-03-29 09:00 Europe/Madrid"),
        ("12:00", "2026-03-29 14:00 Europe/Madrid"),
        ("16:00", "2026-03-29 18:00 Europe/Madrid"),
    ]


def test_on_schedule__autumn_dst_day_runs_the_repeated_hour_once(db):
    # The day before's 18:00 slot is caught up by the first tick; then each slot once.
    ran = tick_all_day(db, datetime(2026, 10, 25, tzinfo=UTC))
    assert ran == [
        ("00:00", "2026-10-24 18:00 Europe/Madrid"),
        ("00:30", "2026-10-25 02:30 Europe/Madrid"),  # 02:30 CEST; 02:30 CET is not run again
        ("08:00", "2026-10-25 09:00 Europe/Madrid"),
        ("13:00", "2026-10-25 14:00 Europe/Madrid"),
        ("17:00", "2026-10-25 18:00 Europe/Madrid"),
    ]


def test_on_schedule__missed_slots_are_caught_up_once(db):
    store = open_store(db.url)
    try:
        ran = []
        # Host down from before 09:00 to 19:40: the 09:00, 14:00 and 18:00 slots were missed.
        for t in (
            datetime(2026, 3, 2, 19, 40, tzinfo=UTC),
            datetime(2026, 3, 2, 19, 45, tzinfo=UTC),
        ):
            ops = operate.RunOps("sequences.yaml", db.url, on_schedule=True)
            if ops.take_slot(store, MADRID, t):
                ran.append(ops.slot_label)
        assert ran == ["2026-03-02 18:00 Europe/Madrid"]
    finally:
        store.close()


def scheduled_setup(tmp_path: Path, db: LeadDB) -> Path:
    cfg = base_config()
    cfg["settings"]["run_times"] = ["09:00", "14:00", "18:00"]
    now = datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
    db.insert(due_lead("l1", now))
    return write_config(tmp_path / "sequences.yaml", cfg)


def test_run_on_schedule__once_per_slot_and_a_tick_with_nothing_due_writes_nothing(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    args = ("run", "--on-schedule", "--config", str(cfg), "--db", db.url)
    first = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    assert (first.returncode, first.stderr) == (0, "")  # (the console channel prints)
    assert [r["slot"] for r in runs_table(db)] == ["2026-03-02 09:00 Europe/Madrid"]
    assert [t["status"] for t in db.tracking()] == ["sent"]
    before = (db.query("SELECT COUNT(*) AS n FROM followup_audit")[0]["n"], runs_table(db))
    again = followup(*args, "--now", "2026-03-02T09:10:00+01:00")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert (db.query("SELECT COUNT(*) AS n FROM followup_audit")[0]["n"], runs_table(db)) == before
    later = followup(*args, "--now", "2026-03-02T14:00:00+01:00")
    assert later.returncode == 0, later.stderr
    assert [r["slot"] for r in runs_table(db)][-1] == "2026-03-02 14:00 Europe/Madrid"


def test_run_on_schedule__dry_run_takes_no_slot(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    args = ("run", "--on-schedule", "--config", str(cfg), "--db", db.url)
    followup("migrate", "--config", str(cfg), "--db", db.url)
    dry = followup(*args, "--dry-run", "--now", "2026-03-02T09:05:00+01:00")
    assert dry.returncode == 0, dry.stderr
    assert "would be sent" in dry.stdout
    assert db.query("SELECT COUNT(*) AS n FROM followup_slots")[0]["n"] == 0
    assert runs_table(db) == []


# ------------------------------------------------------------------ the runs record


def test_every_run_that_starts_leaves_a_row__exit_0_2_and_3(tmp_path, db, graph, monkeypatch):
    cfg_path = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    db.insert(
        due_lead("l1", now),
        due_lead("l2", now),
    )
    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    graph.fail(551, recipient_id="ig_l2")
    three = run_at(cfg_path, db, now, env=env)
    assert three.returncode == 3, three.stderr
    assert three.stdout == "" and len(three.stderr.strip().splitlines()) == 1
    ok = run_at(cfg_path, db, now, env=env)
    assert ok.returncode == 0, ok.stderr
    # A broken config: exit 2, nothing sent, and still a row saying why.
    broken = base_config()
    broken["sequences"][0]["messages"][0]["template"] = "{{ lead.first_name "
    bad = write_config(tmp_path / "broken.yaml", broken)
    two = run_at(bad, db, now)
    assert two.returncode == 2
    rows = runs_table(db)
    assert [r["exit_code"] for r in rows] == [3, 0, 2]
    assert "broken.yaml" in json.loads(rows[2]["summary"])["error"]


def test_a_held_lock__exit_75_leaves_a_row_and_gives_the_slot_back(tmp_path):
    from followup_cli.runlock import RunLock

    db = LeadDB.sqlite(tmp_path)
    cfg = scheduled_setup(tmp_path, db)
    followup("migrate", "--config", str(cfg), "--db", db.url)
    args = ("run", "--on-schedule", "--config", str(cfg), "--db", db.url, "--wait", "0")
    with RunLock(f"{db.url}.lock"):
        held = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    assert held.returncode == 75
    assert [(r["exit_code"], r["slot"]) for r in runs_table(db)] == [
        (75, "2026-03-02 09:00 Europe/Madrid")
    ]
    retry = followup(*args, "--now", "2026-03-02T09:10:00+01:00")
    assert retry.returncode == 0, retry.stderr
    assert [r["exit_code"] for r in runs_table(db)] == [75, 0]
    assert [t["status"] for t in db.tracking()] == ["sent"]


def test_on_schedule__a_broken_config_is_said_once_not_at_every_tick(tmp_path, db):
    scheduled_setup(tmp_path, db)
    broken = base_config()
    broken["sequences"][0]["messages"][0]["template"] = "{{ lead.first_name "
    bad = write_config(tmp_path / "broken.yaml", broken)
    followup("migrate", "--config", str(tmp_path / "sequences.yaml"), "--db", db.url)
    args = ("run", "--on-schedule", "--config", str(bad), "--db", db.url)
    first = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    second = followup(*args, "--now", "2026-03-02T09:10:00+01:00")
    assert (first.returncode, second.returncode) == (2, 2)
    assert "broken.yaml" in first.stderr
    assert second.stderr == ""
    assert [r["exit_code"] for r in runs_table(db)] == [2]


def test_on_schedule__no_run_times_is_exit_2_said_once_not_a_silent_exit_0(tmp_path, db):
    """`run_times: []` passed `sequences check` and every `--on-schedule` tick (the
    crontab.example line) exited 0 having found no slot: the job never ran, silently, and
    `status` was the only place to notice. Now check warns, and a tick is exit 2, mailed once."""
    cfg = base_config()
    cfg["settings"]["run_times"] = []
    db.insert(due_lead("l1", datetime(2026, 3, 2, 9, 5, tzinfo=UTC)))
    path = write_config(tmp_path / "sequences.yaml", cfg)
    check = followup("sequences", "check", "--config", str(path))
    assert check.returncode == 0 and "settings.run_times: empty" in check.stderr, check.stderr
    args = ("run", "--on-schedule", "--config", str(path), "--db", db.url)
    first = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    second = followup(*args, "--now", "2026-03-02T09:10:00+01:00")
    assert (first.returncode, second.returncode) == (2, 2), first.stderr
    assert "run_times is empty" in first.stderr and len(first.stderr.splitlines()) == 1
    assert second.stderr == ""
    assert db.tracking() == []
    plain = followup(
        "run", "--config", str(path), "--db", db.url, "--now", "2026-03-02T09:05:00+01:00"
    )
    assert plain.returncode == 0 and [t["status"] for t in db.tracking()] == ["sent"]


# ------------------------------------------------------------------ logs


def test_json_logs__every_line_has_time_level_run_id_and_account(tmp_path, db, graph):
    cfg_path = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    db.insert(due_lead("l1", now))
    log = tmp_path / "run.log"
    r = run_at(
        cfg_path,
        db,
        now,
        "--log-format",
        "json",
        "--log-file",
        str(log),
        env={"FOLLOWUP_TOKEN_A": "tok-a"},
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    run_id = runs_table(db)[0]["run_id"]
    assert lines and all({"time", "level", "run_id", "account", "message"} <= set(x) for x in lines)
    assert {x["run_id"] for x in lines} == {run_id}
    sent = [x for x in lines if x["message"].startswith("sent ")]
    assert [(x["account"], x["lead"], x["level"]) for x in sent] == [("acct_a", "l1", "INFO")]
    assert "tok-a" not in log.read_text()


def test_text_logs_and_verbosity(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    r = run_at(cfg, db, "2026-03-02T09:05:00+01:00", "-v")
    assert r.returncode == 0
    lines = r.stderr.strip().splitlines()
    assert lines and all(" run=" in x and " account=" in x for x in lines)
    assert any("account=acct_a" in x and "INFO" in x for x in lines)


def test_bad_row_warning__mailed_once_per_problem_and_kept_in_the_log(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    db.insert(lead("bad", recipient_id=None, last_outbound_at="2026-03-02T05:00:00Z"))
    log = tmp_path / "run.log"
    args = ("run", "--config", str(cfg), "--db", db.url, "--log-file", str(log))
    first = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    second = followup(*args, "--now", "2026-03-02T14:05:00+01:00")
    assert first.returncode == second.returncode == 0
    assert "bad" in first.stderr and second.stderr == ""
    assert log.read_text().count("warning: skipped") == 1


# ------------------------------------------------------------------ metrics


def test_metrics_file__parses_and_counts_per_account(tmp_path, db, graph):
    cfg_path = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    db.insert(
        due_lead("l1", now),
        due_lead("l2", now),
    )
    graph.fail(551, recipient_id="ig_l2")
    prom = tmp_path / "followup.prom"
    r = run_at(cfg_path, db, now, "--metrics-file", str(prom), env={"FOLLOWUP_TOKEN_A": "tok-a"})
    assert r.returncode == 3
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(prom.read_text())
        for s in fam.samples
    }
    assert samples[("followup_sent", (("account", "acct_a"),))] == 1
    assert samples[("followup_failed", (("account", "acct_a"), ("code", "551")))] == 1
    assert samples[("followup_unknown", (("account", "acct_a"),))] == 0
    assert samples[("followup_run_exit_code", ())] == 3
    assert samples[("followup_last_success_timestamp_seconds", ())] == 0
    assert samples[("followup_run_duration_seconds", ())] > 0
    assert not list(tmp_path.glob("followup.prom.*"))  # written via a temporary, renamed
    ok = run_at(cfg_path, db, now, "--metrics-file", str(prom), env={"FOLLOWUP_TOKEN_A": "tok-a"})
    assert ok.returncode == 0
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert fams["followup_last_success_timestamp_seconds"].samples[0].value > time.time() - 60


# ------------------------------------------------------------------ pings


class PingServer:
    def __init__(self, hang: float = 0.0) -> None:
        self.hits: list[tuple[str, str, str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                outer.hits.append((self.command, self.path, body))
                if hang:
                    outer.release.wait(hang)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                except OSError:
                    pass  # the client gave up waiting, as it should

            do_GET = do_POST = _any

            def log_message(self, *a: Any) -> None:
                pass

        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ping/abc-123"


def test_ping__start_and_end_with_the_exit_code_and_run_id(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    with PingServer() as ps:
        r = run_at(cfg, db, "2026-03-02T09:05:00+01:00", "--ping-url", ps.url)
    assert r.returncode == 0, r.stderr
    run_id = runs_table(db)[0]["run_id"]
    paths = sorted((m, p) for m, p, _ in ps.hits)
    assert paths == [
        ("GET", f"/ping/abc-123/start?rid={run_id}"),
        ("POST", f"/ping/abc-123/0?rid={run_id}"),
    ]
    assert "1 sent" in next(b for m, _, b in ps.hits if m == "POST")


def test_ping__a_server_that_hangs_never_holds_the_run(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    with PingServer(hang=30) as ps:
        t0 = time.monotonic()
        r = run_at(
            cfg,
            db,
            "2026-03-02T09:05:00+01:00",
            "--ping-url",
            ps.url,
            "--ping-timeout",
            "1",
            "--log-file",
            str(tmp_path / "log"),
        )
        took = time.monotonic() - t0
    assert r.returncode == 0 and r.stderr == ""
    assert took < 10
    assert [t["status"] for t in db.tracking()] == ["sent"]
    assert "ping to 127.0.0.1" in (tmp_path / "log").read_text()


def test_ping__unreachable_url_is_a_logged_warning_not_a_failure(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    r = run_at(
        cfg,
        db,
        "2026-03-02T09:05:00+01:00",
        "--ping-url",
        "http://127.0.0.1:9/x",
        "--ping-timeout",
        "1",
        "--log-file",
        str(tmp_path / "log"),
    )
    assert (r.returncode, r.stderr) == (0, "")
    assert "ping to 127.0.0.1:9 failed" in (tmp_path / "log").read_text()


# ------------------------------------------------------------------ the backlog


def backlog_setup(tmp_path: Path, db: LeadDB, per_hour: int, n: int = 5) -> Path:
    cfg = base_config(
        channel={"type": "console", "window_hours": 24, "messages_per_hour": per_hour}
    )
    cfg["settings"]["run_times"] = ["09:00", "14:00", "18:00"]
    now = datetime(2026, 3, 2, 8, 5, tzinfo=UTC)  # 09:05 Madrid
    # Windows close at 10:05 UTC, before the 14:00 slot: only this run can serve them.
    db.insert(
        *(
            lead(
                f"l{i}",
                last_inbound_at=now - timedelta(hours=22),
                last_outbound_at=now - timedelta(hours=21),
            )
            for i in range(n)
        )
    )
    return write_config(tmp_path / "sequences.yaml", cfg)


def test_backlog__losses_are_said_with_exit_3_once_a_day_per_account(tmp_path, db):
    cfg = backlog_setup(tmp_path, db, per_hour=1)
    prom = tmp_path / "f.prom"
    args = ("run", "--config", str(cfg), "--db", db.url, "--metrics-file", str(prom))
    first = followup(*args, "--now", "2026-03-02T09:05:00+01:00")
    assert first.returncode == 3, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "account acct_a: 4 of 4 due follow-up(s) will miss their messaging window" in lines[0]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(prom.read_text())
        for s in fam.samples
    }
    assert samples[("followup_backlog", (("account", "acct_a"),))] == 4
    assert samples[("followup_backlog_lost", (("account", "acct_a"),))] == 4
    # The same day: still lost, said in the summary and the log, but no second exit 3.
    again = followup(*args, "--now", "2026-03-02T09:35:00+01:00", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accounts"]["acct_a"]["deferred"] == {"rate_limit": 4}
    rows = runs_table(db)
    assert [r["exit_code"] for r in rows] == [3, 0]
    assert json.loads(rows[1]["summary"])["backlog"]["acct_a"]["lost"] == 4


def test_backlog__that_fits_before_the_windows_close_is_not_news(tmp_path, db):
    cfg = base_config(channel={"type": "console", "window_hours": 24, "messages_per_hour": 1})
    cfg["settings"]["run_times"] = ["09:00", "14:00", "18:00"]
    now = datetime(2026, 3, 2, 8, 5, tzinfo=UTC)
    # Windows close 19 hours from now: the 14:00 run serves what this one cannot.
    db.insert(*(due_lead(f"l{i}", now) for i in range(3)))
    path = write_config(tmp_path / "sequences.yaml", cfg)
    r = run_at(path, db, now, "--json")
    assert r.returncode == 0
    assert "will miss" not in r.stderr  # (the console channel prints its message there)
    data = json.loads(r.stdout)
    assert data["deferred"] == {"rate_limit": 2}
    summary = json.loads(runs_table(db)[0]["summary"])
    assert summary["backlog"]["acct_a"]["due"] == 2
    assert summary["backlog"]["acct_a"]["lost"] == 0


# ------------------------------------------------------------------ status


def status(cfg: Path, db: LeadDB, now: str, *extra: str, env: dict[str, str] | None = None):
    r = followup(
        "status", "--config", str(cfg), "--db", db.url, "--now", now, "--json", *extra, env=env
    )
    return r.returncode, json.loads(r.stdout)


def test_status__healthy_after_a_success_and_unhealthy_when_it_is_too_old(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    run = run_at(cfg, db, "2026-03-02T09:05:00+01:00", "--on-schedule")
    assert run.returncode == 0, run.stderr
    code, data = status(cfg, db, "2026-03-02T12:00:00+01:00")
    assert code == 0 and data["healthy"] is True
    assert data["slots"]["09:00"]["exit_code"] == 0
    assert data["slots"]["09:00"]["slot"] == "2026-03-02 09:00 Europe/Madrid"
    assert data["slots"]["14:00"] is None
    assert data["last_success_age_hours"] == pytest.approx(2.92, abs=0.01)
    code, data = status(cfg, db, "2026-03-03T12:00:00+01:00", "--max-age-hours", "26")
    assert code == 3 and data["healthy"] is False
    assert "more than 26 h" in data["problems"][0]
    screen = followup(
        "status", "--config", str(cfg), "--db", db.url, "--now", "2026-03-03T12:00:00+01:00"
    )
    assert screen.returncode == 3 and "UNHEALTHY" in screen.stdout and "slot 09:00" in screen.stdout


def test_status__says_the_backlog_that_will_be_lost_and_the_failed_slot(tmp_path, db):
    cfg = backlog_setup(tmp_path, db, per_hour=1)
    run = run_at(cfg, db, "2026-03-02T09:05:00+01:00", "--on-schedule")
    assert run.returncode == 3
    code, data = status(cfg, db, "2026-03-02T09:30:00+01:00")
    assert code == 3  # no success yet
    a = data["accounts"]["acct_a"]
    assert (a["backlog"]["due"], a["backlog"]["servable"], a["backlog"]["lost"]) == (4, 0, 4)
    assert data["slots"]["09:00"]["exit_code"] == 3
    assert any("4 of 4 due follow-up(s) will miss" in p for p in data["problems"])
    assert a["token"] is None  # the console channel has no token


def test_status__stopped_account_unknown_followups_and_token_state(tmp_path, db, graph):
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    db.insert(
        due_lead("l1", now),
        due_lead("l2", now),
    )
    graph.drop(recipient_id="ig_l1", delivered=True)  # the answer never comes: unknown
    r = run_at(cfg, db, now, env={"FOLLOWUP_TOKEN_A": "tok-a"})
    assert r.returncode == 3
    db.insert(due_lead("l3", now))
    r = run_at(cfg, db, now + timedelta(minutes=5), env={"FOLLOWUP_TOKEN_A": "bad"})
    assert r.returncode == 3 and "stopped" in r.stderr
    code, data = status(cfg, db, (now + timedelta(minutes=10)).isoformat())
    a = data["accounts"]["acct_a"]
    assert a["unknown"] == 1
    assert a["stopped"].startswith("by the last run: account acct_a stopped")
    assert (a["token"]["is_set"], a["token"]["problem"]) == (False, "FOLLOWUP_TOKEN_A is not set")
    code, data = status(
        cfg,
        db,
        (now + timedelta(minutes=10)).isoformat(),
        "--check-tokens",
        env={"FOLLOWUP_TOKEN_A": "tok-a"},
    )
    assert data["accounts"]["acct_a"]["token"]["accepted"] is True
    assert data["accounts"]["acct_a"]["token"]["days_left"] > 59


def test_logs__json_to_stderr_without_a_log_file_and_quiet_keeps_only_errors(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    db.insert(lead("bad", recipient_id=None, last_outbound_at="2026-03-02T05:00:00Z"))
    r = run_at(cfg, db, "2026-03-02T09:05:00+01:00", "--log-format", "json")
    assert r.returncode == 0
    lines = [json.loads(x) for x in r.stderr.splitlines()]  # the journal gets JSON only
    assert any(x["level"] == "WARNING" and "skipped" in x["message"] for x in lines)
    db.insert(lead("bad2", recipient_id=None, last_outbound_at="2026-03-02T05:00:00Z"))
    q = run_at(cfg, db, "2026-03-02T14:05:00+01:00", "-q")
    assert (q.returncode, q.stderr) == (0, "")  # a new bad row is a warning: -q keeps it off


def test_log_file_that_cannot_be_opened__exit_2_one_line(tmp_path, db):
    cfg = scheduled_setup(tmp_path, db)
    r = followup(
        "run",
        "--config",
        str(cfg),
        "--db",
        db.url,
        "--log-file",
        str(tmp_path / "no" / "such" / "run.log"),
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--log-file" in r.stderr
    assert r.stdout == ""  # it stopped before the store was touched: nothing sent
