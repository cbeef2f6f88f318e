"""Custom attributes and text lengths are data, not configuration: `sequences check --db`
measures them on the lead store, and a run skips the one lead a template cannot serve
(named once) while everyone else is served. On SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from followup_cli.crypto import new_key
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, graph_config, lead, write_config
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
KEYED = {"FOLLOWUP_ENCRYPTION_KEY": new_key()}  # no "bodies are not stored" warning
T = NOW - timedelta(hours=5)


def due(lead_id: str, **over: Any) -> dict[str, Any]:
    return lead(lead_id, last_inbound_at=T, last_outbound_at=T + timedelta(hours=1), **over)


def config_with(tmp_path: Path, template: str, **over: Any) -> Path:
    cfg = base_config(**over)
    cfg["sequences"][0]["messages"][0]["template"] = template
    return write_config(tmp_path / "sequences.yaml", cfg)


def run_json(cfg: Path, db: LeadDB, *extra: str) -> tuple[dict[str, Any], Any]:
    r = followup(
        "run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--json", *extra
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r


PRODUCT = "Still keen on {{ lead.attributes.product }}, {{ lead.first_name }}?"


def test_run__a_lead_lacking_a_used_attribute_is_skipped_by_name_and_the_others_are_served(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(
        due("has", attributes={"product": "the yoga mat"}),
        due("lacks", attributes={"interest": "pricing"}),
        due("also_has", attributes={"product": "the studio plan"}),
    )
    cfg = config_with(tmp_path, PRODUCT)
    check = followup("sequences", "check", "--config", str(cfg))
    assert check.returncode == 0, check.stderr  # data, not configuration: a warning
    assert "warning" in check.stderr and "lead.attributes.product" in check.stderr
    summary, r = run_json(cfg, db)
    assert summary["sent"] == 2
    assert summary["skipped"] == {"missing_attribute:product": 1}
    assert [b for b in summary["bad_leads"] if "lacks" in b] == [
        b for b in summary["bad_leads"] if "missing_attribute:product" in b
    ]
    assert [(t["lead_id"], t["status"]) for t in db.tracking()] == [
        ("also_has", "sent"),
        ("has", "sent"),
    ]
    # under cron the skipped lead is named once, not at every run
    again = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert again.returncode == 0 and again.stderr == ""


def test_the_default_filter_serves_leads_that_lack_the_attribute(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(due("has", attributes={"product": "the yoga mat"}), due("lacks", attributes={}))
    cfg = config_with(
        tmp_path, "Still keen on {{ lead.attributes.product | default('our product') }}?"
    )
    check = followup("sequences", "check", "--config", str(cfg), "--db", db.url, env=KEYED)
    assert check.returncode == 0 and "warning" not in check.stderr, check.stderr
    summary, _ = run_json(cfg, db)
    assert sorted(m["text"] for m in summary["messages"]) == [
        "Still keen on our product?",
        "Still keen on the yoga mat?",
    ]


def test_check_db__an_attribute_no_lead_has_is_an_error_with_a_hint(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(due("a", attributes={"product": "mat"}), due("b", attributes={"product": "plan"}))
    cfg = config_with(tmp_path, "Still keen on {{ lead.attributes.prodcut }}?")
    r = followup("sequences", "check", "--config", str(cfg), "--db", db.url)
    assert r.returncode == 2, r.stdout + r.stderr
    line = next(x for x in r.stderr.splitlines() if "prodcut" in x)
    assert line.startswith(f"{cfg}:") and "no lead in the store has" in line
    assert "did you mean 'product'" in line


def test_check_db__the_share_of_eligible_leads_lacking_an_attribute_is_a_warning(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(
        due("a", attributes={"product": "mat"}),
        due("b", attributes={}),
        due("c", attributes={"product": "plan"}),
        due("d", attributes={"product": "mat"}),
        due("converted", attributes={}, status="converted"),  # not eligible: not counted
    )
    cfg = config_with(tmp_path, PRODUCT)
    r = followup("sequences", "check", "--config", str(cfg), "--db", db.url, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    texts = [p["text"] for p in data["problems"]]
    assert any("1 of 4 eligible leads (25%) lack lead.attributes.product" in t for t in texts), (
        texts
    )
    assert all(p["level"] == "warning" for p in data["problems"]), texts
    first = next(t for t in data["templates"] if t["template"] == "s1/m1")
    assert first["eligible"] == 4 and first["missing_attributes"] == {"product": 1}


def test_without_a_store_a_declared_attribute_passes(tmp_path: Path) -> None:
    cfg = base_config(attributes=["product"])
    cfg["sequences"][0]["messages"][0]["template"] = PRODUCT
    path = write_config(tmp_path / "sequences.yaml", cfg)
    r = followup("sequences", "check", "--config", str(path), env=KEYED)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_check_db__longest_rendering_and_overflow_then_the_run_skips_too_long(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(
        due("short", first_name="Ana"),
        due("long", first_name="Maximiliana-Bartolomea " * 3),
        due("ok", first_name="Bea"),
    )
    cfg = config_with(
        tmp_path,
        "Hi {{ lead.first_name }}, still thinking about it?",
        channel={"type": "console", "window_hours": 24, "max_text_bytes": 60},
    )
    r = followup("sequences", "check", "--config", str(cfg), "--db", db.url, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    first = next(t for t in data["templates"] if t["template"] == "s1/m1")
    assert (
        first["too_long"] == 1 and first["longest_lead"] == "long" and first["longest_bytes"] > 60
    )
    assert any(
        "1 of 3 eligible leads (33%) would render over" in p["text"] for p in data["problems"]
    )
    plain = followup("sequences", "check", "--config", str(cfg), "--db", db.url)
    assert "s1/m1" in plain.stdout and "longest" in plain.stdout and "1 over" in plain.stdout
    summary, _ = run_json(cfg, db)
    assert summary["sent"] == 2 and summary["skipped"] == {"too_long": 1}
    assert "long" not in [t["lead_id"] for t in db.tracking()]


def test_instagram__a_text_over_1000_utf8_bytes_is_never_sent(
    db: LeadDB, tmp_path: Path, graph: FakeGraphAPI
) -> None:
    db.insert(due("fits", first_name="Ana"), due("overflows", first_name="é" * 600))
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    r = followup(
        "run",
        "--config",
        str(cfg),
        "--db",
        db.url,
        "--now",
        NOW.isoformat(),
        "--json",
        env={"FOLLOWUP_TOKEN_A": "tok-a"},
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == 1 and summary["skipped"] == {"too_long": 1}
    assert [c.recipient_id for c in graph.deliveries] == ["ig_fits"]
    assert any("overflows" in b and "1000" in b for b in summary["bad_leads"])


def test_a_whole_record_is_never_sent(db: LeadDB, tmp_path: Path) -> None:
    db.insert(due("a"))
    cfg = config_with(tmp_path, "Your data: {{ '%s'|format(lead) }}")
    r = followup("sequences", "check", "--config", str(cfg))
    assert r.returncode == 2 and "whole record" in r.stderr


CITY = "Still in {{ lead.attributes.address.city }}, {{ lead.first_name }}?"


def test_run__a_lead_lacking_a_nested_attribute_is_skipped_by_name_and_the_others_are_served(
    db: LeadDB, tmp_path: Path
) -> None:
    db.insert(
        due("has", attributes={"address": {"city": "Madrid"}}),
        due("no_city", attributes={"address": {"street": "Gran Via"}}),
        due("no_address", attributes={"interest": "pricing"}),
    )
    cfg = config_with(tmp_path, CITY)
    check = followup("sequences", "check", "--config", str(cfg), "--db", db.url, env=KEYED)
    assert check.returncode == 0, check.stdout + check.stderr  # data: a warning
    assert "2 of 3 eligible leads (67%) lack lead.attributes.address.city" in check.stderr
    summary, _ = run_json(cfg, db)
    assert summary["sent"] == 1
    assert summary["skipped"] == {"missing_attribute:address.city": 2}
    assert [m["text"] for m in summary["messages"]] == ["Still in Madrid, Ana?"]
    named = [b for b in summary["bad_leads"] if "missing_attribute:address.city" in b]
    assert len(named) == 2 and any("no_address" in b for b in named), summary["bad_leads"]
    # under cron the skipped leads are named once, not at every run
    again = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert again.returncode == 0 and again.stderr == ""


def test_default_or_and_is_defined_guard_a_nested_attribute(db: LeadDB, tmp_path: Path) -> None:
    db.insert(
        due("has", attributes={"address": {"city": "Madrid"}}),
        due("no_city", attributes={"address": {}}),
        due("no_address", attributes={}),
    )
    cfg = config_with(
        tmp_path,
        "{{ lead.attributes.address.city | default('town') }}/"
        "{{ lead.attributes.address.city or 'x' }}/"
        "{% if lead.attributes.address.city is defined %}d{% else %}u{% endif %}",
    )
    summary, _ = run_json(cfg, db)
    assert summary["skipped"] == {}, summary
    assert sorted(m["text"] for m in summary["messages"]) == [
        "Madrid/Madrid/d",
        "town/x/u",
        "town/x/u",
    ]


def test_explain__a_lead_lacking_a_used_attribute_is_not_due_and_says_why(
    db: LeadDB, tmp_path: Path
) -> None:
    """explain shows what a run would do: the run skips a lead its template cannot serve
    (missing_attribute:product, too_long), so explain does not say DUE NOW for it."""
    db.insert(
        due("has", attributes={"product": "the yoga mat"}),
        due("lacks", attributes={"interest": "pricing"}),
        due("long", attributes={"product": "é" * 600}),
    )
    cfg = config_with(tmp_path, PRODUCT, channel={"type": "instagram", "window_hours": 24})
    common = ["--config", str(cfg), "--db", db.url, "--now", NOW.isoformat()]
    has = json.loads(followup("explain", "has", *common, "--json").stdout)
    assert (has["action"], has["reason"]) == ("send", "due")
    for lead_id, reason in (("lacks", "missing_attribute:product"), ("long", "too_long")):
        r = followup("explain", lead_id, *common, "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert (data["action"], data["reason"]) == ("skip", reason), data
        assert data["checks"][-1]["ok"] is False and data["checks"][-1]["rule"] == "message"
        text = followup("explain", lead_id, *common)
        assert text.returncode == 0, text.stderr
        assert "DUE NOW" not in text.stdout and "CANNOT BE SENT" in text.stdout, text.stdout
    assert "lead.attributes.product" in followup("explain", "lacks", *common).stdout
    dry, _ = run_json(cfg, db, "--dry-run")
    assert dry["would_send"] == 1
    assert dry["skipped"] == {"missing_attribute:product": 1, "too_long": 1}
