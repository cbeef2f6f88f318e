"""The report's experiments: A/B tests of a step's variants (rates with Wilson intervals,
a two-proportion z-test, a verdict) and the holdout lift of a sequence over its control
group."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..config import Config, Sequence
from ..rules import config_sequence
from ..stats import newcombe_diff, rate, two_proportion_z, wilson
from .common import _at, _by_step, _r, _sequence_order, _tally

ALPHA = 0.05


def _ab_tests(sent: list[dict[str, Any]], config: Config, now: datetime) -> list[dict[str, Any]]:
    out = []
    for (seq_id, msg_id), rs in sorted(_by_step(sent).items()):
        seq = config_sequence(config, seq_id)
        msg = next((m for m in seq.messages if m.id == msg_id), None) if seq else None
        configured = [v.id for v in (msg.variants or ())] if msg else []
        seen = sorted({r["variant_id"] for r in rs if r["variant_id"] is not None})
        ids = configured + [v for v in seen if v not in configured]
        if len(ids) < 2:
            continue
        variants = []
        for vid in ids:
            n, x, conv = _tally((r for r in rs if r["variant_id"] == vid), now)
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
