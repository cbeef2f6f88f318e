"""The first minutes: the demo, then every command the README suggests after it, as
written, prints something meaningful; the demo's own totals agree with the report's."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.helpers import followup

ROOT = Path(__file__).resolve().parents[2]


def _readme_block(marker: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker}")[1].split("```sh\n")[1].split("```")[0]
    return [line for line in block.splitlines() if line.strip()]


def test_demo__then_every_suggested_command_says_something(tmp_path: Path) -> None:
    demo = followup("demo", "--quiet", cwd=tmp_path, timeout=300)
    assert demo.returncode == 0, demo.stderr
    commands = _readme_block("demo-next:")
    assert len(commands) >= 5
    printed = [line.strip() for line in demo.stdout.splitlines()]
    for command in commands:
        assert command in printed, f"the demo does not print {command!r}"
    outputs = {}
    for command in commands:
        args = shlex.split(command)[1:]
        r = followup(*args, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, f"{command}: {r.stderr}"
        outputs[args[0] + (" html" if "html" in args else "")] = r.stdout + r.stderr
    assert "would be sent" in outputs["run"] and " 0 message(s)" not in outputs["run"]
    assert "lead(s) in a sequence" in outputs["leads"]
    assert "lead_004" in outputs["explain"] and "history:" in outputs["explain"]
    assert "would go out" in outputs["plan"] and "0 would go out, 0 lost" not in outputs["plan"]
    assert "wrote followup-demo/report.html" in outputs["report html"]
    assert (tmp_path / "followup-demo" / "report.html").stat().st_size > 100_000


def test_demo__its_totals_agree_with_the_report_it_names(tmp_path: Path) -> None:
    demo = followup("demo", "--quiet", "--leads", "120", "--dir", "d", cwd=tmp_path, timeout=300)
    assert demo.returncode == 0, demo.stderr
    line = next(x for x in demo.stdout.splitlines() if x.strip().startswith("followup report"))
    report = followup(*shlex.split(line)[1:], "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    s = json.loads(report.stdout)["summary"]
    assert s["followups_sent"] > 0 and s["followups_responded"] > 0
    totals = demo.stdout.split("Totals: ")[1]
    assert totals.startswith(
        f"{s['followups_sent']} follow-ups sent to {s['leads_messaged']} leads"
    )
    answers = int(totals.split("recorded ")[1].split(" answers")[0])
    conversions = int(totals.split("') and ")[1].split(" conversions")[0])
    assert (answers, conversions) == (s["followups_responded"], s["followups_converted"])
    assert (
        f"counts {s['followups_responded']} follow-ups responded ({s['leads_responded']} leads"
        in demo.stdout
    )
    assert ": the same." in demo.stdout
