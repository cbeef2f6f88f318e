"""The Postgres store (psycopg 3). Same queries as SQLite; concurrency through
transaction-level advisory locks: a worker that cannot take a lead's lock skips the lead
(the SKIP LOCKED equivalent for rows the tool does not own: the host app's lead table may
be a view), and a short per-account lock serialises the sliding-window rate count."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import dict_row
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.json import JsonbLoader, JsonLoader
from psycopg.types.string import TextLoader

from ..errors import PrivilegeError, StoreConfigError, StoreError
from ..redact import redact
from .base import SqlStore
from .postgres_candidates import PostgresCandidates
from .queries import NULL, Sql, ident

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")

_TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")
_NUMBER_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision")
_LEAD_TYPES = (
    ("last_outbound_at", _TIME_TYPES, "timestamptz"),
    ("last_inbound_at", _TIME_TYPES, "timestamptz"),
    ("converted_at", _TIME_TYPES, "timestamptz"),
    ("score", _NUMBER_TYPES, "an integer type"),
)


def _lenient(base: type) -> type:
    """A loader that gives a value it cannot convert back as its text."""

    class Lenient(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except (psycopg.DataError, ValueError, RecursionError):
                return bytes(data).decode("utf-8", "replace")

    return Lenient


class _BlankPadded(TextLoader):
    """A CHAR(n) value without the blanks that pad it: they are not part of the value
    (Postgres compares CHAR values without them, and casts them away to text), so a host's
    fixed-width account, id or recipient column reads as the text it holds."""

    def load(self, data: Any) -> str:
        return super().load(data).rstrip(" ")


_LENIENT = {
    "timestamptz": _lenient(TimestamptzLoader),
    "timestamp": _lenient(TimestampLoader),
    "date": _lenient(DateLoader),
    "jsonb": _lenient(JsonbLoader),
    "json": _lenient(JsonLoader),
}


def _first_line(exc: BaseException) -> str:
    """The first line of a driver error, redacted (it may quote the connection string)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return redact(text.splitlines()[0]) or type(exc).__name__


# Pipeline mode needs libpq 14+ on the client (any server): ``PostgresStore.pipelined``.
_PIPELINE_SUPPORTED = psycopg.Pipeline.is_supported()


def _store_error(message: str, exc: psycopg.Error) -> StoreError:
    """A driver error as the project's, with its SQLSTATE; a transaction the server aborted
    for a conflict with another one (``StoreError.conflict``) says so, and what to do."""
    err = StoreError(message, getattr(exc, "sqlstate", None))
    if err.conflict:
        err = StoreError(
            f"{message} (another run or command was writing the same rows; this "
            "transaction was rolled back whole: run the command again)",
            err.sqlstate,
        )
    return err


def _convert(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class PostgresStore(PostgresCandidates, SqlStore):
    dialect = "postgres"

    def __init__(self, url: str, lead_table: str = "leads") -> None:
        super().__init__(lead_table)
        self.url = url
        try:
            self.conn = psycopg.connect(
                url, autocommit=True, row_factory=dict_row, connect_timeout=10
            )
        except psycopg.Error as exc:
            # libpq may quote the connection string back (a password in it): redacted
            first = _first_line(exc)
            raise StoreConfigError(
                f"{self.describe()}: cannot connect ({first}); check the URL, that Postgres is "
                "running and that the database exists"
            ) from None
        self.conn.adapters.register_loader("bpchar", _BlankPadded)
        self._utc_session()
        self._depth = 0
        self._lock = threading.RLock()
        self.hashes_in_sql = self.conn.info.server_version >= 110000  # sha256()
        if self.conn.info.server_version >= 110000:
            # No JIT for this session (the host's own sessions keep theirs): the tool's
            # statements are short or read rows, and compiling one took longer than it
            # saved (the reconcile's 0.8 s of 6.4 at a million leads, bench/RESULTS-select.md)
            self._no_jit()
        self._sql_cache: dict[str, str] = {}
        self._piped = False  # inside ``pipelined``
        self._pipe: psycopg.Pipeline | None = None  # in a transaction begun inside it

    def _utc_session(self) -> None:
        """The session's TimeZone is UTC: a lead time without a zone (a ``timestamp`` column)
        is UTC for the rules (as SQLite text without an offset), and the SQL that compares
        it with a ``timestamptz`` (the candidate queries) reads it in the session's zone,
        which is the server's (Debian's initdb takes the host's) unless set."""
        try:
            self.conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error:  # a pooler that refuses SET: the server's zone stays
            pass

    def _no_jit(self) -> None:
        try:
            self.conn.execute("SET jit = off")
        except psycopg.Error:  # a server built without it, a pooler that refuses SET
            pass

    def clone(self) -> PostgresStore:
        """Another connection; the lead table's columns as this one read them (reading
        them again is an information_schema query, ~15 ms of a new backend's time)."""
        other = PostgresStore(self.url, self.lead_table)
        if self._lead_columns is not None and hasattr(self, "_text_lead_ids"):
            other._lead_columns = self._lead_columns
            other._text_lead_ids = self._text_lead_ids
            other._fractional_score = getattr(self, "_fractional_score", False)
        return other

    def close(self) -> None:
        self.conn.close()

    def _sql(self, sql: str) -> str:
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = _convert(sql)
        return out

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        # The pipeline itself is entered by the transaction begun inside (``_pipelined_tx``):
        # its exit, which waits for every answer still due, is then the COMMIT's round trip.
        if not _PIPELINE_SUPPORTED:  # libpq before 14: each statement waited for, as outside
            yield
            return
        with self._lock:
            outer, self._piped = self._piped, True
            try:
                yield
            finally:
                self._piped = outer

    @property
    def pipelining(self) -> bool:
        return self._pipe is not None

    def _waited(self, cur: psycopg.Cursor[Any]) -> psycopg.Cursor[Any]:
        """Inside ``pipelined``: ``cur``'s answer received (with all issued before it)."""
        if self._pipe is not None and cur.pgresult is None:
            self._pipe.sync()
        return cur

    def execute_later(self, sql: str, params: dict[str, Any] | None = None) -> Callable[[], int]:
        if self._pipe is None:
            return super().execute_later(sql, params)
        try:
            with self._lock:
                cur = self.conn.execute(self._sql(sql), params or {})
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

        def rowcount() -> int:
            try:
                with self._lock:
                    return self._waited(cur).rowcount
            except psycopg.Error as exc:
                raise self._translate(exc) from exc

        return rowcount

    def query_later(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> Callable[[], list[dict[str, Any]]]:
        if self._pipe is None:
            return super().query_later(sql, params)
        try:
            with self._lock:
                cur = self.conn.execute(self._sql(sql), params or {})
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

        def rows() -> list[dict[str, Any]]:
            try:
                with self._lock:
                    return self._waited(cur).fetchall()
            except psycopg.Error as exc:
                raise self._translate(exc) from exc

        return rows

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self._lock:
                cur = self._waited(self.conn.execute(self._sql(sql), params or {}))
                if not cur.description:
                    return []
                try:
                    return cur.fetchall()
                except (psycopg.DataError, RecursionError):
                    if not sql.lstrip().upper().startswith("SELECT"):
                        raise
                    # A host row holds a value Python cannot hold (a timestamp at infinity
                    # or after year 9999, JSON nested too deeply): read the page again with
                    # such values as text, for the lead parser to name the row.
                    lenient = self.conn.cursor()
                    for oid in _LENIENT:
                        lenient.adapters.register_loader(oid, _LENIENT[oid])
                    lenient.execute(self._sql(sql), params or {})
                    return self._waited(lenient).fetchall()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: psycopg.Error) -> StoreError | PrivilegeError:
        """A driver error -> the project's: a privilege the role lacks (SQLSTATE 42501) is
        the exit-2 line naming the role and the grant; anything else a store failure."""
        first = _first_line(exc)
        if getattr(exc, "sqlstate", None) == "42501":
            role = self.conn.info.user
            return PrivilegeError(
                f"{self.describe()}: role {role}: {first}; grant what it needs with "
                f"`followup db grants --runner {role}` (or --reader for read commands), "
                "run as the tables' owner"
            )
        return _store_error(f"{self.describe()}: {first}", exc)

    def page_key(self, lead_id: Any) -> Any:
        return str(lead_id)  # pages compare the id as text (``_lid``)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        try:
            with self._lock:
                return self._waited(self.conn.execute(self._sql(sql), params or {})).rowcount
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

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
            if self._piped:
                yield from self._pipelined_tx()
                return
            try:
                tx = self.conn.transaction()
                tx.__enter__()
            except psycopg.Error as exc:
                raise StoreError(
                    f"{self.describe()}: cannot start a transaction: {_first_line(exc)}"
                ) from exc
            self._depth = 1
            try:
                yield
            except BaseException as exc:
                self._depth = 0
                try:
                    tx.__exit__(type(exc), exc, exc.__traceback__)
                except psycopg.Error:
                    pass
                raise
            self._depth = 0
            try:
                tx.__exit__(None, None, None)
            except psycopg.Error as exc:
                raise _store_error(
                    f"{self.describe()}: commit failed: {_first_line(exc)}", exc
                ) from exc

    def _pipelined_tx(self) -> Iterator[None]:
        """A transaction inside ``pipelined``, in pipeline mode: BEGIN goes out with the
        statements after it, COMMIT with those issued last; the commit is waited for (with
        every answer still due) before this returns."""
        try:
            with self.conn.pipeline() as pipe:
                self._pipe = pipe
                try:
                    yield from self._pipelined_body(pipe)
                finally:
                    self._pipe = None
        except psycopg.Error as exc:
            # a statement failed (the pipeline skipped the rest, COMMIT too): roll back
            try:
                if self.conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                    self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            raise _store_error(
                f"{self.describe()}: commit failed: {_first_line(exc)}", exc
            ) from exc

    def _pipelined_body(self, pipe: psycopg.Pipeline) -> Iterator[None]:
        self.conn.execute("BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            try:
                try:
                    pipe.sync()  # the answers still due (an error among them: ignored)
                except psycopg.Error:
                    pass
                if self.conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                    self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            raise
        self._depth = 0
        self.conn.execute("COMMIT")  # sent, and waited for, by the pipeline's exit

    def _in_list(
        self, column: str, values: Sequence[Any], param: str = "ids"
    ) -> tuple[Sql, dict[str, Any]]:
        # One array parameter: psycopg converts a query with 500 named parameters anew on
        # every call (half the time of lead_states at a million leads).
        return Sql(f"{ident(column)} = ANY(:{param})"), {param: list(values)}

    def _lead_column(self, column: str) -> Sql:
        """As on SQLite, and the status as its text: a host's ENUM (or other) status type has
        no lower() of its own."""
        found = super()._lead_column(column)
        return Sql(f"CAST({found} AS text)") if column == "status" and found != NULL else found

    def _lid(self) -> Sql:
        self.lead_columns()  # learns the id column's type
        # A text id compares with the tool's TEXT lead ids as it is (and keeps its index);
        # a bigint or uuid id is compared (and paged) as its text.
        return Sql("l.id" if getattr(self, "_text_lead_ids", False) else "(l.id::text)")

    def try_lock_leads(self, lead_ids: Sequence[str]) -> set[str]:
        if not lead_ids:
            return set()
        rows = self.query(  # one round trip for the batch; try-locks never wait
            self.q("leads_try_lock"), {"ids": list(lead_ids), "prefix": ":lead:"}
        )
        return {r["lead_id"] for r in rows if r["ok"]}

    def set_next_due(self, rows: Sequence[tuple[str, str, int, datetime]], config: str) -> int:
        # One statement for the page instead of a round trip per enrollment. SKIP LOCKED:
        # a row another transaction is changing (a claim, another run's reconcile) is left
        # for the next run rather than waited for, so this never waits on, or deadlocks
        # with, a transaction that locks many leads' enrollments in another order.
        if not rows:
            return 0
        lead_ids, seq_ids, versions, dues = (list(x) for x in zip(*rows, strict=True))
        return self.execute(
            self.q("next_due_set_many"),
            {"cfg": config, "l": lead_ids, "s": seq_ids, "v": versions, "d": dues},
        )

    def purge_old_versions(self, tables: Sequence[str]) -> str:
        """Postgres keeps old row versions until VACUUM; VACUUM FULL rewrites each table into
        new files. It needs the table's owner (or MAINTAIN); the WAL, its archive, replicas
        and backups are the operator's (docs/erasure.md)."""
        done, failed = [], []
        with self._lock:
            # a running cron job holds its tables: wait a little, never for its whole run
            self.conn.execute(self.q("lock_timeout_short"))
            try:
                for table in tables:
                    if self._table_columns(table) is None:
                        continue
                    if not self._owns(table):  # VACUUM would skip it with a mere warning
                        failed.append(f"{table} (role {self.conn.info.user} does not own it)")
                        continue
                    try:
                        self.conn.execute(self.q("vacuum_full", table=ident(table)))
                        done.append(table)
                    except psycopg.Error as exc:
                        failed.append(f"{table} ({_first_line(exc)})")
            finally:
                self.conn.execute(self.q("lock_timeout_reset"))
        note = (
            "; the WAL archive, replicas and backups still hold old versions until they age "
            "out (docs/erasure.md)"
        )
        if failed:
            return (
                f"VACUUM FULL done for {len(done)} table(s), not for {', '.join(failed)}: "
                f"have the tables' owner run `VACUUM (FULL) {', '.join(tables)};`" + note
            )
        return f"VACUUM FULL of the tool's {len(done)} tables done" + note

    def _owns(self, table: str) -> bool:
        rows = self.query(self.q("table_owned"), {"t": table})
        return bool(rows and rows[0]["owns"])

    def _ddl(self, statement: str) -> str:
        return statement.format(
            ts="TIMESTAMPTZ",
            id="BIGSERIAL PRIMARY KEY",
            bool="BOOLEAN",
            # 244 random bits from the built-in CSPRNG (no pgcrypto needed)
            random_hex="replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')",
        )

    def _table_columns(self, table: str) -> tuple[str, ...] | None:
        schema, _, name = table.rpartition(".")
        rows = self.query(self.q("table_columns"), {"t": name, "s": schema})
        if table == self.lead_table:
            types = {r["column_name"]: r["data_type"] for r in rows}
            self._text_lead_ids = types.get("id") in ("text", "character varying")
            self._fractional_score = types.get("score") in ("numeric", "real", "double precision")
            for column, allowed, want in _LEAD_TYPES:
                if column in types and types[column] not in allowed:
                    raise StoreConfigError(
                        f"{self.describe()}: {table}.{column} is {types[column]}; the rules "
                        f"compare it in SQL and need {want} (change the column's type, or "
                        f"point settings.lead_table at a view that casts it)"
                    )
        return tuple(r["column_name"] for r in rows) if rows else None

    def _lead_id_in(self, values: Sequence[Any]) -> tuple[Sql, dict[str, Any]]:
        self.lead_columns()  # learns the id column's type
        if getattr(self, "_text_lead_ids", False):
            return self._in_list("l.id", values)  # one text[]
        return super()._lead_id_in(values)  # a uuid or integer id: a plain IN list

    def save_outcome_marks(
        self, marks: Sequence[tuple[str, str | None, str | None]], now: datetime
    ) -> None:
        # Three arrays instead of a thousand parameters (psycopg parses those anew each time).
        if not marks:
            return
        ids, inbound, converted = (list(col) for col in zip(*marks, strict=True))
        self.execute(
            self.q("outcome_marks_save"),
            {"ids": ids, "inb": inbound, "conv": converted, "now": now},
        )
