"""A send's outcome is written with the account's next transaction (the next message's
attempt mark, or a batch claim: issue 11 part 2), so these hold on both stores:

* whatever ends an account's turn in a run (its last lead, an account-wide error that stops
  it, its hourly cap), no claim is left ``pending`` once the run is over (claims of a batch
  never attempted are released), and every message handed to the API has exactly one
  ``send`` audit row (the event; claims have none);
* a transaction that fails rolls back the outcome it carried, and the run still writes
  that outcome on its own before the error ends the run: a message the API accepted is
  ``sent``, not left ``pending`` (which the next run would have to call ``unknown``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.channels import make_channel
from followup_cli.config import load_config
from followup_cli.engine import Engine, RunOptions, RunSummary
from followup_cli.errors import StoreError
from followup_cli.store import open_store
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
T = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)  # Monday 10:00: m1 due for every lead


def ig(k: int) -> str:
    return f"1784100000000{k:04d}"


def setup(
    tmp_path: Path, db: LeadDB, fake: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch, n: int
) -> Any:
    accounts = []
    for k in range(n):
        monkeypatch.setenv(f"FOLLOWUP_TOKEN_{k}", f"tok-{k}")
        accounts.append(
            {
                "id": f"acct_{k}",
                "user_id": f"u_{k}",
                "ig_user_id": ig(k),
                "token_env": f"FOLLOWUP_TOKEN_{k}",
            }
        )
    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": fake.base_url,
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": 1000,
        },
        accounts=accounts,
    )
    return cfg


def due(k: int, i: int) -> dict[str, Any]:
    return lead(
        f"a{k}_l{i}",
        account_id=f"acct_{k}",
        user_id=f"u_{k}",
        last_inbound_at=T - timedelta(hours=5, minutes=10 - i),
        last_outbound_at=T - timedelta(hours=4),
    )


def run(tmp_path: Path, db: LeadDB, cfg: dict[str, Any], wrap: Any = None) -> RunSummary:
    loaded = load_config(write_config(tmp_path / "sequences.yaml", cfg))
    store = open_store(db.url, "leads")
    if wrap is not None:
        wrap(store)
    channel = make_channel(loaded.config, sleep=lambda s: None)
    try:
        return Engine(loaded, store, channel).run(RunOptions(now=T))
    finally:
        channel.close()
        store.close()


def test_no_claim_is_left_pending_whatever_ends_an_account(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(*(due(k, i) for k in range(3) for i in range(3)))
    with FakeGraphAPI() as fake:
        cfg = setup(tmp_path, db, fake, monkeypatch, 3)
        fake.fail(190, ig_user_id=ig(1), times=None)  # acct_1: its token is refused: stops
        cfg["accounts"][2]["settings"] = {"messages_per_hour": 2}  # acct_2: 2 of its 3
        summary = run(tmp_path, db, cfg)
        calls = len(fake.calls)

    assert summary.as_dict()["accounts"]["acct_0"]["sent"] == 3
    assert summary.stopped_accounts.keys() == {"acct_1"}
    assert summary.as_dict()["accounts"]["acct_2"]["sent"] == 2
    rows = {r["lead_id"]: r["status"] for r in db.tracking()}
    assert rows == {
        **{f"a0_l{i}": "sent" for i in range(3)},  # acct_1's one attempt: released
        "a2_l0": "sent",
        "a2_l1": "sent",
    }
    audit = db.query(
        "SELECT id, action, lead_id FROM followup_audit WHERE action IN ('claim', 'send') "
        "ORDER BY id"
    )
    assert sum(a["action"] == "send" for a in audit) == calls == 6
    for lead_id in {a["lead_id"] for a in audit}:
        mine = [a["action"] for a in audit if a["lead_id"] == lead_id]
        assert mine == ["send"], (lead_id, mine)


def test_a_failing_claim_still_writes_the_outcome_it_carried(
    tmp_path: Path, db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.insert(due(0, 0), due(0, 1))
    with FakeGraphAPI() as fake:
        cfg = setup(tmp_path, db, fake, monkeypatch, 1)

        def break_the_second_attempt(store: Any) -> None:
            real, seen = store.mark_attempted_later, []

            def mark_attempted_later(*args: Any) -> Any:
                seen.append(args)
                if len(seen) == 2:  # inside a0_l1's attempt, after a0_l0's outcome rows
                    raise StoreError("the database went away")
                return real(*args)

            store.mark_attempted_later = mark_attempted_later

        with pytest.raises(StoreError, match="went away"):
            run(tmp_path, db, cfg, wrap=break_the_second_attempt)
        delivered = [c.recipient_id for c in fake.deliveries]

    assert delivered == ["ig_a0_l0"]
    assert {r["lead_id"]: r["status"] for r in db.tracking()} == {"a0_l0": "sent"}
    sends = db.query("SELECT lead_id FROM followup_audit WHERE action = 'send'")
    assert [s["lead_id"] for s in sends] == ["a0_l0"]
