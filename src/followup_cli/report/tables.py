"""The report laid out for a terminal: one Rich table a section (``tables``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
