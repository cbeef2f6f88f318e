"""Broken surroundings are named (issue 8): a SQLite file corrupted in the middle, a folder
or file the tool cannot write, a zero-byte file, an API nothing listens at. Each is one
line naming the thing and the fix, with the right exit code; never exit 1, never a
traceback; a dry run needs no write access at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import LeadDB, base_config, followup, graph_config, lead, write_config

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 11:00 in Madrid


def due(lead_id: str, **over: object) -> dict:
    return lead(
        lead_id,
        last_inbound_at=NOW - timedelta(hours=5),
        last_outbound_at=NOW - timedelta(hours=4),
        last_inbound_text="x" * 300,  # rows big enough to span many pages
        **over,
    )


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="followup-surroundings-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def sqlite_store(folder: Path, n: int = 150) -> tuple[Path, Path]:
    """(config, database) in ``folder``: a lead store with ``n`` due leads."""
    folder.mkdir(parents=True, exist_ok=True)
    db = LeadDB.sqlite(folder)
    db.insert(*(due(f"l{i:04d}") for i in range(n)))
    cfg = write_config(folder / "sequences.yaml", base_config())
    for p in (cfg, Path(db.url)):
        p.chmod(0o644)
    return cfg, Path(db.url)


def as_other_user(*args: str) -> subprocess.CompletedProcess:
    """The installed command without the power to ignore file modes: as root (root writes
    anywhere), through ``setpriv`` with every capability dropped; else as the current user
    (the mode bits then hold by themselves)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    prefix: list[str] = []
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and no setpriv to drop the capabilities")
        prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "followup_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def listing(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr
    return lines[0]


# ------------------------------------------------------------------ corrupt file


def corrupt_the_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(bytes(range(256)) * 32)  # 8 KiB of garbage over b-tree pages


def test_corrupt_sqlite__check_finds_it_and_run_is_exit_2_with_one_line(place: Path) -> None:
    cfg, db = sqlite_store(place)
    assert followup("migrate", "--config", str(cfg), "--db", str(db)).returncode == 0
    corrupt_the_middle(db)
    check = followup("sequences", "check", "--config", str(cfg), "--db", str(db))
    assert check.returncode == 2, check.stdout + check.stderr
    assert "corrupt" in check.stderr and "quick_check" in check.stderr and str(db) in check.stderr
    assert "OK" not in check.stdout
    for args in (["run"], ["run", "--dry-run"]):
        r = followup(*args, "--config", str(cfg), "--db", str(db), "--now", NOW.isoformat())
        assert r.returncode == 2, (args, r.stderr)
        line = one_line(r.stderr)
        assert "corrupt" in line and str(db) in line and ".recover" in line
        assert "->" not in r.stdout  # the console channel sent nothing


def test_a_dry_runs_check_beside_it_is_what_it_says_before_its_own_error(
    place: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run's quick_check runs on a second connection while the run plans; what it
    finds is the one line and exit 2, even when the run met an error of its own first (a
    corrupt page it read), and nothing is printed on stdout."""
    from followup_cli.cli import main
    from followup_cli.engine import Engine
    from followup_cli.errors import StoreError
    from followup_cli.store.sqlite import SQLiteStore

    cfg, db = sqlite_store(place, n=5)
    assert followup("migrate", "--config", str(cfg), "--db", str(db)).returncode == 0
    threads: list[str] = []

    def check(self: SQLiteStore) -> str:
        import threading

        threads.append(threading.current_thread().name)
        return f"{self.path}: the database file is corrupt (PRAGMA quick_check: page 7)"

    def plan(*args: object, **kwargs: object) -> None:
        raise StoreError(f"{db}: database disk image is malformed")

    monkeypatch.setattr(SQLiteStore, "quick_check", check)
    for broken_plan in (False, True):
        if broken_plan:
            monkeypatch.setattr(Engine, "plan_account", plan)
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--dry-run", "--json", "--config", str(cfg), "--db", str(db)])
        assert exit_.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "PRAGMA quick_check: page 7" in one_line(captured.err)
    assert threads and all(t.startswith("quick-check") for t in threads)


def test_sound_sqlite__check_says_ok(place: Path) -> None:
    cfg, db = sqlite_store(place, n=5)
    check = followup("sequences", "check", "--config", str(cfg), "--db", str(db))
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr


# ------------------------------------------------------------------ zero-byte file


def test_zero_byte_file__is_not_a_lead_store_and_is_not_rewritten(place: Path) -> None:
    cfg = write_config(place / "sequences.yaml", base_config())
    empty = place / "leads.db"
    empty.touch()
    for args in (["run"], ["run", "--dry-run"], ["migrate"], ["sequences", "check"]):
        r = followup(*args, "--config", str(cfg), "--db", str(empty))
        assert r.returncode == 2, (args, r.stderr)
        assert "empty file (0 bytes)" in r.stderr and str(empty) in r.stderr
        assert empty.stat().st_size == 0
    assert sorted(p.name for p in place.iterdir()) == ["leads.db", "sequences.yaml"]


# ------------------------------------------------------------------ write access


def test_unwritable_folder__is_named_as_the_folder_and_a_dry_run_still_works(
    place: Path,
) -> None:
    folder = place / "store"
    cfg, db = sqlite_store(folder)
    folder.chmod(0o555)
    before = listing(folder)
    common = ("--config", str(cfg), "--db", str(db), "--now", NOW.isoformat())
    r = as_other_user("run", *common)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert f"{folder}: the folder of leads.db is not writable" in line
    assert "not a usable" not in line and "bad database" not in line
    # --dry-run needs no write access: a fresh store (no tool tables yet), read-only
    dry = as_other_user("run", "--dry-run", *common)
    assert dry.returncode == 0, dry.stderr
    assert "150 message(s) would be sent" in dry.stdout
    assert listing(folder) == before  # nothing written: no journal, no lock, no change


def test_read_only_wal_store__a_dry_run_reads_it_and_writes_nothing(place: Path) -> None:
    """A store the tool ran on (WAL mode, its tables there) in a folder and file nobody may
    write: a dry run still shows the plan."""
    folder = place / "store"
    cfg, db = sqlite_store(folder, n=3)
    common = ("--config", str(cfg), "--db", str(db), "--now", NOW.isoformat())
    first = followup("run", "--limit", "1", *common)
    assert first.returncode == 0, first.stderr
    assert not list(folder.glob("leads.db-*"))  # the last connection checkpointed the WAL
    db.chmod(0o444)
    folder.chmod(0o555)
    before = listing(folder)
    dry = as_other_user("run", "--dry-run", "--json", *common)
    assert dry.returncode == 0, dry.stderr
    assert '"would_send": 2' in dry.stdout  # the store's history is read: l0000 had m1
    explain = as_other_user("explain", "l0000", *common)
    assert explain.returncode == 0 and "history: s1/m1 sent" in explain.stdout, explain.stderr
    assert listing(folder) == before


def test_read_only_file__is_named_as_the_file(place: Path) -> None:
    folder = place / "store"
    cfg, db = sqlite_store(folder, n=2)
    db.chmod(0o444)
    folder.chmod(0o777)
    r = as_other_user("run", "--config", str(cfg), "--db", str(db), "--now", NOW.isoformat())
    assert r.returncode == 2, r.stderr
    assert f"{db}: the database file is not writable" in one_line(r.stderr)


# ------------------------------------------------------------------ unreachable API


def test_unreachable_api__run_exits_3_with_one_line_naming_the_account_and_the_url(
    db: LeadDB, tmp_path: Path
) -> None:
    """A real closed loopback port: every attempt refused. Before: exit 0, silently
    deferred at every run for ever."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    cfg = graph_config(tmp_path / "sequences.yaml", closed)
    db.insert(due("u1"), due("u2"))
    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), env=env)
    assert r.returncode == 3, r.stderr
    line = one_line(r.stderr)
    assert "acct_a" in line and closed in line and "unreachable" in line
    assert db.tracking() == []  # both claims released: nothing went out, both stay due


# ------------------------------------------------------------------ column types (Postgres)


def test_postgres_column_of_a_type_the_rules_cannot_compare_is_exit_2_naming_it(
    db: LeadDB, tmp_path: Path
) -> None:
    """A text ``last_outbound_at`` on Postgres failed every candidate query (timestamptz
    compared with text): exit 1 for everyone. It is the schema, not a row: exit 2, named."""
    if db.backend != "postgres":
        pytest.skip("SQLite columns take any value; rows are checked one by one there")
    db.query("ALTER TABLE leads ALTER COLUMN last_outbound_at TYPE text")
    db.insert(due("t1"))
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    for args in (["run"], ["run", "--dry-run"]):
        r = followup(*args, "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert "leads.last_outbound_at is text" in line and "timestamptz" in line


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_postgres_dropping_the_connection_mid_run_is_one_line_and_no_send_is_repeated(
    tmp_path: Path, db: LeadDB, graph: object
) -> None:
    """The server ends the run's sessions mid-send (a restart, pg_terminate_backend): the
    run ends with one line (psycopg's own "error ignored terminating <Pipeline>" warning
    came out too, through logging's last resort), and the next run marks the send in flight
    unknown and sends each other lead once."""
    import psycopg

    from tests.helpers import PG_BASE

    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    db.insert(*(due(f"d{i}") for i in range(6)))
    seen = iter(range(1 << 30))

    @graph.on_request
    def _drop_sessions(call: object) -> None:
        if next(seen) == 2:
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (db.schema,),
                )

    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    args = ["run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat()]
    r = followup(*args, env=env)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Pipeline" not in r.stderr
    db.settled()
    again = followup(*args[:-1], (NOW + timedelta(minutes=5)).isoformat(), env=env)
    assert again.returncode == 3, again.stderr  # the send in flight: unknown
    delivered = sorted(c.recipient_id for c in graph.deliveries)
    assert delivered == sorted(f"ig_d{i}" for i in range(6)), delivered
