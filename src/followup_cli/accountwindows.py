"""The account's hourly and daily windows as ``followup explain`` shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .config import Config
from .ratewindow import TICK as _TICK
from .rules import Check, local_midnight, next_local_midnight
from .store.base import SqlStore

Blocked = tuple[str, str, datetime | None]  # (reason, detail, room again at)


def account_windows(
    config: Config, store: SqlStore, account_id: str | None, now: datetime
) -> tuple[list[Check], Blocked | None]:
    """The account's hourly and daily windows as ``explain`` shows them: a check line each,
    and (reason, detail, room again at) when one of them is full: what holds a due lead back
    even though every rule of its own holds."""
    account = config.account(account_id)
    if account is None:
        return [], None
    hour, day = config.rate_limits(account)
    hourly, blocked = _hourly_window(store, account.id, hour, now)
    checks = [hourly]
    if day is not None:
        tz = config.settings_for(account).timezone
        daily, day_blocked = _daily_window(store, account.id, day, tz, now)
        checks.append(daily)
        blocked = blocked or day_blocked
    return checks, blocked


def _hourly_window(
    store: SqlStore, account_id: str, hour: int, now: datetime
) -> tuple[Check, Blocked | None]:
    """The hourly cap's check line, and what holds the account back when it is full."""
    since = now - timedelta(hours=1)
    used = store.recent_sends(account_id, since)
    if used < hour:
        return Check(
            "account hourly cap", True, f"{account_id}: {used} of {hour} in the last hour"
        ), None
    oldest = store.oldest_recent_send(account_id, since)
    again = oldest + timedelta(hours=1) if oldest else None
    when = f"; room again at {_fmt_utc(again)}" if again else ""
    return Check(
        "account hourly cap",
        False,
        f"{account_id} sent {used} of {hour} in the last hour{when}",
    ), (
        "account_hourly_cap",
        f"account {account_id}'s hourly cap is full ({used} of {hour}){when}",
        again,
    )


def _daily_window(
    store: SqlStore, account_id: str, day: int, tz: str, now: datetime
) -> tuple[Check, Blocked | None]:
    """The daily cap's check line (the account's local day), and what holds the account
    back when it is full."""
    used_day = store.recent_sends(account_id, local_midnight(now, tz) - _TICK)
    if used_day < day:
        return Check(
            "account daily cap", True, f"{account_id}: {used_day} of {day} today ({tz})"
        ), None
    again = next_local_midnight(now, tz)
    return Check(
        "account daily cap",
        False,
        f"{account_id} sent {used_day} of {day} today ({tz}); room again at {_fmt_utc(again)}",
    ), (
        "account_daily_cap",
        f"account {account_id}'s daily cap is full ({used_day} of {day} today, {tz}); "
        f"room again at {_fmt_utc(again)}",
        again,
    )


def _fmt_utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "never"
