"""The store interface: a handful of named operations returning plain rows.

``SqlStore`` runs the named queries of ``queries.sql`` (``self.q("name")``: a block written
once with ``:name`` parameters, or a dialect's own ``name@postgres`` / ``name@sqlite``).
Driver exceptions are translated into ``StoreError`` / ``StoreConfigError`` at this edge.

The dialect seam, all that ``SQLiteStore`` and ``PostgresStore`` supply:
  * the connection: ``query``, ``execute``, ``transaction``, ``clone``, ``close``;
  * values and ids: ``_adapt`` (SQLite: times as text, booleans as 0/1, JSON as text),
    ``page_key``, ``_lid`` (the host's lead id as the tool's TEXT ids compare with it),
    ``_in_list`` and ``_lead_id_in`` (a chunk of ids: an IN list, or one Postgres array);
  * the schema: ``_ddl`` (the migrations' column types), ``_table_columns``;
  * maintenance: ``_scratch_schema``, ``quick_check``, ``purge_old_versions``;
  * what one Postgres statement does better: ``save_outcome_marks``, ``set_next_due``;
  * the candidate prefilter: ``_candidate_columns``, ``_keyword_like``, ``_keyword_beyond_lower``
    (in ``sqlite_candidates`` and ``postgres_candidates``, with Postgres's census).
Locks are named queries a dialect may lack (``lock_try@postgres``; SQLite's ``BEGIN
IMMEDIATE`` already holds the database): ``_take_lock`` runs them where they exist, as
``begin_erase`` runs ``erase_begin@sqlite``.

Concurrency contract (see README "Never twice"):
  * ``lead_tx(lead_id, account_id)`` opens a write transaction in which the caller
    re-reads the lead and its state, decides again, and claims. On Postgres it takes a
    transaction-level advisory lock on the lead (skip if another worker holds it:
    the SKIP LOCKED equivalent for rows the tool does not own) and one on the account
    (serialises the sliding-window rate count). On SQLite ``BEGIN IMMEDIATE`` serialises
    every writer.
  * The claim is an INSERT of a ``pending`` tracking row; the UNIQUE (lead, sequence,
    message) key makes a second claim of the same step impossible on both stores.

``SqlStore`` is put together from its queries by table family, each a mixin module:
``lead_reading`` (the lead table: its columns, the candidate leads, a lead's row),
``lead_states`` (what the tool knows about leads), ``tracking`` (claims and their tracking
rows), ``enrollments``, ``audit_log``, ``run_rows``, ``persons`` and ``outcome_queries``,
and ``migrating`` (the migrations applied); here: the seam, locks and leases, the scratch
transaction of a dry run.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .. import auditchain
from ..crypto import Cipher
from ..leadcolumns import OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS  # noqa: F401
from ..models import parse_time
from .audit_log import AuditQueries
from .enrollments import EnrollmentQueries
from .lead_reading import LeadQueries
from .lead_states import StateQueries
from .migrating import Migrating
from .outcome_queries import OutcomeQueries
from .persons import PersonQueries
from .queries import NULL, Sql, has_query, ident, in_list
from .queries import q as named_query
from .rows import (  # noqa: F401
    BAD_LEADS_NOTED,
    FREE_TEXT_COLUMNS,
    OPEN_STATUSES,
    SEALED_EVENTS,
    SEALED_TRACKING,
    TRACKING_COLUMNS,
    TS_COLUMNS,
    _chunks,
    _followup_record,
    _redact_fields,
    _Rollback,
)
from .run_rows import RunQueries
from .tracking import TrackingQueries


def actor() -> str:
    """The acting OS user, for the audit log: the real uid's account, never $USER
    (``auditchain.actor``)."""
    return auditchain.actor()


class SqlStore(
    LeadQueries,
    StateQueries,
    TrackingQueries,
    EnrollmentQueries,
    AuditQueries,
    RunQueries,
    PersonQueries,
    OutcomeQueries,
    Migrating,
):
    """Queries shared by both backends. Subclasses implement the abstract bits below."""

    dialect = "sql"
    url = ""
    in_scratch = False  # inside ``scratch``: the tool's tables exist for this connection only
    # the keyword prefilter's LIKE patterns keep their vowels (``rules.keyword_like_pattern``)
    keyword_like_exact = False

    def __init__(self, lead_table: str = "leads") -> None:
        self.lead_table = lead_table
        self._lead_columns: tuple[str, ...] | None = None
        self._secret: str | None = None
        self._cipher: Cipher | None = None
        # this connection's database role as the audit chain records it, once read
        # (``auditchain.append``; a 1-tuple: the role itself is None on SQLite)
        self.audit_role: tuple[str | None] | None = None
        # The database computes an audit row's hash itself (``auditchain.append``).
        self.hashes_in_sql = False
        self.key_problem: str | None = None  # checked before the first value is sealed
        # inside ``audits_last``: the audit rows to write when its body is done
        self._held_audits: list[auditchain.AuditEntry] | None = None

    @property
    def cipher(self) -> Cipher:
        """What seals personal data in the tool's tables: the keys of
        $FOLLOWUP_ENCRYPTION_KEY unless set otherwise (``store.cipher = Cipher(keys)``)."""
        if self._cipher is None:
            self._cipher = Cipher.from_env()
        return self._cipher

    @cipher.setter
    def cipher(self, value: Cipher) -> None:
        self._cipher = value
        self.key_problem = None

    def _seal(self, fields: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
        """``fields`` with ``columns`` sealed (without a key: as they are, escaped, see
        crypto.CLEAR_PREFIX); records the key that sealed them. When the keys at hand cannot
        read the rows already stored (``key_problem``; a run stops before, see
        ``sealing.check_keys``), the values are withheld (None) rather than written under a
        key the other hosts do not hold or in clear: an opt-out still holds by its person key."""
        fields = dict(fields)
        if self.key_problem is None:
            from ..errors import ConfigError
            from .sealing import check_keys

            try:
                check_keys(self)
                self.key_problem = ""
            except ConfigError as exc:
                self.key_problem = str(exc)
        if self.key_problem:
            for c in columns:
                if fields.get(c) is not None:
                    fields[c] = None
            return fields
        if self.cipher.seal_fields(fields, columns):
            from .sealing import note_key

            note_key(self, self.cipher)
        return fields

    def q(self, name: str, **fill: Sql) -> Sql:
        """The named query ``name`` of ``queries.sql`` in this store's dialect, its
        ``{part}``s filled with SQL the tool wrote (``queries.ident``, other blocks)."""
        return named_query(name, self.dialect, **fill)

    @property
    def leads(self) -> Sql:
        """The lead table's name, quoted: what ``{leads}`` in a query is filled with."""
        return ident(self.lead_table)

    # ----------------------------------------------------------- backend hooks
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Inside: ``execute_later`` and ``query_later`` statements go out together, with
        the next statement whose answer is waited for (Postgres' pipeline mode: one round
        trip for many statements); a transaction begun inside commits with one round trip.
        Elsewhere each statement runs when it is issued, as outside."""
        yield

    @property
    def pipelining(self) -> bool:
        """Inside ``pipelined`` on a store that sends statements together."""
        return False

    def execute_later(self, sql: str, params: dict[str, Any] | None = None) -> Callable[[], int]:
        """Issue a statement without waiting for it (inside ``pipelined``); the returned
        function gives its row count (waiting then). An error is raised by the first wait
        after it at the latest (the transaction's commit)."""
        n = self.execute(sql, params)
        return lambda: n

    def query_later(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> Callable[[], list[dict[str, Any]]]:
        """``query`` without waiting for the rows until they are asked for (``execute_later``)."""
        rows = self.query(sql, params)
        return lambda: rows

    def _take_lock(self, name: str, key: str | None = None) -> bool:
        """Take the lock the named query ``name`` takes (``lock_try``: False when another
        transaction holds it; ``lock_wait``; ``lock_migrations``), until the transaction
        ends. Only where the dialect has such a query (Postgres' advisory locks): SQLite's
        ``BEGIN IMMEDIATE`` already holds the whole database."""
        if not has_query(name, self.dialect):
            return True
        rows = self.query(self.q(name), {"k": key} if key is not None else None)
        return bool(rows[0]["ok"]) if rows else True

    def _try_lock_lead(self, lead_id: str) -> bool:
        return self._take_lock("lock_try", ":lead:" + lead_id)

    def _lock_account(self, account_id: str) -> None:
        self._take_lock("lock_wait", ":acct:" + account_id)

    # -------------------------------------------------------------- leases
    def try_lease(self, account_id: str) -> bool:
        """Take the account's lease for this connection, not waiting: False when another
        holds it. Which run serves an account (``leases.py``), never what keeps a message
        from going out twice (the claims do that). Postgres: a session-level advisory lock
        (other hosts see it; the server drops it with the connection). Elsewhere one live
        run holds the database at a time (SQLite's run lock), so the lease only has to be
        seen by the other store objects of this process on the same database."""
        if has_query("lease_try", self.dialect):
            return self._take_lock("lease_try", ":lease:" + account_id)
        key = (self._lease_scope(), account_id)
        with _LEASES_LOCK:
            return _LEASES.setdefault(key, self) is self

    def release_lease(self, account_id: str) -> None:
        """Give back a lease ``try_lease`` took on this connection."""
        if has_query("lease_release", self.dialect):
            self._take_lock("lease_release", ":lease:" + account_id)
            return
        key = (self._lease_scope(), account_id)
        with _LEASES_LOCK:
            if _LEASES.get(key) is self:
                del _LEASES[key]

    @property
    def leases_across_processes(self) -> bool:
        """Whether another process's run can hold a lease here (Postgres)."""
        return has_query("lease_try", self.dialect)

    def _lease_scope(self) -> str:
        """What two store objects of one database share: its file (memory: the connection)."""
        return self.url

    def _ddl(self, statement: str) -> str:
        raise NotImplementedError

    def _table_columns(self, table: str) -> tuple[str, ...] | None:
        raise NotImplementedError

    def _keyword_like(self, text: str, patterns: int, params: dict[str, Any]) -> str:
        """For the keyword prefilter: ``lower(text)`` matches one of the ``patterns`` LIKE
        patterns (``:kw0``..., ``ESCAPE '\\'``)."""
        return " OR ".join(f"lower({text}) LIKE :kw{i} ESCAPE '\\'" for i in range(patterns))

    def _keyword_beyond_lower(
        self, text: str, keywords: tuple[str, ...], patterns: int, params: dict[str, Any]
    ) -> str | None:
        """For the keyword prefilter: a condition true when ``text`` holds one of the
        ``keywords`` in a form SQL's ``lower()`` does not fold (full-width letters, accents,
        ligatures: what ``rules.keyword_optout`` folds), adding to ``params`` what it needs
        (the ``patterns`` LIKE patterns are ``:kw0``...); None when the database cannot."""
        return None

    def begin_erase(self) -> None:
        """Before an erasure: deleted content is overwritten, not just unlinked (SQLite)."""
        if has_query("erase_begin", self.dialect):
            self.execute(self.q("erase_begin"))

    def purge_old_versions(self, tables: Sequence[str]) -> str:
        """After an erasure: rewrite what the database keeps of old row versions; returns
        what was done (and what an operator still has to do)."""
        return "nothing to do"

    def clone(self) -> SqlStore:
        """A new connection to the same database (one per worker thread)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _adapt(self, value: Any) -> Any:
        return value

    def _in_list(
        self, column: str, values: Sequence[Any], param: str = "p"
    ) -> tuple[Sql, dict[str, Any]]:
        """``column IN (...)`` for one chunk of values, and its parameters (named after
        ``param``) (the tool's own TEXT columns; Postgres passes one text[] instead)."""
        return in_list(column, values, param)

    def _lid(self) -> Sql:
        """The host's lead id as the tool's TEXT lead ids compare with it."""
        return Sql("l.id")

    def _lead_column(self, column: str) -> Sql:
        """``l.<column>`` of the lead table, or NULL when the table has no such column."""
        return ident(f"l.{column}") if column in self.lead_columns() else NULL

    def _lead_id_in(self, values: Sequence[Any]) -> tuple[Sql, dict[str, Any]]:
        """``l.id IN (...)`` on the host's lead table, whose id may not be text."""
        return SqlStore._in_list(self, "l.id", values)

    # ------------------------------------------------------------- helpers
    def _params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        return {k: self._adapt(v) for k, v in (params or {}).items()}

    @staticmethod
    def _times(row: dict[str, Any]) -> dict[str, Any]:
        for k, v in row.items():
            if k in TS_COLUMNS and v is not None and not isinstance(v, datetime):
                row[k] = parse_time(v)
            elif k in TS_COLUMNS and isinstance(v, datetime):
                row[k] = parse_time(v)
        return row

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [self._times(r) for r in self.query(sql, params)]

    @contextmanager
    def scratch(self) -> Iterator[None]:
        """Everything inside runs in one transaction that is rolled back: the tool's tables
        are created if missing, read, and nothing stays. How a dry run on a fresh store
        writes nothing."""
        self._scratch_schema()
        self.in_scratch = True
        try:
            with self.transaction():
                self.migrate()
                yield
                raise _Rollback
        except _Rollback:
            pass
        finally:
            self.in_scratch = False

    def _scratch_schema(self) -> None:
        """Where ``scratch`` creates the tool's tables (SQLite read-only: in TEMP)."""

    def quick_check(self) -> str | None:
        """A cheap integrity check of the database file; None when sound (or not a file)."""
        return None

    def checker(self) -> SqlStore | None:
        """A second connection to run ``quick_check`` on beside the work of this one (then
        ``interrupt`` stops it), or None: check here, if there is anything to check."""
        return None

    def interrupt(self) -> None:
        """Stop the statement running on this connection, if the driver can (any thread)."""


# Times a whole transaction is run when the database aborts it for a conflict (``retried``).
CONFLICT_ATTEMPTS = 3


def retried(work: Callable[[], Any], reset: Callable[[], None], what: str) -> Any:
    """``work()``: one whole transaction and nothing outside it (never an API call), run
    again, after ``reset()`` puts back what it changed in memory, when the database aborted
    it for a lock cycle or a serialization conflict with another writer
    (``StoreError.conflict``: it was rolled back whole), up to ``CONFLICT_ATTEMPTS`` times
    in all, a short random pause between them; the last conflict is raised (one line,
    exit 1)."""
    from ..errors import StoreError
    from ..logsetup import get

    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return work()
        except StoreError as exc:
            if not exc.conflict or attempt == CONFLICT_ATTEMPTS:
                raise
            get("store").info("%s: %s; running it again", what, exc.sqlstate)
            reset()
            # a moment for the other transaction to finish first (jittered: two writers
            # aborted together do not meet again at once)
            time.sleep(random.uniform(0.02, 0.1) * attempt)  # noqa: S311 - not a secret
    raise AssertionError("unreachable")  # pragma: no cover


def put_back(
    obj: Any, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> Callable[[], None]:
    """A ``reset`` for ``retried``: puts ``obj``'s attributes (but ``skip``; or ``only``
    these) back as they are now, copies of them each time (a counter changed by one attempt
    is not the one the next attempt starts from)."""
    saved = {
        k: copy.copy(v)
        for k, v in vars(obj).items()
        if k not in skip and (only is None or k in only)
    }

    def reset() -> None:
        vars(obj).update({k: copy.copy(v) for k, v in saved.items()})

    return reset


def nothing_to_put_back() -> None:
    """A ``reset`` for ``retried`` where the transaction changed nothing in memory."""


# The leases of the stores without a lease query (SQLite, memory): (scope, account) -> holder.
_LEASES: dict[tuple[str, str], SqlStore] = {}
_LEASES_LOCK = threading.Lock()
