"""``followup report`` and ``followup leads``: KPIs as plain data.

``build_report(store, config, now, ...)`` returns a dict that follows
``docs/report-schema.json`` (the host app's analytics page reads it as JSON);
``csv_rows`` flattens it to one row per metric and segment; ``tables`` lays it out for
a terminal. Definitions (docs/report.md has the long form):

* The period is whole days in ``settings.timezone``: ``--date D`` or the ``--days N``
  ending today (default 7). "Today" is the day of ``now``.
* Cohort: the follow-ups **sent** in the period. A response or conversion counts for the
  follow-up it was attributed to (the last one sent before it, see ``outcomes.py``),
  whenever it happened up to ``now``. Lead-level rates count a lead once:
  response rate = leads with a responded follow-up / leads messaged.
* Progression: enrollments (not holdout) that **started** in the period, how many
  reached step k, responded to step k, converted after step k.
* Holdout lift: enrollments whose silence **started** in the period; messaged = not
  holdout; holdout = the control group, counted only when it stayed silent until the
  sequence's first step would have been due (messaged enrollments only start then).
* Problems: follow-ups claimed in the period that did not go out (unknown, pending,
  failed by error code, skipped by reason).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .config import Config, Sequence
from .errors import ConfigError
from .models import BadLead, parse_lead, parse_time
from .outcomes import ATTRIBUTION_DAYS
from .rules import config_sequence, decide
from .stats import median, newcombe_diff, percentile, rate, two_proportion_z, wilson
from .store.base import SqlStore

SCHEMA_VERSION = 1
DEFAULT_DAYS = 7
MAX_DAYS = 366
TARGETS = {"coverage": 0.80, "response_rate": 0.25, "conversion_rate": 0.15}
TARGET_LABELS = {
    "coverage": "qualified leads that received a follow-up",
    "response_rate": "messaged leads that responded",
    "conversion_rate": "messaged leads that converted",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALPHA = 0.05


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


# ---------------------------------------------------------------------- report


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


def _local_date(dt: datetime, tz: str) -> date:
    return dt.astimezone(ZoneInfo(tz)).date()


def _summary(sent: list[dict[str, Any]], now: datetime, today: date, sent_today: int) -> dict:
    messaged = {r["lead_id"] for r in sent}
    responded = {r["lead_id"] for r in sent if _at(r, "responded_at", now)}
    converted = {r["lead_id"] for r in sent if _at(r, "converted_at", now)}
    out: dict[str, Any] = {
        "today": today.isoformat(),
        "sent_today": sent_today,
        "followups_sent": len(sent),
        "followups_responded": sum(1 for r in sent if _at(r, "responded_at", now)),
        "followups_converted": sum(1 for r in sent if _at(r, "converted_at", now)),
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


def _sequence_order(ids: Iterable[str], config: Config) -> list[str]:
    order = {s.id: i for i, s in enumerate(config.sequences)}
    return sorted(set(ids), key=lambda s: (order.get(s, len(order)), s))


def _step_of(seq: Sequence | None, message_id: str, recorded: int | None) -> int | None:
    if seq is not None:
        for i, m in enumerate(seq.messages, 1):
            if m.id == message_id:
                return i
    return recorded


def _messages(sent: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in sent:
        groups[(r["sequence_id"], r["message_id"])].append(r)
    out = []
    for (seq_id, msg_id), rs in groups.items():
        n = len(rs)
        responded = sum(1 for r in rs if _at(r, "responded_at", now))
        converted = sum(1 for r in rs if _at(r, "converted_at", now))
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


def _ab_tests(sent: list[dict[str, Any]], config: Config, now: datetime) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in sent:
        groups[(r["sequence_id"], r["message_id"])].append(r)
    out = []
    for (seq_id, msg_id), rs in sorted(groups.items()):
        seq = config_sequence(config, seq_id)
        msg = next((m for m in seq.messages if m.id == msg_id), None) if seq else None
        configured = [v.id for v in (msg.variants or ())] if msg else []
        seen = sorted({r["variant_id"] for r in rs if r["variant_id"] is not None})
        ids = configured + [v for v in seen if v not in configured]
        if len(ids) < 2:
            continue
        variants = []
        for vid in ids:
            vr = [r for r in rs if r["variant_id"] == vid]
            n = len(vr)
            x = sum(1 for r in vr if _at(r, "responded_at", now))
            conv = sum(1 for r in vr if _at(r, "converted_at", now))
            ci = wilson(x, n)
            variants.append(
                {
                    "variant_id": vid,
                    "sent": n,
                    "responded": x,
                    "response_rate": _r(rate(x, n)),
                    "ci_low": _r(ci[0]) if ci else None,
                    "ci_high": _r(ci[1]) if ci else None,
                    "converted": conv,
                    "conversion_rate": _r(rate(conv, n)),
                }
            )
        head = {"sequence_id": seq_id, "message_id": msg_id, "metric": "response_rate"}
        out.append(head | {"alpha": ALPHA} | ab_verdict(variants))
    return out


def ab_verdict(variants: list[dict[str, Any]]) -> dict[str, Any]:
    """The leader against every other variant (z-tests, Bonferroni-corrected when there are
    more than two); a winner only when every comparison is significant."""
    tested = [v for v in variants if v["sent"] > 0]
    result: dict[str, Any] = {"variants": variants, "comparison": None, "winner": None}
    if len(tested) < 2:
        result["verdict"] = "not enough data: fewer than two variants have been sent"
        return result
    ranked = sorted(
        tested, key=lambda v: (-v["responded"] / v["sent"], -v["sent"], v["variant_id"])
    )
    leader, runner = ranked[0], ranked[1]
    alpha = ALPHA / (len(tested) - 1)
    tests = [
        two_proportion_z(leader["responded"], leader["sent"], o["responded"], o["sent"])
        for o in ranked[1:]
    ]
    first = tests[0]
    result["comparison"] = {
        "leader": leader["variant_id"],
        "runner_up": runner["variant_id"],
        "difference": _r(
            leader["responded"] / leader["sent"] - runner["responded"] / runner["sent"]
        ),
        "z": _r(first.z, 4) if first else None,
        "p_value": _r(first.p_value) if first else None,
        "alpha": _r(alpha),
        "significant": bool(first and all(t is not None and t.p_value < alpha for t in tests)),
    }
    if result["comparison"]["significant"]:
        result["winner"] = leader["variant_id"]
        result["verdict"] = (
            f"{leader['variant_id']} wins: {leader['response_rate']:.1%} vs "
            f"{runner['response_rate']:.1%} (p={first.p_value:.3g})"  # type: ignore[union-attr]
        )
    elif first is None:
        result["verdict"] = (
            "no difference can be tested yet (every variant has the same all-or-nothing rate)"
        )
    else:
        result["verdict"] = f"no significant difference yet (p={first.p_value:.3g}); keep testing"
    return result


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


def _holdout(
    enrollments: list[dict[str, Any]], start: datetime, end: datetime, config: Config, now: datetime
) -> dict[str, Any]:
    cohort = [e for e in enrollments if start <= e["anchor_at"] < end and e["anchor_at"] <= now]
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: {"messaged": [], "holdout": []}
    )
    excluded: Counter = Counter()
    for e in cohort:
        seq = config_sequence(config, e["sequence_id"])
        if e["holdout"]:
            if not _comparable(e, seq, now):
                excluded[e["sequence_id"]] += 1
                continue
            groups[e["sequence_id"]]["holdout"].append(e)
        else:
            groups[e["sequence_id"]]["messaged"].append(e)
    with_control = [
        s for s in _sequence_order(groups, config) if groups[s]["holdout"] or excluded[s]
    ]
    per_seq = [
        {"sequence_id": s, "holdout_excluded": excluded[s]}
        | _lift(groups[s]["messaged"], groups[s]["holdout"], now)
        for s in with_control
    ]
    overall = None
    if with_control:
        overall = {"holdout_excluded": sum(excluded[s] for s in with_control)} | _lift(
            [e for s in with_control for e in groups[s]["messaged"]],
            [e for s in with_control for e in groups[s]["holdout"]],
            now,
        )
    return {
        "metric": "conversion_rate",
        "note": (
            "messaged = enrollments that were not held out; holdout = the control group, "
            "counted only when it was still silent when the first step would have been due. "
            "Sequences without a holdout group are left out."
        ),
        "overall": overall,
        "sequences": per_seq,
    }


def _comparable(e: Mapping[str, Any], seq: Sequence | None, now: datetime) -> bool:
    """A holdout enrollment counts when it reached the time step 1 would have been sent."""
    first = next((m for m in seq.messages if m.active), None) if seq else None
    due = e["anchor_at"] + timedelta(hours=first.delay_hours if first else 0)
    if due > now:
        return False
    for col in ("responded_at", "converted_at", "ended_at"):
        t = e.get(col)
        if t is not None and t < due:
            return False
    return True


def _group(es: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    n = len(es)
    x = sum(1 for e in es if _at(e, "converted_at", now))
    return {"enrollments": n, "converted": x, "conversion_rate": _r(rate(x, n))}


def _lift(messaged: list[dict[str, Any]], holdout: list[dict[str, Any]], now: datetime) -> dict:
    m, h = _group(messaged, now), _group(holdout, now)
    diff = newcombe_diff(m["converted"], m["enrollments"], h["converted"], h["enrollments"])
    out: dict[str, Any] = {
        "messaged": m,
        "holdout": h,
        "difference": None,
        "ci_low": None,
        "ci_high": None,
        "relative_lift": None,
        "significant": False,
    }
    if diff is not None:
        d, lo, hi = diff
        out.update(difference=_r(d), ci_low=_r(lo), ci_high=_r(hi), significant=lo > 0 or hi < 0)
        if h["conversion_rate"]:
            out["relative_lift"] = _r(d / h["conversion_rate"])
    return out


# ---------------------------------------------------------------- leads


def leads_in_sequences(
    store: SqlStore,
    config: Config,
    now: datetime,
    sequence: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Leads in a sequence now (the ``followup_lead_labels`` view), with the next step and
    when it is due, from the same decision function ``run`` uses."""
    labels = store.lead_labels(sequence, account)
    if not labels:
        return []
    ids = [str(r["lead_id"]) for r in labels]
    rows = {str(r["id"]): r for r in store.lead_rows(ids)}
    states = store.lead_states(ids)
    out = []
    for lab in labels:
        lid = str(lab["lead_id"])
        seq = config_sequence(config, lab["sequence_id"])
        item: dict[str, Any] = {
            "lead_id": lid,
            "account_id": lab["account_id"],
            "sequence_id": lab["sequence_id"],
            "step": int(lab["step"] or 0),
            "steps": len(seq.messages) if seq else None,
            "state": lab["state"],
            "started_at": _iso(lab["started_at"]),
            "next_message_id": None,
            "next_due_at": None,
            "action": None,
            "reason": None,
        }
        row = rows.get(lid)
        if row is None:
            item.update(action="none", reason="lead_gone")
        else:
            try:
                d = decide(parse_lead(row), states[lid], config, now, explain=False)
            except BadLead as exc:
                item.update(action="none", reason=f"bad_row: {exc.column}")
            except Exception as exc:  # noqa: BLE001 - one row must not stop the view
                item.update(action="none", reason=f"bad_row: {type(exc).__name__}")
            else:
                item.update(action=d.action, reason=d.reason, next_message_id=d.message_id)
                nxt = d.due_at if d.message is not None else None
                if d.action == "wait" and d.next_at is not None:
                    nxt = max(nxt, d.next_at) if nxt else d.next_at
                item["next_due_at"] = _iso(nxt)
        if item["next_due_at"] is None and lab["next_followup_at"] is not None:
            item["next_due_at"] = _iso(parse_time(lab["next_followup_at"]))
        out.append(item)
    return out


# ------------------------------------------------------------------ CSV / tables


CsvRow = tuple[str, str, str, Any]


def _csv_metrics(
    section: str, segment: str, data: Mapping[str, Any], skip: tuple[str, ...] = ()
) -> list[CsvRow]:
    """A segment's metrics as CSV rows: scalars as they are, a flat mapping or list one
    row per item (``key_item``); nested ones and the ``skip`` keys are left out."""
    rows: list[CsvRow] = []
    for k, v in data.items():
        if k in skip:
            continue
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                if not isinstance(v2, Mapping | list):
                    rows.append((section, segment, f"{k}_{k2}", v2))
        elif isinstance(v, list):
            if v and not isinstance(v[0], Mapping | list):
                for i, x in enumerate(v):
                    rows.append((section, segment, f"{k}_{i}", x))
        else:
            rows.append((section, segment, k, v))
    return rows


def csv_rows(report: Mapping[str, Any]) -> list[CsvRow]:
    """(section, segment, metric, value): one row per metric and segment."""
    rows: list[CsvRow] = []

    def add(
        section: str, segment: str, data: Mapping[str, Any], skip: tuple[str, ...] = ()
    ) -> None:
        rows.extend(_csv_metrics(section, segment, data, skip))

    p = report["period"]
    rows.append(("report", "", "period_start", p["start"]))
    rows.append(("report", "", "period_end", p["end"]))
    rows.append(("report", "", "timezone", report["timezone"]))
    rows.append(("report", "", "account", report["account"] or "all"))
    add("summary", "", report["summary"])
    for d in report["per_day"]:
        add("per_day", d["date"], d, skip=("date",))
    for s in report["sequences"]:
        add("sequence", s["sequence_id"], s, skip=("sequence_id",))
    for m in report["messages"]:
        add(
            "message",
            f"{m['sequence_id']}/{m['message_id']}",
            m,
            skip=("sequence_id", "message_id"),
        )
    for pr in report["progression"]:
        add("progression", pr["sequence_id"], pr, skip=("sequence_id", "steps"))
        for s in pr["steps"]:
            add(
                "progression_step",
                f"{pr['sequence_id']}/{s['step']}/{s['message_id']}",
                s,
                skip=("step", "message_id"),
            )
    for h in report["best_times"]["hours"]:
        add("hour", f"{h['hour']:02d}", h, skip=("hour",))
    for w in report["best_times"]["weekdays"]:
        add("weekday", w["name"], w, skip=("weekday", "name"))
    for ab in report["ab_tests"]:
        seg = f"{ab['sequence_id']}/{ab['message_id']}"
        rows.append(("ab_test", seg, "winner", ab["winner"]))
        if ab["comparison"]:
            add("ab_test", seg, ab["comparison"])
        for v in ab["variants"]:
            add("ab_variant", f"{seg}/{v['variant_id']}", v, skip=("variant_id",))
    add("coverage", "", report["coverage"])
    for t in report["targets"]:
        add("target", t["name"], t, skip=("name", "label"))
    pb = report["problems"]
    rows.append(("problems", "unknown", "count", pb["unknown"]))
    rows.append(("problems", "pending", "count", pb["pending"]))
    for code, n in pb["failed"]["by_code"].items():
        rows.append(("failed", code, "count", n))
    for reason, n in pb["skipped"]["by_reason"].items():
        rows.append(("skipped", reason, "count", n))
    ho = report["holdout"]
    if ho["overall"]:
        add("holdout", "all", ho["overall"])
    for s in ho["sequences"]:
        add("holdout", s["sequence_id"], s, skip=("sequence_id",))
    return rows


def to_csv(report: Mapping[str, Any]) -> str:
    """The report as CSV text: a header, then ``csv_rows`` (booleans as true/false)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "segment", "metric", "value"])
    for row in csv_rows(report):
        v = row[3]
        w.writerow([*row[:3], "true" if v is True else "false" if v is False else v])
    return buf.getvalue()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def tables(report: Mapping[str, Any]) -> list[Any]:
    """Rich renderables for a terminal, in reading order (Rich is imported here only)."""
    out: list[Any] = []
    for section in (
        _summary_table,
        _targets_table,
        _per_day_table,
        _sequences_table,
        _messages_table,
        _progression_tables,
        _best_times_table,
        _ab_tables,
        _holdout_table,
        _problems_text,
    ):
        out.extend(section(report))
    return out


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...], **kw: Any) -> Any:
    """A Rich table with these columns: those in ``left`` aligned left, the others right."""
    from rich.table import Table

    t = Table(title=title, **kw)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right")
    return t


def _summary_table(report: Mapping[str, Any]) -> list[Any]:
    from rich.table import Table

    s = report["summary"]
    p = report["period"]
    acct = f", account {report['account']}" if report["account"] else ""
    head = Table(
        title=f"followup report {p['start']} – {p['end']} ({report['timezone']}{acct})",
        show_header=False,
    )
    head.add_column("metric")
    head.add_column("value", justify="right")
    rt, tc = s["response_time_hours"], s["time_to_conversion_hours"]
    for label, value in (
        (f"sent today ({s['today']})", str(s["sent_today"])),
        ("follow-ups sent", str(s["followups_sent"])),
        ("leads messaged", str(s["leads_messaged"])),
        ("response rate (leads)", f"{_pct(s['response_rate'])} ({s['leads_responded']})"),
        ("conversion rate (leads)", f"{_pct(s['conversion_rate'])} ({s['leads_converted']})"),
        ("response time, median / p90", _hrs(rt)),
        ("time to conversion, median / p90", _hrs(tc)),
    ):
        head.add_row(label, value)
    return [head]


def _targets_table(report: Mapping[str, Any]) -> list[Any]:
    columns = ("target", "goal", "actual", "", "status")
    t = _table("Targets (the plan)", columns, left=("target", "", "status"))
    for tg in report["targets"]:
        status = (
            "-"
            if tg["met"] is None
            else ("[green]met[/green]" if tg["met"] else "[red]below[/red]")
        )
        t.add_row(
            tg["label"],
            _pct(tg["target"]),
            _pct(tg["actual"]),
            f"{tg['numerator']}/{tg['denominator']}",
            status,
        )
    return [t]


def _per_day_table(report: Mapping[str, Any]) -> list[Any]:
    columns = ("date", "sent", "responded", "converted")
    t = _table("Per day (sent, responded, converted)", columns, left=("date",))
    for d in report["per_day"]:
        t.add_row(d["date"], str(d["sent"]), str(d["responded"]), str(d["converted"]))
    return [t]


def _sequences_table(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    if not report["sequences"]:
        return []
    columns = ("sequence", "sent", "leads", "response", "conversion")
    t = _table("By sequence", columns, left=("sequence",))
    for q in report["sequences"]:
        t.add_row(
            Text(q["sequence_id"]),
            str(q["followups_sent"]),
            str(q["leads_messaged"]),
            f"{_pct(q['response_rate'])} ({q['leads_responded']})",
            f"{_pct(q['conversion_rate'])} ({q['leads_converted']})",
        )
    return [t]


def _messages_table(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    if not report["messages"]:
        return []
    columns = ("#", "message", "sent", "responded", "rate (95% CI)", "converted")
    t = _table("Top messages (by response rate)", columns, left=("message",))
    for m in report["messages"][:10]:
        ci = m["response_ci"]
        t.add_row(
            str(m["rank"]),
            Text(f"{m['sequence_id']}/{m['message_id']}"),
            str(m["sent"]),
            str(m["responded"]),
            f"{_pct(m['response_rate'])} ({_pct(ci[0])}–{_pct(ci[1])})" if ci else "-",
            str(m["converted"]),
        )
    return [t]


def _progression_tables(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    out = []
    for pr in report["progression"]:
        ended = ", ".join(f"{k} {v}" for k, v in pr["ended"].items()) or "none"
        title = (
            f"Progression: {pr['sequence_id']} ({pr['enrolled']} enrolled, "
            f"{pr['active']} active; ended: {ended})"
        )
        columns = ("step", "message", "reached", "responded", "converted")
        t = _table(title, columns, left=("message",))
        for st in pr["steps"]:
            t.add_row(
                str(st["step"]),
                Text(st["message_id"]),
                str(st["reached"]),
                str(st["responded"]),
                str(st["converted"]),
            )
        out.append(t)
    return out


def _best_times_table(report: Mapping[str, Any]) -> list[Any]:
    bt = report["best_times"]
    if not bt["hours"]:
        return []
    title = "Best hours and weekdays (lead's local send time)"
    columns = ("when", "sent", "responded", "rate")
    t = _table(title, columns, left=("when",), caption=bt["caveat"])
    for h in sorted(bt["hours"], key=lambda x: -(x["response_rate"] or 0)):
        t.add_row(
            f"{h['hour']:02d}:00", str(h["sent"]), str(h["responded"]), _pct(h["response_rate"])
        )
    for w in sorted(bt["weekdays"], key=lambda x: -(x["response_rate"] or 0)):
        t.add_row(w["name"], str(w["sent"]), str(w["responded"]), _pct(w["response_rate"]))
    return [t]


def _ab_tables(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    out = []
    for ab in report["ab_tests"]:
        title = f"A/B {ab['sequence_id']}/{ab['message_id']}: {ab['verdict']}"
        columns = ("variant", "sent", "responded", "rate", "95% CI", "converted")
        t = _table(title, columns, left=("variant",))
        for v in ab["variants"]:
            mark = " ★" if v["variant_id"] == ab["winner"] else ""
            ci = f"{_pct(v['ci_low'])}–{_pct(v['ci_high'])}" if v["ci_low"] is not None else "-"
            t.add_row(
                Text(v["variant_id"] + mark),
                str(v["sent"]),
                str(v["responded"]),
                _pct(v["response_rate"]),
                ci,
                str(v["converted"]),
            )
        out.append(t)
    return out


def _holdout_table(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    ho = report["holdout"]
    if not ho["overall"]:
        return []
    title = "Holdout lift (conversion, messaged vs control)"
    columns = ("sequence", "messaged", "holdout", "difference (95% CI)", "relative")
    t = _table(title, columns, left=("sequence",), caption=ho["note"])
    for label, g in [("all", ho["overall"])] + [(x["sequence_id"], x) for x in ho["sequences"]]:
        m, h = g["messaged"], g["holdout"]
        diff = "-"
        if g["difference"] is not None:
            sig = " *" if g["significant"] else ""
            diff = (
                f"{g['difference'] * 100:+.1f} pp "
                f"({g['ci_low'] * 100:+.1f}…{g['ci_high'] * 100:+.1f}){sig}"
            )
        t.add_row(
            Text(label),
            f"{_pct(m['conversion_rate'])} of {m['enrollments']}",
            f"{_pct(h['conversion_rate'])} of {h['enrollments']}",
            diff,
            _pct(g["relative_lift"]),
        )
    return [t]


def _problems_text(report: Mapping[str, Any]) -> list[Any]:
    from rich.text import Text

    pb = report["problems"]
    c = report["coverage"]
    lines = [
        f"qualified leads followed up: {c['followed_up']} of {c['qualified']} ({_pct(c['share'])})",
        f"unknown outcome: {pb['unknown']}, still sending: {pb['pending']}",
        "failed: "
        + (", ".join(f"code {k}: {v}" for k, v in pb["failed"]["by_code"].items()) or "none"),
        "skipped: "
        + (", ".join(f"{k}: {v}" for k, v in pb["skipped"]["by_reason"].items()) or "none"),
    ]
    return [Text("\n".join(lines))]


def _hrs(h: Mapping[str, Any]) -> str:
    if not h["n"]:
        return "-"
    return f"{h['median']:.1f}h / {h['p90']:.1f}h (n={h['n']})"
