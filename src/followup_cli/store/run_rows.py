"""Runs: their rows (start, heartbeat, finish), the runs still going, and the claims
left open."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..models import PENDING, UNKNOWN
from ..redact import redact_obj


class RunQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # ------------------------------------------------------------------ runs
    def start_run(
        self, run_id: str, host: str, pid: int, who: str, wall: datetime, now: datetime
    ) -> None:
        self.execute(
            self.q("run_start"),
            {"r": run_id, "h": host, "p": pid, "a": who, "w": wall, "n": now},
        )

    def heartbeat(self, run_id: str, wall: datetime) -> None:
        self.execute(self.q("run_heartbeat"), {"w": wall, "r": run_id})

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
