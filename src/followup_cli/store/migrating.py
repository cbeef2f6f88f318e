"""Applying the numbered migrations (``migrations.py``) on a store and recording them in
``followup_migrations``; the person keys backfilled by the migration that added them."""

from __future__ import annotations

from datetime import datetime

from .. import auditchain, suppress
from .migrations import MIGRATIONS


class Migrating:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    ``_ddl``, locks) and its person queries."""

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

    def pending_migrations(self) -> list[str]:
        try:
            done = {r["name"] for r in self.query(self.q("migrations_applied"))}
        except Exception:  # noqa: BLE001 - no table yet: everything is pending
            done = set()
        return [name for name, _ in MIGRATIONS if name not in done]

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query(self.q("migrations_applied"))]
