"""More shapes of the report built by ``report.build_report``: tidy CSV tables, one per
section (``--format csv --section NAME``), and one self-contained HTML page with charts
(``--format html -o FILE``: plotly, its JavaScript inlined, so the file opens offline)."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError
from .report.export import flat_metrics
from .report.tables import _pct

Table = tuple[list[str], list[list[Any]]]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ----------------------------------------------------------------- tidy tables


def _rows(items: list[Mapping[str, Any]], columns: list[str]) -> Table:
    return columns, [[item.get(c) for c in columns] for item in items]


def _summary(r: Mapping[str, Any]) -> Table:
    rows: list[list[Any]] = [
        ["period_start", r["period"]["start"]],
        ["period_end", r["period"]["end"]],
        ["timezone", r["timezone"]],
        ["account", r["account"] or "all"],
    ]
    for k, v in r["summary"].items():
        if isinstance(v, Mapping):
            rows += [[f"{k}_{k2}", v2] for k2, v2 in v.items()]
        else:
            rows.append([k, v])
    return ["metric", "value"], rows


def _progression(r: Mapping[str, Any]) -> Table:
    cols = ["sequence_id", "enrolled", "step", "message_id", "reached", "responded", "converted"]
    rows = [
        [p["sequence_id"], p["enrolled"], s["step"], s["message_id"], s["reached"]]
        + [s["responded"], s["converted"]]
        for p in r["progression"]
        for s in p["steps"]
    ]
    return cols, rows


def _ab(r: Mapping[str, Any]) -> Table:
    cols = [
        "sequence_id",
        "message_id",
        "variant_id",
        "sent",
        "responded",
        "response_rate",
        "ci_low",
        "ci_high",
        "converted",
        "conversion_rate",
        "p_value",
        "significant",
        "winner",
    ]
    rows = []
    for ab in r["ab_tests"]:
        comp = ab.get("comparison") or {}
        for v in ab["variants"]:
            rows.append(
                [ab["sequence_id"], ab["message_id"]]
                + [v.get(c) for c in cols[2:10]]
                + [comp.get("p_value"), comp.get("significant"), ab.get("winner")]
            )
    return cols, rows


def _problems(r: Mapping[str, Any]) -> Table:
    pb = r["problems"]
    rows: list[list[Any]] = [["unknown", "", pb["unknown"]], ["pending", "", pb["pending"]]]
    rows += [["failed", code, n] for code, n in pb["failed"]["by_code"].items()]
    rows += [["skipped", why, n] for why, n in pb["skipped"]["by_reason"].items()]
    return ["status", "detail", "count"], rows


def _holdout(r: Mapping[str, Any]) -> Table:
    items = [
        {"sequence_id": s["sequence_id"], **flat_metrics(s, ("sequence_id",))}
        for s in r["holdout"]["sequences"]
    ]
    if r["holdout"]["overall"]:
        items.insert(0, {"sequence_id": "all", **flat_metrics(r["holdout"]["overall"])})
    cols: list[str] = []
    for it in items:
        cols += [c for c in it if c not in cols]
    return _rows(items, cols or ["sequence_id"])


SECTIONS: dict[str, Callable[[Mapping[str, Any]], Table]] = {
    "summary": _summary,
    "per_day": lambda r: _rows(r["per_day"], ["date", "sent", "responded", "converted"]),
    "sequences": lambda r: _rows(
        r["sequences"],
        [
            "sequence_id",
            "name",
            "followups_sent",
            "leads_messaged",
            "leads_responded",
            "response_rate",
            "leads_converted",
            "conversion_rate",
        ],
    ),
    "messages": lambda r: _rows(
        [flat_metrics(m) for m in r["messages"]],
        [
            "rank",
            "sequence_id",
            "message_id",
            "step",
            "sent",
            "responded",
            "response_rate",
            "response_ci_0",
            "response_ci_1",
            "converted",
            "conversion_rate",
        ],
    ),
    "progression": _progression,
    "hours": lambda r: _rows(
        r["best_times"]["hours"], ["hour", "sent", "responded", "response_rate"]
    ),
    "weekdays": lambda r: _rows(
        r["best_times"]["weekdays"], ["weekday", "name", "sent", "responded", "response_rate"]
    ),
    "ab_tests": _ab,
    "targets": lambda r: _rows(
        r["targets"], ["name", "label", "target", "actual", "numerator", "denominator", "met"]
    ),
    "problems": _problems,
    "holdout": _holdout,
}


def section_table(report: Mapping[str, Any], name: str) -> Table:
    if name not in SECTIONS:
        raise ConfigError(f"--section {name!r}: use one of {', '.join(SECTIONS)}")
    return SECTIONS[name](report)


def section_csv(report: Mapping[str, Any], name: str) -> str:
    """One section as a tidy CSV table: a header row, then one row per item."""
    columns, rows = section_table(report, name)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["true" if v is True else "false" if v is False else v for v in row])
    return buf.getvalue()


# ------------------------------------------------------------------------- HTML

COLORS = {"sent": "#4c78a8", "responded": "#f58518", "converted": "#54a24b"}


def _figures(report: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(id, title, plotly figure) for every chart of the page."""
    return [
        _per_day_figure(report["per_day"]),
        *_funnel_figures(report["progression"]),
        *_best_time_figures(report["best_times"]),
        *_ab_figures(report["ab_tests"]),
    ]


def _empty(fig: Any, what: str) -> Any:
    """Say ``what`` in the middle of a chart that has no data."""
    fig.add_annotation(text=what, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def _layout(fig: Any, **kw: Any) -> Any:
    """The page's one look for every chart."""
    fig.update_layout(
        template="plotly_white",
        height=kw.pop("height", 360),
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        **kw,
    )
    return fig


def _per_day_figure(days: list[dict[str, Any]]) -> tuple[str, str, Any]:
    """Sent, responded and converted side by side, one group of bars a day."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key in ("sent", "responded", "converted"):
        fig.add_bar(
            x=[d["date"] for d in days],
            y=[d[key] for d in days],
            name=key,
            marker_color=COLORS[key],
        )
    if not days:
        _empty(fig, "no follow-ups in this period")
    return (
        "chart-per-day",
        "Follow-ups sent, responded and converted per day",
        _layout(fig, barmode="group", yaxis_title="follow-ups"),
    )


def _funnel_figures(progression: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """One funnel a sequence: enrolled, each step reached, responded, converted."""
    import plotly.graph_objects as go

    if not progression:
        return [
            ("chart-funnel", "Sequence funnel", _layout(_empty(go.Figure(), "no enrollments yet")))
        ]
    out = []
    for p in progression:
        fig = go.Figure()
        stages = ["enrolled"] + [f"step {s['step']} {s['message_id']}" for s in p["steps"]]
        values = [p["enrolled"]] + [s["reached"] for s in p["steps"]]
        stages += ["responded", "converted"]
        values += [sum(s["responded"] for s in p["steps"]), sum(s["converted"] for s in p["steps"])]
        fig.add_trace(go.Funnel(y=stages, x=values, textinfo="value+percent initial"))
        out.append(
            (
                f"chart-funnel-{p['sequence_id']}",
                f"Funnel of sequence {p['sequence_id']}",
                _layout(fig, height=80 + 45 * len(stages)),
            )
        )
    return out


def _best_time_figures(best_times: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The response rate by the hour and by the weekday the follow-up reached the lead."""
    import plotly.graph_objects as go

    out = []
    for key, label, axis in (
        ("hours", "Response rate by the hour the follow-up reached the lead", "hour"),
        ("weekdays", "Response rate by weekday", "name"),
    ):
        items = best_times[key]
        fig = go.Figure()
        fig.add_bar(
            x=[f"{i[axis]:02d}:00" if axis == "hour" else i[axis] for i in items],
            y=[i["response_rate"] for i in items],
            text=[f"{i['responded']}/{i['sent']}" for i in items],
            marker_color=COLORS["responded"],
            name="response rate",
        )
        if not items:
            _empty(fig, "no follow-ups in this period")
        out.append(
            (f"chart-{key}", label, _layout(fig, yaxis_tickformat=".0%", xaxis_type="category"))
        )
    return out


def _ab_figures(ab_tests: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """One chart an A/B test: each variant's response rate with its 95% interval."""
    import plotly.graph_objects as go

    if not ab_tests:
        return [
            ("chart-ab", "A/B results", _layout(_empty(go.Figure(), "no A/B test has data yet")))
        ]
    out = []
    for ab in ab_tests:
        fig = go.Figure()
        vs = ab["variants"]
        rates = [v["response_rate"] or 0 for v in vs]
        fig.add_bar(
            x=[v["variant_id"] for v in vs],
            y=rates,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [(v["ci_high"] or 0) - r for v, r in zip(vs, rates, strict=True)],
                "arrayminus": [r - (v["ci_low"] or 0) for v, r in zip(vs, rates, strict=True)],
            },
            text=[f"{v['responded']}/{v['sent']}" for v in vs],
            marker_color=COLORS["sent"],
            name="response rate (95% interval)",
        )
        verdict = ab.get("verdict") or ""
        out.append(
            (
                f"chart-ab-{ab['sequence_id']}-{ab['message_id']}",
                f"A/B {ab['sequence_id']}/{ab['message_id']}: {verdict}",
                _layout(fig, yaxis_tickformat=".0%", xaxis_type="category"),
            )
        )
    return out


def to_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page that needs no network: plotly.js is inlined once."""
    from plotly.offline import get_plotlyjs

    s = report["summary"]
    period = report["period"]
    title = f"followup report {period['start']} – {period['end']}"
    kpis = [
        ("follow-ups sent", s["followups_sent"]),
        ("leads messaged", s["leads_messaged"]),
        ("response rate", _pct(s["response_rate"])),
        ("conversion rate", _pct(s["conversion_rate"])),
        ("sent today", s["sent_today"]),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;"
        "color:#222}h1{font-size:1.5em}h2{font-size:1.1em;margin-top:2em}"
        ".kpis{display:flex;gap:1.5em;flex-wrap:wrap}.kpi{background:#f4f6f8;padding:.6em 1em;"
        "border-radius:6px}.kpi b{display:block;font-size:1.4em}.note{color:#666;"
        "font-size:.9em}</style>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Days in {html.escape(report["timezone"])}; account: '
        f"{html.escape(report['account'] or 'all')}; generated at "
        f"{html.escape(report['generated_at'])}. A response or conversion is credited to the "
        "last follow-up sent before it.</p>",
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><b>{html.escape(str(v))}</b>{html.escape(k)}</div>' for k, v in kpis
        )
        + "</div>",
    ]
    figures = _figures(report)
    for div_id, heading, fig in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=div_id,
                config={"displaylogo": False, "responsive": True},
            )
        )
    caveat = report["best_times"].get("caveat")
    if caveat:
        parts.append(f'<p class="note">{html.escape(caveat)}</p>')
    ids = [f[0] for f in figures]
    parts.append(f'<script type="application/json" id="charts">{json.dumps(ids)}</script>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chart_ids(page: str) -> list[str]:
    """The ids of the charts a page holds (for checks)."""
    marker = '<script type="application/json" id="charts">'
    return json.loads(page.split(marker, 1)[1].split("</script>", 1)[0])


# ---------------------------------------------------------------------- the CLI


def check_format_options(fmt: str, output: Any, section: str | None) -> None:
    """Usage errors before any work: exit 2 with the fix."""
    if fmt not in ("table", "json", "csv", "html"):
        raise ConfigError(f"--format {fmt!r}: use table, json, csv or html")
    if fmt == "html" and output is None:
        raise ConfigError("--format html needs -o FILE (e.g. -o report.html)")
    if fmt == "html":
        import importlib.util

        if importlib.util.find_spec("plotly") is None:
            raise ConfigError(
                "--format html draws its charts with plotly: pip install 'followup-cli[report]'"
            )
    if section is not None:
        if fmt != "csv":
            raise ConfigError("--section goes with --format csv")
        if section not in SECTIONS:
            raise ConfigError(f"--section {section!r}: use one of {', '.join(SECTIONS)}")
    if output is not None and fmt not in ("html", "csv"):
        raise ConfigError("-o FILE goes with --format html or csv")
    if output is not None and not output.parent.exists():
        raise ConfigError(f"-o {output}: the folder {output.parent} does not exist")


def write_output(
    report: Mapping[str, Any], fmt: str, output: Any, section: str | None, stdout: Any, err: Any
) -> None:
    """html to ``output``; csv (a section, or the long form) to ``output`` or stdout."""
    if fmt == "html":
        text = to_html(report)
    elif section is not None:
        text = section_csv(report, section)
    else:
        from .report import to_csv

        text = to_csv(report)
    if output is None:
        stdout.write(text)
        return
    from .files import write_private

    write_private(output, text)
    err.print(f"wrote {output} ({len(text.encode()) // 1024} KiB)", markup=False)
