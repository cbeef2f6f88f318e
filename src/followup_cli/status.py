"""``followup status``: is the job healthy? One screen (or JSON) from the runs record, the
tracking table, the lead store and the environment:

* the last run of each slot of the schedule and its exit code; the last run; the last
  success (exit 0) and its age: *unhealthy* when older than ``max_age_hours`` (or none);
* per account: the backlog (due now) and how much of it the rate limits and the messaging
  window will let through before it is lost; unknown follow-ups; whether the last run
  stopped the account and why; the token's state (set, and with ``check_tokens`` whether
  the API accepts it and when it expires).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import runs as runs_mod
from .config import Account, LoadedConfig
from .models import UNKNOWN
from .schedule import latest_slot, next_slot
from .store.base import SqlStore


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def build_status(
    loaded: LoadedConfig,
    store: SqlStore | None,
    now: datetime,
    max_age_hours: float,
    check_tokens: bool = False,
) -> dict[str, Any]:
    """The status as data: the schedule's slots, the last run and the last success, then
    each account's state; ``problems`` lists what is wrong, in that order."""
    cfg = loaded.config
    st = cfg.settings
    last = latest_slot(now, st)
    nxt = next_slot(now, st)
    out: dict[str, Any] = {
        "now": now.isoformat(),
        "timezone": st.timezone,
        "run_times": list(st.run_times),
        "latest_slot": last.key if last else None,
        "next_slot": nxt.key if nxt else None,
        "slots": {},
        "last_run": None,
        "last_success": None,
        "last_success_age_hours": None,
        "max_age_hours": max_age_hours,
        "healthy": False,
        "problems": [],
        "accounts": {},
    }
    recent = _recent_runs(store, now)
    out["slots"] = {hhmm: _slot_run(recent, hhmm) for hhmm in st.run_times}
    out["last_run"] = _last_run(recent[0]) if recent else None
    _judge_last_success(out, recent, now, max_age_hours)
    stopped = (recent[0]["summary"].get("stopped_accounts") or {}) if recent else {}
    unknown = _unknown_by_account(store)
    tokens = _token_states(loaded, check_tokens)
    for acct in cfg.accounts:
        entry = _account_entry(loaded, store, acct, now, stopped, unknown, tokens)
        out["problems"].extend(_account_problems(acct.id, acct.enabled, entry, cfg.channel.type))
        out["accounts"][acct.id] = entry
    return out


def _recent_runs(store: SqlStore | None, now: datetime) -> list[dict[str, Any]]:
    """The last 500 runs, newest first, up to ``now``. A run's time (``at``) is its business
    time (its --now; the wall clock when it had none), so a replay with --now reads the same
    as real operation."""
    recent: list[dict[str, Any]] = []
    if store is not None and runs_mod.has_runs_table(store):
        recent = runs_mod.runs(store, 500)
    for r in recent:
        r["at"] = r.get("business_now") or r["started_at"]
    return [r for r in recent if r["at"] <= now]


def _slot_run(recent: list[dict[str, Any]], hhmm: str) -> dict[str, Any] | None:
    """The newest run of the slot at ``hhmm``, or None."""
    hit = next((r for r in recent if r.get("slot") and f" {hhmm} " in r["slot"]), None)
    if hit is None:
        return None
    return {
        "slot": hit["slot"],
        "run_id": hit["run_id"],
        "exit_code": hit["exit_code"],
        "at": _iso(hit["at"]),
    }


def _last_run(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": r["run_id"],
        "slot": r.get("slot"),
        "at": _iso(r["at"]),
        "finished_at": _iso(r["finished_at"]),
        "exit_code": r["exit_code"],
        "error": r["summary"].get("error"),
        "sent": r["summary"].get("sent"),
    }


def _judge_last_success(
    out: dict[str, Any], recent: list[dict[str, Any]], now: datetime, max_age_hours: float
) -> None:
    """Healthy when the newest run that finished with exit 0 is at most ``max_age_hours``
    old; sets ``last_success``, its age and ``healthy``, and says the problem otherwise."""
    ok = next((r for r in recent if r["exit_code"] == 0 and r["finished_at"]), None)
    if not ok:
        out["problems"].append("no run has finished with exit 0 yet")
        return
    age = (now - ok["at"]).total_seconds() / 3600
    out["last_success"] = {"run_id": ok["run_id"], "at": _iso(ok["at"]), "slot": ok.get("slot")}
    out["last_success_age_hours"] = round(age, 2)
    out["healthy"] = age <= max_age_hours
    if not out["healthy"]:
        out["problems"].append(
            f"the last successful run finished {age:.1f} h ago (more than {max_age_hours:g} h)"
        )


def _account_entry(
    loaded: LoadedConfig,
    store: SqlStore | None,
    acct: Account,
    now: datetime,
    stopped: dict[str, Any],
    unknown: dict[str, int],
    tokens: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One account's state: enabled, stopped (by the config or the last run), unknown
    follow-ups, the backlog and what of it will be lost, the token."""
    entry: dict[str, Any] = {
        "enabled": acct.enabled,
        "stopped": None if acct.enabled else "disabled in the config",
        "unknown": unknown.get(acct.id, 0),
        "backlog": None,
        "token": tokens.get(acct.id),
    }
    if acct.enabled and acct.id in stopped:
        entry["stopped"] = f"by the last run: {stopped[acct.id]}"
    if acct.enabled and store is not None and runs_mod.has_runs_table(store):
        from .backlog import estimate

        entry["backlog"] = estimate(loaded, store, acct, now)
    return entry


def _account_problems(
    acct_id: str, enabled: bool, entry: dict[str, Any], channel_type: str
) -> list[str]:
    """What is wrong with one account, in the order status prints it: window losses,
    unknown outcomes, a stop, the token."""
    problems = []
    backlog = entry["backlog"]
    if backlog and backlog["lost"]:
        problems.append(
            f"account {acct_id}: {backlog['lost']} of "
            f"{backlog['due']} due follow-up(s) will miss their window"
        )
    if entry["unknown"]:
        problems.append(
            f"account {acct_id}: {entry['unknown']} follow-up(s) with an unknown outcome "
            "(`followup unknown list`)"
        )
    if entry["stopped"] and enabled:
        problems.append(f"account {acct_id} stopped {entry['stopped']}")
    tok = entry["token"]
    if enabled and tok and (tok.get("problem") and tok.get("is_set") is not None):
        if channel_type == "instagram":
            problems.append(f"account {acct_id}: token: {tok['problem']}")
    return problems


def _unknown_by_account(store: SqlStore | None) -> dict[str, int]:
    if store is None or not runs_mod.has_runs_table(store):
        return {}
    rows = store.rows(store.q("unknown_by_account"), {"s": UNKNOWN})
    return {str(r["account_id"]): int(r["n"]) for r in rows}


def _token_states(loaded: LoadedConfig, check_tokens: bool) -> dict[str, dict[str, Any]]:
    from datetime import UTC
    from datetime import datetime as dt

    from .tokens import check, env_states, uses_tokens

    cfg = loaded.config
    if not uses_tokens(cfg):
        return {}
    states = check(cfg) if check_tokens else env_states(cfg)
    out = {}
    for s in states:
        d = s.as_dict(dt.now(UTC))
        if not s.is_set and s.problem is None:
            d["problem"] = f"{s.token_env or 'token_env'} is not set"
        out[s.account_id] = d
    return out


__all__ = ["build_status"]
