"""The person, not the row (issue 9): opt-outs, erasures and caps follow the person an
account messages (account and recipient id), whatever lead row carries them; keyword
opt-outs in six languages; opt-outs in and out of CSV files. Both stores, the fake Graph
API; the CLI's main in this process (``followup_in_process``: the rules are the
database's), the installed command where runs race."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, graph_config, lead, write_config
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))  # Monday 10:00
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}


def due(lead_id: str, recipient: str, **over: Any) -> dict[str, Any]:
    """A lead whose m1 is due at NOW, inside the window."""
    row = lead(
        lead_id,
        recipient_id=recipient,
        last_inbound_at=NOW - timedelta(hours=5),
        last_outbound_at=NOW - timedelta(hours=4),
    )
    row.update(over)
    return row


def run(cfg: Path, db: LeadDB, at: datetime, *extra: str, env: dict[str, str] | None = None):
    return followup(
        "run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), "--json",
        *extra, env={**ENV, **(env or {})},
    )  # fmt: skip


def delete_lead(db: LeadDB, lead_id: str) -> None:
    """The host app deletes its row (its own erasure, or before re-importing the person)."""
    if db.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.url)
        conn.execute("DELETE FROM leads WHERE id = ?", (lead_id,))
        conn.commit()
        conn.close()
    else:
        db._pg.execute(f"DELETE FROM {db.schema}.leads WHERE id = %s", (lead_id,))


# ------------------------------------------------------------ re-inserted leads


@pytest.mark.parametrize("how", ["keyword", "optout", "erase"])
def test_a_reinserted_lead_of_a_person_who_said_stop_gets_nothing(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, how: str
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    text = "ＳＴＯＰ" if how == "keyword" else "how much?"
    db.insert(due("p1", "ig_person", last_inbound_text=text))
    if how == "keyword":
        r = run(cfg, db, NOW)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["optouts"] == 1
    elif how == "optout":
        assert followup("optout", "p1", "--reason", "asked by phone", *common).returncode == 0
    else:
        r = followup("erase", "p1", "--yes", *common)
        assert r.returncode == 0, r.stderr
    # the host app re-imports the same Instagram user under a new lead id
    delete_lead(db, "p1")
    db.insert(due("p2", "ig_person"))
    later = NOW + timedelta(minutes=5)
    r = run(cfg, db, later)
    assert r.returncode == 0, r.stderr
    assert graph.deliveries_to("ig_person") == []
    explained = followup("explain", "p2", *common, "--now", later.isoformat())
    assert "opt-out" in explained.stdout and "DUE NOW" not in explained.stdout


def test_two_lead_rows_of_one_person_get_what_one_row_would(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Daily allowance, interval, lifetime count and sequence progress are the person's:
    the same schedule sends the same messages to a person held by one row or by two."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(due("one", "ig_single"))
    db.insert(due("twin_a", "ig_twin"), due("twin_b", "ig_twin"))
    slots = [NOW, NOW.replace(hour=14), NOW.replace(hour=18), NOW + timedelta(days=1)]
    for at in slots:
        r = run(cfg, db, at)
        assert r.returncode == 0, r.stderr
    single = [c.text for c in graph.deliveries_to("ig_single")]
    twin = [c.text for c in graph.deliveries_to("ig_twin")]
    assert single and twin == single, (single, twin)


def test_person_caps_hold_when_runs_race_for_two_rows_of_one_person(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Two runs at once (Postgres: any number of runs; SQLite: one at a time) each see a row
    of the same person: the person's check is inside the claim, so one message goes out."""
    from tests.helpers import spawn_followup

    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*(due(f"r{i}", "ig_racer") for i in range(6)))
    args = ["run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--wait", "30"]
    procs = [spawn_followup(*args, env=ENV) for _ in range(3)]
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert len(graph.deliveries_to("ig_racer")) == 1
    # three processes wrote the audit log at once: one chain, no fork, no gap
    verified = followup("audit", "verify", "--config", str(cfg), "--db", db.url)
    assert verified.returncode == 0, verified.stdout


# -------------------------------------------------------- undo, erase, lift


def test_optout_undo_never_lifts_an_erasure_only_erase_lift_does(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("u1", "ig_undo"))
    assert followup("erase", "u1", "--yes", *common).returncode == 0
    undo = followup("optout", "u1", "--undo", *common)
    assert undo.returncode == 2
    assert "never lifts an erasure" in undo.stderr and "erase --lift u1 --yes" in undo.stderr
    assert run(cfg, db, NOW).returncode == 0
    assert graph.deliveries_to("ig_undo") == []
    refused = followup("erase", "--lift", "u1", *common)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    lifted = followup("erase", "--lift", "u1", "--yes", *common)
    assert lifted.returncode == 0, lifted.stderr
    assert "erasure lifted" in lifted.stdout
    audit = json.loads(followup("audit", "u1", *common, "--json").stdout)
    assert audit[0]["action"] == "erase_lift" and audit[0]["actor"]
    assert run(cfg, db, NOW + timedelta(minutes=1)).returncode == 0
    assert len(graph.deliveries_to("ig_undo")) == 1  # lifted: messaged again
    again = followup("erase", "--lift", "u1", "--yes", *common)
    assert again.returncode == 2 and "no erasure holds" in again.stderr


def test_optout_undo_lifts_the_persons_optout_too(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("v1", "ig_v"), due("v2", "ig_v"))
    assert followup("optout", "v1", *common).returncode == 0
    assert run(cfg, db, NOW).returncode == 0
    assert graph.deliveries_to("ig_v") == []  # v2 is the same person
    assert followup("optout", "v1", "--undo", *common).returncode == 0
    assert run(cfg, db, NOW + timedelta(minutes=1)).returncode == 0
    assert len(graph.deliveries_to("ig_v")) == 1


def test_a_different_suppression_key_is_refused_not_ignored(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    key = {"FOLLOWUP_SUPPRESSION_KEY": "k" * 32}
    db.insert(due("k1", "ig_k"))
    assert followup("erase", "k1", "--yes", *common, env=key).returncode == 0
    delete_lead(db, "k1")
    db.insert(due("k2", "ig_k"))
    for env in ({}, {"FOLLOWUP_SUPPRESSION_KEY": "another-key-of-32-characters-xx"}):
        r = run(cfg, db, NOW, env=env)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "FOLLOWUP_SUPPRESSION_KEY" in r.stderr and "recorded with key id" in r.stderr
    assert graph.deliveries_to("ig_k") == []
    assert run(cfg, db, NOW, env=key).returncode == 0
    assert graph.deliveries_to("ig_k") == []
    short = run(cfg, db, NOW, env={"FOLLOWUP_SUPPRESSION_KEY": "short"})
    assert short.returncode == 2 and "shorter than 16" in short.stderr


# ------------------------------------------------------------- import, export


def test_optout_import_and_export_are_idempotent(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("i1", "ig_i1"), due("i2", "ig_i2"), due("i3", "ig_i3"), due("i4", "ig_i4"))
    src = tmp_path / "from_other_tool.csv"
    src.write_text(
        "lead_id,recipient_id,account_id,reason\n"
        "i1,,,asked by email\n"
        ",ig_i2,acct_a,unsubscribed in the old tool\n"
        ",ig_nobody_yet,,spam complaint\n"  # the only account is implied
    )
    first = followup("optout", "--import", str(src), *common)
    assert first.returncode == 0, first.stderr
    assert "3 line(s): 3 new opt-out(s), 0 already recorded" in first.stdout
    second = followup("optout", "--import", str(src), *common)
    assert "0 new opt-out(s), 3 already recorded" in second.stdout
    bare = tmp_path / "bare.csv"
    bare.write_text("i3,called us\nig_i4\n")  # no header: id,reason; a lead id or a recipient
    assert "2 new" in followup("optout", "--import", str(bare), *common).stdout
    exported = followup("optout", "--export", *common)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    got = {(r["lead_id"], r["recipient_id"], r["reason"]) for r in rows}
    assert ("i1", "ig_i1", "asked by email") in got
    assert ("", "ig_i2", "unsubscribed in the old tool") in got
    assert ("", "ig_nobody_yet", "spam complaint") in got
    assert ("i3", "ig_i3", "called us") in got and ("", "ig_i4", "") in got
    out_file = tmp_path / "export.csv"
    assert followup("optout", "--export", str(out_file), *common).returncode == 0
    back = followup("optout", "--import", str(out_file), *common)
    assert f"{len(rows)} line(s): 0 new opt-out(s), {len(rows)} already recorded" in back.stdout
    assert run(cfg, db, NOW).returncode == 0
    assert graph.deliveries == []  # every one of them is opted out
    db.insert(due("i9", "ig_nobody_yet"))  # the imported recipient appears as a lead
    assert run(cfg, db, NOW + timedelta(minutes=1)).returncode == 0
    assert graph.deliveries == []


def test_optout_import_names_the_bad_line_and_records_nothing(tmp_path: Path, db: LeadDB) -> None:
    c = base_config()
    c["accounts"].append({"id": "acct_b", "user_id": "u_2"})
    cfg = write_config(tmp_path / "sequences.yaml", c)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("j1", "ig_j1"))
    src = tmp_path / "bad.csv"
    src.write_text("lead_id,recipient_id,account_id,reason\nj1,,,x\n,ig_j2,,no account\n")
    r = followup("optout", "--import", str(src), *common)
    assert r.returncode == 2
    assert f"{src}:3: recipient ig_j2: which account?" in r.stderr
    assert db.query("SELECT lead_id FROM followup_optouts") == []
    ok = followup("optout", "--import", str(src), "--account", "acct_b", *common)
    assert ok.returncode == 0 and "2 new" in ok.stdout
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("lead,why\nj1,x\n")
    r = followup("optout", "--import", str(wrong), *common)
    assert r.returncode == 2 and f"{wrong}:1: recipient lead: which account?" in r.stderr


# ------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    "text",
    ["ＳＴＯＰ", "no more  messages", "BAJA", "No más mensajes", "Quero parar", "stopp bitte"],
)
def test_keyword_optouts_in_other_forms_and_languages_are_recorded_with_the_word(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, text: str
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(due("w1", "ig_w1", last_inbound_text=text))
    r = run(cfg, db, NOW)
    assert r.returncode == 0, r.stderr
    assert graph.deliveries == []
    [row] = db.query("SELECT reason, source FROM followup_optouts WHERE lead_id = 'w1'")
    assert row["source"] == "keyword" and row["reason"].startswith("keyword: ")
    audit = db.query("SELECT detail FROM followup_audit WHERE action = 'optout'")
    assert json.loads(audit[0]["detail"])["keyword"] == row["reason"][len("keyword: ") :]


def test_a_keyword_from_a_lead_who_wrote_last_is_recorded_at_once(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """The prefilter keeps a lead who wrote last when its text may hold a keyword, spacing and
    accents aside, so the opt-out is recorded now rather than when someone answers."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(
        due(
            "w2",
            "ig_w2",
            last_inbound_text="No  mas mensajes, gracias",
            last_inbound_at=NOW - timedelta(hours=1),
        )
    )
    assert run(cfg, db, NOW).returncode == 0
    assert db.query("SELECT reason FROM followup_optouts WHERE lead_id = 'w2'") == [
        {"reason": "keyword: no más mensajes"}
    ]


def test_a_full_width_stop_from_a_lead_who_wrote_last_is_recorded_at_the_first_run(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """SQL's ``lower()`` does not fold "ＳＴＯＰ"; the prefilter still keeps the lead, so the
    opt-out is recorded now rather than when someone answers."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(
        due("w3", "ig_w3", last_inbound_text="ＳＴＯＰ", last_inbound_at=NOW - timedelta(hours=1))
    )
    assert run(cfg, db, NOW).returncode == 0
    assert db.query("SELECT reason FROM followup_optouts WHERE lead_id = 'w3'") == [
        {"reason": "keyword: stop"}
    ]
    assert graph.deliveries == []


# ------------------------------------------------------------- erasure that erases

NEEDLES = ("Zoltana", "zoltana_ig", "ig_ZOLT123", "ZOLTMID", "secret plans")


def _dump_tool_tables(db: LeadDB) -> str:
    tables = [
        r["name"]
        for r in (
            db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
            if db.backend == "sqlite"
            else db.query(
                "SELECT table_name AS name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        )
        if r["name"].startswith("followup_")
    ]
    assert "followup_tracking" in tables and "followup_suppressions" in tables
    return "\n".join(json.dumps(db.query(f"SELECT * FROM {t}"), default=str) for t in tables)


def test_erase__nothing_identifying_survives_in_a_dump_or_the_raw_file(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    person = {
        "first_name": "Zoltana",
        "username": "zoltana_ig",
        "last_inbound_text": "my secret plans",
        "conversation_id": "conv_ZOLT",
    }
    db.insert(due("z1", "ig_ZOLT123", **person), due("other", "ig_other"))
    graph.fail(551, message="ig_ZOLT123 Zoltana cannot be reached", recipient_id="ig_ZOLT123")
    r = run(cfg, db, NOW)
    assert r.returncode == 3, r.stderr  # z1 failed (the error text quotes her), other sent
    db.insert(due("z2", "ig_ZOLT123", **person))  # the host holds her under a second row
    hook = {
        "object": "instagram",
        "entry": [
            {
                "id": "17841000000000001",
                "time": int(NOW.timestamp() * 1000),
                "messaging": [
                    {
                        "sender": {"id": "ig_ZOLT123"},
                        "recipient": {"id": "17841000000000001"},
                        "timestamp": int(NOW.timestamp() * 1000),
                        "message": {"mid": "mid.ZOLTMID", "text": "Zoltana's secret plans"},
                    }
                ],
            }
        ],
    }
    events = tmp_path / "hook.json"
    events.write_text(json.dumps(hook))
    ing = followup("events", "ingest", str(events), *common, "--now", NOW.isoformat())
    assert ing.returncode == 0, ing.stderr
    before = _dump_tool_tables(db)
    seen = [n for n in NEEDLES if n in before]
    assert seen == ["Zoltana", "ig_ZOLT123", "ZOLTMID"], seen  # the test sees them first
    # the host app erases its own rows first (the tool does not own the lead table)
    delete_lead(db, "z1")
    delete_lead(db, "z2")
    r = followup("erase", "z1", "--yes", *common)
    assert r.returncode == 0, r.stderr
    assert "host app's own lead table is not the tool's" in r.stdout
    dump = _dump_tool_tables(db)
    for needle in NEEDLES:
        assert needle not in dump, needle
    # the audit log lost her details, and still proves it was not otherwise changed
    verified = followup("audit", "verify", *common, "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["scrubbed_by_erasure"] > 0
    if db.backend == "sqlite":
        raw = db.path.read_bytes()  # type: ignore[union-attr]
        wal = Path(f"{db.path}-wal")
        raw += wal.read_bytes() if wal.exists() else b""
        for needle in NEEDLES:
            assert needle.encode() not in raw, needle
        assert "VACUUM" in r.stdout
    else:
        assert "VACUUM FULL" in r.stdout
    # never messaged again, under any row; the other person is untouched
    assert "other" in dump
    db.insert(due("z3", "ig_ZOLT123"))
    assert run(cfg, db, NOW + timedelta(minutes=5)).returncode == 0
    assert [c.recipient_id for c in graph.deliveries] == ["ig_other"]
    # re-ingesting the same webhook stores nothing of her again
    again = followup("events", "ingest", str(events), *common, "--now", NOW.isoformat())
    assert again.returncode == 0, again.stderr
    assert "ZOLTMID" not in _dump_tool_tables(db)


def test_a_reimported_person_goes_on_without_repeating_a_sequence(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """The host deletes a lead mid-sequence and re-imports the person under a new id: the new
    row is neither stuck behind the old row's open enrollment nor sent the same sequence
    again; the person's interval still counts the old row's message."""
    import copy

    import yaml

    cfg_path = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    raw = yaml.safe_load(cfg_path.read_text())
    s2 = copy.deepcopy(raw["sequences"][0])
    s2.update(id="s2", priority=0)
    s2["messages"][0]["template"] = "Hi {{ lead.first_name }}, second sequence"
    raw["sequences"].append(s2)
    raw["settings"]["min_interval_hours"] = 8
    cfg = write_config(cfg_path, raw)
    db.insert(due("A", "ig_re"))
    assert run(cfg, db, NOW).returncode == 0
    delete_lead(db, "A")
    db.insert(
        due(
            "B",
            "ig_re",
            last_inbound_at=NOW + timedelta(hours=1),
            last_outbound_at=NOW + timedelta(hours=2),
        )
    )
    assert run(cfg, db, NOW + timedelta(hours=6)).returncode == 0  # interval: 8 h since A's
    assert run(cfg, db, NOW + timedelta(hours=8)).returncode == 0
    texts = [c.text for c in graph.deliveries_to("ig_re")]
    assert texts == ["Hi Ana, step one", "Hi Ana, second sequence"]


def test_erase_after_the_host_deleted_its_row_finds_the_person_by_key_not_by_stored_id(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """Once the host row is gone the person is found from the key the tool's rows carry, so
    it works when stored recipient ids are encrypted (or otherwise unreadable)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("e1", "ig_enc"))
    assert run(cfg, db, NOW).returncode == 0
    assert len(graph.deliveries_to("ig_enc")) == 1
    db.query("UPDATE followup_tracking SET recipient_id = 'gAAAAB-sealed-by-a-key'")
    delete_lead(db, "e1")
    r = followup("erase", "e1", "--yes", *common)
    assert r.returncode == 0 and "person suppressed by a keyed hash" in r.stdout, r.stdout
    db.insert(due("e2", "ig_enc"))  # due now, inside the window: only the erasure stops it
    assert run(cfg, db, NOW + timedelta(minutes=5)).returncode == 0
    assert len(graph.deliveries_to("ig_enc")) == 1
    db.insert(due("e3", "ig_control"))  # the same run would have sent it: the test can fail
    assert run(cfg, db, NOW + timedelta(minutes=6)).returncode == 0
    assert len(graph.deliveries_to("ig_control")) == 1


@pytest.mark.parametrize("how", ["optout", "erase"])
def test_report_coverage_leaves_out_a_person_who_said_stop_under_any_lead_row(
    tmp_path: Path, db: LeadDB, how: str
) -> None:
    """The report's qualified leads leave out the person, not just the lead row they opted
    out under: a re-imported row of an opted-out or erased person is not someone to reach."""
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("p1", "ig_person"))
    db.insert(due("p2", "ig_person"))  # the same person under a second row
    db.insert(due("p3", "ig_other"))

    def qualified() -> int:
        r = followup("report", *common, "--account", "acct_a", "--format", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["coverage"]["qualified"]

    assert qualified() == 3
    args = ["--reason", "asked by phone"] if how == "optout" else ["--yes"]
    r = followup(how, "p1", *args, *common)
    assert r.returncode == 0, r.stderr
    assert qualified() == 1  # p1 and p2 are one person; p3 is still someone to reach


def test_a_dry_run_shows_what_the_run_sends_to_a_person_with_two_rows(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """--dry-run shows exactly what the run would send: one message for two due rows of one
    person, and none for a row whose person wrote "stop" under another row (the live run
    decides each claim again and sends neither; the dry run listed both)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(
        due("a_twin", "ig_twin"),
        due("b_twin", "ig_twin"),
        due("c_quiet", "ig_stopper"),  # sorts before the row that says stop
        due("d_stop", "ig_stopper", last_inbound_text="please STOP"),
        due("solo", "ig_solo"),
    )
    common = ["--config", str(cfg), "--db", db.url, "--now", NOW.isoformat()]
    explained = followup("explain", "c_quiet", *common, "--json")
    assert explained.returncode == 0, explained.stderr
    verdict = json.loads(explained.stdout)
    assert (verdict["action"], verdict["reason"]) == ("none", "opted_out"), verdict
    assert "d_stop" in verdict["detail"] and "stop" in verdict["detail"].lower()
    dry = run(cfg, db, NOW, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    live = run(cfg, db, NOW)
    assert live.returncode == 0, live.stderr
    sent = json.loads(live.stdout)
    assert sorted(m["lead_id"] for m in sent["messages"]) == ["a_twin", "solo"]
    assert sorted(m["lead_id"] for m in planned["messages"]) == ["a_twin", "solo"]
    assert planned["would_send"] == sent["sent"] == 2
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_solo", "ig_twin"]


def test_optout_undo_under_another_row_never_resumes_a_person_who_said_stop_elsewhere(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """v1 said stop; v2 is the same person. `optout v2 --undo` must not resume the person
    behind v1's stop (it did: the person's opt-out went, v1's stayed listed, v2 was messaged)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("w1", "ig_w"), due("w2", "ig_w"))
    assert followup("optout", "w1", *common).returncode == 0
    refused = followup("optout", "w2", "--undo", *common)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "under lead w1" in refused.stderr and "optout w1 --undo" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run(cfg, db, NOW).returncode == 0
    assert graph.deliveries_to("ig_w") == []  # still the person's stop
    listed = followup("optout", "--list", *common)
    assert "w1" in listed.stdout

    # Both rows opted out: lifting one keeps the person stopped, and says why.
    assert followup("optout", "w2", *common).returncode == 0
    one = followup("optout", "w2", "--undo", *common)
    assert one.returncode == 0 and "stays opted out under lead w1" in one.stdout
    assert run(cfg, db, NOW + timedelta(minutes=1)).returncode == 0
    assert graph.deliveries_to("ig_w") == []
    # The last row's undo resumes the person: one message (one person, two rows).
    last = followup("optout", "w1", "--undo", *common)
    assert last.returncode == 0 and "opt-out removed" in last.stdout
    assert run(cfg, db, NOW + timedelta(minutes=2)).returncode == 0
    assert len(graph.deliveries_to("ig_w")) == 1


def test_limit_counts_messages_not_a_second_row_of_one_person(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """`run --limit 2` with two due rows of one person and another person: the second row
    is decided again at the claim and not sent, so the room goes to the other person (it
    used to be counted, and one message went out)."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(due("x1", "ig_x"), due("x2", "ig_x"), due("x3", "ig_y"))
    dry = run(cfg, db, NOW, "--limit", "2", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert sorted(m["lead_id"] for m in json.loads(dry.stdout)["messages"]) == ["x1", "x3"]
    live = run(cfg, db, NOW, "--limit", "2")
    assert live.returncode == 0, live.stdout + live.stderr
    assert len(graph.deliveries_to("ig_x")) == 1
    assert len(graph.deliveries_to("ig_y")) == 1


def test_optout_undo_of_a_lead_whose_last_message_says_stop_is_refused_not_a_silent_no_op(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """A lead whose last message holds an opt-out keyword: `optout --undo` said "opt-out
    removed", exit 0, and the next run recorded the same keyword opt-out again from the same
    message: the operator was told the lead resumes, and it never did. Now the undo is
    refused (exit 2, one line naming the keyword and when the lead resumes), nothing is
    changed; once the lead writes again without it, the keyword no longer holds it."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("k1", "ig_k1", last_inbound_text="please STOP writing"), due("k2", "ig_k2"))
    assert run(cfg, db, NOW).returncode == 0
    assert graph.deliveries_to("ig_k1") == [] and len(graph.deliveries_to("ig_k2")) == 1
    undo = followup("optout", "k1", "--undo", *common)
    assert undo.returncode == 2, undo
    assert len(undo.stderr.splitlines()) == 1 and "'stop'" in undo.stderr, undo.stderr
    assert "nothing was changed" in undo.stderr
    listed = json.loads(followup("optout", "--list", "--json", *common).stdout)
    assert [r["lead_id"] for r in listed] == ["k1"]
    # an opt-out recorded by hand, with nothing in the last message, is lifted as before
    assert followup("optout", "k2", *common).returncode == 0
    assert followup("optout", "k2", "--undo", *common).returncode == 0


@pytest.mark.parametrize("by", ["lead", "other_lead", "recipient"])
def test_erase_lift_lifts_the_erasure_from_every_lead_row_of_the_person(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI, by: str
) -> None:
    """`erase v1` erases the person behind v1: every lead row of theirs (v1, v2) is marked
    erased. `erase --lift v1` said "erasure lifted; sequences may message this person again"
    but removed the mark of v1 alone: v2 stayed "erased on request" (explain, optout --list),
    `optout v2 --undo` refused it, and the person could be messaged through v1 only."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    common = ["--config", str(cfg), "--db", db.url]
    db.insert(due("v1", "ig_v"), due("v2", "ig_v"), due("w1", "ig_w"))
    assert followup("erase", "v1", "--yes", *common).returncode == 0
    assert followup("optout", "w1", *common).returncode == 0
    target = {"lead": ["v1"], "other_lead": ["v2"], "recipient": ["ig_v", "--account", "acct_a"]}
    lifted = followup("erase", "--lift", *target[by], "--yes", *common)
    assert lifted.returncode == 0, lifted.stderr
    listed = json.loads(followup("optout", "--list", "--json", *common).stdout)
    assert [r["lead_id"] for r in listed] == ["w1"], listed  # only the other person's own
    for lid in ("v1", "v2"):
        explained = followup("explain", lid, *common, "--now", NOW.isoformat(), "--json")
        assert json.loads(explained.stdout)["reason"] != "opted_out", (lid, explained.stdout)
    assert run(cfg, db, NOW).returncode == 0
    assert len(graph.deliveries_to("ig_v")) == 1  # the person, once
    assert graph.deliveries_to("ig_w") == []


def test_optout_json__a_lead_its_undo_and_an_import_answer_in_json(
    tmp_path: Path, db: LeadDB
) -> None:
    """`followup optout LEAD --json` (and --undo, --import) took --json and printed text
    ("j1: opted out"): a script parsing it failed. Each answers one JSON object now."""
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    common = ["--config", str(cfg), "--db", db.url, "--json"]
    db.insert(due("j1", "ig_j1"), due("j2", "ig_j2"))
    first = json.loads(followup("optout", "j1", "--reason", "asked", *common).stdout)
    assert first == {
        "lead_id": "j1",
        "opted_out": True,
        "changed": True,
        "message": "j1: opted out",
    }
    again = json.loads(followup("optout", "j1", *common).stdout)
    assert again["changed"] is False and again["message"] == "j1: already opted out"
    undone = json.loads(followup("optout", "j1", "--undo", *common).stdout)
    assert undone["opted_out"] is False and undone["changed"] is True
    path = tmp_path / "stop.csv"
    path.write_text("lead_id,reason\nj2,by phone\n")
    imported = json.loads(followup("optout", "--import", str(path), *common).stdout)
    assert imported["new"] == 1 and imported["already"] == 0 and imported["lines"] == 1
