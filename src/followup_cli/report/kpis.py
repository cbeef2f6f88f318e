"""``build_report``: every KPI of the period as plain data (``docs/report-schema.json``):
the summary, per day, per sequence and message, the progression through the steps, the
best times, the targets, coverage and problems; the A/B tests and the holdout lift come
from ``experiments``."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Config, Sequence
from ..errors import ConfigError
from ..outcomes import ATTRIBUTION_DAYS
from ..rules import config_sequence
from ..stats import median, percentile, rate, wilson
from ..store.base import SqlStore
from .common import Period, _at, _by_step, _local_date, _r, _sequence_order, _tally, period_for
from .experiments import _ab_tests, _holdout

SCHEMA_VERSION = 1

TARGETS = {"coverage": 0.80, "response_rate": 0.25, "conversion_rate": 0.15}
TARGET_LABELS = {
    "coverage": "qualified leads that received a follow-up",
    "response_rate": "messaged leads that responded",
    "conversion_rate": "messaged leads that converted",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _hours(values: Iterable[timedelta]) -> dict[str, Any]:
    hs = [v.total_seconds() / 3600 for v in values]
    return {"n": len(hs), "median": _r(median(hs), 4), "p90": _r(percentile(hs, 0.9), 4)}


def _rates(messaged: set[str], responded: set[str], converted: set[str]) -> dict[str, Any]:
    n = len(messaged)
    return {
        "leads_messaged": n,
        "leads_responded": len(responded),
        "response_rate": _r(rate(len(responded), n)),
        "leads_converted": len(converted),
        "conversion_rate": _r(rate(len(converted), n)),
    }


def build_report(
    store: SqlStore,
    config: Config,
    now: datetime,
    on: str | date | None = None,
    days: int | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    """Every KPI of the period as plain data (see docs/report-schema.json)."""
    if account is not None and config.account(account) is None:
        raise ConfigError(f"--account {account}: no such account in the config")
    tz = config.settings.timezone
    period = period_for(now, tz, on, days)
    start, end = period.bounds()
    rows = store.report_followups(start, end, account)
    sent = [r for r in rows if r["sent_at"] is not None and r["sent_at"] <= now]
    today = now.astimezone(ZoneInfo(tz)).date()
    sent_today = _sent_today(store, sent, period, today, now, account)
    enrollments = store.report_enrollments(start, end, account)
    leads = _lead_zones(store, {str(r["lead_id"]) for r in sent}, config)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now.isoformat(),
        "timezone": tz,
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "days": period.days,
        },
        "account": account,
        "attribution_days": ATTRIBUTION_DAYS,
        "summary": _summary(sent, now, today, sent_today),
        "per_day": _per_day(sent, period, now),
        "sequences": _by_sequence(sent, config, now),
        "messages": _messages(sent, now),
        "progression": _progression(store, enrollments, start, end, config, now),
        "best_times": _best_times(sent, leads, config, now),
        "ab_tests": _ab_tests(sent, config, now),
    }
    coverage = _coverage(store, config, account)
    report["coverage"] = coverage
    report["targets"] = _targets(report["summary"], coverage)
    report["problems"] = _problems(rows, now)
    report["holdout"] = _holdout(enrollments, start, end, config, now)
    return report


def _sent_today(
    store: SqlStore,
    sent: list[dict[str, Any]],
    period: Period,
    today: date,
    now: datetime,
    account: str | None,
) -> int:
    """Messages sent today (the config's day), whether or not today is in the period."""
    tz = period.timezone
    if period.start <= today <= period.end:
        today_rows = sent
    else:
        t0, t1 = Period(today, today, tz).bounds()
        today_rows = [
            r for r in store.report_followups(t0, t1, account) if r["sent_at"] is not None
        ]
    return sum(
        1 for r in today_rows if r["sent_at"] <= now and _local_date(r["sent_at"], tz) == today
    )


def _targets(summary: Mapping[str, Any], coverage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plan's three targets: coverage, response rate, conversion rate."""
    return [
        _target("coverage", coverage["share"], coverage["followed_up"], coverage["qualified"]),
        _target(
            "response_rate",
            summary["response_rate"],
            summary["leads_responded"],
            summary["leads_messaged"],
        ),
        _target(
            "conversion_rate",
            summary["conversion_rate"],
            summary["leads_converted"],
            summary["leads_messaged"],
        ),
    ]


def _summary(sent: list[dict[str, Any]], now: datetime, today: date, sent_today: int) -> dict:
    messaged = {r["lead_id"] for r in sent}
    responded = {r["lead_id"] for r in sent if _at(r, "responded_at", now)}
    converted = {r["lead_id"] for r in sent if _at(r, "converted_at", now)}
    n, followups_responded, followups_converted = _tally(sent, now)
    out: dict[str, Any] = {
        "today": today.isoformat(),
        "sent_today": sent_today,
        "followups_sent": n,
        "followups_responded": followups_responded,
        "followups_converted": followups_converted,
    }
    out.update(_rates(messaged, responded, converted))
    out["response_time_hours"] = _hours(
        r["responded_at"] - r["sent_at"] for r in sent if _at(r, "responded_at", now)
    )
    out["time_to_conversion_hours"] = _hours(
        r["converted_at"] - r["sent_at"] for r in sent if _at(r, "converted_at", now)
    )
    return out


def _per_day(sent: list[dict[str, Any]], period: Period, now: datetime) -> list[dict[str, Any]]:
    days: dict[date, Counter] = {d: Counter() for d in period.dates()}
    for r in sent:
        c = days.get(_local_date(r["sent_at"], period.timezone))
        if c is None:
            continue
        c["sent"] += 1
        c["responded"] += 1 if _at(r, "responded_at", now) else 0
        c["converted"] += 1 if _at(r, "converted_at", now) else 0
    return [
        {
            "date": d.isoformat(),
            "sent": c["sent"],
            "responded": c["responded"],
            "converted": c["converted"],
        }
        for d, c in days.items()
    ]


def _by_sequence(sent: list[dict[str, Any]], config: Config, now: datetime) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sent:
        groups[r["sequence_id"]].append(r)
    out = []
    for seq_id in _sequence_order(groups, config):
        rs = groups[seq_id]
        seq = config_sequence(config, seq_id)
        item = {
            "sequence_id": seq_id,
            "name": (seq.name or seq.id) if seq else None,
            "followups_sent": len(rs),
        }
        item.update(
            _rates(
                {r["lead_id"] for r in rs},
                {r["lead_id"] for r in rs if _at(r, "responded_at", now)},
                {r["lead_id"] for r in rs if _at(r, "converted_at", now)},
            )
        )
        out.append(item)
    return out


def _step_of(seq: Sequence | None, message_id: str, recorded: int | None) -> int | None:
    if seq is not None:
        for i, m in enumerate(seq.messages, 1):
            if m.id == message_id:
                return i
    return recorded


def _messages(sent: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    out = []
    for (seq_id, msg_id), rs in _by_step(sent).items():
        n, responded, converted = _tally(rs, now)
        ci = wilson(responded, n)
        out.append(
            {
                "sequence_id": seq_id,
                "message_id": msg_id,
                "step": max((r["step"] for r in rs if r["step"] is not None), default=None),
                "sent": n,
                "responded": responded,
                "response_rate": _r(rate(responded, n)),
                "response_ci": [_r(ci[0]), _r(ci[1])] if ci else None,
                "converted": converted,
                "conversion_rate": _r(rate(converted, n)),
            }
        )
    out.sort(
        key=lambda m: (-(m["response_rate"] or 0), -m["sent"], m["sequence_id"], m["message_id"])
    )
    for i, m in enumerate(out, 1):
        m["rank"] = i
    return out


def _progression(
    store: SqlStore,
    enrollments: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    config: Config,
    now: datetime,
) -> list[dict[str, Any]]:
    cohort = [
        e
        for e in enrollments
        if not e["holdout"] and start <= e["started_at"] < end and e["started_at"] <= now
    ]
    pairs = [(str(e["lead_id"]), e["sequence_id"]) for e in cohort]
    steps = store.sent_steps(pairs) if pairs else []
    by_seq: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in cohort:
        by_seq[e["sequence_id"]].append(e)
    rows_by_seq: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in steps:
        if r["sent_at"] <= now:
            rows_by_seq[r["sequence_id"]].append(r)
    out = []
    for seq_id in _sequence_order(by_seq, config):
        seq = config_sequence(config, seq_id)
        es = by_seq[seq_id]
        ended = Counter(
            e["ended_reason"] or "ended"
            for e in es
            if e["ended_at"] is not None and e["ended_at"] <= now
        )
        out.append(
            {
                "sequence_id": seq_id,
                "enrolled": len(es),
                "active": len(es) - sum(ended.values()),
                "ended": dict(sorted(ended.items())),
                "steps": _step_counts(seq, rows_by_seq[seq_id], now),
            }
        )
    return out


def _step_counts(
    seq: Sequence | None, sent: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Per step of a sequence (every configured one, and any other a row names): how many
    enrollments reached it, and of those how many responded and converted."""

    def step(number: int | None, message_id: str) -> dict[str, Any]:
        return {"step": number, "message_id": message_id, "reached": 0, "responded": 0,
                "converted": 0}  # fmt: skip

    per_step: dict[str, dict[str, Any]] = {}
    if seq is not None:
        for i, m in enumerate(seq.messages, 1):
            per_step[m.id] = step(i, m.id)
    for r in sent:
        s = per_step.setdefault(
            r["message_id"], step(_step_of(seq, r["message_id"], r["step"]), r["message_id"])
        )
        s["reached"] += 1
        s["responded"] += 1 if _at(r, "responded_at", now) else 0
        s["converted"] += 1 if _at(r, "converted_at", now) else 0
    return sorted(
        per_step.values(), key=lambda s: (s["step"] is None, s["step"] or 0, s["message_id"])
    )


def _lead_zones(store: SqlStore, lead_ids: set[str], config: Config) -> dict[str, str]:
    """Each lead's IANA zone (its own, else its account's settings.timezone)."""
    zones: dict[str, str] = {}
    if not lead_ids:
        return zones
    for row in store.lead_rows(sorted(lead_ids)):
        tz = row.get("timezone")
        try:
            if tz:
                ZoneInfo(str(tz))
                zones[str(row["id"])] = str(tz)
                continue
        except Exception:  # noqa: BLE001 - a bad zone falls back to the account's
            pass
        zones[str(row["id"])] = config.settings_for(config.account(row.get("account_id"))).timezone
    return zones


def _best_times(
    sent: list[dict[str, Any]], zones: Mapping[str, str], config: Config, now: datetime
) -> dict[str, Any]:
    hours: dict[int, Counter] = defaultdict(Counter)
    weekdays: dict[int, Counter] = defaultdict(Counter)
    for r in sent:
        tz = (
            zones.get(str(r["lead_id"]))
            or config.settings_for(config.account(r["account_id"])).timezone
        )
        local = r["sent_at"].astimezone(ZoneInfo(tz))
        responded = 1 if _at(r, "responded_at", now) else 0
        for bucket, key in ((hours, local.hour), (weekdays, local.weekday())):
            bucket[key]["sent"] += 1
            bucket[key]["responded"] += responded

    def rows(bucket: dict[int, Counter], label: str) -> list[dict[str, Any]]:
        out = []
        for k in sorted(bucket):
            c = bucket[k]
            item: dict[str, Any] = {label: k}
            if label == "weekday":
                item["name"] = WEEKDAYS[k]
            item.update(
                {
                    "sent": c["sent"],
                    "responded": c["responded"],
                    "response_rate": _r(rate(c["responded"], c["sent"])),
                }
            )
            out.append(item)
        return out

    st = config.settings
    caveat = (
        f"Follow-ups go out only at the cron slots ({', '.join(st.run_times)} {st.timezone}) "
        "once a step is due, so only the hours those slots fall on in the leads' zones can "
        "be compared, and each hour also holds different steps and leads: read differences "
        "as hints, not causes."
    )
    return {
        "basis": "lead_local_send_time",
        "caveat": caveat,
        "hours": rows(hours, "hour"),
        "weekdays": rows(weekdays, "weekday"),
    }


def _coverage(store: SqlStore, config: Config, account: str | None) -> dict[str, Any]:
    qualified = followed = 0
    for a in config.accounts:
        if account is not None and a.id != account:
            continue
        st = config.settings_for(a)
        q, f = store.qualified_leads(a.id, st.min_score, st.max_score)
        qualified += q
        followed += f
    return {"qualified": qualified, "followed_up": followed, "share": _r(rate(followed, qualified))}


def _target(name: str, actual: float | None, numerator: int, denominator: int) -> dict[str, Any]:
    target = TARGETS[name]
    return {
        "name": name,
        "label": TARGET_LABELS[name],
        "target": target,
        "actual": actual,
        "numerator": numerator,
        "denominator": denominator,
        "met": None if actual is None else actual >= target,
    }


def _problems(rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    unsent = [r for r in rows if r["sent_at"] is None and r["claimed_at"] <= now]
    failed = Counter(
        str(r["error_code"]) if r["error_code"] is not None else "none"
        for r in unsent
        if r["status"] == "failed"
    )
    skipped = Counter(r["reason"] or "none" for r in unsent if r["status"] == "skipped")
    return {
        "unknown": sum(1 for r in unsent if r["status"] == "unknown"),
        "pending": sum(1 for r in unsent if r["status"] == "pending"),
        "failed": {"total": sum(failed.values()), "by_code": dict(sorted(failed.items()))},
        "skipped": {"total": sum(skipped.values()), "by_reason": dict(sorted(skipped.items()))},
    }
