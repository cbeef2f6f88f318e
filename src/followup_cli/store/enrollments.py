"""Enrollments: a lead in a sequence, started, ended, listed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .queries import all_of, compare, value_rows
from .rows import _chunks
from .tracking import CLAIMS_PER_INSERT


class EnrollmentQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

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
