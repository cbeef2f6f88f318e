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
  * the candidate prefilter: ``_candidate_sql``, ``_keyword_beyond_lower``.
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
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from .. import auditchain, suppress
from ..crypto import Cipher
from ..leadcolumns import OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from ..models import (
    PENDING,
    UNKNOWN,
    EnrollmentRecord,
    FollowupRecord,
    LeadState,
    PersonEnrollment,
    parse_time,
)
from ..redact import redact, redact_obj
from ..rules import keyword_like_patterns
from .migrations import MIGRATIONS
from .outcome_queries import OutcomeQueries
from .persons import PersonQueries
from .queries import (
    ALWAYS,
    NULL,
    Sql,
    all_of,
    columns,
    compare,
    equals,
    has_query,
    ident,
    in_list,
    placeholders,
    value_rows,
)
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


@lru_cache(maxsize=64)
def _select_list(present: tuple[str, ...]) -> Sql:
    return Sql(
        ", ".join(
            ident(f"l.{c}") if c in present else f"NULL AS {ident(c)}"
            for c in REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
        )
    )


def actor() -> str:
    """The acting OS user, for the audit log: the real uid's account, never $USER
    (``auditchain.actor``)."""
    return auditchain.actor()


class SqlStore(PersonQueries, OutcomeQueries):
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
        self._held_audits: list[tuple[Any, ...]] | None = None

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

    def _candidate_sql(
        self,
        select: str,
        col: dict[str, str],
        keyword: str = "1 = 0",
        paged: bool = True,
        due: bool = False,
    ) -> str:
        """The prefilter; ``paged``: after ``:after_id`` (the first page has no bound, which
        also keeps an integer id column from comparing with an empty text)."""
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

    # ---------------------------------------------------------- migrations
    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; returns the names applied."""
        applied: list[str] = []
        with self.transaction():
            self._take_lock("lock_migrations")
            self.execute(
                self._ddl(
                    "CREATE TABLE IF NOT EXISTS followup_migrations "
                    "(name TEXT PRIMARY KEY, applied_at {ts} NOT NULL)"
                )
            )
            done = {r["name"] for r in self.query(self.q("migrations_applied"))}
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for stmt in statements:
                    if isinstance(stmt, tuple):  # (dialect, statement): that store only
                        if stmt[0] != self.dialect:
                            continue
                        stmt = stmt[1]
                    self.execute(self._ddl(stmt))
                if name == "0006_person_suppressions":
                    self._backfill_persons()
                if name.endswith(auditchain.MIGRATION_SUFFIX):
                    auditchain.backfill(self)
                self.execute(
                    self.q("migration_record"), {"name": name, "at": datetime.now().astimezone()}
                )
                applied.append(name)
        return applied

    def _backfill_persons(self) -> None:
        """Person keys for the rows written before people were tracked, and the opt-outs and
        erasures recorded per lead until then, now per person too."""
        self._secret = None
        secret = self.person_secret()
        if secret is None:
            return
        for r in self.query(self.q("backfill_recipients")):
            self.execute(
                self.q("backfill_tracking_person"),
                {
                    "k": suppress.person_key(secret, r["account_id"], str(r["recipient_id"])),
                    "a": r["account_id"],
                    "r": r["recipient_id"],
                },
            )
        self.execute(self.q("backfill_enrollments_person"))
        for o in self.rows(self.q("optouts_all")):
            person = self.person_of(o["lead_id"])
            if person is None:
                continue
            erased = o["source"] == suppress.ERASURE
            self.add_suppression(
                suppress.person_key(secret, *person),
                person[0],
                suppress.ERASURE if erased else suppress.OPTOUT,
                o["source"],
                o["actor"] or "migration",
                o["created_at"],
                recipient_id=None if erased else person[1],
                lead_id=None if erased else o["lead_id"],
                reason=None if erased else o["reason"],
            )

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

    def pending_migrations(self) -> list[str]:
        try:
            done = {r["name"] for r in self.query(self.q("migrations_applied"))}
        except Exception:  # noqa: BLE001 - no table yet: everything is pending
            done = set()
        return [name for name, _ in MIGRATIONS if name not in done]

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query(self.q("migrations_applied"))]

    # ----------------------------------------------------------- lead table
    def lead_columns(self) -> tuple[str, ...]:
        """The lead table's usable columns; StoreConfigError when it is missing or lacks some."""
        from ..errors import StoreConfigError

        if self._lead_columns is None:
            cols = self._table_columns(self.lead_table)
            if cols is None:
                raise StoreConfigError(
                    f"{self.describe()}: no table or view {self.lead_table!r}; create it (columns "
                    f"in the README) or set settings.lead_table in sequences.yaml"
                )
            missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in cols]
            if missing:
                raise StoreConfigError(
                    f"{self.describe()}: table {self.lead_table!r} lacks column(s) "
                    f"{', '.join(missing)}; see the README for the lead-store columns"
                )
            wanted = REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
            self._lead_columns = tuple(c for c in wanted if c in cols)
        return self._lead_columns

    def _select_list(self) -> Sql:
        """The lead columns as ``l.<column>``, NULL for those the table lacks."""
        return _select_list(self.lead_columns())

    def describe(self) -> str:
        return redact(self.url) or self.url

    def candidate_leads(
        self,
        account_id: str,
        min_score: int,
        max_score: int,
        after_id: Any = "",
        page: int = 1000,
        keywords: Sequence[str] = (),
        *,
        now: datetime | None = None,
        config: str | None = None,
        new_due_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One page (by id) of an account's leads that may be due; the SQL prefilter.

        With ``now`` (and the ``config`` digest), work in proportion to what is due: an
        active enrollment is left out while the next-due time a run stored for it (under
        this config) is still ahead and nothing terminal happened to the lead (a reply, a
        conversion, a score out of range, an opt-out); a lead in no sequence is left out
        when we wrote to it after ``new_due_before`` (no step can be due yet).

        Conservative: it keeps every lead the decision function could act on (including
        rows with unparseable values, so they are reported) and drops the rest: other
        accounts, out-of-range scores, converted, opted out, the lead wrote last, and
        leads whose current silence an ended enrollment already covered. A lead not yet
        opted out whose last message may hold an opt-out ``keyword`` is always kept, even
        when it wrote last, so its "stop" is recorded at once (the decision function checks
        whole words; this is a coarse, case-folded LIKE).
        """
        present = set(self.lead_columns())
        col = {
            c: (f"l.{c}" if c in present else "NULL")
            for c in REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
        }
        params: dict[str, Any] = {
            "account_id": account_id,
            "min_score": min_score,
            "max_score": max_score,
            "after_id": after_id,
            "page": page,
        }
        likes = []
        text = col["last_inbound_text"]
        patterns = keyword_like_patterns(keywords, self.keyword_like_exact)
        if text != "NULL" and patterns:
            for i, pattern in enumerate(patterns):
                params[f"kw{i}"] = pattern
            likes.append(self._keyword_like(text, len(patterns), params))
            beyond = self._keyword_beyond_lower(text, tuple(keywords), len(patterns), params)
            if beyond is not None:
                likes.append(beyond)
        keyword = (
            f"(({' OR '.join(likes)}) "
            f"AND NOT EXISTS (SELECT 1 FROM followup_optouts o2 WHERE o2.lead_id = {self._lid()}))"
            if likes
            else "1 = 0"
        )
        if now is not None:
            params.update(now=now, config=config or "", new_due=new_due_before or now)
        paged = after_id is not None and after_id != ""
        sql = self._candidate_sql(
            self._select_list(), col, keyword, paged=paged, due=now is not None
        )
        return self.query(sql, params)

    def sample_leads(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` raw lead rows, any ones (`sequences check --db` measures templates
        and attributes on them; unparsed, so bad rows are only skipped there)."""
        sql = self.q("leads_sample", select=self._select_list(), leads=self.leads)
        return self.query(sql, {"n": limit})

    def page_key(self, lead_id: Any) -> Any:
        """What the next candidate page starts after, given the last row's id."""
        return str(lead_id)

    def leads_without_id(self, account_id: str) -> int:
        """An account's lead rows whose id is NULL: never candidates (nothing could track
        them), counted so that the run names them."""
        rows = self.query(self.q("leads_without_id", leads=self.leads), {"a": account_id})
        return int(rows[0]["n"])

    def lead_row(self, lead_id: str) -> dict[str, Any] | None:
        sql = self.q("lead_row", select=self._select_list(), leads=self.leads)
        rows = self.query(sql, {"id": lead_id})
        return rows[0] if rows else None

    def lead_rows(self, lead_ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._lead_id_in(chunk)
            sql = self.q("lead_rows", select=self._select_list(), leads=self.leads, ids=where)
            out.extend(self.query(sql, names))
        return out

    # --------------------------------------------------------- lead states
    def lead_states(
        self, lead_ids: Sequence[str], persons: dict[str, str | None] | None = None
    ) -> dict[str, LeadState]:
        """Tracking rows, enrollments and opt-outs for many leads, a few queries a chunk; with
        ``persons`` (lead id -> person key, ``person_key``) also what the person received
        under other lead rows, and the person's opt-out or erasure."""
        followups, enrollments, optouts = self._lead_rows_state(lead_ids)
        keys = {lid: k for lid, k in (persons or {}).items() if k}
        p_follow, p_enrol, p_supp = self._person_rows_state(keys)
        p_enrol = self._mark_gone(p_enrol, lead_ids)
        out: dict[str, LeadState] = {}
        for lid in lead_ids:
            key = keys.get(lid)
            kind, why = p_supp.get(key, (None, None)) if key else (None, None)
            out[lid] = LeadState(
                followups=tuple(followups.get(lid, ())),
                enrollments=tuple(enrollments.get(lid, ())),
                optout_reason=optouts.get(lid),
                opted_out=lid in optouts,
                suppression=kind,
                suppression_reason=why,
                person_followups=tuple(f for other, f in p_follow.get(key, ()) if other != lid)
                if key
                else (),
                person_enrollments=tuple(e for e in p_enrol.get(key, ()) if e.lead_id != lid)
                if key
                else (),
            )
        return out

    def _lead_rows_state(
        self, lead_ids: Sequence[str]
    ) -> tuple[
        dict[str, list[FollowupRecord]], dict[str, list[EnrollmentRecord]], dict[str, str | None]
    ]:
        """Each lead's own tracking rows (in order), enrollments and opt-out reason."""
        followups: dict[str, list[FollowupRecord]] = {}
        enrollments: dict[str, list[EnrollmentRecord]] = {}
        optouts: dict[str, str | None] = {}
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._in_list("lead_id", chunk)
            for r in self.rows(
                "SELECT lead_id, sequence_id, message_id, variant_id, status, reason, sent_at, "
                f"claimed_at FROM followup_tracking WHERE {where} ORDER BY id",
                names,
            ):
                followups.setdefault(r["lead_id"], []).append(_followup_record(r))
            for r in self.rows(
                "SELECT lead_id, sequence_id, anchor_at, started_at, ended_at, ended_reason, "
                "holdout "
                f"FROM followup_enrollments WHERE {where}",
                names,
            ):
                enrollments.setdefault(r["lead_id"], []).append(
                    EnrollmentRecord(
                        sequence_id=r["sequence_id"],
                        anchor_at=r["anchor_at"],
                        started_at=r["started_at"],
                        ended_at=r["ended_at"],
                        ended_reason=r["ended_reason"],
                        holdout=bool(r["holdout"]),
                    )
                )
            for r in self.query(
                f"SELECT lead_id, reason FROM followup_optouts WHERE {where}", names
            ):
                optouts[r["lead_id"]] = r["reason"]
        return followups, enrollments, optouts

    def _person_rows_state(
        self, keys: dict[str, str]
    ) -> tuple[
        dict[str, list[tuple[str, FollowupRecord]]],
        dict[str, list[PersonEnrollment]],
        dict[str, tuple[str, str | None]],
    ]:
        """By person key: the tracking rows and enrollments of every lead row of the person,
        and the person's suppression (opt-out or erasure)."""
        p_follow: dict[str, list[tuple[str, FollowupRecord]]] = {}
        p_enrol: dict[str, list[PersonEnrollment]] = {}
        p_supp: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(sorted(set(keys.values())), 500):
            where, names = self._in_list("person_key", chunk)
            for r in self.rows(
                "SELECT lead_id, person_key, sequence_id, message_id, variant_id, status, "
                f"reason, sent_at, claimed_at FROM followup_tracking WHERE {where} ORDER BY id",
                names,
            ):
                p_follow.setdefault(r["person_key"], []).append((r["lead_id"], _followup_record(r)))
            for r in self.rows(
                "SELECT lead_id, person_key, sequence_id, ended_at FROM followup_enrollments "
                f"WHERE {where}",
                names,
            ):
                p_enrol.setdefault(r["person_key"], []).append(
                    PersonEnrollment(r["lead_id"], r["sequence_id"], r["ended_at"])
                )
            for r in self.query(
                f"SELECT person_key, kind, reason FROM followup_suppressions WHERE {where}", names
            ):
                p_supp[r["person_key"]] = (r["kind"], r["reason"])
        return p_follow, p_enrol, p_supp

    def _mark_gone(
        self, p_enrol: dict[str, list[PersonEnrollment]], lead_ids: Sequence[str]
    ) -> dict[str, list[PersonEnrollment]]:
        """An active enrollment of a lead row the host has since deleted holds nobody back."""
        open_ids = sorted(
            {e.lead_id for es in p_enrol.values() for e in es if e.ended_at is None} - set(lead_ids)
        )
        if open_ids:
            present = set(self._present_lead_ids(open_ids))
            p_enrol = {
                k: [
                    replace(e, gone=True)
                    if e.ended_at is None and e.lead_id not in present and e.lead_id in open_ids
                    else e
                    for e in es
                ]
                for k, es in p_enrol.items()
            }
        return p_enrol

    def enrollment_versions(self, lead_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """``state_version`` of each active enrollment of these leads, by (lead, sequence).

        Read *before* the state a decision uses: a next-due time stored under this version
        is then never older than the tracking rows it was decided from."""
        out: dict[tuple[str, str], int] = {}
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._in_list("lead_id", chunk)
            for r in self.query(self.q("enrollment_versions", ids=where), names):
                out[(r["lead_id"], r["sequence_id"])] = int(r["state_version"])
        return out

    def set_next_due(self, rows: Sequence[tuple[str, str, int, datetime]], config: str) -> int:
        """Store (lead, sequence, version, next due) for active enrollments whose version is
        unchanged since it was read; a run then leaves them out of its candidates until
        then (or until their tracking rows change, or the config does). Returns rows set."""
        n = 0
        with self.transaction():
            for lead_id, sequence_id, version, due in rows:
                n += self.execute(
                    self.q("next_due_set"),
                    {"due": due, "cfg": config, "l": lead_id, "s": sequence_id, "v": version},
                )
        return n

    def _present_lead_ids(self, lead_ids: Sequence[str]) -> list[str]:
        """Which of these lead ids the lead table holds (all of them when it cannot say)."""
        from ..errors import ConfigError

        try:
            self.lead_columns()
        except ConfigError:
            return list(lead_ids)
        out: list[str] = []
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._lead_id_in(chunk)
            sql = self.q("lead_ids_present", leads=self.leads, ids=where)
            out.extend(str(r["id"]) for r in self.query(sql, names))
        return out

    def lead_state(self, lead_id: str, person: str | None = None) -> LeadState:
        """One lead's state; ``person``: its person key (``person_key``), for the person's
        opt-outs and what the person received under other lead rows."""
        return self.lead_states([lead_id], {lead_id: person} if person else None)[lead_id]

    # -------------------------------------------------------------- claims
    @contextmanager
    def lead_tx(self, lead_id: str, account_id: str | None) -> Iterator[bool]:
        """A write transaction holding the lead (and its account's rate window).

        Yields False when another worker holds the lead: the caller skips it.
        """
        with self.transaction():
            if not self._try_lock_lead(lead_id):
                yield False
                return
            if account_id is not None:
                self._lock_account(account_id)
            yield True

    @contextmanager
    def claim_tx(self, account_id: str) -> Iterator[None]:
        """A write transaction holding the account's rate window (its claims serialise on
        it, across runs and hosts); leads are then taken with ``try_lock_leads``."""
        with self.transaction():
            self._lock_account(account_id)
            yield

    def try_lock_leads(self, lead_ids: Sequence[str]) -> set[str]:
        """Inside a transaction: the leads of ``lead_ids`` now held by it (another worker
        holds the others: the caller skips them)."""
        return {lid for lid in lead_ids if self._try_lock_lead(lid)}

    def lock_lead_rows(self, lead_ids: Sequence[str], followup_ids: Sequence[int] = ()) -> None:
        """Inside a transaction: lock these tracking rows (the transaction's own claims, by
        id), then the enrollments of these leads in lead id order: the order every writer of
        many leads keeps (reconcile, a claim batch), and a tracking row before its lead's
        enrollments, as the trigger that moves them takes them. Postgres; SQLite's ``BEGIN
        IMMEDIATE`` already holds the whole database."""
        if not has_query("lead_rows_lock", self.dialect):
            return
        if followup_ids:
            self.query(self.q("claims_lock"), {"ids": list(followup_ids)})
        if lead_ids:
            self.query(self.q("lead_rows_lock"), {"ids": list(lead_ids)})

    def mark_attempted(
        self, followup_id: int, lead_id: str, person_key: str | None, now: datetime
    ) -> bool:
        """Mark this run's claim as handed to the API, in one conditional statement: only a
        claim not yet attempted, of a lead (and person) that has not opted out or been
        erased since. False: do not send (the claim is the caller's to release)."""
        sql = self.q(
            "claim_mark_attempted" if person_key is None else "claim_mark_attempted_person"
        )
        params = {"now": now, "id": followup_id, "p": PENDING, "l": lead_id, "k": person_key}
        return self.execute(sql, params) > 0

    def mark_attempted_later(
        self, followup_id: int, lead_id: str, person_key: str | None, now: datetime
    ) -> Callable[[], bool]:
        """``mark_attempted``, not waited for: the returned function says whether it marked."""
        sql = self.q(
            "claim_mark_attempted" if person_key is None else "claim_mark_attempted_person"
        )
        params = {"now": now, "id": followup_id, "p": PENDING, "l": lead_id, "k": person_key}
        n = self.execute_later(sql, params)
        return lambda: n() > 0

    def release_unattempted(
        self, run_id: str | None = None, followup_ids: Sequence[int] | None = None
    ) -> int:
        """Delete claims never handed to the API (``pending``, attempted_at NULL): of the
        given ids, or all of ``run_id``'s. They were surely not sent: the steps are free."""
        which: list[Sql] = []
        params: dict[str, Any] = {"p": PENDING}
        if run_id is not None:
            which.append(compare("run_id", "=", "r"))
            params["r"] = run_id
        if followup_ids is None:
            return self.execute(self.q("claims_release_unattempted", which=all_of(which)), params)
        n = 0
        for chunk in _chunks(list(followup_ids), 500):
            ids, names = self._in_list("id", chunk)
            sql = self.q("claims_release_unattempted", which=all_of([*which, ids]))
            n += self.execute(sql, {**params, **names})
        return n

    def recent_sends(self, account_id: str, since: datetime, cap: int | None = None) -> int:
        """Follow-ups claimed for an account since ``since``: the sliding rate window.

        With ``cap``, counted up to ``cap`` only (all a limit check needs): the count then
        stops at the limit instead of growing with the run's own claims."""
        if cap is None:
            rows = self.query(self.q("window_count"), {"a": account_id, "since": since})
        else:
            rows = self.query(
                self.q("window_count_capped"),
                {"a": account_id, "since": since, "cap": max(cap, 0)},
            )
        return int(rows[0]["n"])

    def oldest_recent_send(self, account_id: str, since: datetime) -> datetime | None:
        rows = self.rows(self.q("window_oldest"), {"a": account_id, "since": since})
        return rows[0]["claimed_at"] if rows else None

    def insert_followup(self, row: dict[str, Any]) -> int | None:
        """Insert a tracking row; None when (lead, sequence, message) already has one.
        Error texts are redacted, then recipient and conversation ids and error texts are
        sealed here (with a key)."""
        row = self._seal(self._with_external_key(_redact_fields(row)), SEALED_TRACKING)
        cols = tuple(c for c in TRACKING_COLUMNS if c in row)
        out = self.query(_claim_insert(self.dialect, cols), {c: row[c] for c in cols})
        return int(out[0]["id"]) if out else None

    def insert_followups(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """``insert_followup`` for many rows (of distinct steps), a statement per chunk of
        rows with the same columns: the id of each row, None for a step that already has
        one."""
        ready = [
            self._seal(self._with_external_key(_redact_fields(r)), SEALED_TRACKING) for r in rows
        ]
        ids: dict[tuple[Any, Any, Any], int] = {}
        by_cols: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in ready:
            by_cols.setdefault(tuple(c for c in TRACKING_COLUMNS if c in row), []).append(row)
        for cols, same in by_cols.items():
            for chunk in _chunks(same, CLAIMS_PER_INSERT):
                params = {f"{c}{i}": row[c] for i, row in enumerate(chunk) for c in cols}
                for r in self.query(_claims_insert(self.dialect, cols, len(chunk)), params):
                    ids[(r["lead_id"], r["sequence_id"], r["message_id"])] = int(r["id"])
        return [ids.get((r["lead_id"], r["sequence_id"], r["message_id"])) for r in rows]

    def update_followup(
        self, followup_id: int, fields: dict[str, Any], only_status: str | None = None
    ) -> int:
        sql, params = self._followup_update(followup_id, fields, (only_status,))
        return self.execute(sql, params)

    def record_outcome_later(self, followup_id: int, fields: dict[str, Any]) -> Callable[[], int]:
        """A claim's outcome on its tracking row, ``pending`` or ``unknown`` (another run took
        the claim's run for dead during the call: the real outcome beats the guess); not
        waited for (``execute_later``)."""
        sql, params = self._followup_update(followup_id, fields, (PENDING, UNKNOWN))
        return self.execute_later(sql, params)

    def _followup_update(
        self, followup_id: int, fields: dict[str, Any], only: tuple[str | None, ...]
    ) -> tuple[Sql, dict[str, Any]]:
        fields = _redact_fields(fields)  # before sealing: a secret is not even sealed
        # An unknown outcome's reason is the channel's error text: sealed like it.
        error_reason = fields.get("status") == UNKNOWN and "error_message" in fields
        fields = self._with_external_key(fields)
        fields = self._seal(fields, SEALED_TRACKING + (("reason",) if error_reason else ()))
        params = dict(fields, _id=followup_id)
        where, names = _status_in(only, "_only")
        params.update(names)
        return self.q("claim_update", sets=equals(tuple(fields)), only=where), params

    def _with_external_key(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with the lookup hash of the message id they carry (``external_key``),
        when ids are sealed (a key is set); without a key the id is stored as it is and
        looked up as such."""
        mid = fields.get("external_id")
        if "external_id" not in fields:
            return fields
        secret = self.person_secret() if mid is not None and self.cipher.enabled else None
        return {**fields, "external_key": self.lookup_token(mid) if secret else None}

    def lookup_token(self, value: Any) -> str | None:
        """The keyed hash a platform id (message id, event key) is stored and looked up by
        when ids are sealed (``suppress.lookup_token``); None before the tool's tables exist."""
        secret = self.person_secret()
        return suppress.lookup_token(secret, str(value)) if secret else None

    def delete_followup(self, followup_id: int, only_status: str | None = PENDING) -> int:
        where, params = _status_in((only_status,), "s")
        return self.execute(self.q("claim_delete", only=where), {"id": followup_id, **params})

    def release_claim_later(self, followup_id: int) -> Callable[[], int]:
        """Delete a claim whose message surely did not go out, ``pending`` or ``unknown``
        (``record_outcome_later``): the step is free; not waited for."""
        where, params = _status_in((PENDING, UNKNOWN), "s")
        return self.execute_later(self.q("claim_delete", only=where), {"id": followup_id, **params})

    def followup(self, followup_id: int) -> dict[str, Any] | None:
        rows = self.rows(self.q("followup"), {"id": followup_id})
        return self.cipher.open_row(rows[0]) if rows else None

    def followups(
        self,
        lead_id: str | None = None,
        status: str | None = None,
        account_id: str | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        where, params = [], {"limit": limit}
        for col, val in (("lead_id", lead_id), ("status", status), ("account_id", account_id)):
            if val is not None:
                where.append(compare(col, "=", col))
                params[col] = val
        if status in (PENDING, UNKNOWN):
            where.append(self.q("open_statuses"))  # lets SQLite use the partial index
        sql = self.q("followups", where=all_of(where))
        return [self.cipher.open_row(r) for r in self.rows(sql, params)]

    def count_open(self, status: str = UNKNOWN) -> int:
        """How many follow-ups are ``pending`` or ``unknown`` (the partial index answers)."""
        if status not in (PENDING, UNKNOWN):
            raise ValueError(f"not an open status: {status}")
        rows = self.query(self.q("followups_open_count"), {"s": status})
        return int(rows[0]["n"])

    # --------------------------------------------------------- enrollments
    def start_enrollment(
        self,
        lead_id: str,
        sequence_id: str,
        account_id: str | None,
        anchor_at: datetime,
        now: datetime,
        holdout: bool = False,
        person_key: str | None = None,
    ) -> bool:
        n = self.execute(
            self.q("enrollment_start"),
            {
                "l": lead_id,
                "s": sequence_id,
                "a": account_id,
                "anchor": anchor_at,
                "now": now,
                "h": holdout,
                "p": person_key,
            },
        )
        return n > 0

    def start_enrollments(
        self, rows: Sequence[tuple[str, str, str | None, datetime, str | None]], now: datetime
    ) -> None:
        """``start_enrollment`` (not a holdout) for many (lead, sequence, account, anchor,
        person key), a statement per chunk."""
        names = ("l", "s", "a", "anchor", "p")
        for chunk in _chunks(list(rows), CLAIMS_PER_INSERT):
            params: dict[str, Any] = {"now": now, "h": False}
            for i, row in enumerate(chunk):
                params.update({f"{n}{i}": v for n, v in zip(names, row, strict=True)})
            values = value_rows(len(chunk), names, ("now", "h"))
            self.execute(self.q("enrollments_start", values=values), params)

    def end_enrollment(self, lead_id: str, sequence_id: str, reason: str, now: datetime) -> bool:
        return self.end_enrollment_later(lead_id, sequence_id, reason, now)() > 0

    def end_enrollment_later(
        self, lead_id: str, sequence_id: str, reason: str, now: datetime
    ) -> Callable[[], int]:
        """``end_enrollment`` not waited for: the returned function gives the rows ended."""
        return self.execute_later(
            self.q("enrollment_end"), {"now": now, "r": reason, "l": lead_id, "s": sequence_id}
        )

    def enrollments(
        self,
        sequence_id: str | None = None,
        account_id: str | None = None,
        active: bool = True,
        lead_id: str | None = None,
    ) -> list[dict[str, Any]]:
        where, params = [], {}
        if active:
            where.append(self.q("enrollment_active"))
        if lead_id is not None:
            where.append(compare("lead_id", "=", "l"))
            params["l"] = lead_id
        if sequence_id:
            where.append(compare("sequence_id", "=", "s"))
            params["s"] = sequence_id
        if account_id:
            where.append(compare("account_id", "=", "a"))
            params["a"] = account_id
        return self.rows(self.q("enrollments", where=all_of(where)), params)

    # ----------------------------------------------------------------- audit
    def audit(
        self,
        action: str,
        at: datetime,
        who: str,
        run_id: str | None = None,
        lead_id: str | None = None,
        account_id: str | None = None,
        sequence_id: str | None = None,
        message_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add a row to the audit log, chained to the one before (``auditchain``); inside
        ``audits_last``, once its body is done."""
        if self._held_audits is not None:
            self._held_audits.append(
                (action, at, who, run_id, lead_id, account_id, sequence_id, message_id, detail)
            )
            return
        detail = redact_obj(detail) if detail else detail  # API texts may quote a secret
        auditchain.append(
            self, action, at, who, run_id, lead_id, account_id, sequence_id, message_id, detail
        )

    @contextmanager
    def audits_last(self) -> Iterator[None]:
        """Inside a write transaction: its audit rows (``audit``) are written, in order,
        when the body is done. Appending to the audit chain locks its head until the commit
        (Postgres): taken last, the head is never held while the transaction waits for a
        lead's rows that another writer holds while it waits for the head (Postgres would
        abort one of the two: "deadlock detected")."""
        if self._held_audits is not None:
            yield
            return
        self._held_audits = []
        try:
            yield
            held = self._held_audits
        finally:
            self._held_audits = None
        for row in held:
            self.audit(*row)

    def audit_later(
        self,
        action: str,
        at: datetime,
        who: str,
        run_id: str | None = None,
        lead_id: str | None = None,
        account_id: str | None = None,
        sequence_id: str | None = None,
        message_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Callable[[], int]:
        """``audit`` inside the caller's transaction, not waited for: call the returned
        function before the transaction ends (``auditchain.append_later``)."""
        detail = redact_obj(detail) if detail else detail
        return auditchain.append_later(
            self, action, at, who, run_id, lead_id, account_id, sequence_id, message_id, detail
        )

    def audit_followup(
        self,
        action: str,
        at: datetime,
        who: str,
        row: Mapping[str, Any],
        detail: dict[str, Any],
        run_id: str | None = None,
    ) -> None:
        """An audit row about a tracking row: its lead, account, sequence and message."""
        self.audit(
            action,
            at,
            who,
            run_id,
            row["lead_id"],
            row["account_id"],
            row["sequence_id"],
            row["message_id"],
            detail,
        )

    def note_bad_leads(
        self, problems: Sequence[tuple[str, str]], now: datetime, who: str, run_id: str
    ) -> list[str]:
        """Record (lead id, problem) pairs in the audit log; returns the problems not recorded
        before, so that cron mails a bad row once, not three times a day."""
        new: list[str] = []
        with self.transaction():
            for lead_id, problem in problems[:BAD_LEADS_NOTED]:
                detail = {"problem": redact(problem)}
                seen = self.query(
                    self.q("bad_lead_noted"),
                    {"l": lead_id, "d": json.dumps(detail, sort_keys=True)},
                )
                if not seen:
                    self.audit("bad_lead", now, who, run_id, lead_id, detail=detail)
                    new.append(problem)
        return new + [p for _, p in problems[BAD_LEADS_NOTED:]]

    def audit_log(self, lead_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = self.q("audit_log_of_lead" if lead_id else "audit_log")
        return self.rows(sql, {"l": lead_id, "n": limit})

    def config_seen(self, digest: str, path: str, who: str, now: datetime) -> bool:
        """Record a config version; True when it was not seen before."""
        n = self.execute(
            self.q("config_seen"),
            {"d": digest, "p": path, "a": who, "now": now},
        )
        return n > 0

    # ------------------------------------------------------------------ runs
    def start_run(
        self, run_id: str, host: str, pid: int, who: str, wall: datetime, now: datetime
    ) -> None:
        self.execute(
            self.q("run_start"),
            {"r": run_id, "h": host, "p": pid, "a": who, "w": wall, "n": now},
        )

    def heartbeat(self, run_id: str, wall: datetime) -> None:
        self.execute(
            "UPDATE followup_runs SET heartbeat_at = :w WHERE run_id = :r", {"w": wall, "r": run_id}
        )

    def finish_run(
        self, run_id: str, wall: datetime, exit_code: int, summary: dict[str, Any]
    ) -> None:
        self.execute(
            self.q("run_finish"),
            {
                "w": wall,
                "c": exit_code,
                "s": json.dumps(redact_obj(summary), default=str),
                "r": run_id,
            },
        )

    def other_runs_unfinished(self, run_id: str, since: datetime) -> list[dict[str, Any]]:
        """The runs but ``run_id`` that have not finished and heartbeated after ``since``."""
        return self.rows(self.q("runs_unfinished_others"), {"r": run_id, "since": since})

    def open_claims(self) -> list[dict[str, Any]]:
        """Pending claims joined with their run's liveness data."""
        return self.rows(self.q("claims_open"), {"p": PENDING})

    def mark_unknown(self, followup_id: int, why: str, now: datetime) -> bool:
        return (
            self.update_followup(
                followup_id,
                {"status": UNKNOWN, "reason": why, "updated_at": now},
                only_status=PENDING,
            )
            > 0
        )


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


def put_back(obj: Any, skip: tuple[str, ...] = ()) -> Callable[[], None]:
    """A ``reset`` for ``retried``: puts ``obj``'s attributes (but ``skip``) back as they
    are now, copies of them each time (a counter changed by one attempt is not the one
    the next attempt starts from)."""
    saved = {k: copy.copy(v) for k, v in vars(obj).items() if k not in skip}

    def reset() -> None:
        vars(obj).update({k: copy.copy(v) for k, v in saved.items()})

    return reset


# The leases of the stores without a lease query (SQLite, memory): (scope, account) -> holder.
_LEASES: dict[tuple[str, str], SqlStore] = {}
_LEASES_LOCK = threading.Lock()


def _status_in(statuses: tuple[str | None, ...], param: str) -> tuple[Sql, dict[str, Any]]:
    """``status = :param`` (or ``IN`` several), and its parameters; ALWAYS for (None,)."""
    if statuses == (None,):
        return ALWAYS, {}
    if len(statuses) == 1:
        return compare("status", "=", param), {param: statuses[0]}
    return in_list("status", statuses, param)


# Rows in one multi-row INSERT at most (a batch of claims is 16: ``sending.CLAIM_BATCH``).
CLAIMS_PER_INSERT = 32


@lru_cache(maxsize=256)
def _claims_insert(dialect: str, cols: tuple[str, ...], count: int) -> Sql:
    """The INSERT of ``count`` tracking rows with these columns (built once per shape)."""
    return named_query("claims_insert", dialect, cols=columns(cols), values=value_rows(count, cols))


@lru_cache(maxsize=256)
def _claim_insert(dialect: str, cols: tuple[str, ...]) -> Sql:
    """The INSERT of a tracking row with these columns (built once per column set)."""
    return named_query("claim_insert", dialect, cols=columns(cols), values=placeholders(list(cols)))
