"""The send path's features combined under crashes and overlaps, checked from outside.

Encryption at rest (a key set), several accounts served at once (``max_in_flight`` > 1),
the outcome written inside the account's next claim, the hash-chained audit log and, on
Postgres, the least-privilege runner role: runs killed with SIGKILL at seeded random
instants and replayed over a few cron slots (``--now``), or overlapping on Postgres.
Counted at the fake Graph API on loopback:

* no recipient ever gets the same step twice;
* a lead whose last inbound text is STOP gets nothing; a lead opted out with
  ``followup optout`` between runs gets nothing after it;
* after a recovery run every tracking row is final or ``unknown`` (none ``pending``);
* ``followup audit verify`` exits 0: a kill in mid-transaction does not break the chain.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import load_config
from followup_cli.crypto import Cipher, new_key
from followup_cli.engine import Engine
from followup_cli.store import open_store
from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, followup, lead, spawn_followup, write_config
from tests.integration.test_concurrency import run_intervals
from tests.integration.test_crash import claim, dead_pid
from tests.integration.test_privileges import as_role

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # Monday 09:00: step m1 due for every lead
SLOTS = (T0, T0 + timedelta(hours=2), T0 + timedelta(hours=3))  # m2 is due from 11:00
ACCOUNTS = 3
PER_ACCOUNT = 8
IG = {k: f"1784100000000{k:04d}" for k in range(ACCOUNTS)}
TOKENS = {f"FOLLOWUP_TOKEN_{k}": f"tok-{k}" for k in range(ACCOUNTS)}
STEP_TEXT = {"m1": "step one", "m2": "step two"}
FINAL = {"sent", "failed", "unknown"}
POSTGRES_ONLY = pytest.mark.parametrize("db", ["postgres"], indirect=True)


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tokens={IG[k]: f"tok-{k}" for k in range(ACCOUNTS)}) as fake:
        yield fake


def chaos_config(path: Path, base_url: str, api_version: str = "v21.0") -> Path:
    """Three accounts, two steps (09:00 and 11:00), three sends in flight at once. The
    API version tells the fake which of several overlapping runs sends a request."""
    cfg = base_config(
        settings={"min_interval_hours": 1, "max_in_flight": 3},
        channel={
            "type": "instagram",
            "api_base": base_url,
            "api_version": api_version,
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": 10_000,
            "timeout_seconds": 30,
        },
        accounts=[
            {
                "id": f"acct_{k}",
                "user_id": f"u_{k}",
                "ig_user_id": IG[k],
                "token_env": f"FOLLOWUP_TOKEN_{k}",
            }
            for k in range(ACCOUNTS)
        ],
    )
    seq = cfg["sequences"][0]
    seq["messages"][0]["template"] = "Hi {{ lead.first_name }}, step one"
    seq["messages"][1].update(delay_hours=5, template="Hi {{ lead.first_name }}, step two")
    return write_config(path, cfg)


def chaos_leads(db: LeadDB) -> tuple[list[str], str]:
    """PER_ACCOUNT leads per account, plus one who wrote STOP last; (ids, stop id)."""
    silent = T0.replace(hour=6)
    ids, rows = [], []
    for k in range(ACCOUNTS):
        for i in range(PER_ACCOUNT):
            lid = f"a{k}_l{i}"
            # a quarter fall silent at 09:00: their step one is due in the last slot (12:00)
            quiet = silent if i < PER_ACCOUNT * 3 // 4 else T0
            ids.append(lid)
            rows.append(
                lead(
                    lid,
                    account_id=f"acct_{k}",
                    user_id=f"u_{k}",
                    last_inbound_at=quiet - timedelta(minutes=30),
                    last_outbound_at=quiet,
                )
            )
    stop = "a0_stop"
    rows.append(
        lead(
            stop,
            account_id="acct_0",
            user_id="u_0",
            last_inbound_text="STOP",
            last_inbound_at=silent - timedelta(minutes=30),
            last_outbound_at=silent,
        )
    )
    db.insert(*rows)
    return ids, stop


def step_of(call: Call) -> str:
    return next(m for m, text in STEP_TEXT.items() if text in (call.text or ""))


class Chaos:
    """Runs of ``followup`` against one store, killed at seeded random instants."""

    def __init__(
        self, db: LeadDB, url: str, cfg: Path, graph: FakeGraphAPI, seed: int, env: dict
    ) -> None:
        self.db, self.url, self.cfg, self.graph, self.seed = db, url, cfg, graph, seed
        self.env = env
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.plan: dict[str, Any] = {"proc": None, "mode": None, "at": 0, "seen": 0}
        self.kills = 0
        graph.on_request(self._hook)

    def _kill(self, proc: Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    def _hook(self, call: Call) -> None:
        with self.lock:
            if self.plan.get("version") not in (None, call.api_version):
                return  # another run's request
            self.plan["seen"] += 1
            if self.plan.get("sending") is not None:
                self.plan["sending"].set()
            proc, mode, seen, at = (self.plan[k] for k in ("proc", "mode", "seen", "at"))
        if proc is None:
            return
        if mode == "in_call" and seen == at:
            self._kill(proc)  # delivered by the fake, its answer lost (and others in flight)
        elif mode == "after_first_call" and seen == 1:
            threading.Timer(at, self._kill, (proc,)).start()

    def args(self, now: datetime) -> tuple[str, ...]:
        return ("run", "--config", str(self.cfg), "--db", self.url, "--now", now.isoformat())

    def cli(self, *args: str) -> Any:
        return followup(*args, "--config", str(self.cfg), "--db", self.url, env=self.env)

    def killed_run(self, now: datetime, i: int) -> int:
        mode = ("in_call", "after_first_call", "from_start")[i % 3]
        at = {
            "in_call": self.rng.randint(1, 4),
            "after_first_call": self.rng.uniform(0.0, 0.3),
            "from_start": self.rng.uniform(0.3, 1.2),  # start-up, migrations, claims
        }[mode]
        proc = spawn_followup(*self.args(now), "--json", env=self.env)
        with self.lock:
            self.plan.update(proc=proc, mode=mode, at=at, seen=0)
        if mode == "from_start":
            threading.Timer(at, self._kill, (proc,)).start()
        _, err = proc.communicate(timeout=60)
        with self.lock:
            self.plan.update(proc=None)
        self.kills += proc.returncode == -signal.SIGKILL
        assert proc.returncode in (-signal.SIGKILL, 0, 3), (self.seed, mode, at, err)
        return proc.returncode

    def recovery_run(self, now: datetime) -> dict[str, Any]:
        r = followup(*self.args(now), "--json", env=self.env)
        assert r.returncode in (0, 3), (self.seed, r.stderr)
        summary = json.loads(r.stdout)
        assert summary["failed"] == {}, (self.seed, summary)
        return summary


def deliveries(graph: FakeGraphAPI) -> Counter:
    return Counter((c.recipient_id, step_of(c)) for c in graph.deliveries)


def assert_never_twice(graph: FakeGraphAPI, seed: int) -> None:
    twice = {k: n for k, n in deliveries(graph).items() if n > 1}
    assert not twice, f"seed {seed}: the same step delivered more than once: {twice}"


def tracking(db: LeadDB) -> dict[tuple[str, str], str]:
    rows = db.query("SELECT lead_id, message_id, status FROM followup_tracking")
    return {(r["lead_id"], r["message_id"]): r["status"] for r in rows}


def assert_recovered(db: LeadDB, graph: FakeGraphAPI, seed: int) -> dict[tuple[str, str], str]:
    """Every row final or unknown; every delivery has its row, sent or unknown."""
    rows = tracking(db)
    open_rows = {k: s for k, s in rows.items() if s not in FINAL}
    assert not open_rows, f"seed {seed}: rows left open after a recovery run: {open_rows}"
    for recipient, step in deliveries(graph):
        key = (recipient.removeprefix("ig_"), step)
        assert rows.get(key) in ("sent", "unknown"), (
            f"seed {seed}: {key} was delivered but its row is {rows.get(key)}"
        )
    # every unknown row was marked by one run, which said so in the audit log once
    audits = Counter(
        (a["lead_id"], a["message_id"])
        for a in db.query(
            "SELECT lead_id, message_id FROM followup_audit WHERE action = ?", ("claim_unknown",)
        )
    )
    unknown = Counter(k for k, s in rows.items() if s == "unknown")
    assert audits == unknown, (
        f"seed {seed}: claim_unknown audit rows {audits} != unknown rows {unknown}"
    )
    return rows


def assert_audit_intact(chaos: Chaos) -> None:
    r = followup("audit", "verify", "--db", chaos.url, "--json", env=chaos.env)
    assert r.returncode == 0, f"seed {chaos.seed}: audit chain broken: {r.stdout} {r.stderr}"


def kill_and_replay(chaos: Chaos, ids: list[str], stop: str, kills_per_slot: int = 3) -> None:
    """The scenario of tests 1 and 3: every slot, runs killed then a recovery run; a lead
    opted out with ``followup optout`` after the first slot."""
    graph, db, seed = chaos.graph, chaos.db, chaos.seed
    graph.delay(0.03, times=None)  # slow answers, so that kills land mid-send
    opted, opted_at = None, 0
    for n, now in enumerate(SLOTS):
        for i in range(kills_per_slot):
            chaos.killed_run(now, n * kills_per_slot + i)
            assert_never_twice(graph, seed)
        chaos.recovery_run(now)
        assert_never_twice(graph, seed)
        rows = assert_recovered(db, graph, seed)
        if n == 0:
            # a lead whose step one went out, so that step two would be due at 11:00
            opted = next(i for i in ids if rows.get((i, "m1")) == "sent")
            r = chaos.cli("optout", opted, "--reason", "asked")
            assert r.returncode == 0, (seed, r.stderr)
            opted_at = len(graph.deliveries_to(f"ig_{opted}"))
    # most kills land before their run is done (a run may finish first: little work left)
    landed = len(SLOTS) * kills_per_slot // 2 + 1
    assert chaos.kills >= landed, f"seed {seed}: {chaos.kills} kills landed"

    assert_never_twice(graph, seed)
    rows = assert_recovered(db, graph, seed)
    assert graph.deliveries_to(f"ig_{stop}") == [], f"seed {seed}: {stop} wrote STOP"
    assert len(graph.deliveries_to(f"ig_{opted}")) == opted_at, (
        f"seed {seed}: {opted} got a message after `followup optout`"
    )
    # the run went on: step two reached the leads whose step one went out cleanly
    assert any(s == "sent" for (_, m), s in rows.items() if m == "m2"), (seed, rows)
    assert_audit_intact(chaos)


# -------------------------------------------------------------------- 1: kill / replay


def test_chaos__killed_runs_with_a_key_and_accounts_in_parallel_never_send_a_step_twice(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    seed = 20261201
    ids, stop = chaos_leads(db)
    cfg = chaos_config(tmp_path / "sequences.yaml", graph.base_url)
    env = {**TOKENS, "FOLLOWUP_ENCRYPTION_KEY": new_key()}
    chaos = Chaos(db, db.url, cfg, graph, seed, env)
    kill_and_replay(chaos, ids, stop)


# ------------------------------------------------------------ 2: overlapping on Postgres


@POSTGRES_ONLY
def test_chaos__overlapping_runs_on_postgres_with_a_key_serve_each_step_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    seed = 20261202
    rng = random.Random(seed)
    ids, stop = chaos_leads(db)
    cfg = chaos_config(tmp_path / "sequences.yaml", graph.base_url)
    env = {**TOKENS, "FOLLOWUP_ENCRYPTION_KEY": new_key()}
    chaos = Chaos(db, db.url, cfg, graph, seed, env)
    versions = ("v21.0", "v20.0", "v19.0")
    cfgs = [chaos_config(tmp_path / f"{v}.yaml", graph.base_url, v) for v in versions]
    graph.delay(0.02, times=None)
    kills = 0
    for now in SLOTS:
        args = [("run", "--config", str(c), "--db", db.url, "--now", now.isoformat()) for c in cfgs]
        # The victim starts first and is killed while its n-th request is in flight
        # (delivered, answer lost); the others start once it is sending, and overlap it.
        sending = threading.Event()
        with chaos.lock:
            victim = spawn_followup(*args[0], "--json", env=env)
            chaos.plan.update(proc=victim, mode="in_call", at=rng.randint(1, 3), seen=0)
            chaos.plan.update(version=versions[0], sending=sending)
        assert sending.wait(30), f"seed {seed}: the first run never sent"
        procs = [victim, *(spawn_followup(*a, "--json", env=env) for a in args[1:])]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode in (-signal.SIGKILL, 0, 3), (seed, err)
            kills += p.returncode == -signal.SIGKILL
        with chaos.lock:
            chaos.plan.update(proc=None, version=None, sending=None)
        assert_never_twice(graph, seed)
        chaos.recovery_run(now)
    assert kills == len(SLOTS), f"seed {seed}: {kills} kills landed"
    assert_never_twice(graph, seed)
    rows = assert_recovered(db, graph, seed)
    assert graph.deliveries_to(f"ig_{stop}") == []
    # every lead was served step one exactly once (sent or unknown), and some step two
    assert {k for k in rows if k[1] == "m1"} == {(i, "m1") for i in ids}, seed
    assert any(s == "sent" for (_, m), s in rows.items() if m == "m2"), (seed, rows)
    intervals = run_intervals(db)
    overlapped = any(
        a_start < b_end and b_start < a_end
        for n, (a_start, a_end) in enumerate(intervals)
        for b_start, b_end in intervals[n + 1 :]
        if a_end is not None and b_end is not None
    )
    assert overlapped, f"seed {seed}: the runs never overlapped"
    assert_audit_intact(chaos)


# ------------------------------------------------- 3: kill / replay as the runner role


@POSTGRES_ONLY
def test_chaos__killed_runs_as_the_least_privilege_runner_role_never_send_a_step_twice(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    seed = 20261203
    ids, stop = chaos_leads(db)
    cfg = chaos_config(tmp_path / "sequences.yaml", graph.base_url)
    env = {**TOKENS, "FOLLOWUP_ENCRYPTION_KEY": new_key()}
    suffix = uuid.uuid4().hex[:10]
    runner, reader = f"fu_runner_{suffix}", f"fu_reader_{suffix}"
    for role in (runner, reader):
        db._pg.execute(f"CREATE ROLE {role} LOGIN")
    try:
        # as the owner: the tables, then the grants `followup db grants` prints
        owner = ("--config", str(cfg), "--db", db.url)
        m = followup("migrate", *owner, env=env)
        assert m.returncode == 0, m.stderr
        grants = followup("db", "grants", "--runner", runner, "--reader", reader, *owner, env=env)
        assert grants.returncode == 0, grants.stderr
        db._pg.execute(grants.stdout)
        chaos = Chaos(db, as_role(db, runner), cfg, graph, seed, env)
        kill_and_replay(chaos, ids, stop)
    finally:
        for role in (runner, reader):
            db._pg.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            db._pg.execute(f"DROP OWNED BY {role}")
            db._pg.execute(f"DROP ROLE {role}")


# --------------------------------- a kill between marking a dead run's claim and its audit


class Killed(BaseException):
    """SIGKILL, as far as the code under test can tell: nothing after it runs."""


def test_stale_claim__a_run_killed_before_its_audit_entry_leaves_the_claim_pending(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the kill/replay above: a run killed right after marking a dead run's claim
    `unknown` left that row with no `claim_unknown` entry in the audit log. The mark and
    its audit entry are one transaction now: killed in between, the claim stays pending."""
    cfg = load_config(chaos_config(tmp_path / "sequences.yaml", graph.base_url))
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    store = open_store(db.url)
    try:
        wall = datetime.now(UTC)
        store.start_run("r_dead", socket.gethostname(), dead_pid(), "cron", wall, T0)
        [fid] = [store.insert_followup(claim("a0_l0", "r_dead"))]
        engine = Engine(cfg, store, make_channel(cfg.config), Clock(fixed=T0), cipher=Cipher(None))

        def killed(*args: Any, **kw: Any) -> None:
            raise Killed

        with monkeypatch.context() as m:
            m.setattr(store, "audit", killed)
            with pytest.raises(Killed):
                engine.expire_stale_claims(T0, "r_next")
        rows = db.query("SELECT status FROM followup_tracking WHERE id = ?", (fid,))
        assert rows == [{"status": "pending"}], "marked unknown with nothing in the audit log"

        assert engine.expire_stale_claims(T0, "r_next") == 1
        assert db.query("SELECT status FROM followup_tracking") == [{"status": "unknown"}]
        audits = db.query("SELECT lead_id FROM followup_audit WHERE action = 'claim_unknown'")
        assert audits == [{"lead_id": "a0_l0"}]
    finally:
        store.close()
    r = followup("audit", "verify", "--db", db.url)
    assert r.returncode == 0, r.stdout + r.stderr
