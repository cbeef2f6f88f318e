"""What ``decide`` returns: the ``Decision`` (an action, a reason, the step) and the
``Check`` lines ``explain`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..config import Message, Sequence

Action = Literal["send", "wait", "skip", "end", "holdout", "none"]

# Reasons, by kind. Terminal reasons end an active enrollment; the others just wait.
TERMINAL = {
    "opted_out",
    "converted",
    "score_out_of_range",
    "lead_limit",
    "replied",
    "trigger_mismatch",
    "sequence_limit",
    "completed",
    "failed",
    "sequence_removed",
}


@dataclass
class Check:
    rule: str
    ok: bool | None  # None: not evaluated (an earlier rule decided)
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "ok": self.ok, "detail": self.detail}


@dataclass
class Decision:
    lead_id: str
    account_id: str | None
    action: Action = "none"
    reason: str = ""
    detail: str = ""
    checks: list[Check] = field(default_factory=list)
    sequence: Sequence | None = None
    message: Message | None = None
    step: int | None = None  # 1-based position among the sequence's messages
    variant_id: str | None = None
    anchor_at: datetime | None = None
    due_at: datetime | None = None
    next_at: datetime | None = None
    window_closes_at: datetime | None = None
    new_enrollment: bool = False
    keyword_optout: str | None = None
    followup_number: int = 0
    last_followup_at: datetime | None = None

    @property
    def sequence_id(self) -> str | None:
        return self.sequence.id if self.sequence else None

    @property
    def message_id(self) -> str | None:
        return self.message.id if self.message else None

    def as_dict(self) -> dict[str, Any]:
        def iso(dt: datetime | None) -> str | None:
            return dt.isoformat() if dt else None

        return {
            "lead_id": self.lead_id,
            "account_id": self.account_id,
            "action": self.action,
            "reason": self.reason,
            "detail": self.detail,
            "sequence_id": self.sequence_id,
            "message_id": self.message_id,
            "step": self.step,
            "variant_id": self.variant_id,
            "silence_started_at": iso(self.anchor_at),
            "due_at": iso(self.due_at),
            "next_at": iso(self.next_at),
            "window_closes_at": iso(self.window_closes_at),
            "followup_number": self.followup_number,
            "checks": [c.as_dict() for c in self.checks],
        }
