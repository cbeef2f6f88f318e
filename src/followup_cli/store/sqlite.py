"""The embedded SQLite store: WAL mode, a busy timeout, ``BEGIN IMMEDIATE`` for every
transaction that may write (a read that leads to a write must not be upgraded later)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import StoreConfigError, StoreCorrupt, StoreError
from ..models import format_time
from .base import SqlStore
from .queries import Sql, ident, placeholders
from .sqlite_candidates import SQLiteCandidates, _keyword

BUSY_TIMEOUT_SECONDS = 30.0
# One lock per database file for the write transactions of this process's connections to
# it: a run's threads queue for the file's write lock here, handed over at once, instead
# of in SQLite's busy handler, which sleeps 1, 2, 5 ... ms between tries. Other processes
# still meet at ``BEGIN IMMEDIATE``.
_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()
# The files a reader of a WAL database creates beside it when there are none (no connection
# is open): this process's read-only stores whose file had none when first opened, so that
# closing them leaves none (``SQLiteStore._tidy_journal``).
_QUIET_JOURNAL: dict[str, bool] = {}
_JOURNAL_SUFFIXES = ("-wal", "-shm")


def _writer_lock(path: Path) -> threading.RLock:
    key = os.path.realpath(path)
    with _WRITERS_LOCK:
        lock = _WRITERS.get(key)
        if lock is None:
            lock = _WRITERS[key] = threading.RLock()
        return lock


class SQLiteStore(SQLiteCandidates, SqlStore):
    dialect = "sqlite"
    _writer: threading.RLock | None = None  # (a memory store has its one connection)

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
        if self.path.is_file() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database and write one into it.
            raise StoreConfigError(
                f"{self.path}: an empty file (0 bytes), not a lead store; pass --db with the "
                "host app's SQLite file that holds the leads table"
            )
        if not os.access(self.path, os.R_OK):
            raise StoreConfigError(
                f"{self.path}: the database file is not readable by {_user()}; give read access"
            )
        if not readonly:
            self._check_writable()
        self._temp_tables = False  # a dry run on a read-only fresh store: tables in TEMP
        if readonly:
            key = os.path.realpath(self.path)
            if key not in _QUIET_JOURNAL:
                _QUIET_JOURNAL[key] = not any(
                    os.path.exists(f"{self.path}{s}") for s in _JOURNAL_SUFFIXES
                )
        self.conn = self._connect()
        self._depth = 0
        self._lock = threading.RLock()
        self._writer = None if readonly else _writer_lock(self.path)

    def _check_writable(self) -> None:
        """A run writes the file and, beside it, the journal (``-wal``, ``-shm``) and the
        run lock: say which of them it cannot, before SQLite calls it a bad database."""
        who = _user()
        folder = self.path.resolve().parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreConfigError(
                f"{folder}: the folder of {self.path.name} is not writable by {who}; SQLite "
                f"keeps its journal and the run lock beside the database: give {who} write "
                "access to the folder (a --dry-run needs none)"
            )
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise StoreConfigError(
                f"{self.path}: the database file is not writable by {who}; give {who} read and "
                "write access to it (a --dry-run needs only read access)"
            )

    def _connect(self) -> sqlite3.Connection:
        """Read-write (WAL), or read-only: ``mode=ro`` writes nothing; a database in WAL
        mode whose folder is read-only is opened ``immutable`` (nobody can write it then)."""
        uri = "file:" + quote(str(self.path.resolve()))
        attempts = [uri + "?mode=ro", uri + "?mode=ro&immutable=1"] if self.readonly else [uri]
        last: sqlite3.Error | None = None
        for target in attempts:
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(
                    target,
                    uri=True,
                    timeout=BUSY_TIMEOUT_SECONDS,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = _dict_row
                conn.create_function("followup_keyword", 2, _keyword, deterministic=True)
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # reads the file
                if not self.readonly:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                last = exc
                if _code(exc) not in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN"):
                    break
        assert last is not None
        raise self._translate(last, opening=True) from None

    def _translate(self, exc: sqlite3.Error, opening: bool = False) -> StoreError:
        """A driver error -> the project's error: a corrupt or foreign file, or a file or
        folder the tool cannot write, is named with the fix (exit 2); anything else is a
        store failure."""
        code = _code(exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else code
        if code == "SQLITE_CORRUPT" or (code == "SQLITE_NOTADB" and not opening):
            return StoreCorrupt(
                f"{self.path}: the database file is corrupt ({first}); restore it from a "
                f"backup or rebuild it (`sqlite3 {self.path} .recover`); "
                f"`followup sequences check --db {self.path}` runs the full check"
            )
        if code == "SQLITE_NOTADB" or opening and code not in _READONLY:
            return StoreCorrupt(
                f"{self.path}: not a usable SQLite database ({first}); pass --db with the "
                "host app's SQLite file that holds the leads table"
            )
        if code in _READONLY:
            folder = self.path.resolve().parent
            if code == "SQLITE_READONLY_DIRECTORY" or not os.access(folder, os.W_OK):
                where = f"{folder}: the folder of {self.path.name} is not writable"
            else:
                where = f"{self.path}: the database file is not writable"
            return StoreCorrupt(
                f"{where} by {_user()} ({first}); give write access (a --dry-run needs none)"
            )
        return StoreError(f"{self.path}: {first}")

    def quick_check(self) -> str | None:
        """``PRAGMA quick_check``: None when the file is sound, else its first finding."""
        try:
            rows = self.conn.execute("PRAGMA quick_check(5)").fetchall()
            found = [str(next(iter(r.values()))) for r in rows]
        except sqlite3.Error as exc:
            if _code(exc) not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                return str(self._translate(exc))
            found = [str(exc)]
        if found == ["ok"]:
            return None
        lines = [x.strip() for f in found for x in f.splitlines() if x.strip()]
        first = next((x for x in lines if not x.startswith("***")), "not ok")
        return (
            f"{self.path}: the database file is corrupt (PRAGMA quick_check: {first[:120]}); "
            f"restore it from a backup or rebuild it (`sqlite3 {self.path} .recover`)"
        )

    def checker(self) -> SQLiteStore | None:
        return self.clone()

    def interrupt(self) -> None:
        """Stop the statement running on this connection (any thread may call it)."""
        self.conn.interrupt()

    def _lease_scope(self) -> str:
        return str(self.path.resolve())

    def clone(self) -> SQLiteStore:
        return SQLiteStore(self.path, self.lead_table, self.readonly)

    def close(self) -> None:
        self.conn.close()
        if self.readonly:
            self._tidy_journal()

    def _tidy_journal(self) -> None:
        """A read-only connection to a WAL database creates the ``-wal`` and ``-shm`` files
        when nobody has them open, and cannot delete them when it closes: "writes nothing"
        (a dry run, explain, report) would leave them, owned by whoever ran it. When they
        were not there when this process first read the file, a read-write connection that
        changes nothing is opened and closed: SQLite's last connection to close removes
        them (an empty WAL: nothing is written to the database); another process's open
        connection keeps them, as it should. Nothing is done without write access."""
        if not _QUIET_JOURNAL.get(os.path.realpath(self.path)):
            return
        if not any(os.path.exists(f"{self.path}{s}") for s in _JOURNAL_SUFFIXES):
            return
        folder = self.path.resolve().parent
        if not (os.access(self.path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)):
            return
        uri = "file:" + quote(str(self.path.resolve())) + "?mode=rw"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error:
            pass  # left as SQLite leaves them

    def _adapt(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_time(value)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, dict | list):
            return json.dumps(value)
        return value

    def _bind(self, sql: str, params: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """Parameters for sqlite3. A text holding undecodable bytes (a lead id read with
        surrogate escapes, see ``query``) goes back as those bytes, cast to TEXT, so that
        it compares with the column as the same text."""
        bound = self._params(params)
        for k, v in bound.items():
            if isinstance(v, str) and _has_surrogates(v):
                bound[k] = v.encode("utf-8", "surrogateescape")
                sql = re.sub(rf":{k}\b", f"CAST(:{k} AS TEXT)", sql)
        return sql, bound

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        sql, bound = self._bind(sql, params)
        try:
            with self._lock:
                try:
                    return self.conn.execute(sql, bound).fetchall()
                except sqlite3.OperationalError as exc:
                    if "decode" not in str(exc) or not sql.lstrip().upper().startswith("SELECT"):
                        raise
                    # A host row holds text that is not UTF-8: read again with the bad
                    # bytes escaped, for the lead parser to name the row (not the page).
                    self.conn.text_factory = _lenient_text
                    try:
                        return self.conn.execute(sql, bound).fetchall()
                    finally:
                        self.conn.text_factory = str
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        sql, bound = self._bind(sql, params)
        try:
            with self._lock:
                return self.conn.execute(sql, bound).rowcount
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _in_list(
        self, column: str, values: Sequence[Any], param: str = "p"
    ) -> tuple[Sql, dict[str, Any]]:
        # Texts: one JSON array parameter (``json_each``), as Postgres passes one array.
        # sqlite3 binds a named parameter by searching the statement's list of names, so
        # 500 of them cost 0.34 ms a statement against 0.07 (a third of lead_states).
        # Other values (numbers; text that is not plain ASCII, which may hold undecodable
        # bytes that ``_bind`` passes as a blob) keep the IN list of parameters.
        if _json_each() and all(type(v) is str for v in values):
            joined = "".join(values)
            if joined.isascii() and "\x00" not in joined:
                name = f"{param}_list"  # not "{param}0"..., nor a query's own ":p"
                return (
                    Sql(
                        f"{ident(column)} IN (SELECT value FROM json_each({placeholders([name])}))"
                    ),
                    {name: json.dumps(list(values))},
                )
        return super()._in_list(column, values, param)

    def page_key(self, lead_id: Any) -> Any:
        return lead_id  # as stored: an integer id pages as an integer, text as text

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
            # Bounded: a thread that waits longer goes on to BEGIN IMMEDIATE and SQLite's own
            # busy timeout, as without this lock (never a wait without end).
            writer = self._writer
            if writer is not None and not writer.acquire(timeout=BUSY_TIMEOUT_SECONDS):
                writer = None
            try:
                yield from self._write_tx()
            finally:
                if writer is not None:
                    writer.release()

    def _write_tx(self) -> Iterator[None]:
        try:
            self.conn.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            err = self._translate(exc)
            if type(err) is StoreError:
                err = StoreError(f"{self.path}: cannot start a write transaction: {exc}")
            raise err from exc
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
            err = self._translate(exc)
            if type(err) is StoreError:
                err = StoreError(f"{self.path}: commit failed: {exc}")
            raise err from exc

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
        out = statement.format(
            ts="TEXT",
            id="INTEGER PRIMARY KEY AUTOINCREMENT",
            bool="INTEGER",
            random_hex="lower(hex(randomblob(32)))",
        ).replace("DEFAULT FALSE", "DEFAULT 0")
        if self._temp_tables:  # indexes on a TEMP table go to TEMP by themselves
            out = re.sub(r"^\s*CREATE\s+(TABLE|VIEW)\b", r"CREATE TEMP \1", out, flags=re.I)
        return out

    def _scratch_schema(self) -> None:
        if not self.readonly:
            return
        if self._table_columns("followup_migrations") is not None:
            pending = ", ".join(self.pending_migrations())
            raise StoreConfigError(
                f"{self.path}: the tool's tables need an upgrade ({pending}) that a dry run "
                "cannot write; run `followup migrate` (or a run) first"
            )
        self._temp_tables = True  # a fresh store: the tool's tables, empty, in TEMP

    def _table_columns(self, table: str) -> tuple[str, ...] | None:
        rows = self.query(self.q("table_columns", table=ident(table)))
        return tuple(r["name"] for r in rows) if rows else None


_READONLY = (
    "SQLITE_READONLY",
    "SQLITE_READONLY_DIRECTORY",
    "SQLITE_READONLY_DBMOVED",
    "SQLITE_READONLY_CANTINIT",
    "SQLITE_READONLY_CANTLOCK",
    "SQLITE_READONLY_RECOVERY",
    "SQLITE_CANTOPEN",
)


def _code(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _user() -> str:
    from ..auditchain import os_account

    return os_account()  # the real uid's account: whose access the file checks name


@lru_cache(maxsize=1)
def _json_each() -> bool:
    """This process's SQLite has ``json_each`` (built in since 3.38, an option before)."""
    try:
        with closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.Error:
        return False
    return True


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=False)}
