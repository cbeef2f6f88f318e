"""What happened after a send (issue 4): outcomes from the host app's lead table and from
events, and the queries behind ``report``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .. import suppress
from ..crypto import escape
from ..models import (
    SENT,
    UNKNOWN,
)
from .queries import Sql, all_of, columns, compare, ident, value_rows
from .rows import (
    SEALED_EVENTS,
    SEALED_TRACKING,
    TRACKING_COLUMNS,
    _chunks,
    _redact_fields,
)


class OutcomeQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # -------------------------------------------- outcomes, events, report (issue 4)
    _OUTCOME_COLUMNS = ("delivered_at", "read_at", "responded_at", "converted_at")

    def outcome_followups(
        self,
        since: datetime | None = None,
        lead_ids: Sequence[str] | None = None,
        by: str = "lead_id",
    ) -> list[dict[str, Any]]:
        """Follow-ups that went out (``sent_at`` set), oldest first: what outcomes attach to.
        ``by="person_key"``: ``lead_ids`` are person keys (the person's rows, any lead)."""
        return self._since_for_leads("outcome_followups", "sent_at", "id", since, lead_ids, by)

    def outcome_enrollments(
        self,
        since: datetime | None = None,
        lead_ids: Sequence[str] | None = None,
        by: str = "lead_id",
    ) -> list[dict[str, Any]]:
        """Enrollments (holdout included) whose silence started since ``since``."""
        return self._since_for_leads(
            "outcome_enrollments", "anchor_at", "lead_id", since, lead_ids, by
        )

    def _since_for_leads(
        self,
        name: str,
        time_col: str,
        tie_col: str,
        since: datetime | None,
        lead_ids: Sequence[str] | None,
        by: str = "lead_id",
    ) -> list[dict[str, Any]]:
        """The query ``name`` narrowed to ``time_col >= since`` and to ``lead_ids`` (in
        chunks; values of the column ``by``), ordered by (``time_col``, ``tie_col``)."""
        assert by in ("lead_id", "person_key")
        params: dict[str, Any] = {}
        conds: list[Sql] = []
        if since is not None:
            conds.append(compare(time_col, ">=", "since"))
            params["since"] = since
        if lead_ids is None:
            return self.rows(self.q(name, where=all_of(conds)), params)
        out: list[dict[str, Any]] = []
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._in_list(by, chunk)
            out.extend(self.rows(self.q(name, where=all_of([*conds, where])), {**params, **names}))
        return sorted(out, key=lambda r: (r[time_col], r[tie_col]))

    def set_followup_outcome(
        self,
        followup_id: int,
        column: str,
        at: datetime,
        now: datetime,
        promote_from: Sequence[str] = (),
        status: str | None = None,
    ) -> bool:
        """Record an outcome time on a follow-up when it is new or earlier than the one kept;
        the status moves to ``status`` only from one of ``promote_from`` (never backwards)."""
        if column not in self._OUTCOME_COLUMNS:
            raise ValueError(f"not an outcome column: {column}")
        params: dict[str, Any] = {"id": followup_id, "at": at, "now": now}
        if status is not None and promote_from:
            promote, names = self._in_list("status", promote_from, param="f")
            params.update(names, to=status)
            sql = self.q("followup_outcome_set_promote", column=ident(column), promote=promote)
        else:
            sql = self.q("followup_outcome_set", column=ident(column))
        return self.execute(sql, params) > 0

    def set_enrollment_outcome(
        self, lead_id: str, sequence_id: str, column: str, at: datetime
    ) -> bool:
        """``responded_at`` / ``converted_at`` of an enrollment: kept when earlier."""
        if column not in ("responded_at", "converted_at"):
            raise ValueError(f"not an enrollment outcome column: {column}")
        sql = self.q("enrollment_outcome_set", column=ident(column))
        return self.execute(sql, {"at": at, "l": lead_id, "s": sequence_id}) > 0

    def changed_outcome_leads(self, since: datetime) -> list[dict[str, Any]]:
        """Leads whose ``last_inbound_at`` / ``converted_at`` differ from what the last
        reconcile saw (or that no reconcile has seen, or whose rows changed since): the only
        leads whose outcomes can have changed. One query, the lead table against the marks;
        among them leads without a follow-up or enrollment since ``since``, which reconcile
        marks (reading each lead against its mark is cheaper than finding the leads of the
        recent rows at every run). Postgres gives them in lead id order (the lock order)."""
        # A host app that marks a conversion by status alone: the mark records it too.
        sql = self.q(
            "changed_outcome_leads",
            leads=self.leads,
            lid=self._lid(),
            inbound_at=self._lead_column("last_inbound_at"),
            converted_at=self._lead_column("converted_at"),
            status=self._lead_column("status"),
        )
        return self.query(sql, {"since": since})

    def save_outcome_marks(
        self, marks: Sequence[tuple[str, str | None, str | None]], now: datetime
    ) -> None:
        """Remember (lead id, inbound as text, conversion as text) as reconciled: one
        statement per chunk, not a round trip per lead."""
        for chunk in _chunks(list(marks), 300):
            params: dict[str, Any] = {"now": now}
            for i, (lead_id, inbound, converted) in enumerate(chunk):
                params.update({f"l{i}": lead_id, f"i{i}": inbound, f"c{i}": converted})
            values = value_rows(len(chunk), ("l", "i", "c"), ("now",))
            self.execute(self.q("outcome_marks_save", values=values), params)

    def forget_outcome_mark(self, lead_id: str) -> None:
        """The next reconcile looks at this lead again (its follow-ups changed)."""
        self.execute(self.q("outcome_mark_forget"), {"l": lead_id})

    def resolve_unknown(
        self, followup_id: int, sent: bool, who: str, now: datetime
    ) -> dict[str, Any] | None:
        """An operator's verdict on an unknown follow-up: it went out (``sent``, at its
        claim time) or it did not (the row is deleted, so a later run may send the step).
        None when the row is not unknown.

        One whole transaction, conditional on the row being unknown still, and nothing
        outside it: a conflict with another writer (40P01, 40001; a run's reconcile or
        claims) rolled it back whole, so it runs again (``retried``) instead of failing."""
        from .base import nothing_to_put_back, retried

        return retried(
            lambda: self._resolve_unknown_tx(followup_id, sent, who, now),
            nothing_to_put_back,
            "unknown resolve",
        )

    def _resolve_unknown_tx(
        self, followup_id: int, sent: bool, who: str, now: datetime
    ) -> dict[str, Any] | None:
        """In the one order: the tracking row (then its lead's enrollments, by the
        trigger), its lead's reconcile mark, the audit row last."""
        with self.transaction():
            row = self.followup(followup_id)
            if row is None or row["status"] != UNKNOWN:
                return None
            if sent:
                changed = self.update_followup(
                    followup_id,
                    {"status": SENT, "sent_at": row["claimed_at"], "updated_at": now},
                    UNKNOWN,
                )
                # a reply or conversion seen earlier may now belong to this follow-up
                self.forget_outcome_mark(row["lead_id"])
            else:
                changed = self.delete_followup(followup_id, UNKNOWN)
            if not changed:  # another resolve committed since it was read: its verdict holds
                return None
            detail = {"followup_id": followup_id, "as": "sent" if sent else "released"}
            self.audit_followup("unknown_resolved", now, who, row, detail)
        return row

    def insert_event(self, row: dict[str, Any]) -> int | None:
        """Record an ingested event; None when its key was seen before (a duplicate).

        With a key (ids sealed) the event key is stored as its keyed hash and the message id
        sealed; an event stored before in any form (clear key, hashed key, or either erased
        since) is a duplicate all the same."""
        cols = (
            "event_key", "type", "source", "lead_id", "account_id", "message_id", "at",
            "outcome", "detail", "ingested_at",
        )  # fmt: skip
        sql = self.q("event_insert")
        fields = _redact_fields({c: row.get(c) for c in cols})
        raw = fields.get("event_key")
        secret = self.person_secret()
        if secret and raw:
            hashed = suppress.lookup_token(secret, str(raw))
            seen = [str(raw), hashed]
            seen += [suppress.erased_token(secret, k) for k in tuple(seen)]
            where, names = self._in_list("event_key", seen)
            if self.query(self.q("event_seen", keys=where), names):
                return None  # seen before (in whatever form it was stored): a duplicate
            if self.cipher.enabled:
                fields["event_key"] = hashed
                fields = self._seal(fields, SEALED_EVENTS)
        out = self.query(sql, fields)
        return int(out[0]["id"]) if out else None

    def set_event_outcome(self, event_id: int, outcome: str) -> None:
        self.execute(self.q("event_outcome_set"), {"o": outcome, "i": event_id})

    def events(self, lead_id: str | None = None) -> list[dict[str, Any]]:
        sql = self.q("events_of_lead" if lead_id else "events_all")
        return [self.cipher.open_row(r) for r in self.rows(sql, {"l": lead_id})]

    def followup_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        """The tracking row of the message the platform calls ``external_id``: by its keyed
        hash (ids sealed), else by the id as stored in clear (no key, or a row written before
        the key was set and not yet converted by ``keys rotate``)."""
        token = self.lookup_token(external_id)
        if token is not None:
            rows = self.rows(self.q("followup_by_external_key"), {"h": token})
            if rows:
                return rows[0]
        clear = sorted({external_id, escape(external_id)})
        where, names = self._in_list("external_id", clear)
        rows = self.rows(self.q("followup_by_external_id", ids=where), names)
        return rows[0] if rows else None

    def lead_for_recipient(self, recipient_id: str, account_id: str | None = None) -> str | None:
        """The lead an IGSID belongs to: from our tracking rows (by the person's keyed hash:
        a sealed recipient id cannot be compared), else from the lead store."""
        secret = self.person_secret()
        if secret:
            accounts = (
                [account_id]
                if account_id
                else [r["account_id"] for r in self.query(self.q("tracked_accounts"))]
            )
            keys = [suppress.person_key(secret, a, recipient_id) for a in accounts]
            for chunk in _chunks(keys, 500):
                where, names = self._in_list("person_key", chunk)
                rows = self.query(self.q("lead_of_person_keys", keys=where), names)
                if rows:
                    return str(rows[0]["lead_id"])
        params = {"r": recipient_id, "a": account_id}
        acct = all_of([compare("account_id", "=", "a")] if account_id else [])
        rows = self.query(self.q("lead_of_recipient_tracked", account=acct), params)
        if rows:
            return str(rows[0]["lead_id"])
        self.lead_columns()
        acct = all_of([compare("l.account_id", "=", "a")] if account_id else [])
        rows = self.query(self.q("lead_of_recipient", leads=self.leads, account=acct), params)
        return str(rows[0]["id"]) if rows else None

    def report_followups(
        self, start: datetime, end: datetime, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Tracking rows (bodies, person and sealed columns left out) sent, or else claimed,
        in [start, end)."""
        acct = all_of([compare("account_id", "=", "a")] if account_id else [])
        left_out = ("body", "body_encrypted", "person_key", "external_key", *SEALED_TRACKING)
        cols = columns([c for c in TRACKING_COLUMNS if c not in left_out])
        return self.rows(
            self.q("report_followups", cols=cols, account=acct),
            {"start": start, "end": end, "a": account_id},
        )

    def report_enrollments(
        self, start: datetime, end: datetime, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Enrollments that started, or whose silence started, in [start, end)."""
        acct = all_of([compare("account_id", "=", "a")] if account_id else [])
        return self.rows(
            self.q("report_enrollments", account=acct),
            {"start": start, "end": end, "a": account_id},
        )

    def sent_steps(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Sent follow-ups of some (lead, sequence) enrollments, whenever they went out."""
        out: list[dict[str, Any]] = []
        leads = sorted({lead for lead, _ in pairs})
        wanted = set(pairs)
        for r in self.outcome_followups(lead_ids=leads):
            if (r["lead_id"], r["sequence_id"]) in wanted:
                out.append(r)
        return out

    def qualified_leads(self, account_id: str, min_score: int, max_score: int) -> tuple[int, int]:
        """(qualified, followed up): leads of an account with a score in range, not converted
        and not opted out (neither the lead nor the person behind it, under any lead row);
        and how many of them ever received a follow-up."""
        parts = {
            "leads": self.leads,
            "lid": self._lid(),
            "converted_at": self._lead_column("converted_at"),
            "status": self._lead_column("status"),
        }
        params = {"a": account_id, "lo": min_score, "hi": max_score}
        suppressed = {
            r["person_key"] for r in self.query(self.q("suppressed_in_account"), {"a": account_id})
        }
        if not suppressed:  # the usual case: one aggregate in SQL
            rows = self.query(self.q("qualified_leads", **parts), params)
            return int(rows[0]["qualified"]), int(rows[0]["followed_up"])
        # The person's key is a keyed hash: computed here, one page of leads at a time.
        qualified = followed_up = 0
        after: Any = None
        while True:
            page = all_of([compare("l.id", ">", "after")] if after is not None else [])
            rows = self.query(
                self.q("qualified_leads_page", after=page, **parts), {**params, "after": after}
            )
            for r in rows:
                if self.person_key(account_id, r["recipient_id"]) in suppressed:
                    continue
                qualified += 1
                followed_up += int(r["followed"])
            if len(rows) < 5000:
                return qualified, followed_up
            after = rows[-1]["id"]

    def lead_labels(
        self, sequence_id: str | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows of the ``followup_lead_labels`` view: leads in a sequence now."""
        where, params = [], {}
        if sequence_id:
            where.append(compare("sequence_id", "=", "s"))
            params["s"] = sequence_id
        if account_id:
            where.append(compare("account_id", "=", "a"))
            params["a"] = account_id
        return self.rows(self.q("lead_labels", where=all_of(where)), params)
