"""The claims and their tracking rows: the claim transaction and its locks, the
``pending`` rows, the attempt mark, the outcomes, the rate window's count."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

from .. import suppress
from ..models import PENDING, UNKNOWN
from .queries import (
    ALWAYS,
    Sql,
    all_of,
    columns,
    compare,
    equals,
    has_query,
    in_list,
    placeholders,
    value_rows,
)
from .queries import q as named_query
from .rows import SEALED_TRACKING, TRACKING_COLUMNS, _chunks, _redact_fields


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


class TrackingQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

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
        # not waited for (inside ``pipelined``: with the statements after them): the
        # server takes the locks before it runs those
        if followup_ids:
            self.execute_later(self.q("claims_lock"), {"ids": list(followup_ids)})
        if lead_ids:
            self.execute_later(self.q("lead_rows_lock"), {"ids": list(lead_ids)})

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
