"""The report flattened for CSV: one row per metric and segment (``csv_rows``, ``to_csv``)."""

from __future__ import annotations

from collections.abc import Mapping
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
    rows: list[CsvRow] = []

    def add(
        section: str, segment: str, data: Mapping[str, Any], skip: tuple[str, ...] = ()
    ) -> None:
        rows.extend((section, segment, k, v) for k, v in flat_metrics(data, skip).items())

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
