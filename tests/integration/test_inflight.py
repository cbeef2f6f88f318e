"""Requests in flight are bounded for the whole run, not per account (issue 11, part 3).

A run with more accounts than ``settings.max_in_flight`` against the fake Graph API: the
engine's own channel calls are counted as they start and end (globally and per account),
and the fake holds the first ``max_in_flight`` requests at a barrier until all of them have
arrived. So the test fails if the run never has ``max_in_flight`` requests in flight at once
(the barrier breaks), if it ever has more, if one account ever has two at once, or if an
account's sends leave its own order. On both stores.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.config import load_config
from followup_cli.configcheck import check_config
from followup_cli.engine import Engine, RunOptions
from followup_cli.store import open_store
from tests.fakes.graph_api import Call, FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
T = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00: m1 due for every lead
ACCOUNTS = 6
PER_ACCOUNT = 4
BOUND = 4  # settings.max_in_flight, fewer than the accounts


def accounts() -> list[dict[str, Any]]:
    return [
        {
            "id": f"acct_{k}",
            "user_id": f"u_{k}",
            "ig_user_id": f"1784100000000{k:04d}",
            "token_env": f"FOLLOWUP_TOKEN_{k}",
        }
        for k in range(ACCOUNTS)
    ]


def leads() -> list[dict[str, Any]]:
    """PER_ACCOUNT due leads per account; within an account, windows close l0 first."""
    out = []
    for k in range(ACCOUNTS):
        for i in range(PER_ACCOUNT):
            out.append(
                lead(
                    f"a{k}_l{i}",
                    account_id=f"acct_{k}",
                    user_id=f"u_{k}",
                    last_inbound_at=T - timedelta(hours=5, minutes=PER_ACCOUNT - i),
                    last_outbound_at=T - timedelta(hours=4),
                )
            )
    return out


class Counting:
    """Wraps a channel: counts the sends in progress, in all and per account."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0
        self.per: Counter = Counter()
        self.per_max: Counter = Counter()
        self.order: dict[str, list[str]] = defaultdict(list)

    def send(self, msg: Any) -> Any:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)
            self.per[msg.account_id] += 1
            self.per_max[msg.account_id] = max(
                self.per_max[msg.account_id], self.per[msg.account_id]
            )
            self.order[msg.account_id].append(msg.lead_id)
        try:
            return self.channel.send(msg)
        finally:
            with self.lock:
                self.now -= 1
                self.per[msg.account_id] -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)


def test_requests_in_flight_are_bounded_across_accounts_and_one_at_a_time_per_account(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(ACCOUNTS):
        monkeypatch.setenv(f"FOLLOWUP_TOKEN_{k}", f"tok-{k}")
    db.insert(*leads())
    with FakeGraphAPI() as fake:
        barrier = threading.Barrier(BOUND, timeout=20)
        seen = iter(range(1 << 30))

        @fake.on_request
        def _hold(call: Call) -> None:
            # The first BOUND requests wait for each other: they are in flight together.
            if next(seen) < BOUND:
                barrier.wait()

        fake.delay(0.01, times=None)  # the rest keeps the accounts interleaved
        cfg = base_config(
            channel={
                "type": "instagram",
                "api_base": fake.base_url,
                "window_hours": 24,
                "max_retries": 0,
                "messages_per_hour": 1000,
            },
            accounts=accounts(),
        )
        cfg["settings"]["max_in_flight"] = BOUND
        loaded = load_config(write_config(tmp_path / "sequences.yaml", cfg))
        store = open_store(db.url, "leads")
        channel = Counting(make_channel(loaded.config, sleep=lambda s: None))
        try:
            summary = Engine(loaded, store, channel).run(RunOptions(now=T))  # type: ignore[arg-type]
        finally:
            channel.close()
            store.close()
        deliveries = list(fake.deliveries)

    assert not fake.hook_errors, f"never {BOUND} requests in flight at once: {fake.hook_errors}"
    assert summary.total("sent") == ACCOUNTS * PER_ACCOUNT, summary.as_dict()
    assert channel.max == BOUND  # reached, never exceeded
    assert set(channel.per_max.values()) == {1}  # never two sends of one account at once
    # every lead once, and each account's sends in its own order (windows closing first)
    assert Counter(c.recipient_id for c in deliveries) == Counter(
        f"ig_a{k}_l{i}" for k in range(ACCOUNTS) for i in range(PER_ACCOUNT)
    )
    for k in range(ACCOUNTS):
        assert channel.order[f"acct_{k}"] == [f"a{k}_l{i}" for i in range(PER_ACCOUNT)]


def test_old_account_workers_still_loads_as_the_in_flight_bound(tmp_path: Path) -> None:
    cfg = base_config()
    cfg["settings"]["account_workers"] = 3
    loaded = load_config(write_config(tmp_path / "old.yaml", cfg))
    assert loaded.config.settings.max_in_flight == 3
    warnings = [p for p in check_config(loaded) if p.where == "settings.account_workers"]
    assert [p.level for p in warnings] == ["warning"] and "rename" in warnings[0].what
    cfg["settings"]["max_in_flight"] = 12
    loaded = load_config(write_config(tmp_path / "both.yaml", cfg))
    assert loaded.config.settings.max_in_flight == 12
    assert (
        load_config(
            write_config(tmp_path / "new.yaml", base_config())
        ).config.settings.max_in_flight
        == 32
    )
