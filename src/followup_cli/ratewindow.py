"""An account's rate windows as a claim sees them: the sliding hour (``messages_per_hour``)
and the account's day (``messages_per_day``, in its timezone).

Counted once per batch of claims, inside the claim transaction and under the account's
lock (so racing runs see each other's claims: ``pending`` rows count like sent ones), each
count stopping at its cap; the batch then spends the room in memory, one claim at a time.
The dry run counts the same way and spends it the same way, writing nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import SqlStore

# ``claimed_at > day_start - TICK``: the day's first instant counts
TICK = timedelta(microseconds=1)


@dataclass
class RateWindow:
    hour_cap: int
    day_cap: int | None
    hour_used: int = 0
    day_used: int = 0

    @classmethod
    def count(
        cls,
        store: SqlStore,
        account_id: str,
        now: datetime,
        day_start: datetime,
        hour_cap: int,
        day_cap: int | None,
        capped: bool = True,
    ) -> RateWindow:
        """The account's claims in the last hour and since ``day_start`` (each count stops
        at its cap when ``capped``: all a limit needs, whatever the run already claimed)."""
        hour = store.recent_sends(
            account_id, now - timedelta(hours=1), hour_cap if capped else None
        )
        day = 0
        if day_cap is not None:
            day = store.recent_sends(account_id, day_start - TICK, day_cap if capped else None)
        return cls(hour_cap, day_cap, hour, day)

    def full(self) -> str | None:
        """ "rate_limit" when the hour has no room, "daily_cap" when the day has none."""
        if self.hour_used >= self.hour_cap:
            return "rate_limit"
        if self.day_cap is not None and self.day_used >= self.day_cap:
            return "daily_cap"
        return None

    @property
    def room(self) -> int:
        """How many more claims both windows allow now."""
        day = self.day_cap - self.day_used if self.day_cap is not None else self.hour_cap
        return max(0, min(self.hour_cap - self.hour_used, day))

    def take(self) -> None:
        """One claim made: one less room in each window."""
        self.hour_used += 1
        self.day_used += 1
