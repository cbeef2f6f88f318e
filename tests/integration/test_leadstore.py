"""`followup leads init / import / check`: a lead store in one command, loaded from CSV
with the run's own parser, checked on both stores; the README's three commands work."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from followup_cli.config import LEAD_COLUMNS
from followup_cli.leadcolumns import COLUMN_NAMES, COLUMNS
from followup_cli.store.base import OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from tests.helpers import (
    PG_BASE,
    LeadDB,
    base_config,
    followup,
    followup_in_process,
    lead,
    pg_available,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,account_id,recipient_id,first_name,score,status,last_inbound_at,last_outbound_at,timezone,attributes\n"
GOOD = [
    'l1,acct_a,ig_1,Ana,4,qualified,2026-03-02T08:00:00Z,2026-03-02T08:10:00Z,Europe/Madrid,"{""interest"": ""pricing""}"',
    "l2,acct_a,ig_2,Luis,5,new,2026-03-02T07:00:00Z,2026-03-02T07:05:00Z,,",
]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no lead table: a new SQLite path, or an empty Postgres schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "new.db")
        return
    why = pg_available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    conn = psycopg.connect(PG_BASE, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def test_lead_columns__defined_once_and_agreeing_with_the_run() -> None:
    assert COLUMN_NAMES == LEAD_COLUMNS
    assert set(COLUMN_NAMES) == set(REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS)


def test_leads_init__creates_table_index_and_tool_tables_then_changes_nothing(
    empty_db: str, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config())
    r = followup_in_process("leads", "init", "--config", str(cfg), "--db", empty_db)
    assert r.returncode == 0, r.stderr
    assert "created lead table 'leads'" in r.stdout
    assert "created index leads_account_id_id" in r.stdout and "applied 0001" in r.stdout
    # the store is usable at once: check is clean, migrate has nothing to do, a run works
    check = followup_in_process("leads", "check", "--config", str(cfg), "--db", empty_db)
    assert check.returncode == 0, check.stderr
    assert "0 rows" in check.stdout and "missing" not in check.stdout + check.stderr
    assert (
        "up to date"
        in followup_in_process("migrate", "--config", str(cfg), "--db", empty_db).stdout
    )
    again = followup_in_process("leads", "init", "--config", str(cfg), "--db", empty_db)
    assert again.returncode == 0, again.stderr
    assert (
        "exists (0 rows), kept" in again.stdout
        and "index on (account_id, id) present" in again.stdout
    )
    run = followup_in_process(
        "run", "--config", str(cfg), "--db", empty_db, "--now", "2026-03-02T14:00:00+01:00"
    )
    assert run.returncode == 0, run.stderr


def test_leads_init__a_missing_folder_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    r = followup_in_process("leads", "init", "--db", str(tmp_path / "nope" / "x.db"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "nope").exists()


def _create(url: str, ddl: str) -> None:
    """A host's own lead table, in the SQLite file or the Postgres schema of ``url``."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(ddl)
        return
    conn = sqlite3.connect(url)
    conn.execute(ddl)
    conn.commit()
    conn.close()


def _tool_tables(url: str) -> list[str]:
    sql = (
        "SELECT table_name AS n FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name LIKE 'followup%'"
        if url.startswith("postgresql")
        else "SELECT name AS n FROM sqlite_master WHERE name LIKE 'followup%'"
    )
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return [r[0] for r in conn.execute(sql).fetchall()]
    conn = sqlite3.connect(url)
    try:
        return [r[0] for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def test_leads_init__an_existing_table_without_account_id_is_one_line_exit_2(
    empty_db: str, tmp_path: Path
) -> None:
    """The host's table is kept as it is: init names the missing column and how to add it,
    instead of failing on the index it cannot create."""
    pg = empty_db.startswith("postgresql")
    cols = ", ".join(
        f"{c.name} {c.postgres if pg else c.sqlite}" for c in COLUMNS if c.name != "account_id"
    )
    _create(empty_db, f"CREATE TABLE leads ({cols})")
    cfg = write_config(tmp_path / "c.yaml", base_config())
    r = followup_in_process("leads", "init", "--config", str(cfg), "--db", empty_db)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "account_id" in lines[0] and "ALTER TABLE leads ADD COLUMN account_id" in lines[0]
    assert _tool_tables(empty_db) == []  # nothing created in the host's database


def _csv(tmp_path: Path, *lines: str, name: str = "leads.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_leads_import__bad_lines_named_by_line_and_reason_same_parser_as_the_run(
    tmp_path: Path,
) -> None:
    dbp = tmp_path / "l.db"
    assert followup_in_process("leads", "init", "--db", str(dbp)).returncode == 0
    path = _csv(
        tmp_path,
        GOOD[0],
        "l3,acct_a,ig_3,Eva,4,new,yesterday-ish,2026-03-02T07:05:00Z,,",  # line 3
        "l4,acct_a,,Eva,4,new,,2026-03-02T07:05:00Z,,",  # line 4: no recipient
        "l5,acct_a,ig_5,Eva,four,new,,2026-03-02T07:05:00Z,,",  # line 5: score
        "l6,acct_a,ig_6,Eva,4,new,,2026-03-02T07:05:00Z,Mars/Olympus,",  # line 6: zone
        'l7,acct_a,ig_7,Eva,4,new,,2026-03-02T07:05:00Z,,"[1, 2]"',  # line 7: attributes
        GOOD[1],
    )
    r = followup_in_process("leads", "import", str(path), "--db", str(dbp))
    assert r.returncode == 2
    assert "2 new, 0 updated, 0 unchanged, 5 line(s) rejected" in r.stdout
    err = r.stderr
    assert f"{path}:3: lead l3: last_inbound_at: not an ISO 8601 timestamp" in err
    assert f"{path}:4: lead l4: recipient_id: missing recipient" in err
    assert f"{path}:5: lead l5: score: not an integer" in err
    assert f"{path}:6: lead l6: timezone: unknown IANA time zone" in err
    assert f"{path}:7: lead l7: attributes: must be a JSON object" in err
    conn = sqlite3.connect(dbp)
    got = conn.execute(
        "SELECT id, score, typeof(score), attributes FROM leads ORDER BY id"
    ).fetchall()
    conn.close()
    assert got == [("l1", 4, "integer", '{"interest": "pricing"}'), ("l2", 5, "integer", None)]


def test_leads_import__a_messy_csv_names_the_right_lines_and_never_fails_unexpectedly(
    tmp_path: Path,
) -> None:
    """A spreadsheet's export: a BOM, CRLF, blank lines, a quoted value over two lines, a
    long last message. Before, a line after a blank one was named by the wrong number (the
    line before it), a value over 131,072 characters was "unexpected error: Error: field
    larger than field limit" (exit 1), a BOM on stdin hid the id column, and a file with
    semicolons was only "missing column(s)"."""
    dbp = tmp_path / "l.db"
    assert followup_in_process("leads", "init", "--db", str(dbp)).returncode == 0
    long_text = "how much? " * 20_000  # 200,000 characters: a long message, not garbage
    lines = [
        HEADER.rstrip("\n") + ",last_inbound_text",
        GOOD[0] + ",hi",  # line 2
        "",  # line 3: blank
        "",  # line 4: blank
        "l5,acct_a,ig_5,Eva,four,new,,2026-03-02T07:05:00Z,,,hi",  # line 5: score
        'l6,acct_a,ig_6,Eva,4,new,,2026-03-02T07:05:00Z,,,"two\nlines"',  # lines 6-7
        "l8,acct_a,,Eva,4,new,,2026-03-02T07:05:00Z,,,hi",  # line 8: no recipient
        f'l9,acct_a,ig_9,Eva,4,new,,2026-03-02T07:05:00Z,,,"{long_text}"',  # line 9
    ]
    path = tmp_path / "messy.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    r = followup_in_process("leads", "import", str(path), "--db", str(dbp))
    assert r.returncode == 2, r.stderr
    assert "3 new, 0 updated, 0 unchanged, 2 line(s) rejected" in r.stdout, r.stdout
    assert f"{path}:5: lead l5: score: not an integer" in r.stderr, r.stderr
    assert f"{path}:8: lead l8: recipient_id: missing recipient" in r.stderr, r.stderr
    assert "unexpected" not in r.stderr
    conn = sqlite3.connect(dbp)
    got = dict(conn.execute("SELECT id, length(last_inbound_text) FROM leads").fetchall())
    conn.close()
    assert got == {"l1": 2, "l6": 9, "l9": len(long_text.strip())}
    # the same file piped in, BOM and all: nothing new, the same lines named
    piped = subprocess.run(
        [sys.executable, "-m", "followup_cli", "leads", "import", "-", "--db", str(dbp)],
        input=path.read_bytes(),
        capture_output=True,
        check=False,
    )
    out, err = piped.stdout.decode(), piped.stderr.decode()
    assert piped.returncode == 2 and "0 new, 0 updated, 3 unchanged" in out, (out, err)
    assert "<stdin>:5: lead l5" in err
    semi = tmp_path / "semi.csv"
    semi.write_text("id;account_id;recipient_id;score;last_outbound_at\nl1;acct_a;ig_1;4;x\n")
    r = followup_in_process("leads", "import", str(semi), "--db", str(dbp))
    assert r.returncode == 2 and "not comma-separated" in r.stderr, r.stderr


def test_leads_import__idempotent_and_upserts_by_id(tmp_path: Path) -> None:
    dbp = tmp_path / "l.db"
    assert followup_in_process("leads", "init", "--db", str(dbp)).returncode == 0
    path = _csv(tmp_path, *GOOD)
    first = followup_in_process("leads", "import", str(path), "--db", str(dbp))
    assert first.returncode == 0, first.stderr
    assert "2 new, 0 updated, 0 unchanged" in first.stdout

    def dump() -> list[tuple]:
        conn = sqlite3.connect(dbp)
        try:
            return conn.execute("SELECT * FROM leads ORDER BY id").fetchall()
        finally:
            conn.close()

    before = dump()
    again = followup_in_process("leads", "import", str(path), "--db", str(dbp))
    assert again.returncode == 0 and "0 new, 0 updated, 2 unchanged" in again.stdout
    assert dump() == before
    changed = _csv(tmp_path, GOOD[0].replace(",4,", ",6,"), name="changed.csv")
    r = followup_in_process("leads", "import", str(changed), "--db", str(dbp))
    assert "0 new, 1 updated, 0 unchanged" in r.stdout
    rows = {row[0]: row for row in dump()}
    assert len(rows) == 2 and 6 in rows["l1"]


def test_leads_import__missing_columns_and_wrong_stores_are_one_line_exit_2(
    tmp_path: Path,
) -> None:
    dbp = tmp_path / "l.db"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,account_id\nx,acct_a\n")
    r = followup_in_process("leads", "import", str(bad), "--db", str(dbp))
    assert r.returncode == 2 and "leads init" in r.stderr and not dbp.exists()
    assert followup_in_process("leads", "init", "--db", str(dbp)).returncode == 0
    r = followup_in_process("leads", "import", str(bad), "--db", str(dbp))
    assert r.returncode == 2
    assert f"{bad}:1: missing column(s) recipient_id, score, last_outbound_at" in r.stderr
    r = followup_in_process(
        "leads", "import", str(bad), "--db", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert r.returncode == 2 and "COPY" in r.stderr and "Traceback" not in r.stderr


def _exec(db: LeadDB, sql: str) -> None:
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        db.query(sql)


def test_leads_check__bad_rows_missing_index_and_columns_on_both_stores(
    db: LeadDB, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(
        lead("ok", last_outbound_at="2026-03-02T08:00:00Z"),
        lead("garbage", last_outbound_at="2026-03-02T08:00:00Z", recipient_id=None),
    )
    r = followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url)
    assert r.returncode == 2
    assert "2 rows, 1 a run would skip" in r.stdout
    assert "lead garbage: recipient_id: missing recipient" in r.stderr
    assert "CREATE INDEX leads_account_id_id ON leads (account_id, id)" in r.stderr
    as_json = json.loads(
        followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url, "--json").stdout
    )
    assert as_json["index"] is False and as_json["rows"] == 2 and len(as_json["bad_rows"]) == 1
    _exec(db, "CREATE INDEX leads_by_account ON leads (account_id, id)")
    _exec(db, "DELETE FROM leads WHERE id = 'garbage'")
    ok = followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url)
    assert ok.returncode == 0, ok.stderr
    assert "1 rows, 0 a run would skip" in ok.stdout and "index" not in ok.stdout + ok.stderr
    _exec(db, "ALTER TABLE leads DROP COLUMN recipient_id")
    gone = followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url)
    assert gone.returncode == 2 and "lacks required column(s) recipient_id" in gone.stderr


def test_leads_check__an_account_id_with_blanks_around_it_is_named(
    db: LeadDB, tmp_path: Path
) -> None:
    """A row whose account_id is a configured account with a blank around it ('acct_a ')
    is served by no account, and the run cannot say so (it reads each account's own rows):
    `leads check` names it as a row a run would skip; rows of accounts the file does not
    configure are counted in a warning (the host app may hold other accounts' leads)."""
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(
        lead("ok", last_outbound_at="2026-03-02T08:00:00Z"),
        lead("padded", account_id="acct_a ", last_outbound_at="2026-03-02T08:00:00Z"),
        lead("other", account_id="acct_zz", last_outbound_at="2026-03-02T08:00:00Z"),
    )
    r = followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "3 rows, 1 a run would skip" in r.stdout
    assert "lead padded: account_id: 'acct_a ' has blanks around it" in r.stderr, r.stderr
    assert "acct_zz" in r.stderr and "not in" in r.stderr, r.stderr
    _exec(db, "DELETE FROM leads WHERE id = 'padded'")
    ok = followup_in_process("leads", "check", "--config", str(cfg), "--db", db.url)
    assert ok.returncode == 0, ok.stderr
    assert "acct_zz" in ok.stderr


def test_leads__plain_and_list_still_show_leads_in_a_sequence(db: LeadDB, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(
        lead("l1", last_inbound_at="2026-03-02T07:00:00Z", last_outbound_at="2026-03-02T07:05:00Z")
    )
    now = "2026-03-02T14:00:00+01:00"
    assert (
        followup_in_process("run", "--config", str(cfg), "--db", db.url, "--now", now).returncode
        == 0
    )
    plain = followup_in_process(
        "leads", "--config", str(cfg), "--db", db.url, "--now", now, "--json"
    )
    listed = followup_in_process(
        "leads", "list", "--config", str(cfg), "--db", db.url, "--now", now, "--json"
    )
    assert plain.returncode == 0 and listed.returncode == 0, plain.stderr + listed.stderr
    assert json.loads(plain.stdout) == json.loads(listed.stdout)
    assert [r["lead_id"] for r in json.loads(plain.stdout)] == ["l1"]


def test_leads__an_unknown_account_or_sequence_is_exit_2_not_an_empty_list(
    db: LeadDB, tmp_path: Path
) -> None:
    """`followup leads --sequence wram` (a typo) said "no lead is in a sequence", exit 0, as
    on a quiet day; run, plan, report and handoff refuse an unknown --account (exit 2)."""
    cfg = write_config(tmp_path / "c.yaml", base_config())
    db.insert(
        lead("l1", last_inbound_at="2026-03-02T07:00:00Z", last_outbound_at="2026-03-02T07:05:00Z")
    )
    opts = ("--config", str(cfg), "--db", db.url, "--now", "2026-03-02T14:00:00+01:00")
    assert followup_in_process("run", *opts).returncode == 0
    for bad, said in ((("--sequence", "wram"), "sequences: s1"), (("--account", "nope"), "nope")):
        r = followup_in_process("leads", *bad, *opts)
        assert r.returncode == 2 and said in r.stderr, r
        assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
    ok = followup_in_process("leads", "--sequence", "s1", "--account", "acct_a", "--json", *opts)
    assert ok.returncode == 0 and [r["lead_id"] for r in json.loads(ok.stdout)] == ["l1"]


def test_readme__the_three_own_data_commands_work_as_copied(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- own-data:")[1].split("```sh\n")[1].split("```")[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 3 and all(c.startswith("followup ") for c in commands)
    shutil.copy(ROOT / "sequences.yaml", tmp_path / "sequences.yaml")
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "leads.csv", tmp_path / "examples" / "leads.csv")
    outputs = []
    for command in commands:
        r = followup(*command.split()[1:], cwd=tmp_path)
        assert r.returncode == 0, f"{command}: {r.stderr}"
        outputs.append(r.stdout)
    assert "created lead table" in outputs[0]
    assert re.search(r"\d+ new, 0 updated", outputs[1])
    assert "would be sent" in outputs[2] and "lead_001" in outputs[2]
