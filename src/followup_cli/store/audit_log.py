"""The audit log: its rows appended to the chain (``auditchain``), written last in a
transaction, read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .. import auditchain
from ..redact import redact, redact_obj
from .rows import BAD_LEADS_NOTED


class AuditQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

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
