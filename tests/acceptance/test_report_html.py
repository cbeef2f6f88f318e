"""`followup report --format html -o FILE`: one self-contained page whose every chart
renders in headless Chromium with no network and no console message; and
`--format csv --section NAME`: tidy tables a spreadsheet opens as they are."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from followup_cli.report_formats import SECTIONS, chart_ids
from tests.helpers import LeadDB, base_config, followup, lead, write_config

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A demo store and the exact report arguments the demo prints for its period."""
    root = tmp_path_factory.mktemp("demo")
    r = followup("demo", "--quiet", "--dir", str(root / "d"), "--leads", "120", cwd=root)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "followup report" in x)
    args = line.split("followup report", 1)[1].split()
    yield root, args


def _report(demo: tuple[Path, list[str]], *extra: str) -> subprocess.CompletedProcess:
    root, args = demo
    return followup("report", *args, *extra, cwd=root)


def test_report_html__self_contained_with_every_chart(
    demo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    r = _report(demo, "--format", "html", "-o", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    ids = chart_ids(page)
    assert ids[0] == "chart-per-day" and "chart-hours" in ids and "chart-weekdays" in ids
    assert any(i.startswith("chart-funnel-") for i in ids) and any(
        i.startswith("chart-ab-") for i in ids
    )
    # nothing to fetch when opened: no external script, stylesheet or image
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert page.count("<script") >= len(ids) + 1


def test_report_html__every_chart_renders_in_headless_chromium(
    demo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no chromium: .ci/run installs Debian's `chromium` package")
        pytest.skip("no chromium on this machine (apt-get install chromium); CI runs this test")
    out = tmp_path / "report.html"
    assert _report(demo, "--format", "html", "-o", str(out)).returncode == 0
    ids = chart_ids(out.read_text(encoding="utf-8"))
    shot = tmp_path / "report.png"
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network use would fail (and log)
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile1'}", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    starts = []
    for chart in ids:
        at = html.find(f'<div id="{chart}"')
        assert at >= 0, f"{chart} missing from the rendered page"
        starts.append(at)
    assert starts == sorted(starts)
    for chart, begin, end in zip(ids, starts, [*starts[1:], len(html)], strict=True):
        part = html[begin:end]
        # plotly marks the div as plotted and draws its SVG inside it
        assert "js-plotly-plot" in part.split(">", 1)[0], f"{chart} was not plotted"
        assert '<svg class="main-svg"' in part, f"{chart} has no rendered SVG"
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged: " + "\n".join(console)
    pic = subprocess.run(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1200,4000",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert pic.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, pic.stderr[
        -2000:
    ]
    print(f"screenshot: {shot}")


def test_report_csv__one_tidy_table_per_section(demo: tuple[Path, list[str]]) -> None:
    full = json.loads(_report(demo, "--format", "json").stdout)
    for name in SECTIONS:
        r = _report(demo, "--format", "csv", "--section", name)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        rows = list(csv.reader(io.StringIO(r.stdout)))
        header, body = rows[0], rows[1:]
        assert header and len(set(header)) == len(header), name
        assert all(len(row) == len(header) for row in body), name
    per_day = list(
        csv.DictReader(io.StringIO(_report(demo, "--format", "csv", "--section", "per_day").stdout))
    )
    assert [d["date"] for d in per_day] == [d["date"] for d in full["per_day"]]
    assert sum(int(d["sent"]) for d in per_day) == full["summary"]["followups_sent"]
    ab = list(
        csv.DictReader(
            io.StringIO(_report(demo, "--format", "csv", "--section", "ab_tests").stdout)
        )
    )
    assert ab and {"variant_id", "ci_low", "ci_high", "p_value"} <= set(ab[0])
    assert all(float(x["ci_low"]) <= float(x["response_rate"]) <= float(x["ci_high"]) for x in ab)


def test_report__format_usage_errors_are_exit_2_with_the_fix(db: LeadDB, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(lead("l1", last_outbound_at="2026-03-02T07:00:00Z"))
    common = ("--config", str(cfg), "--db", db.url)
    cases = {
        ("--format", "html"): "needs -o FILE",
        ("--format", "table", "--section", "per_day"): "--section goes with --format csv",
        ("--format", "csv", "--section", "nope"): "use one of summary",
        ("--format", "pdf"): "use table, json, csv or html",
        ("--format", "html", "-o", str(tmp_path / "no" / "r.html")): "does not exist",
    }
    for args, message in cases.items():
        r = followup("report", *common, *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    ok = followup(
        "report", *common, "--format", "csv", "--section", "summary", "-o", str(tmp_path / "s.csv")
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "s.csv").read_text().startswith("metric,value\n")
