"""The person behind a lead (issue 9): the keyed person key, suppressions (opt-outs and
erasures of the person), and the lead-level opt-out table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .. import suppress
from ..crypto import UnreadableValue


class PersonQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # ------------------------------------------------------- the person (issue 9)
    def person_secret(self) -> str | None:
        """The secret of person keys: $FOLLOWUP_SUPPRESSION_KEY, else the database's own
        (None before the tool's tables exist). Refuses a key other than the one the
        suppressions were written with: an erased person must never be missed."""
        if self._secret is not None:
            return self._secret
        from ..errors import StoreConfigError

        env = suppress.env_secret()
        if self._table_columns("followup_meta") is None:
            return env
        if env is not None:
            if len(env) < suppress.MIN_KEY_CHARS:
                raise StoreConfigError(
                    f"${suppress.SUPPRESSION_KEY_ENV} is shorter than {suppress.MIN_KEY_CHARS} "
                    "characters; use a long random value (e.g. `followup keygen`)"
                )
            secret = env
        else:
            rows = self.query(self.q("person_key_secret"))
            if not rows:
                return None
            secret = str(rows[0]["value"])
        kid = suppress.key_id(secret)
        other = self.query(self.q("suppression_other_key"), {"k": kid})
        if other:
            using = (
                f"${suppress.SUPPRESSION_KEY_ENV} has key id {kid}"
                if env is not None
                else f"${suppress.SUPPRESSION_KEY_ENV} is not set (the database's key, id {kid})"
            )
            raise StoreConfigError(
                f"{self.describe()}: opt-outs and erasures were recorded with key id "
                f"{other[0]['key_id']}, but {using}; set ${suppress.SUPPRESSION_KEY_ENV} to the "
                "key they were recorded with, or an erased person could be messaged again"
            )
        self._secret = secret
        return secret

    def person_key(self, account_id: str | None, recipient_id: str | None) -> str | None:
        """The person a lead row names (keyed hash of account and recipient), or None."""
        if not recipient_id or not str(recipient_id).strip():
            return None
        secret = self.person_secret()
        return suppress.person_key(secret, account_id, str(recipient_id)) if secret else None

    def person_of(self, lead_id: str) -> tuple[str | None, str] | None:
        """(account, recipient) of a lead: from the lead table, else from the tool's tracking
        rows (the host may have deleted the row); None when neither knows it."""
        from ..errors import ConfigError

        try:
            row = self.lead_row(lead_id)
        except ConfigError:
            row = None
        if row is not None and row.get("recipient_id") not in (None, ""):
            return (
                None if row.get("account_id") is None else str(row["account_id"]),
                str(row["recipient_id"]).strip(),
            )
        rows = self.query(self.q("person_of_lead_from_tracking"), {"l": lead_id})
        if rows:
            try:
                recipient = self.cipher.open(rows[0]["recipient_id"], strict=True)
            except UnreadableValue:
                return None  # sealed with a key not at hand: unknown, never a wrong person
            return rows[0]["account_id"], str(recipient)
        return None

    def person_ref(self, lead_id: str) -> tuple[str, str | None, str | None] | None:
        """(person key, account, recipient or None) of a lead: computed from the lead table's
        row, else the key the tool's own rows carry (the host may have deleted its row; the
        key, unlike a stored recipient id, needs no decryption); None when nothing knows it."""
        from ..errors import ConfigError

        try:
            row = self.lead_row(lead_id)
        except ConfigError:
            row = None
        if row is not None and row.get("recipient_id") not in (None, ""):
            account = None if row.get("account_id") is None else str(row["account_id"])
            recipient = str(row["recipient_id"]).strip()
            key = self.person_key(account, recipient)
            return (key, account, recipient) if key else None
        for name in ("person_key_from_tracking", "person_key_from_enrollments"):
            rows = self.query(self.q(name), {"l": lead_id})
            if rows:
                return str(rows[0]["person_key"]), rows[0]["account_id"], None
        return None

    def person_key_of(self, lead_id: str) -> str | None:
        ref = self.person_ref(lead_id)
        return ref[0] if ref else None

    def add_suppression(
        self,
        key: str,
        account_id: str | None,
        kind: str,
        source: str,
        who: str,
        now: datetime,
        recipient_id: str | None = None,
        lead_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Record a person's opt-out (idempotent; an erasure stays an erasure) or erasure
        (replaces an opt-out, keeping nothing but the key). True when something changed."""
        secret = self.person_secret()
        assert secret is not None
        params = {
            "k": key,
            "kid": suppress.key_id(secret),
            "a": account_id or "",
            "r": recipient_id,
            "l": lead_id,
            "kind": kind,
            "why": reason,
            "s": source,
            "who": who,
            "now": now,
        }
        params = self._seal(params, ("r",))
        erasure = kind == suppress.ERASURE
        sql = self.q("suppression_add_erasure" if erasure else "suppression_add_optout")
        return self.execute(sql, params) > 0

    def remove_suppression(self, key: str, kind: str) -> bool:
        return self.execute(self.q("suppression_remove"), {"k": key, "kind": kind}) > 0

    def suppression(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        rows = self.rows(self.q("suppression_of_person"), {"k": key})
        return self.cipher.open_row(rows[0]) if rows else None

    def suppressions(self) -> list[dict[str, Any]]:
        return [self.cipher.open_row(r) for r in self.rows(self.q("suppressions_all"))]

    def is_erased(self, lead_id: str, key: str | None = None) -> bool:
        """An erasure holds for the lead id or for its person."""
        if self.query(self.q("optout_by_source"), {"l": lead_id, "s": suppress.ERASURE}):
            return True
        key = key or self.person_key_of(lead_id)
        row = self.suppression(key)
        return row is not None and row["kind"] == suppress.ERASURE

    # -------------------------------------------------------------- opt-out
    def add_optout(
        self,
        lead_id: str,
        reason: str | None,
        source: str,
        who: str,
        now: datetime,
        person: tuple[str | None, str] | None = None,
    ) -> bool:
        """Opt a lead out, and the person behind it (``person``: its account and recipient,
        else looked up): a new lead row for the same person stays opted out. True when
        something new was recorded."""
        n = self.execute(
            self.q("optout_add"),
            {"l": lead_id, "r": reason, "s": source, "a": who, "now": now},
        )
        if person is not None:
            key = self.person_key(*person)
            ref = (key, person[0], person[1]) if key else None
        else:
            ref = self.person_ref(lead_id)
        if ref is None:
            return n > 0
        kind = suppress.ERASURE if source == suppress.ERASURE else suppress.OPTOUT
        m = self.add_suppression(
            ref[0],
            ref[1],
            kind,
            source,
            who,
            now,
            recipient_id=ref[2] if kind == suppress.OPTOUT else None,
            lead_id=lead_id if kind == suppress.OPTOUT else None,
            reason=reason if kind == suppress.OPTOUT else None,
        )
        return n > 0 or m

    def remove_optout(self, lead_id: str, others: Sequence[str] | None = None) -> bool:
        """Lift a lead's opt-out and its person's, never an erasure (``erase --lift`` does).

        The person's opt-out stays while another lead row of the same person still holds
        an opt-out of its own (``other_optouts``): lifting it from this row would resume a
        person who said stop under that other row. (``others``: those rows, when the caller
        has just read them.)"""
        n = self.execute(self.q("optout_remove_unless"), {"l": lead_id, "e": suppress.ERASURE})
        key = self.person_key_of(lead_id)
        if others is None and key:
            others = self.other_optouts(lead_id, key)
        if not key or others:
            return n > 0
        return self.remove_suppression(key, suppress.OPTOUT) or n > 0

    def other_optouts(self, lead_id: str, key: str | None = None) -> list[str]:
        """The other lead rows of ``lead_id``'s person (``key``) holding an opt-out of their
        own (not an erasure), by lead id: the rows the host table still has, matched by
        their account and recipient, and the lead the person's opt-out was recorded under."""
        key = key or self.person_key_of(lead_id)
        if not key:
            return []
        held = {
            str(r["lead_id"])
            for r in self.optouts()
            if r.get("source") != suppress.ERASURE and str(r["lead_id"]) != str(lead_id)
        }
        if not held:
            return []
        found = {
            str(row["id"])
            for row in self.lead_rows(sorted(held))
            if self.person_key(
                None if row.get("account_id") is None else str(row["account_id"]),
                row.get("recipient_id"),
            )
            == key
        }
        recorded = self.suppression(key)
        if recorded and recorded.get("lead_id") is not None:
            if str(recorded["lead_id"]) in held:
                found.add(str(recorded["lead_id"]))
        return sorted(found)

    def optouts(self) -> list[dict[str, Any]]:
        return self.rows(self.q("optouts_all"))

    def is_opted_out(self, lead_id: str, person_key: str | None = None) -> bool:
        """The lead, or the person behind it (``person_key``), opted out or was erased."""
        name = "optout_of_lead" if person_key is None else "optout_of_lead_or_person"
        return bool(self.query(self.q(name), {"l": lead_id, "k": person_key}))
