"""The embedded SQLite store: WAL mode, a busy timeout, ``BEGIN IMMEDIATE`` for every
transaction that may write (a read that leads to a write must not be upgraded later)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StoreConfigError, StoreError
from ..models import format_time
from .base import SqlStore

BUSY_TIMEOUT_SECONDS = 30.0


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, lead_table: str = "leads", readonly: bool = False) -> None:
        """``readonly``: change nothing on disk (no WAL switch, no new file): dry runs, explain."""
        super().__init__(lead_table)
        self.path = Path(path)
        self.url = str(self.path)
        self.readonly = readonly
        if not self.path.parent.exists():
            raise StoreConfigError(
                f"{self.path}: the folder {self.path.parent} does not exist; "
                "create it or pass another --db"
            )
        if not self.path.exists():
            # Never a new, empty file: a mistyped --db must not collect opt-outs or runs
            # while the real lead store goes on being messaged.
            raise StoreConfigError(
                f"{self.path}: no such database file; pass --db with the lead store's path "
                "(the host app's SQLite file that holds the leads table)"
            )
        try:
            self.conn = sqlite3.connect(
                str(self.path),
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            self.conn.row_factory = _dict_row
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise StoreConfigError(
                f"{self.path}: not a usable SQLite database ({exc}); pass another --db"
            ) from None
        self._depth = 0
        self._lock = threading.RLock()

    def clone(self) -> SQLiteStore:
        return SQLiteStore(self.path, self.lead_table, self.readonly)

    def close(self) -> None:
        self.conn.close()

    def _adapt(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_time(value)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, dict | list):
            return json.dumps(value)
        return value

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self._lock:
                return self.conn.execute(sql, self._params(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        try:
            with self._lock:
                return self.conn.execute(sql, self._params(params)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot start a write transaction: {exc}") from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            self._depth = 0
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: commit failed: {exc}") from exc

    def begin_erase(self) -> None:
        # Freed cells and pages are zeroed rather than left for a file reader to find.
        self._run("PRAGMA secure_delete = ON")

    def purge_old_versions(self, tables: Sequence[str]) -> str:
        """Old page versions live in the WAL until a checkpoint, and pages the host app freed
        without secure_delete stay in the file until VACUUM: checkpoint, VACUUM (which
        rewrites the whole file), checkpoint again and truncate the WAL."""
        try:
            with self._lock:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.conn.execute("VACUUM")
                busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            return (
                f"VACUUM failed ({exc}): run `sqlite3 {self.path} 'PRAGMA secure_delete=ON; "
                "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);'` when no run is active"
            )
        if busy and list(busy.values())[0]:
            return (
                "VACUUM done, but another connection kept the WAL from being truncated: run "
                f"`sqlite3 {self.path} 'PRAGMA wal_checkpoint(TRUNCATE);'` when no run is active"
            )
        return "SQLite file rewritten (secure_delete, VACUUM, WAL checkpointed and truncated)"

    def _ddl(self, statement: str) -> str:
        return statement.format(
            ts="TEXT",
            id="INTEGER PRIMARY KEY AUTOINCREMENT",
            bool="INTEGER",
            random_hex="lower(hex(randomblob(32)))",
        ).replace("DEFAULT FALSE", "DEFAULT 0")

    def _table_columns(self, table: str) -> tuple[str, ...] | None:
        rows = self._query(f"PRAGMA table_info({table})")
        return tuple(r["name"] for r in rows) if rows else None

    def _changed_outcome_sql(self, select: str, changed: str) -> str:
        # From the leads, in key order, probing marks first and the recent rows only for
        # changed leads: SQLite would sort the 1.5 M-row union into a temp b-tree instead
        # (1.9 s against 9.2 s at a million rows, bench/RESULTS-selection.md).
        return f"""
SELECT l.id AS lead_id, {select}
FROM {self.lead_table} l
LEFT JOIN followup_outcome_marks m ON m.lead_id = l.id
WHERE {changed}
  AND (EXISTS (SELECT 1 FROM followup_tracking t WHERE t.lead_id = l.id AND t.sent_at >= :since)
       OR EXISTS (SELECT 1 FROM followup_enrollments e
                  WHERE e.lead_id = l.id AND e.anchor_at >= :since))
ORDER BY l.id"""

    def _candidate_sql(
        self,
        select: str,
        col: dict[str, str],
        keyword: str = "1 = 0",
        paged: bool = True,
        due: bool = False,
    ) -> str:
        inbound = f"julianday({col['last_inbound_at']})"
        enrolled_due = new_due = ""
        if due:
            # an active enrollment whose stored next-due time is ahead, and nothing terminal
            # happened to the lead since (what would end it now), cannot be acted on
            quiet = (
                f"{col['score']} BETWEEN :min_score AND :max_score "
                f"AND {col['converted_at']} IS NULL "
                f"AND ({col['status']} IS NULL OR lower({col['status']}) <> 'converted') "
                f"AND ({col['last_inbound_at']} IS NULL OR {inbound} <= julianday(e.anchor_at)) "
                "AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = l.id)"
            )
            enrolled_due = f"""
      AND (e.next_due_at IS NULL OR e.next_due_config IS NOT :config
           OR e.next_due_at <= :now OR NOT COALESCE({quiet}, 0))"""
            # a lead in no sequence: not before the shortest delay after our last message
            new_due = """
      AND (julianday(l.last_outbound_at) <= julianday(:new_due)
           OR julianday(l.last_outbound_at) IS NULL)
      AND NOT EXISTS (
        SELECT 1 FROM followup_enrollments e WHERE e.lead_id = l.id AND e.ended_at IS NULL)"""
        return f"""
SELECT {select} FROM {self.lead_table} l
WHERE l.account_id = :account_id{" AND l.id > :after_id" if paged else ""}
  AND (
    EXISTS (SELECT 1 FROM followup_enrollments e WHERE e.lead_id = l.id AND e.ended_at IS NULL{
            enrolled_due
        })
    OR {keyword}
    OR (
      ({col["score"]} BETWEEN :min_score AND :max_score OR typeof({col["score"]}) = 'text')
      AND {col["converted_at"]} IS NULL
      AND ({col["status"]} IS NULL OR lower({col["status"]}) <> 'converted')
      AND l.last_outbound_at IS NOT NULL
      AND COALESCE({inbound} > julianday(l.last_outbound_at), 0) = 0{new_due}
      AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = l.id)
      AND NOT EXISTS (
        SELECT 1 FROM followup_enrollments e
        WHERE e.lead_id = l.id AND e.ended_at IS NOT NULL
          AND ({col["last_inbound_at"]} IS NULL OR julianday(e.anchor_at) >= {inbound}))
    )
  )
ORDER BY l.id
LIMIT :page"""


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=False)}
