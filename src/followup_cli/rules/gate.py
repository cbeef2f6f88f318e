"""What the gates of ``decide`` share: the inputs, the decision being built, and the three
ways a gate decides (``stop``, ``wait``, ``verdict``); ``check`` records one line of
``explain``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from ..config import Config, Message, Sequence, Settings
from ..models import Lead, LeadState
from .decision import TERMINAL, Action, Check, Decision


@lru_cache(maxsize=256)
def hours_delta(hours: float) -> timedelta:
    """``timedelta(hours=hours)``; the hours are the config's (a few values a run, asked for
    several times a lead), so each is built once."""
    return timedelta(hours=hours)


def fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "never"


def under(lead: Lead) -> str:
    """Where the lead's last inbound message is: "" when under its own row, else naming the
    person's other lead row that carries it (``person_inbound``)."""
    if lead.inbound_lead_id is None:
        return ""
    return f" as lead {lead.inbound_lead_id} (another lead row of the same person)"


@dataclass
class Gate:
    """What the gates of ``decide`` share: the inputs, and the decision being built."""

    lead: Lead
    state: LeadState
    config: Config
    now: datetime
    d: Decision
    enrollment: Any  # the active Enrollment, or None
    counted: list[Any]
    st: Settings | None = None  # the account's settings, once the account gate has passed
    seq: Sequence | None = None
    next_step: tuple[int, Message] | None = None
    pulled: bool = False
    explain: bool = True  # False: no checks (a run reads only the verdict)

    def check(self, rule: str, ok: bool, detail: str | Callable[[], str]) -> None:
        """Record a rule's outcome for ``explain``; ``detail`` is built only when explaining
        (most gates pass it as a lambda: a run decides every due lead and prints none)."""
        if self.explain:
            self.d.checks.append(Check(rule, ok, detail if isinstance(detail, str) else detail()))

    def stop(self, reason: str, detail: str) -> Decision:
        """A rule failed: end the active enrollment if the reason is terminal."""
        d = self.d
        if self.enrollment is not None and reason in TERMINAL:
            d.action = "end"
            d.sequence = config_sequence(self.config, self.enrollment.sequence_id)
            d.anchor_at = self.enrollment.anchor_at
        else:
            d.action = "none"
        d.reason, d.detail = reason, detail
        return d

    def wait(self, reason: str, detail: str, until: datetime | None) -> Decision:
        d = self.d
        d.action, d.reason, d.detail, d.next_at = "wait", reason, detail, until
        return d

    def verdict(self, action: Action, reason: str, detail: str) -> Decision:
        self.d.action, self.d.reason, self.d.detail = action, reason, detail
        return self.d

    @property
    def settings(self) -> Settings:
        assert self.st is not None  # set by the account gate, which runs first
        return self.st


def config_sequence(config: Config, sequence_id: str) -> Sequence | None:
    for s in config.sequences:
        if s.id == sequence_id:
            return s
    return None
