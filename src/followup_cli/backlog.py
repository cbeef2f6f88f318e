"""A backlog that is said: due follow-ups the account's limits will not let out before their
messaging window closes.

The estimate replays what later runs can do: runs happen at the schedule's slots
(``settings.run_times``); a run sends at most ``channel.messages_per_hour`` in each hour of
its time budget (the sliding window), serving the windows that close soonest first, as the
engine does. A due follow-up whose turn comes after its window closed is *lost*: the tool
will never send it (it is handed to a human, ``followup handoff``).

``followup run`` says it in its summary and exits 3 for it once per operator day per
account (remembered in the audit log as ``backlog_lost``); ``followup status`` shows it.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .config import Account, LoadedConfig
from .schedule import slots_between
from .store.base import SqlStore, actor


def due_now(loaded: LoadedConfig, store: SqlStore, account: Account, now: datetime) -> list[Any]:
    """The decisions to send for an account at ``now`` (what a run would try), in the
    engine's order (windows closing soonest first)."""
    from .engine import AccountResult, Engine

    engine = Engine(loaded, store, None)  # type: ignore[arg-type] - planning only, no channel
    actionable, _ = engine.plan_account(account, store, now, AccountResult(account.id))
    return [d for _, d in actionable if d.action == "send"]


def estimate(
    loaded: LoadedConfig,
    store: SqlStore,
    account: Account,
    now: datetime,
    decisions: list[Any] | None = None,
) -> dict[str, Any]:
    """``due``: follow-ups due now; ``servable``: how many later runs can send before each
    one's window closes; ``lost``: the rest; ``next_run``: when the next slot is."""
    cfg = loaded.config
    if decisions is None:
        decisions = due_now(loaded, store, account, now)
    closes = sorted(
        (d.window_closes_at for d in decisions),
        key=lambda c: (c is None, c or now),
    )
    due = len(closes)
    rate, per_day = cfg.rate_limits(account)
    out: dict[str, Any] = {
        "due": due,
        "servable": due,
        "lost": 0,
        "messages_per_hour": rate,
        "messages_per_day": per_day,
        "next_run": None,
    }
    if not due:
        return out
    last_close = max((c for c in closes if c is not None), default=now + timedelta(days=2))
    horizon = max(last_close, now + timedelta(hours=1))
    st = cfg.settings
    slots = slots_between(now, horizon + timedelta(days=1), st)
    if slots:
        out["next_run"] = slots[0].at.isoformat()
    tz = ZoneInfo(st.timezone)
    day_left: dict[Any, float] = {}
    if per_day is not None:
        today = now.astimezone(tz).date()
        start = datetime.combine(today, time(0), tzinfo=tz)
        day_left[today] = max(0, per_day - store.recent_sends(account.id, start))
    chunks = _sending_chunks(slots, st.run_budget_minutes, rate)
    servable = _servable(closes, chunks, per_day, day_left, tz)
    out["servable"] = servable
    out["lost"] = due - servable
    return out


def _sending_chunks(slots: list[Any], budget_minutes: float, rate: int) -> list[list[Any]]:
    """[start time, capacity]: one per hour of each run's time budget (a run lasts until
    its budget ends, or 5 minutes before the next slot; at least a minute)."""
    chunks: list[list[Any]] = []
    for i, s in enumerate(slots):
        nxt = slots[i + 1].at if i + 1 < len(slots) else s.at + timedelta(days=1)
        budget = max(60.0, min(budget_minutes * 60, (nxt - s.at).total_seconds() - 300))
        hours = int(budget // 3600) + 1
        for h in range(hours):
            at = s.at + timedelta(hours=h)
            if at - s.at < timedelta(seconds=budget):
                chunks.append([at, rate])
    return chunks


def _servable(
    closes: list[datetime | None],
    chunks: list[list[Any]],
    per_day: int | None,
    day_left: dict[Any, float],
    tz: ZoneInfo,
) -> int:
    """How many of the follow-ups (windows closing at ``closes``, soonest first) the
    chunks can send before their window closes, each chunk within its hourly capacity
    and its day's cap (``day_left``, by local date)."""
    servable = 0
    ci = 0

    def room(chunk: list[Any]) -> bool:
        if chunk[1] <= 0:
            return False
        if per_day is None:
            return True
        return day_left.setdefault(chunk[0].astimezone(tz).date(), per_day) > 0

    for close in closes:
        while ci < len(chunks) and not room(chunks[ci]):
            ci += 1
        if ci >= len(chunks):
            break
        at = chunks[ci][0]
        if close is not None and at >= close:
            continue  # its window closes before any run can send it
        chunks[ci][1] -= 1
        if per_day is not None:
            day_left[at.astimezone(tz).date()] -= 1
        servable += 1
    return servable


def say_backlog(
    ops: Any, store: SqlStore, loaded: LoadedConfig, summary: Any
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """After a live run: estimate the backlog of every account the run left work for; say
    the losses; return (backlog per account, lines that make the run exit 3)."""
    cfg = loaded.config
    now = summary.now
    backlog: dict[str, dict[str, Any]] = {}
    news: list[str] = []
    for res in summary.accounts:
        acct = cfg.account(res.account_id)
        if acct is None or not acct.enabled:
            continue
        left = sum(n for reason, n in res.deferred.items())
        if not left:
            backlog[res.account_id] = {"due": 0, "servable": 0, "lost": 0}
            continue
        est = estimate(loaded, store, acct, now)
        backlog[res.account_id] = est
        if not est["lost"]:
            ops.say(
                logging.INFO,
                f"account {acct.id}: {est['due']} due follow-up(s) left for later runs; "
                "all fit before their windows close",
                acct.id,
            )
            continue
        line = (
            f"account {acct.id}: {est['lost']} of {est['due']} due follow-up(s) will miss their "
            f"messaging window: the account's limits ({_limits(est)}) let out {est['servable']} in "
            "time; "
            "raise channel.messages_per_hour if Meta allows it, add run_times, or narrow the "
            "triggers (`followup handoff` lists them for humans)"
        )
        if _said_today(store, cfg.settings.timezone, acct.id, now):
            ops.say(logging.INFO, line, acct.id)
            continue
        with store.transaction():
            store.audit(
                "backlog_lost",
                now,
                actor(),
                summary.run_id,
                account_id=acct.id,
                detail={"due": est["due"], "lost": est["lost"], "servable": est["servable"]},
            )
        news.append(line)
        ops.say(logging.ERROR, line, acct.id)
    return backlog, news


def _limits(est: dict[str, Any]) -> str:
    out = f"{est['messages_per_hour']}/h"
    if est.get("messages_per_day"):
        out += f", {est['messages_per_day']}/day"
    return out


def _said_today(store: SqlStore, zone: str, account_id: str, now: datetime) -> bool:
    tz = ZoneInfo(zone)
    start = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    rows = store.rows(store.q("backlog_lost_said"), {"a": account_id, "start": start, "now": now})
    return bool(rows)


__all__ = ["estimate", "due_now", "say_backlog"]
