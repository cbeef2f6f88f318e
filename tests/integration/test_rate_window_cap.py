"""The sliding rate window counted up to the limit (issue 11): a claim's check costs the
same whether the account sent 10 or 10,000 messages in the hour. SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from followup_cli.store import open_store
from tests.helpers import LeadDB

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_the_window_count_stops_at_the_cap_and_is_exact_below_it(db: LeadDB) -> None:
    store = open_store(db.url, "leads")
    try:
        for i in range(7):
            store.insert_followup(
                {
                    "lead_id": f"L{i}",
                    "sequence_id": "s1",
                    "message_id": "m1",
                    "account_id": "acct_a",
                    "status": "sent" if i % 2 else "pending",
                    "claimed_at": NOW - timedelta(minutes=10 + i),
                    "updated_at": NOW,
                    "run_id": "r",
                }
            )
        # one outside the hour, one of another account, one released (not counted)
        for lead_id, acct, at, status in (
            ("old", "acct_a", NOW - timedelta(hours=2), "sent"),
            ("other", "acct_b", NOW, "sent"),
            ("gone", "acct_a", NOW, "failed"),
        ):
            store.insert_followup(
                {
                    "lead_id": lead_id,
                    "sequence_id": "s1",
                    "message_id": "m1",
                    "account_id": acct,
                    "status": status,
                    "claimed_at": at,
                    "updated_at": at,
                    "run_id": "r",
                }
            )
        since = NOW - timedelta(hours=1)
        assert store.recent_sends("acct_a", since) == 7
        assert store.recent_sends("acct_a", since, cap=3) == 3
        assert store.recent_sends("acct_a", since, cap=7) == 7
        assert store.recent_sends("acct_a", since, cap=100) == 7
        assert store.recent_sends("acct_a", since, cap=0) == 0
    finally:
        store.close()
