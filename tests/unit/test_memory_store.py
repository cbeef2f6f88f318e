"""The in-memory store is the SQLite store on a private database in memory: migrated, with
an empty lead table, one database shared by its clones, gone when the last one closes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from followup_cli.store import open_store, sqlite_path
from followup_cli.store.memory import MemoryStore
from followup_cli.store.migrations import MIGRATIONS
from tests.helpers import lead


@pytest.mark.parametrize("url", ["memory:", "sqlite://:memory:", " memory: "])
def test_open_store__memory_urls_open_a_migrated_store_with_an_empty_lead_table(url: str) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, MemoryStore)
        assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
        assert store.query("SELECT COUNT(*) AS n FROM leads") == [{"n": 0}]
        assert sqlite_path(url) is None  # no file, no run lock beside one
    finally:
        store.close()


def test_each_memory_store_is_a_database_of_its_own() -> None:
    a, b = open_store("memory:"), open_store("memory:")
    a.insert_leads([lead("l1")])
    assert [r["id"] for r in a.query("SELECT id FROM leads")] == ["l1"]
    assert b.query("SELECT id FROM leads") == []
    a.close()
    b.close()


def test_insert_leads__rows_read_back_as_the_run_reads_them() -> None:
    store = open_store("memory:")
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store.insert_leads([lead("l1", last_outbound_at=at, attributes={"city": "Madrid"})])
    row = store.lead_row("l1")
    assert row is not None
    assert row["last_outbound_at"] == "2026-03-02T09:00:00+00:00"
    assert row["attributes"] == '{"city": "Madrid"}'
    assert row["timezone"] == "Europe/Madrid" and row["converted_at"] is None
    store.close()


def test_clones_share_the_database_and_threads_take_turns() -> None:
    store = open_store("memory:")
    clones = [store.clone() for _ in range(4)]

    def write(s: MemoryStore, k: int) -> None:
        for i in range(50):
            with s.transaction():
                s.execute("INSERT INTO leads (id) VALUES (:id)", {"id": f"{k}-{i}"})
                s.query("SELECT COUNT(*) AS n FROM leads")

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate(clones)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clones:
        c.close()  # the database outlives the clones ...
    assert store.query("SELECT COUNT(*) AS n FROM leads") == [{"n": 200}]
    store.close()  # ... and goes with the last of them
    with pytest.raises(Exception, match="closed"):
        store.conn.execute("SELECT 1")


def test_a_transaction_that_fails_is_rolled_back_on_every_clone() -> None:
    store = open_store("memory:")
    clone = store.clone()
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_leads([lead("l1")])  # nested: joins the open transaction
        raise RuntimeError("boom")
    assert clone.query("SELECT id FROM leads") == []
    clone.close()
    store.close()
