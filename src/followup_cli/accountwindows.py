"""The account's hourly and daily windows as ``followup explain`` shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .config import Config
from .ratewindow import TICK as _TICK
from .rules import Check, local_midnight, next_local_midnight
from .store.base import SqlStore


def account_windows(
    config: Config, store: SqlStore, account_id: str | None, now: datetime
) -> tuple[list[Check], tuple[str, str, datetime | None] | None]:
    """The account's hourly and daily windows as ``explain`` shows them: a check line each,
    and (reason, detail, room again at) when one of them is full: what holds a due lead back
    even though every rule of its own holds."""
    account = config.account(account_id)
    if account is None:
        return [], None
    hour, day = config.rate_limits(account)
    checks: list[Check] = []
    blocked: tuple[str, str, datetime | None] | None = None
    since = now - timedelta(hours=1)
    used = store.recent_sends(account.id, since)
    if used >= hour:
        oldest = store.oldest_recent_send(account.id, since)
        again = oldest + timedelta(hours=1) if oldest else None
        when = f"; room again at {_fmt_utc(again)}" if again else ""
        checks.append(
            Check(
                "account hourly cap",
                False,
                f"{account.id} sent {used} of {hour} in the last hour{when}",
            )
        )
        blocked = (
            "account_hourly_cap",
            f"account {account.id}'s hourly cap is full ({used} of {hour}){when}",
            again,
        )
    else:
        checks.append(
            Check("account hourly cap", True, f"{account.id}: {used} of {hour} in the last hour")
        )
    if day is not None:
        tz = config.settings_for(account).timezone
        used_day = store.recent_sends(account.id, local_midnight(now, tz) - _TICK)
        if used_day >= day:
            again = next_local_midnight(now, tz)
            checks.append(
                Check(
                    "account daily cap",
                    False,
                    f"{account.id} sent {used_day} of {day} today ({tz}); "
                    f"room again at {_fmt_utc(again)}",
                )
            )
            blocked = blocked or (
                "account_daily_cap",
                f"account {account.id}'s daily cap is full ({used_day} of {day} today, {tz}); "
                f"room again at {_fmt_utc(again)}",
                again,
            )
        else:
            checks.append(
                Check("account daily cap", True, f"{account.id}: {used_day} of {day} today ({tz})")
            )
    return checks, blocked


def _fmt_utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if dt else "never"
