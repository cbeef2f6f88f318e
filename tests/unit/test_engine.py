"""The engine's promises, fast: ``Engine.run`` over the in-memory store (SQLite in memory,
the real store's SQL) and an in-process channel that records what it is asked to send and
answers what the test tells it. Time is an input (``RunOptions.now`` and a fixed clock).

Real sockets, real files and Postgres: tests/integration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from followup_cli.channels.base import OutgoingMessage, SendResult
from followup_cli.clock import Clock
from followup_cli.config import parse_config
from followup_cli.engine import Engine, RunOptions, RunSummary
from followup_cli.store import open_store
from followup_cli.store.memory import MemoryStore
from tests.helpers import base_config, lead

MADRID = ZoneInfo("Europe/Madrid")
T = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00: m1 (3 h of silence) is due
H = timedelta(hours=1)

Answer = Callable[[OutgoingMessage], SendResult]


def sent(message: OutgoingMessage) -> SendResult:
    return SendResult("sent", message_id=f"mid-{message.lead_id}-{message.message_id}")


@dataclass
class RecordingChannel:
    """A channel in the process: keeps every message and answers with ``answer``."""

    answer: Answer = sent
    name: str = "recording"
    messages: list[OutgoingMessage] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> SendResult:
        self.messages.append(message)
        return self.answer(message)

    def close(self) -> None:
        pass

    @property
    def recipients(self) -> list[str]:
        return [m.recipient_id for m in self.messages]


def due(lead_id: str, at: datetime = T, **over: Any) -> dict[str, Any]:
    """A lead m1 is due for at ``at``: it wrote 5 h before, we answered 4 h before."""
    return lead(lead_id, last_inbound_at=at - 5 * H, last_outbound_at=at - 4 * H, **over)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = open_store("memory:")
    assert isinstance(s, MemoryStore)
    try:
        yield s
    finally:
        s.close()


def run(
    store: MemoryStore,
    channel: RecordingChannel,
    at: datetime = T,
    cfg: dict[str, Any] | None = None,
    **options: Any,
) -> RunSummary:
    loaded = parse_config(yaml.safe_dump(cfg or base_config(), sort_keys=False))
    engine = Engine(loaded, store, channel, Clock(fixed=at))
    return engine.run(RunOptions(now=at, budget_seconds=60, **options))


def rows(store: MemoryStore) -> list[tuple[str, str, str]]:
    """The tracking rows as (lead, message, status), in lead order."""
    return sorted((r["lead_id"], r["message_id"], r["status"]) for r in store.followups())


def with_hourly_cap(per_hour: int) -> dict[str, Any]:
    return base_config(
        channel={"type": "console", "window_hours": 24, "messages_per_hour": per_hour}
    )


# ------------------------------------------------------------------ sending


def test_run__a_due_lead_gets_one_message_and_one_tracking_row(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])
    channel = RecordingChannel()

    summary = run(store, channel)

    assert [(m.recipient_id, m.sequence_id, m.message_id) for m in channel.messages] == [
        ("ig_l1", "s1", "m1")
    ]
    assert channel.messages[0].text == "Hi Ana, step one"
    assert rows(store) == [("l1", "m1", "sent")]
    assert store.followups()[0]["external_id"] == "mid-l1-m1"
    assert summary.as_dict()["sent"] == 1
    assert summary.exit_code == 0


def test_run__a_lead_not_due_yet_gets_nothing(store: MemoryStore) -> None:
    store.insert_leads([due("l1", at=T + 2 * H)])  # we answered 2 h ago; m1 waits 3 h
    channel = RecordingChannel()

    run(store, channel)

    assert channel.messages == []
    assert rows(store) == []


def test_run__the_opted_out_lead_gets_nothing(store: MemoryStore) -> None:
    store.insert_leads([due("l1"), due("l2")])
    store.add_optout("l2", "asked to stop", "cli", "tester", T - H)
    channel = RecordingChannel()

    run(store, channel)

    assert channel.recipients == ["ig_l1"]
    assert rows(store) == [("l1", "m1", "sent")]


def test_run__a_stop_keyword_opts_the_lead_out_and_sends_nothing(store: MemoryStore) -> None:
    store.insert_leads([due("l1", last_inbound_text="STOP")])
    channel = RecordingChannel()

    summary = run(store, channel)

    assert channel.messages == []
    assert rows(store) == []
    assert store.is_opted_out("l1")
    assert summary.as_dict()["optouts"] == 1


def test_run__a_second_run_sends_nothing_new(store: MemoryStore) -> None:
    store.insert_leads([due("l1"), due("l2")])
    channel = RecordingChannel()
    run(store, channel)

    again = RecordingChannel()
    summary = run(store, again, at=T + timedelta(minutes=30))

    assert again.messages == []
    assert summary.as_dict()["sent"] == 0
    assert rows(store) == [("l1", "m1", "sent"), ("l2", "m1", "sent")]


def test_run__the_next_step_goes_out_when_its_delay_is_over(store: MemoryStore) -> None:
    cfg = base_config()
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 10  # after the silence began: T + 6 h
    store.insert_leads([due("l1")])
    run(store, RecordingChannel(), cfg=cfg)

    early, later = RecordingChannel(), RecordingChannel()
    run(store, early, at=T + 6 * H - timedelta(minutes=1), cfg=cfg)
    run(store, later, at=T + 6 * H, cfg=cfg)

    assert early.messages == []
    assert [m.message_id for m in later.messages] == ["m2"]
    assert rows(store) == [("l1", "m1", "sent"), ("l1", "m2", "sent")]


# ------------------------------------------------------------------- limits


def test_run__limit_sends_at_most_n(store: MemoryStore) -> None:
    store.insert_leads([due(f"l{i}") for i in range(5)])
    channel = RecordingChannel()

    summary = run(store, channel, limit=2)

    assert len(channel.messages) == 2
    assert [s for *_, s in rows(store)] == ["sent", "sent"]
    assert summary.as_dict()["sent"] == 2


def test_run__the_hourly_cap_holds_and_the_rest_is_deferred(store: MemoryStore) -> None:
    store.insert_leads([due(f"l{i}") for i in range(5)])
    channel = RecordingChannel()

    summary = run(store, channel, cfg=with_hourly_cap(3))

    assert len(channel.messages) == 3
    assert len(rows(store)) == 3
    assert sum(summary.as_dict()["deferred"].values()) == 2


def test_run__the_hourly_cap_counts_the_previous_runs_sends(store: MemoryStore) -> None:
    store.insert_leads([due(f"l{i}") for i in range(3)])
    run(store, RecordingChannel(), cfg=with_hourly_cap(2))
    store.insert_leads([due(f"n{i}", at=T + 30 * timedelta(minutes=1)) for i in range(2)])

    channel = RecordingChannel()
    run(store, channel, at=T + timedelta(minutes=30), cfg=with_hourly_cap(2))

    assert channel.messages == []  # the two of the first run fill the hour
    assert len(rows(store)) == 2


def test_run__several_accounts_on_several_workers_each_get_their_leads(
    store: MemoryStore,
) -> None:
    accounts = [
        {"id": f"acct_{k}", "user_id": f"u_{k}", "ig_user_id": f"1784100000000000{k}"}
        for k in range(3)
    ]
    cfg = base_config(accounts=accounts, settings={"max_in_flight": 3})
    store.insert_leads(
        [
            due(f"a{k}_l{i}", account_id=f"acct_{k}", user_id=f"u_{k}")
            for k in range(3)
            for i in range(4)
        ]
    )
    channel = RecordingChannel()

    summary = run(store, channel, cfg=cfg)

    assert sorted(channel.recipients) == sorted(f"ig_a{k}_l{i}" for k in range(3) for i in range(4))
    assert {s for *_, s in rows(store)} == {"sent"} and len(rows(store)) == 12
    assert {a: v["sent"] for a, v in summary.as_dict()["accounts"].items()} == {
        f"acct_{k}": 4 for k in range(3)
    }


# ------------------------------------------------------------------ waiting


def test_run__a_lead_in_quiet_hours_waits(store: MemoryStore) -> None:
    night = datetime(2026, 3, 2, 22, 0, tzinfo=MADRID)  # quiet from 21:00 to 09:00
    store.insert_leads([due("l1", at=night)])
    channel = RecordingChannel()

    summary = run(store, channel, at=night)

    assert channel.messages == []
    assert rows(store) == []
    assert sum(summary.as_dict()["waiting"].values()) == 1

    morning = RecordingChannel()
    run(store, morning, at=night + 11 * H)  # 09:00 the next day
    assert morning.recipients == ["ig_l1"]


# ------------------------------------------------------------------ dry run


def test_dry_run__plans_the_send_and_writes_nothing(store: MemoryStore) -> None:
    store.insert_leads([due("l1"), due("l2", last_inbound_text="STOP")])
    channel = RecordingChannel()
    before = store.changes

    summary = run(store, channel, dry_run=True)

    assert channel.messages == []
    assert store.changes == before
    assert rows(store) == [] and store.optouts() == [] and store.audit_log() == []
    assert [(p.lead_id, p.message_id) for p in summary.planned] == [("l1", "m1")]
    assert summary.as_dict()["would_send"] == 1


@pytest.mark.parametrize("bound", [{"limit": 3}, {"cfg": with_hourly_cap(3)}])
def test_dry_run__plans_what_the_live_run_then_sends(
    store: MemoryStore, bound: dict[str, Any]
) -> None:
    store.insert_leads([due(f"l{i}") for i in range(5)])
    plan = run(store, RecordingChannel(), dry_run=True, **bound)

    channel = RecordingChannel()
    run(store, channel, **bound)

    assert len(plan.planned) == 3
    assert [p.recipient_id for p in plan.planned] == channel.recipients


# ----------------------------------------------------------------- outcomes


def answering(outcome: str, **fields: Any) -> Answer:
    return lambda message: SendResult(outcome, **fields)  # type: ignore[arg-type]


def test_outcome__sent_leaves_a_sent_row_with_the_platform_id(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])
    run(store, RecordingChannel(answer=answering("sent", message_id="m-42")))

    (row,) = store.followups()
    assert (row["status"], row["external_id"], row["error_code"]) == ("sent", "m-42", None)
    assert row["sent_at"] is not None


def test_outcome__failed_leaves_a_failed_row_and_is_never_retried(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])
    failed = answering("failed", error_code=551, error_message="user unavailable")
    summary = run(store, RecordingChannel(answer=failed))

    (row,) = store.followups()
    assert (row["status"], row["error_code"]) == ("failed", 551)
    assert summary.exit_code == 3

    again = RecordingChannel()
    run(store, again, at=T + timedelta(minutes=30))
    assert again.messages == []


def test_outcome__unknown_leaves_an_unknown_row_and_is_never_resent(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])
    summary = run(store, RecordingChannel(answer=answering("unknown", error_message="timeout")))

    assert rows(store) == [("l1", "m1", "unknown")]
    assert store.count_open() == 1
    assert summary.as_dict()["unknown"] == 1 and summary.exit_code == 3

    again = RecordingChannel()
    run(store, again, at=T + 2 * H)
    assert again.messages == []


def test_outcome__deferred_leaves_no_row_and_the_next_run_sends(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])
    summary = run(store, RecordingChannel(answer=answering("deferred", retry_after=60)))

    assert rows(store) == []
    assert sum(summary.as_dict()["deferred"].values()) == 1
    assert summary.exit_code == 0

    again = RecordingChannel()
    run(store, again, at=T + H)
    assert again.recipients == ["ig_l1"]
    assert rows(store) == [("l1", "m1", "sent")]


def test_outcome__account_fatal_stops_the_account_and_leaves_no_row(store: MemoryStore) -> None:
    store.insert_leads([due("l1"), due("l2")])
    channel = RecordingChannel(answer=answering("account_fatal", error_code=190))

    summary = run(store, channel)

    assert len(channel.messages) == 1  # the account stops at its first refusal
    assert rows(store) == []
    assert summary.stopped_accounts.keys() == {"acct_a"}


def test_outcome__an_opt_out_that_lands_during_the_send_cancels_it(store: MemoryStore) -> None:
    store.insert_leads([due("l1")])

    def opted_out_meanwhile(message: OutgoingMessage) -> SendResult:
        store.add_optout("l1", "replied STOP", "webhook", "tester", T)
        return sent(message) if message.wanted() else SendResult("cancelled", attempts=0)

    summary = run(store, RecordingChannel(answer=opted_out_meanwhile))

    assert rows(store) == []
    assert summary.as_dict()["skipped"] == {"opted_out_during_send": 1}


def test_outcome__every_send_is_audited_once_and_claims_have_no_row(store: MemoryStore) -> None:
    store.insert_leads([due("l1"), due("l2")])
    run(store, RecordingChannel())

    actions = [(a["lead_id"], a["action"]) for a in store.audit_log() if a["lead_id"]]
    for lead_id in ("l1", "l2"):
        mine = [act for lid, act in actions if lid == lead_id]
        assert mine.count("claim") == 0 and mine.count("send") == 1, (lead_id, mine)


def test_serving_connections__opened_side_by_side_and_none_left_open_when_one_fails() -> None:
    """The serving threads' connections are opened at once (``AccountPool._clones``); when
    one cannot be opened the others are closed and the error is the run's."""
    import threading

    from followup_cli.accountpool import AccountPool

    class Conn:
        def __init__(self, fail_at: int | None) -> None:
            self.lock = threading.Lock()
            self.tries, self.fail_at, self.opened = 0, fail_at, []
            self.cipher, self.threads = "the store's", set()

        def clone(self) -> Conn:
            with self.lock:
                self.tries += 1
                self.threads.add(threading.current_thread().name)
                if self.tries == self.fail_at:
                    raise RuntimeError("too many clients already")
            other = Conn(None)
            other.closed = False
            self.opened.append(other)
            return other

        def close(self) -> None:
            self.closed = True

    pool = AccountPool()
    pool.store = Conn(None)  # type: ignore[assignment]
    stores = pool._clones(8)
    assert len(stores) == 8 and all(s.cipher == "the store's" for s in stores)
    assert all(t.startswith("connect") for t in pool.store.threads)  # not on this thread
    pool.store = failing = Conn(3)  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="too many clients"):
        pool._clones(8)
    assert len(failing.opened) == 7 and all(s.closed for s in failing.opened)
