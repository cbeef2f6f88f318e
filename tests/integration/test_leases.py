"""Runs at once on one store share the accounts: a run serves an account only while it holds
the account's lease (``leases.py``), and leaves one another live run holds to that run.

The test holds a lease itself, on a connection of its own (Postgres: a session advisory
lock another connection cannot take; SQLite: another store object of this process on the
same file), with a run row of its own that looks alive, and runs ``followup run`` beside
it. The lease decides who serves an account, never whether a message goes out twice: that
stays the claims' (tests/integration/test_concurrency.py runs five processes on one account
with the leases out of the way).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from followup_cli.clock import wall
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, followup_in_process, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=MADRID)  # step m1 is due for every lead below
SILENT = NOW.replace(hour=6)
ENV = {"FOLLOWUP_TOKEN_A": "tok-a", "FOLLOWUP_TOKEN_B": "tok-b"}


def config(tmp_path: Path, base_url: str, in_flight: int) -> Path:
    accounts = [
        {
            "id": f"acct_{x}",
            "user_id": "u_1",
            "ig_user_id": f"1784100000000000{n}",
            "token_env": f"FOLLOWUP_TOKEN_{x.upper()}",
        }
        for n, x in ((1, "a"), (2, "b"))
    ]
    channel = {
        "type": "instagram",
        "api_base": base_url,
        "api_version": "v21.0",
        "window_hours": 24,
        "max_retries": 0,
        "messages_per_hour": 10_000,
    }
    cfg = base_config(channel=channel, accounts=accounts, settings={"max_in_flight": in_flight})
    return write_config(tmp_path / "sequences.yaml", cfg)


def due(db: LeadDB, account: str, *ids: str) -> None:
    db.insert(
        *(
            lead(
                i,
                account_id=account,
                last_inbound_at=SILENT - timedelta(minutes=30),
                last_outbound_at=SILENT,
            )
            for i in ids
        )
    )


def run(cfg: Path, db: LeadDB) -> dict:
    r = followup_in_process(
        "run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--json", env=ENV
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def holder(db: LeadDB) -> Iterator[SqlStore]:
    """A connection of the test's own, standing for another run."""
    store = open_store(db.url)
    try:
        yield store
    finally:
        store.release_lease("acct_a")
        store.close()


def other_run_alive(store: SqlStore) -> None:
    store.start_run("r_other", socket.gethostname(), os.getpid(), "test", wall(), NOW)


@pytest.mark.parametrize("in_flight", [1, 4])
def test_lease__an_account_another_run_holds_is_left_to_it_and_served_once_free(
    tmp_path: Path, db: LeadDB, holder: SqlStore, in_flight: int
) -> None:
    """in_flight 1: the accounts one after the other; 4: on the run's threads."""
    with FakeGraphAPI() as graph:
        cfg = config(tmp_path, graph.base_url, in_flight)
        assert followup_in_process("migrate", "--config", str(cfg), "--db", db.url).returncode == 0
        due(db, "acct_a", "a1", "a2")
        due(db, "acct_b", "b1", "b2")
        other_run_alive(holder)
        assert holder.try_lease("acct_a")

        # another run holds acct_a all along: this run serves acct_b and says so
        first = run(cfg, db)
        assert first["left_to_other_runs"] == ["acct_a"]
        assert first["accounts"]["acct_a"]["left_to_another_run"] is True
        assert first["accounts"]["acct_a"]["sent"] == 0
        assert first["accounts"]["acct_b"]["sent"] == 2
        assert first["exit_code"] == 0
        assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_b1", "ig_b2"]

        # the other run lets go of acct_a while this one serves acct_b: served at the end
        due(db, "acct_b", "b3")

        @graph.on_request
        def _let_go(call: Call) -> None:
            if call.recipient_id == "ig_b3":
                holder.release_lease("acct_a")

        second = run(cfg, db)
        assert second["left_to_other_runs"] == []
        assert second["accounts"]["acct_a"]["sent"] == 2
        assert second["accounts"]["acct_b"]["sent"] == 1
        assert not graph.hook_errors
        recipients = [c.recipient_id for c in graph.deliveries]
        assert sorted(recipients) == ["ig_a1", "ig_a2", "ig_b1", "ig_b2", "ig_b3"]
        assert recipients.index("ig_b3") < recipients.index("ig_a1")  # (it was put aside)
        rows = db.query("SELECT run_id FROM followup_tracking WHERE account_id = 'acct_a'")
        assert {r["run_id"] for r in rows} == {second["run_id"]}


def test_lease__one_no_live_run_can_hold_does_not_stop_the_account(
    tmp_path: Path, db: LeadDB, holder: SqlStore
) -> None:
    """A lease left behind (a connection pooler kept the session that took it) with no
    other run alive: the account is served anyway, the claims keeping it to one send."""
    with FakeGraphAPI() as graph:
        cfg = config(tmp_path, graph.base_url, 4)
        assert followup_in_process("migrate", "--config", str(cfg), "--db", db.url).returncode == 0
        due(db, "acct_a", "a1")
        assert holder.try_lease("acct_a")
        data = run(cfg, db)
        assert data["left_to_other_runs"] == []
        assert data["accounts"]["acct_a"]["sent"] == 1
        assert [c.recipient_id for c in graph.deliveries] == ["ig_a1"]


def test_lease__is_given_back_when_the_run_ends(
    tmp_path: Path, db: LeadDB, holder: SqlStore
) -> None:
    """Every lease a run took is free again after it, whatever it did with the account."""
    with FakeGraphAPI() as graph:
        cfg = config(tmp_path, graph.base_url, 4)
        assert followup_in_process("migrate", "--config", str(cfg), "--db", db.url).returncode == 0
        due(db, "acct_a", "a1")
        due(db, "acct_b", "b1")
        run(cfg, db)
        assert holder.try_lease("acct_a") and holder.try_lease("acct_b")
        holder.release_lease("acct_b")
