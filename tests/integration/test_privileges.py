"""Least privilege (issue 9, point 3): a role that may only read sees every report; a
runner role without CREATE runs; each refusal is one line, exit 2, naming the privilege and
the grant, with nothing sent. Real Postgres roles (LOGIN, trust auth on loopback), the
grants printed by ``followup db grants`` applied as the owner; on SQLite the file's mode,
the command run without the power to ignore it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import (
    LeadDB,
    followup,
    followup_in_process,
    graph_config,
    lead,
    pg_available,
)
from tests.integration.test_surroundings import as_other_user, listing, one_line, sqlite_store

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 11:00 in Madrid
ENV = {"FOLLOWUP_TOKEN_A": "tok-a"}
SOME_MIGRATION = "0006_person_suppressions"


def due(lead_id: str) -> dict:
    return lead(
        lead_id,
        last_inbound_at=NOW - timedelta(hours=5),
        last_outbound_at=NOW - timedelta(hours=4),
    )


# ---------------------------------------------------------------------------- Postgres


@pytest.fixture
def pg() -> Iterator[LeadDB]:
    why = pg_available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {why}: the Postgres half must run on CI")
        pytest.skip(why)
    store = LeadDB.postgres()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def roles(pg: LeadDB) -> Iterator[tuple[str, str]]:
    """(runner, reader): two new LOGIN roles, dropped with what they were granted."""
    suffix = uuid.uuid4().hex[:10]
    runner, reader = f"fu_runner_{suffix}", f"fu_reader_{suffix}"
    for role in (runner, reader):
        pg._pg.execute(f"CREATE ROLE {role} LOGIN")
    try:
        yield runner, reader
    finally:
        for role in (runner, reader):
            pg._pg.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            pg._pg.execute(f"DROP OWNED BY {role}")
            pg._pg.execute(f"DROP ROLE {role}")


def as_role(pg: LeadDB, role: str) -> str:
    """The test schema's URL, logged in as ``role``."""
    return re.sub(r"://[^@/]*@", f"://{role}@", pg.url, count=1)


def fu(url: str, cfg: Path, *args: str) -> object:
    """A command as a Postgres role (or on a store) asks: what it may do is the database's
    answer, the same in this process as in a new one (no OS privilege is involved)."""
    return followup_in_process(*args, "--config", str(cfg), "--db", url, env=ENV)


def migrated_with_grants(pg: LeadDB, cfg: Path, runner: str, reader: str) -> None:
    """As the owner: `followup migrate`, then the SQL of `followup db grants` applied."""
    m = fu(pg.url, cfg, "migrate")
    assert m.returncode == 0 and "applied: 0001_initial" in m.stdout, m.stderr
    grants = fu(pg.url, cfg, "db", "grants", "--runner", runner, "--reader", reader)
    assert grants.returncode == 0, grants.stderr
    assert "CREATE" not in grants.stdout.upper().replace("CREATE ROLE", "")
    pg._pg.execute(grants.stdout)


def test_reader__sees_every_report_and_its_run_is_refused_naming_the_privilege(
    pg: LeadDB, roles: tuple[str, str], graph: FakeGraphAPI, tmp_path: Path
) -> None:
    runner, reader = roles
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    pg.insert(due("l1"), due("l2"), due("l3"))
    url = as_role(pg, reader)
    now = ("--now", NOW.isoformat())

    # Before `followup migrate`: a read says to run it (it cannot create the tables itself).
    pg._pg.execute(f"GRANT USAGE ON SCHEMA {pg.schema} TO {reader}")
    pg._pg.execute(f"GRANT SELECT ON {pg.schema}.leads TO {reader}")
    fresh = fu(url, cfg, "report", *now)
    assert fresh.returncode == 2, fresh.stderr
    line = one_line(fresh.stderr)
    assert "no follow-up tables yet" in line and "followup migrate" in line and "CREATE" in line

    migrated_with_grants(pg, cfg, runner, reader)
    first = fu(pg.url, cfg, "run", "--limit", "1", *now)  # the owner: some history to read
    assert first.returncode == 0, first.stderr
    assert len(graph.deliveries) == 1
    sent_before = pg.tracking()

    for args in (
        ["report", *now],
        ["report", "--format", "json", *now],
        ["audit"],
        ["audit", "verify"],
        ["leads", "list", *now],
        ["unknown", "list"],
        ["optout", "--list"],
        ["optout", "--export"],
        ["run", "--dry-run", *now],
        ["explain", "l2", *now],
        ["plan", "--days", "1", *now],
        ["handoff", *now],
        ["migrate", "--check"],
    ):
        r = fu(url, cfg, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "permission denied" not in r.stderr and "lacks" not in r.stderr, (args, r.stderr)
    status = fu(url, cfg, "status", *now)
    assert status.returncode in (0, 3) and "last run" in status.stdout, status.stderr
    assert "1 of 3" in fu(url, cfg, "report", *now).stdout.replace("followed up: ", "")
    assert "send" in fu(url, cfg, "audit").stdout

    for args in (["run", *now], ["optout", "l2"], ["unknown", "resolve", "1", "--sent"]):
        r = fu(url, cfg, *args)
        assert r.returncode == 2, (args, r.stderr)
        line = one_line(r.stderr)
        assert f"role {reader} lacks INSERT, UPDATE, DELETE on followup_tracking" in line
        assert f"followup db grants --runner {reader}" in line
    assert len(graph.deliveries) == 1  # the reader's run sent nothing
    assert pg.tracking() == sent_before


def test_runner__sends_without_create_and_a_schema_behind_is_one_line_to_migrate(
    pg: LeadDB, roles: tuple[str, str], graph: FakeGraphAPI, tmp_path: Path
) -> None:
    runner, reader = roles
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    pg.insert(due("l1"), due("l2"))
    migrated_with_grants(pg, cfg, runner, reader)
    url = as_role(pg, runner)
    now = ("--now", NOW.isoformat())

    r = fu(url, cfg, "run", *now)
    assert r.returncode == 0, r.stderr
    assert sorted(c.recipient_id for c in graph.deliveries) == ["ig_l1", "ig_l2"]
    assert [t["status"] for t in pg.tracking()] == ["sent", "sent"]
    for args in (
        ["optout", "l1"],
        ["optout", "l1", "--undo"],
        ["report", *now],
        ["migrate"],
        ["erase", "l2", "--yes"],  # scrubs audit details: UPDATE, never DELETE
        ["audit", "verify"],
    ):
        ok = fu(url, cfg, *args)
        assert ok.returncode == 0, (args, ok.stderr)
    with psycopg.connect(url, autocommit=True) as conn:  # the runner appends to the audit log
        for table in ("followup_audit", "followup_audit_head"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"DELETE FROM {table}")
    assert "up to date" in fu(url, cfg, "migrate").stdout  # nothing pending: nothing to create

    # The schema is behind (a new release's migration not applied yet).
    pg.query("DELETE FROM followup_migrations WHERE name = ?", (SOME_MIGRATION,))
    graph.reset()
    behind = fu(url, cfg, "run", "--now", (NOW + timedelta(hours=30)).isoformat())
    assert behind.returncode == 2, behind.stderr
    line = one_line(behind.stderr)
    assert "1 migration(s) behind" in line and SOME_MIGRATION in line
    assert "run `followup migrate`" in line and f"CREATE on schema {pg.schema}" in line
    assert graph.calls == []
    mig = fu(url, cfg, "migrate")
    assert mig.returncode == 2, mig.stderr
    line = one_line(mig.stderr)
    assert f"role {runner} lacks CREATE on schema {pg.schema}" in line
    check = fu(url, cfg, "migrate", "--check")
    assert check.returncode == 3 and SOME_MIGRATION in check.stdout, check.stderr
    read = fu(as_role(pg, reader), cfg, "report", *now)
    assert read.returncode == 2 and "followup migrate" in one_line(read.stderr)
    assert pg.query("SELECT name FROM followup_migrations WHERE name = ?", (SOME_MIGRATION,)) == []


def test_a_privilege_refused_mid_command_is_the_same_exit_2_line(
    pg: LeadDB, roles: tuple[str, str], tmp_path: Path
) -> None:
    """SQLSTATE 42501 raised by a statement (not caught up front) -> PrivilegeError."""
    from followup_cli.errors import PrivilegeError
    from followup_cli.store import open_store

    runner, reader = roles
    cfg = graph_config(tmp_path / "sequences.yaml", "http://127.0.0.1:9")
    migrated_with_grants(pg, cfg, runner, reader)
    store = open_store(as_role(pg, reader), migrate=False)
    try:
        with pytest.raises(PrivilegeError) as caught:
            store.add_optout("l1", None, "cli", "test", NOW)
    finally:
        store.close()
    text = str(caught.value)
    assert f"role {reader}" in text and "permission denied for table followup_" in text
    assert "followup db grants" in text and "\n" not in text


def test_db_grants__quotes_every_identifier_and_names_the_configured_lead_table() -> None:
    from followup_cli.grants import grant_statements

    stmts = [
        s.as_string(None)
        for _, s in grant_statements("crm app", 'host."Leads"', runner='cron"x', reader="dash")
    ]
    text = "\n".join(stmts)
    assert 'TO "cron""x"' in text and 'GRANT USAGE ON SCHEMA "crm app" TO "dash"' in text
    assert 'GRANT USAGE ON SCHEMA "host" TO "dash"' in text  # the lead table's own schema
    assert '"host"."""Leads"""' in text
    runner = [s for s in stmts if 'cron"' in s]
    reader = [s for s in stmts if s.endswith('"dash"')]
    assert any("INSERT, UPDATE, DELETE" in s and '"followup_tracking"' in s for s in runner)
    assert any("SEQUENCE" in s and "followup_tracking_id_seq" in s for s in runner)
    assert not any("INSERT" in s or "UPDATE" in s or "DELETE" in s for s in reader)
    assert not any("CREATE" in s for s in stmts)
    audit_grant = next(s for s in runner if '"followup_audit"' in s and "INSERT" in s)
    assert audit_grant.startswith("GRANT SELECT, INSERT, UPDATE ON") and "DELETE" not in audit_grant
    migrations_grant = next(s for s in runner if '"followup_migrations"' in s)
    assert migrations_grant.startswith("GRANT SELECT ON") and "INSERT" not in migrations_grant


def tool_tables(db: LeadDB) -> list[str]:
    if db.backend == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE substr(name, 1, 8) = 'followup'"
    else:
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            f"WHERE table_schema = '{db.schema}' AND left(table_name, 8) = 'followup'"
        )
    return sorted(r["name"] for r in db.query(sql))


def test_read_commands_on_a_fresh_store__answer_empty_and_create_nothing(
    db: LeadDB, tmp_path: Path
) -> None:
    """The owner (who could create the tables) reads a store no run has touched: empty
    answers, and the tool's tables are still not there afterwards (only `migrate` and
    commands that change state create them)."""
    cfg = graph_config(tmp_path / "sequences.yaml", "http://127.0.0.1:9")
    db.insert(due("l1"))
    now = ("--now", NOW.isoformat())
    for args, says in (
        (["report", *now], "0 of 1"),
        (["audit"], "no audit entries"),
        (["unknown", "list"], "no follow-ups"),
        (["optout", "--list"], "no opted-out leads"),
        (["leads", "list", *now], "no lead is in a sequence"),
        (["migrate", "--check"], "pending: 0001_initial"),
    ):
        r = fu(db.url, cfg, *args)
        assert r.returncode == (3 if args[0] == "migrate" else 0), (args, r.stderr)
        assert says in r.stdout.replace("followed up: ", ""), (args, r.stdout)
    assert tool_tables(db) == []
    assert fu(db.url, cfg, "migrate").returncode == 0
    assert "followup_tracking" in tool_tables(db)


# ------------------------------------------------------------------------------ SQLite


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="followup-privileges-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def kept(folder: Path) -> dict[str, str]:
    """The folder's files, but for an empty WAL and its index: a reader of a WAL database
    in a folder it may write creates them, as SQLite does (no data in them)."""
    wal = folder / "leads.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    return {k: v for k, v in listing(folder).items() if not k.endswith(("-wal", "-shm"))}


READS = (
    ["report"],
    ["audit"],
    ["leads", "list"],
    ["unknown", "list"],
    ["optout", "--list"],
    ["run", "--dry-run"],
    ["explain", "l0001"],
    ["migrate", "--check"],
)


def test_sqlite_read_only_file_and_folder__reads_work_and_run_names_what_it_cannot_write(
    place: Path,
) -> None:
    folder = place / "store"
    cfg, db = sqlite_store(folder, n=3)
    common = ("--config", str(cfg), "--db", str(db), "--now", NOW.isoformat())
    first = followup("run", "--limit", "1", *common)  # the owner: tables and history
    assert first.returncode == 0 and "->" in first.stdout, first.stderr
    db.chmod(0o444)
    for mode, named in ((0o777, f"{db}: the database file is not writable"), (0o555, None)):
        folder.chmod(mode)
        before = kept(folder)
        for args in READS:
            when = (
                common if args[0] not in ("audit", "unknown", "optout", "migrate") else common[:4]
            )
            r = as_other_user(*args, *when)
            assert r.returncode == 0, (oct(mode), args, r.stderr)
        status = as_other_user("status", *common)
        assert status.returncode in (0, 3) and "last run" in status.stdout, status.stderr
        assert kept(folder) == before  # nothing written by any read
        for args in (["run"], ["optout", "l0002"], ["migrate"]):
            r = as_other_user(*args, *(common if args == ["run"] else common[:4]))
            assert r.returncode == 2, (oct(mode), args, r.stderr)
            line = one_line(r.stderr)
            assert (named or f"{folder}: the folder of leads.db is not writable") in line
            assert "->" not in r.stdout  # the console channel sent nothing
        assert kept(folder) == before
