"""The per-account rate limit and the run's time budget, on both stores.

The limit is a sliding 60-minute window counted from tracking rows, so it holds across runs
and across processes. An account at its limit waits for the window only when time is real
and the run's budget allows (a ``Clock`` whose time moves only when the engine sleeps stands
in for the real one); with ``--now`` it never waits: the rest stays due for the next run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import load_config, parse_config
from followup_cli.engine import Engine, RunOptions, RunSummary
from followup_cli.models import parse_time
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

MADRID = ZoneInfo("Europe/Madrid")
T = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}


def config(graph: FakeGraphAPI, per_hour: int, **settings: Any) -> dict[str, Any]:
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": graph.base_url,
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": per_hour,
        }
    )
    cfg["settings"].update(settings)
    return cfg


def due_leads(n: int, at: datetime = T) -> list[dict[str, Any]]:
    """n leads whose m1 is due at ``at``; their windows close one minute apart (l0 first)."""
    return [
        lead(
            f"l{i}",
            last_inbound_at=at - timedelta(hours=5, minutes=n - i),
            last_outbound_at=at - timedelta(hours=4),
        )
        for i in range(n)
    ]


class SteppingClock(Clock):
    """Real time (not --now) that moves only when the engine sleeps: a wait costs nothing."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self.t = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)

    def elapsed(self) -> float:
        return super().elapsed() + sum(self.slept)


def run_engine(
    tmp_path: Path,
    db: LeadDB,
    cfg: dict[str, Any],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    wrap: Any = None,
    **options: Any,
) -> RunSummary:
    monkeypatch.setenv("FOLLOWUP_TOKEN_A", "tok-a")
    loaded = load_config(write_config(tmp_path / "sequences.yaml", cfg))
    store = open_store(db.url, "leads")
    if wrap is not None:
        wrap(store)
    channel = make_channel(loaded.config, sleep=lambda s: None)
    try:
        return Engine(loaded, store, channel, clock).run(RunOptions(**options))
    finally:
        channel.close()
        store.close()


def sent_rows(db: LeadDB) -> list[dict[str, Any]]:
    return db.query(
        "SELECT lead_id, claimed_at FROM followup_tracking WHERE status = 'sent' ORDER BY lead_id"
    )


# --------------------------------------------------------------- across runs


def test_rate_limit__the_sliding_window_holds_across_runs(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(5))
    cfg = config(graph, per_hour=3)
    path = write_config(tmp_path / "sequences.yaml", cfg)
    got = []
    for minutes in (0, 30):  # two processes, 30 minutes apart
        now = (T + timedelta(minutes=minutes)).isoformat()
        r = followup("run", "--config", str(path), "--db", db.url, "--now", now, "--json", env=ENV)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        got.append((minutes, data["sent"], data["deferred"]))
    assert got == [
        (0, 3, {"rate_limit": 2}),  # three an hour; the rest stays due
        (30, 0, {"rate_limit": 2}),  # a new process, the same window: still full
    ]
    at = T + timedelta(minutes=59, seconds=59)
    s = run_engine(tmp_path, db, cfg, Clock(fixed=at), monkeypatch, now=at)
    assert (s.total("sent"), s.as_dict()["deferred"]) == (0, {"rate_limit": 2})
    at = T + timedelta(minutes=60)  # the first three leave the window at exactly T+60 min
    s = run_engine(tmp_path, db, cfg, Clock(fixed=at), monkeypatch, now=at)
    assert (s.total("sent"), s.as_dict()["deferred"]) == (2, {})
    assert len(graph.deliveries) == 5
    # windows closing soonest first: l0, l1, l2 went out first
    assert [c.recipient_id for c in graph.deliveries[:3]] == ["ig_l0", "ig_l1", "ig_l2"]


def test_rate_limit__concurrent_processes_never_exceed_it(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(*due_leads(8))
    path = write_config(tmp_path / "sequences.yaml", config(graph, per_hour=3))
    args = ["run", "--config", str(path), "--db", db.url, "--now", T.isoformat(), "--wait", "30"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    env.update(ENV)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "followup_cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(graph.deliveries) == 3
    assert len(sent_rows(db)) == 3


# ------------------------------------------------------------- waiting or not


def test_rate_limit__waits_for_the_window_when_time_is_real_and_the_budget_allows(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(3))
    clock = SteppingClock(T)
    s = run_engine(
        tmp_path, db, config(graph, per_hour=2), clock, monkeypatch, budget_seconds=2 * 3600
    )
    assert s.total("sent") == 3 and not s.as_dict()["deferred"]
    # waited exactly until the first send left the 60-minute window, in slices of <= 30 s
    assert sum(clock.slept) == pytest.approx(3600)
    assert max(clock.slept) <= 30
    claimed = {r["lead_id"]: r["claimed_at"] for r in sent_rows(db)}
    assert parse_time(claimed["l2"]) - parse_time(claimed["l0"]) == timedelta(hours=1)
    assert len(graph.deliveries) == 3


def test_rate_limit__does_not_wait_beyond_the_run_budget(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(4))
    clock = SteppingClock(T)
    s = run_engine(tmp_path, db, config(graph, per_hour=2), clock, monkeypatch, budget_seconds=1800)
    assert clock.slept == []
    assert s.total("sent") == 2
    assert s.as_dict()["deferred"] == {"rate_limit": 2}
    assert s.exit_code == 0
    assert [r["lead_id"] for r in sent_rows(db)] == ["l0", "l1"]


def test_rate_limit__never_waits_with_now_the_rest_stays_due(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(3))
    cfg = config(graph, per_hour=2)
    clock = Clock(fixed=T)
    slept: list[float] = []
    clock.sleep = slept.append  # type: ignore[method-assign]
    s = run_engine(tmp_path, db, cfg, clock, monkeypatch, now=T, budget_seconds=10 * 3600)
    assert slept == []
    assert s.as_dict()["deferred"] == {"rate_limit": 1}
    later = T + timedelta(minutes=61)
    s = run_engine(tmp_path, db, cfg, Clock(fixed=later), monkeypatch, now=later)
    assert s.total("sent") == 1
    assert [r["lead_id"] for r in sent_rows(db)] == ["l0", "l1", "l2"]


def test_rate_limit__a_dry_run_shows_the_deferral_and_writes_nothing(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(3))
    cfg = config(graph, per_hour=2)
    run_engine(tmp_path, db, cfg, Clock(fixed=T), monkeypatch, now=T)  # l0, l1 sent; l2 waits
    graph.reset()
    path = write_config(tmp_path / "sequences.yaml", cfg)
    run = ["run", "--config", str(path), "--db", db.url, "--now", T.isoformat(), "--json"]
    r = followup(*run, "--dry-run", env=ENV)
    data = json.loads(r.stdout)
    assert data["would_send"] == 0 and data["deferred"] == {"rate_limit": 1}
    assert graph.calls == []
    assert len(sent_rows(db)) == 2


# -------------------------------------------------------- batches and budget


def test_batches__each_batch_heartbeats_and_rechecks_the_budget(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(5))
    beats: list[int] = []

    def count_heartbeats(store: SqlStore) -> None:
        real = store.heartbeat

        def heartbeat(run_id: str, wall: datetime) -> None:
            beats.append(len(graph.calls))
            real(run_id, wall)

        store.heartbeat = heartbeat  # type: ignore[method-assign]

    cfg = config(graph, per_hour=100, batch_size=2)
    s = run_engine(tmp_path, db, cfg, Clock(fixed=T), monkeypatch, count_heartbeats, now=T)
    assert s.total("sent") == 5
    assert beats == [0, 2, 4]  # before each batch of two sends


def test_budget__sends_stop_when_the_run_budget_is_spent(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(5))

    class BusyClock(Clock):
        """Each API call costs 100 s of run time."""

        def elapsed(self) -> float:
            return 100.0 * len(graph.calls)

    cfg = config(graph, per_hour=100)
    s = run_engine(tmp_path, db, cfg, BusyClock(fixed=T), monkeypatch, now=T, budget_seconds=250)
    assert len(graph.calls) == 3  # started at 0, 100 and 200 s; none after 250 s
    assert s.as_dict()["deferred"] == {"time_budget": 2}
    assert s.exit_code == 0
    s = run_engine(tmp_path, db, cfg, Clock(fixed=T), monkeypatch, now=T + timedelta(minutes=1))
    assert len(sent_rows(db)) == 5


@pytest.mark.parametrize(
    ("local", "minutes", "expected"),
    [
        ("09:00", 240, 240 * 60),  # next slot 14:00, 5 h away: the cap wins
        ("09:00", 600, 5 * 3600 - 300),  # ends 5 minutes before the 14:00 run
        ("18:00", 600, 600 * 60),  # next slot tomorrow 09:00
        ("13:58", 240, 60),  # the next run is 2 minutes away: at least a minute
    ],
)
def test_budget__the_default_ends_before_the_next_cron_slot(
    local: str, minutes: int, expected: float
) -> None:
    cfg = base_config()
    cfg["settings"]["run_budget_minutes"] = minutes
    loaded = parse_config(yaml.safe_dump(cfg))
    engine = Engine(loaded, None, None)  # type: ignore[arg-type]
    hh, mm = map(int, local.split(":"))
    assert engine.default_budget_seconds(T.replace(hour=hh, minute=mm)) == expected


# ------------------------------------------------ per-account caps (issue 9, point 6)


def test_daily_cap__holds_across_runs_and_resets_at_the_accounts_midnight(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(*due_leads(5))
    cfg = config(graph, per_hour=100)
    cfg["channel"].update(messages_per_day=3, window_hours=48)
    cfg["sequences"][0]["messages"] = cfg["sequences"][0]["messages"][:1]  # one step each
    path = write_config(tmp_path / "sequences.yaml", cfg)
    got = []
    for at in (T, T.replace(hour=18), T + timedelta(days=1)):
        r = followup(
            "run", "--config", str(path), "--db", db.url, "--now", at.isoformat(), "--json",
            env=ENV,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        got.append((data["sent"], data["deferred"]))
    assert got == [
        (3, {"daily_cap": 2}),  # three a day; the rest waits for tomorrow
        (0, {"daily_cap": 2}),  # another run the same day: the day is still used up
        (2, {}),  # midnight in Madrid opened a new day
    ]
    assert len(graph.deliveries) == 5


def test_account_overrides__hourly_and_daily_caps_per_account(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*due_leads(4))
    cfg = config(graph, per_hour=100)
    cfg["accounts"][0]["settings"] = {"messages_per_hour": 2}
    s = run_engine(tmp_path, db, cfg, Clock(fixed=T), monkeypatch, now=T)
    assert (s.total("sent"), s.as_dict()["deferred"]) == (2, {"rate_limit": 2})
    cfg["accounts"][0]["settings"] = {"messages_per_hour": 50, "messages_per_day": 3}
    later = T + timedelta(minutes=61)
    s = run_engine(tmp_path, db, cfg, Clock(fixed=later), monkeypatch, now=later)
    assert (s.total("sent"), s.as_dict()["deferred"]) == (1, {"daily_cap": 1})


def test_daily_cap__a_dry_run_shows_it_and_writes_nothing(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    db.insert(*due_leads(3))
    cfg = config(graph, per_hour=100)
    cfg["channel"]["messages_per_day"] = 2
    path = write_config(tmp_path / "sequences.yaml", cfg)
    run = ["run", "--config", str(path), "--db", db.url, "--now", T.isoformat(), "--json"]
    data = json.loads(followup(*run, "--dry-run", env=ENV).stdout)
    assert (data["would_send"], data["deferred"]) == (2, {"daily_cap": 1})
    assert graph.calls == []  # and nothing was written: not even the tool's tables


@pytest.mark.parametrize("cap", ["hour", "day"])
def test_explain__names_the_accounts_full_window_instead_of_due_now(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, cap: str
) -> None:
    db.insert(*due_leads(2))
    cfg = config(graph, per_hour=1 if cap == "hour" else 100)
    if cap == "day":
        cfg["accounts"][0]["settings"] = {"messages_per_day": 1}
    path = write_config(tmp_path / "sequences.yaml", cfg)
    common = ["--config", str(path), "--db", db.url]
    before = followup("explain", "l1", *common, "--now", T.isoformat())
    assert "DUE NOW" in before.stdout, before.stdout + before.stderr
    ran = followup("run", *common, "--now", T.isoformat(), env=ENV)
    if cap == "hour":
        assert ran.returncode == 0, ran.stderr
    else:
        # l1's window closes at 05:00 tomorrow, before tomorrow's first send: the run says
        # the loss and exits 3 for it (issue 10: a backlog that is said).
        assert ran.returncode == 3, ran.stderr
        assert "account acct_a: 1 of 1 due follow-up(s) will miss" in ran.stderr
    at = T + timedelta(minutes=10)
    r = followup("explain", "l1", *common, "--now", at.isoformat())
    assert r.returncode == 0, r.stderr
    assert "DUE NOW" not in r.stdout and "WAITING" in r.stdout
    if cap == "hour":
        assert "acct_a's hourly cap is full (1 of 1)" in r.stdout
        assert "room again at 2026-03-02 10:00 UTC" in r.stdout  # T (09:00 UTC) + 1 h
    else:
        assert "acct_a's daily cap is full (1 of 1 today, Europe/Madrid)" in r.stdout
        assert "room again at 2026-03-02 23:00 UTC" in r.stdout  # Madrid's midnight
    data = json.loads(followup("explain", "l1", *common, "--now", at.isoformat(), "--json").stdout)
    assert data["action"] == "wait"
    assert data["reason"] == ("account_hourly_cap" if cap == "hour" else "account_daily_cap")
    rules = {c["rule"]: c["ok"] for c in data["checks"]}
    assert rules["account hourly cap"] is (cap != "hour")
