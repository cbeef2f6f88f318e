"""A dry run plans the next accounts (``accountpool.PLAN_AHEAD``), each on a connection of its
own, while the current one renders (``Engine._in_turn``): the same summary and the same
planned messages, in the same order, as planning each account in its turn. SQLite file and
Postgres."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from followup_cli import accountpool
from followup_cli.clock import Clock
from followup_cli.config import parse_config
from followup_cli.engine import Engine, RunOptions
from followup_cli.store import open_store
from followup_cli.store.access import reading
from tests.helpers import LeadDB, base_config, lead
from tests.unit.test_engine import RecordingChannel

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
ACCOUNTS = ("acct_a", "acct_b", "acct_c")


def _config() -> str:
    accounts = [
        {"id": a, "user_id": "u_1", "ig_user_id": f"1784100000000000{k}", "token_env": "T"}
        for k, a in enumerate(ACCOUNTS)
    ]
    cfg = base_config(accounts=accounts, settings={"quiet_hours": None, "timezone": "UTC"})
    return yaml.safe_dump(cfg, sort_keys=False)


def _dry_run(
    url: str, fresh: bool = False, **options: Any
) -> tuple[dict[str, Any], list[tuple], set[str]]:
    store = open_store(url, "leads", readonly=fresh)
    threads: set[str] = set()
    plan = Engine.plan_account

    def spy(self: Engine, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name.split("_")[0])
        return plan(self, *args, **kwargs)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Engine, "plan_account", spy)
            engine = Engine(parse_config(_config()), store, RecordingChannel(), Clock(fixed=NOW))
            # a fresh store, as a read command opens it: the tool's tables in scratch
            with reading(store) if fresh else contextlib.nullcontext():
                summary = engine.run(RunOptions(now=NOW, dry_run=True, **options))
    finally:
        store.close()
    data = summary.as_dict()
    data["by_account"] = [
        (a.account_id, dict(a.waiting), a.would_send, a.optouts, a.bad_leads)
        for a in summary.accounts
    ]
    for key in ("run_id", "elapsed_seconds", "messages"):
        data.pop(key, None)
    planned = [(p.account_id, p.lead_id, p.message_id, p.text) for p in summary.planned]
    return data, planned, threads


@pytest.mark.parametrize("plan_ahead", [1, 2])
@pytest.mark.parametrize("options", [{}, {"limit": 4}])
def test_a_dry_run_planned_ahead_is_the_dry_run_planned_in_turn(
    db: LeadDB, options: dict[str, Any], plan_ahead: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = []
    for k, account in enumerate(ACCOUNTS):
        for i in range(5 + k):
            rows.append(
                lead(
                    f"{account}_{i}",
                    account_id=account,
                    last_inbound_at=NOW - 5 * H,
                    last_outbound_at=NOW - (4 if i % 3 else 1) * H,  # every third: not yet
                    last_inbound_text="STOP" if i == 4 else "how much?",
                    timezone="UTC",
                )
            )
    db.insert(*rows)
    store = open_store(db.url, "leads")
    store.migrate()
    for k, account in enumerate(ACCOUNTS):  # k + 1 enrolled leads waiting for m2, by account
        for i in range(k + 1):
            lid = f"{account}_w{i}"
            db.insert(lead(lid, account_id=account, last_inbound_at=NOW - 9 * H, timezone="UTC"))
            store.start_enrollment(lid, "s1", account, NOW - 5 * H, NOW - 5 * H)
            store.insert_followup(
                {
                    "lead_id": lid,
                    "sequence_id": "s1",
                    "message_id": "m1",
                    "account_id": account,
                    "status": "sent",
                    "claimed_at": NOW - 2 * H,
                    "sent_at": NOW - 2 * H,
                    "updated_at": NOW - 2 * H,
                    "run_id": "before",
                }
            )
    store.close()

    monkeypatch.setattr(accountpool, "PLAN_AHEAD", plan_ahead)
    ahead, ahead_planned, threads = _dry_run(db.url, **options)
    assert "plan" in threads, "the next accounts were planned on the planning threads"
    monkeypatch.setattr(Engine, "_second_stores", lambda self, n: [])
    in_turn, in_turn_planned, threads = _dry_run(db.url, **options)
    assert "plan" not in threads

    assert ahead == in_turn
    assert ahead_planned == in_turn_planned
    assert len(in_turn_planned) == (4 if options else 8)
    assert [w for _, w, *_ in in_turn["by_account"]] == [{"not_due": n} for n in (1, 2, 3)]


def test_a_dry_run_on_a_fresh_store_plans_in_turn_and_works(db: LeadDB) -> None:
    """A fresh store (no tool tables yet): the dry run creates them for its own connection
    only (TEMP on SQLite, a rolled-back transaction on Postgres), so no second connection
    plans ahead, and every account is planned without an error."""
    db.insert(
        *(
            lead(
                f"{a}_0",
                account_id=a,
                last_inbound_at=NOW - 5 * H,
                last_outbound_at=NOW - 4 * H,
                last_inbound_text="how much?",
                timezone="UTC",
            )
            for a in ACCOUNTS
        )
    )
    data, planned, threads = _dry_run(db.url, fresh=True)
    assert threads == {"MainThread"}
    assert sorted(p[0] for p in planned) == sorted(ACCOUNTS)
    assert data["would_send"] == len(ACCOUNTS)
