"""Local time: quiet hours in the lead's zone, local days and midnights, the next cron slot."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from ..config import Settings


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except Exception:  # noqa: BLE001 - parse_lead already validated; be safe
        return ZoneInfo(fallback)


def quiet_until(now: datetime, settings: Settings, lead_tz: str | None) -> datetime | None:
    """When the lead's quiet hours end, if ``now`` is inside them; else None."""
    qh = settings.quiet_hours
    if qh is None or qh.start == qh.end:
        return None
    tz = _zone(lead_tz, settings.timezone)
    local = now.astimezone(tz)
    start = time.fromisoformat(qh.start)
    end = time.fromisoformat(qh.end)
    t = local.time().replace(tzinfo=None)
    if start < end:
        quiet = start <= t < end
        end_day = local.date()
    else:
        quiet = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not quiet:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(now.tzinfo)


def local_day(dt: datetime, tz_name: str) -> date:
    if dt.tzinfo is UTC:  # the rules' times: one instant each, asked for again and again
        return _local_day(dt, tz_name)
    return dt.astimezone(ZoneInfo(tz_name)).date()


@lru_cache(maxsize=4096)
def _local_day(dt: datetime, tz_name: str) -> date:
    return dt.astimezone(ZoneInfo(tz_name)).date()


def local_midnight(now: datetime, tz_name: str) -> datetime:
    """The start of ``now``'s day in ``tz_name``."""
    tz = ZoneInfo(tz_name)
    d = now.astimezone(tz).date()
    return datetime.combine(d, time(0, 0), tzinfo=tz).astimezone(now.tzinfo)


def next_local_midnight(now: datetime, tz_name: str) -> datetime:
    tz = ZoneInfo(tz_name)
    d = now.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(d, time(0, 0), tzinfo=tz).astimezone(now.tzinfo)


def next_run_slot(now: datetime, settings: Settings) -> datetime:
    """The first cron slot (settings.run_times, operator zone) strictly after ``now``."""
    tz = ZoneInfo(settings.timezone)
    local = now.astimezone(tz)
    candidates = []
    for offset in (0, 1, 2):
        day = local.date() + timedelta(days=offset)
        for slot in settings.run_times:
            dt = datetime.combine(day, time.fromisoformat(slot), tzinfo=tz)
            if dt > local:
                candidates.append(dt)
    return min(candidates).astimezone(now.tzinfo) if candidates else now + timedelta(days=1)
