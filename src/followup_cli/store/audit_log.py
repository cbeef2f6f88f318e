"""The audit log: its rows appended to the chain (``auditchain``), written last in a
transaction, read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from .. import auditchain
from ..auditchain import AuditEntry
from ..redact import redact, redact_obj
from .rows import BAD_LEADS_NOTED


class AuditQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # ----------------------------------------------------------------- audit
    def audit(self, *fields: Any, **named: Any) -> None:
        """Add a row to the audit log, chained to the one before (``auditchain``); inside
        ``audits_last``, once its body is done. Takes ``auditchain.AuditEntry``'s fields:
        action, at, who, then run, lead, account, sequence and message ids and detail."""
        self._audit_entry(AuditEntry(*fields, **named))

    def _audit_entry(self, entry: AuditEntry) -> None:
        if self._held_audits is not None:
            self._held_audits.append(entry)
            return
        if entry.detail:  # API texts may quote a secret
            entry = replace(entry, detail=redact_obj(entry.detail))
        auditchain.append(self, entry)

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
        for entry in held:
            self._audit_entry(entry)

    def audit_later(self, *fields: Any, **named: Any) -> Callable[[], int]:
        """``audit`` inside the caller's transaction, not waited for: call the returned
        function before the transaction ends (``auditchain.append_later``)."""
        entry = AuditEntry(*fields, **named)
        if entry.detail:
            entry = replace(entry, detail=redact_obj(entry.detail))
        return auditchain.append_later(self, entry)

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
