"""The schedule in one place: ``settings.run_times`` in ``settings.timezone``.

Cron (Debian's ignores ``CRON_TZ``) or a systemd timer only wakes the tool; ``followup run
--on-schedule`` decides. A *slot* is one run time on one local day, e.g. 14:00 on
2026-03-29 in Europe/Madrid. At a tick the latest slot at or before ``now`` is due unless a
run already took it; slots missed while the host was down collapse into that one slot, so a
missed slot is caught up once, not several times.

Daylight saving time, by the wall clock of the zone:

* a run time that does not exist that day (02:30 when clocks jump from 02:00 to 03:00) is
  due one hour later by the wall clock (03:30): the instant it would have had at the old
  offset, so a tick just after the jump still finds it due;
* a run time that happens twice (02:30 when clocks fall back) is due at its first
  occurrence; the second has the same slot key and is never run again.

Pure functions of ``now`` and the settings: no database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .config import Settings


@dataclass(frozen=True)
class Slot:
    """One run time on one local day."""

    at: datetime  # the instant it is due (UTC)
    day: date  # the local day
    time: str  # "HH:MM" as written in run_times
    zone: str

    @property
    def key(self) -> str:
        """Unique per (local day, run time, zone): what a run takes, once."""
        return f"{self.day.isoformat()} {self.time} {self.zone}"

    @property
    def local(self) -> datetime:
        return self.at.astimezone(ZoneInfo(self.zone))


def slot_at(day: date, hhmm: str, zone: str) -> Slot:
    """The slot for run time ``hhmm`` on local ``day`` (fold=0: see the module's DST notes)."""
    tz = ZoneInfo(zone)
    wall = datetime.combine(day, time.fromisoformat(hhmm), tzinfo=tz)
    return Slot(wall.astimezone(UTC), day, hhmm, zone)


def slots_between(start: datetime, end: datetime, settings: Settings) -> list[Slot]:
    """Every slot with ``start < at <= end``, in time order."""
    tz = ZoneInfo(settings.timezone)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    out: list[Slot] = []
    day = first
    while day <= last:
        for hhmm in sorted(set(settings.run_times)):
            s = slot_at(day, hhmm, settings.timezone)
            if start < s.at <= end:
                out.append(s)
        day += timedelta(days=1)
    return sorted(out, key=lambda s: s.at)


def latest_slot(now: datetime, settings: Settings) -> Slot | None:
    """The last slot due at or before ``now`` (within the last two days); None without
    run times."""
    if not settings.run_times:
        return None
    found = slots_between(now - timedelta(days=2), now, settings)
    return found[-1] if found else None


def next_slot(now: datetime, settings: Settings) -> Slot | None:
    """The first slot strictly after ``now``."""
    if not settings.run_times:
        return None
    found = slots_between(now, now + timedelta(days=2), settings)
    return found[0] if found else None


def on_calendar(settings: Settings) -> str:
    """The systemd ``OnCalendar=`` line that wakes the tool at every run time, in the zone."""
    by_minute: dict[str, list[str]] = {}
    for hhmm in sorted(set(settings.run_times)):
        h, m = hhmm.split(":")
        by_minute.setdefault(m, []).append(h)
    parts = [f"*-*-* {','.join(hs)}:{m}:00 {settings.timezone}" for m, hs in by_minute.items()]
    return "\n".join(f"OnCalendar={p}" for p in parts)


__all__ = ["Slot", "slot_at", "slots_between", "latest_slot", "next_slot", "on_calendar"]
