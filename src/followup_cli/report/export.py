"""The report flattened for CSV: one row per metric and segment (``csv_rows``, ``to_csv``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

CsvRow = tuple[str, str, str, Any]


def flat_metrics(data: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A segment's metrics flattened: scalars as they are, a flat mapping or list one key
    per item (``key_item``); nested ones and the ``skip`` keys are left out. The CSV rows
    and the CSV sections (``report_formats``) both flatten with it."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in skip:
            continue
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                if not isinstance(v2, Mapping | list):
                    out[f"{k}_{k2}"] = v2
        elif isinstance(v, list):
            if v and not isinstance(v[0], Mapping | list):
                out.update({f"{k}_{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


def csv_rows(report: Mapping[str, Any]) -> list[CsvRow]:
    """(section, segment, metric, value): one row per metric and segment."""
    return [
        *_covered(report),
        *_activity(report),
        *_experiments(report),
        *_problems(report["problems"]),
        *_holdout(report["holdout"]),
    ]


def _metrics(
    section: str, segment: str, data: Mapping[str, Any], skip: tuple[str, ...] = ()
) -> Iterator[CsvRow]:
    """One segment's metrics as rows."""
    return ((section, segment, k, v) for k, v in flat_metrics(data, skip).items())


def _covered(report: Mapping[str, Any]) -> Iterator[CsvRow]:
    """What the report covers: the period, the zone, the account."""
    p = report["period"]
    yield ("report", "", "period_start", p["start"])
    yield ("report", "", "period_end", p["end"])
    yield ("report", "", "timezone", report["timezone"])
    yield ("report", "", "account", report["account"] or "all")


def _activity(report: Mapping[str, Any]) -> Iterator[CsvRow]:
    """The totals, per day, per sequence and message, the progression, the best times."""
    yield from _metrics("summary", "", report["summary"])
    for d in report["per_day"]:
        yield from _metrics("per_day", d["date"], d, skip=("date",))
    for s in report["sequences"]:
        yield from _metrics("sequence", s["sequence_id"], s, skip=("sequence_id",))
    for m in report["messages"]:
        yield from _metrics(
            "message",
            f"{m['sequence_id']}/{m['message_id']}",
            m,
            skip=("sequence_id", "message_id"),
        )
    for pr in report["progression"]:
        yield from _metrics("progression", pr["sequence_id"], pr, skip=("sequence_id", "steps"))
        for s in pr["steps"]:
            yield from _metrics(
                "progression_step",
                f"{pr['sequence_id']}/{s['step']}/{s['message_id']}",
                s,
                skip=("step", "message_id"),
            )
    for h in report["best_times"]["hours"]:
        yield from _metrics("hour", f"{h['hour']:02d}", h, skip=("hour",))
    for w in report["best_times"]["weekdays"]:
        yield from _metrics("weekday", w["name"], w, skip=("weekday", "name"))


def _experiments(report: Mapping[str, Any]) -> Iterator[CsvRow]:
    """The A/B tests and their variants, the coverage, the targets."""
    for ab in report["ab_tests"]:
        seg = f"{ab['sequence_id']}/{ab['message_id']}"
        yield ("ab_test", seg, "winner", ab["winner"])
        if ab["comparison"]:
            yield from _metrics("ab_test", seg, ab["comparison"])
        for v in ab["variants"]:
            yield from _metrics("ab_variant", f"{seg}/{v['variant_id']}", v, skip=("variant_id",))
    yield from _metrics("coverage", "", report["coverage"])
    for t in report["targets"]:
        yield from _metrics("target", t["name"], t, skip=("name", "label"))


def _problems(pb: Mapping[str, Any]) -> Iterator[CsvRow]:
    """Unknown and pending counts, failures by code, skips by reason."""
    yield ("problems", "unknown", "count", pb["unknown"])
    yield ("problems", "pending", "count", pb["pending"])
    for code, n in pb["failed"]["by_code"].items():
        yield ("failed", code, "count", n)
    for reason, n in pb["skipped"]["by_reason"].items():
        yield ("skipped", reason, "count", n)


def _holdout(ho: Mapping[str, Any]) -> Iterator[CsvRow]:
    """The holdout lift, overall and per sequence."""
    if ho["overall"]:
        yield from _metrics("holdout", "all", ho["overall"])
    for s in ho["sequences"]:
        yield from _metrics("holdout", s["sequence_id"], s, skip=("sequence_id",))


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
