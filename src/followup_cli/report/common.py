"""The report's days (``Period``, ``period_for``: whole days in ``settings.timezone``) and the
small helpers every section uses: outcome times up to ``now``, rounding, the config's
sequence order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Config
from ..errors import ConfigError

DEFAULT_DAYS = 7
MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive
    timezone: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes: local midnights in the operator's zone."""
        tz = ZoneInfo(self.timezone)
        first = datetime.combine(self.start, time(0), tzinfo=tz)
        after = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=tz)
        return first, after

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]


def period_for(
    now: datetime, tz: str, on: str | date | None = None, days: int | None = None
) -> Period:
    """The report's days: ``on`` alone, or the ``days`` days ending today (default 7)."""
    if on is not None and days is not None:
        raise ConfigError("give --date or --days, not both")
    if on is not None:
        if isinstance(on, str):
            try:
                on = date.fromisoformat(on)
            except ValueError:
                raise ConfigError(f"--date {on!r}: not a date; write it as YYYY-MM-DD") from None
        if not 1900 <= on.year <= 2999:  # the day's bounds (and the next day) must exist
            raise ConfigError(f"--date {on.isoformat()}: a day between the years 1900 and 2999")
        return Period(on, on, tz)
    n = DEFAULT_DAYS if days is None else days
    if not 1 <= n <= MAX_DAYS:
        raise ConfigError(f"--days {n}: give 1 to {MAX_DAYS}")
    today = now.astimezone(ZoneInfo(tz)).date()
    return Period(today - timedelta(days=n - 1), today, tz)


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _at(row: Mapping[str, Any], col: str, now: datetime) -> datetime | None:
    """An outcome time, when it happened by ``now`` (a replay sees only its past)."""
    t = row.get(col)
    return t if t is not None and t <= now else None


def _tally(rows: Iterable[Mapping[str, Any]], now: datetime) -> tuple[int, int, int]:
    """(sent, responded, converted): follow-ups, counting the outcomes that happened by now."""
    rows = list(rows)
    responded = sum(1 for r in rows if _at(r, "responded_at", now))
    converted = sum(1 for r in rows if _at(r, "converted_at", now))
    return len(rows), responded, converted


def _by_step(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The rows by (sequence id, message id), in the order the steps first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["sequence_id"], r["message_id"])].append(r)
    return groups


def _local_date(dt: datetime, tz: str) -> date:
    return dt.astimezone(ZoneInfo(tz)).date()


def _sequence_order(ids: Iterable[str], config: Config) -> list[str]:
    order = {s.id: i for i, s in enumerate(config.sequences)}
    return sorted(set(ids), key=lambda s: (order.get(s, len(order)), s))
