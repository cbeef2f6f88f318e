"""Time is an input. ``Clock.now()`` is business time (what the rules see: fixed with
--now); ``Clock.elapsed()`` is real elapsed time for budgets; ``Clock.sleep()`` waits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class Clock:
    fixed: datetime | None = None
    _start: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC)

    @property
    def simulated(self) -> bool:
        return self.fixed is not None

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def wall() -> datetime:
    """Real time, for run liveness (heartbeats), never for rules."""
    return datetime.now(UTC)
