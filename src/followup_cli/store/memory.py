"""The in-memory store: SQLite's ``:memory:`` database behind ``SQLiteStore``, so that the
engine has fast unit tests that run the real store's SQL, migrations and transactions
(``open_store("memory:")``).

One connection per store, shared by its clones (the engine clones the store per worker
thread) with one lock and one transaction depth: a transaction holds the connection, as
it does when threads share one ``SQLiteStore``. Not SQLite's shared cache
(``file:…?mode=memory&cache=shared``): there a second connection that meets a writer's
lock fails at once with SQLITE_LOCKED (``database table is locked``), the busy timeout
never waits, where a file store would wait its turn.

The database lives as long as the store or one of its clones is open. It starts with an
empty lead table of the lead-store columns (``leadcolumns.COLUMNS``); ``insert_leads``
adds host rows as a host app would write them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..leadcolumns import COLUMN_NAMES
from .queries import columns, placeholders
from .sqlite import SQLiteStore, _dict_row, _keyword

MEMORY_URLS = ("memory:", "sqlite://:memory:")


def is_memory_url(db: str) -> bool:
    return db.strip() in MEMORY_URLS


class _Shared:
    """What a memory store and its clones share: the connection, its lock, the depth of
    the transaction open on it, and how many of them are still open."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.RLock()
        self.depth = 0
        self.users = 1


class MemoryStore(SQLiteStore):
    """A private SQLite database in memory: the SQLite store in every query it runs."""

    def __init__(self, lead_table: str = "leads", _shared: _Shared | None = None) -> None:
        # Not SQLiteStore.__init__: there is no file to check or open.
        super(SQLiteStore, self).__init__(lead_table)
        self.path = Path(":memory:")
        self.url = "memory:"
        self.readonly = False
        self._temp_tables = False
        fresh = _shared is None
        self._shared = _shared or _Shared(self._connect())
        self._lock = self._shared.lock
        self.conn = self._shared.conn
        if fresh:
            self._create_lead_table()

    @property  # type: ignore[override]
    def _depth(self) -> int:
        return self._shared.depth

    @_depth.setter
    def _depth(self, value: int) -> None:
        self._shared.depth = value

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.row_factory = _dict_row
        conn.create_function("followup_keyword", 2, _keyword, deterministic=True)
        return conn

    def _create_lead_table(self) -> None:
        from ..leadstore import lead_table_ddl

        with self.transaction():
            for stmt in lead_table_ddl(self.dialect, self.lead_table):
                self.execute(stmt)

    def checker(self) -> None:
        return None  # one connection, in memory

    def clone(self) -> MemoryStore:
        with self._lock:
            self._shared.users += 1
        return MemoryStore(self.lead_table, self._shared)

    def close(self) -> None:
        with self._lock:
            self._shared.users -= 1
            if self._shared.users == 0:
                self.conn.close()

    def describe(self) -> str:
        return "memory:"

    def _lease_scope(self) -> str:
        return f"memory:{id(self._shared)}"

    @property
    def changes(self) -> int:
        """Rows inserted, updated or deleted on this database so far (all clones)."""
        with self._lock:
            return self.conn.total_changes

    def insert_leads(self, rows: Iterable[dict[str, Any]]) -> int:
        """Add host lead rows (missing columns NULL) as a host app writes them: times as
        ISO text, ``attributes`` as JSON text. Returns how many."""
        values = [{c: _host_value(c, r.get(c)) for c in COLUMN_NAMES} for r in rows]
        sql = self.q(
            "leads_insert",
            leads=self.leads,
            columns=columns(COLUMN_NAMES),
            values=placeholders(COLUMN_NAMES),
        )
        with self.transaction():
            for v in values:
                self.execute(sql, v)
        self._lead_columns = None
        return len(values)


def _host_value(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if column == "attributes" and value is not None and not isinstance(value, str):
        return json.dumps(value)
    return value
