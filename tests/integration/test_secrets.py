"""Secrets stay secret, end to end on both stores: an API that quotes the access token back
in every error (message, error_user_msg, a URL with access_token=) never gets it into the
database, the log (text or JSON), stdout, stderr, ``run --json``, reports, ``status``,
``unknown list`` or ``tokens check``; a database URL's password never comes out of a
failed connection; and the files the tool creates are 0600."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, followup, graph_config, lead
from tests.integration.test_operations import PingServer

IG_A = "17841000000000001"
TOKEN = "EAAsecretTOKENvalue0123456789xyz"
WRONG = "EAAwrongTOKENvalue9876543210abc"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def quoting_graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tokens={IG_A: TOKEN}) as fake:
        fake.quote_token = True
        yield fake


def _silent(lead_id: str) -> dict:
    return lead(
        lead_id,
        last_inbound_at=NOW - timedelta(hours=5),
        last_outbound_at=NOW - timedelta(hours=4),
    )


def _database_text(db: LeadDB) -> str:
    """Everything the tool's tables hold, as text: SQLite's dump and the raw bytes of the
    file and its WAL; on Postgres every followup_* table's rows as JSON."""
    if db.backend == "sqlite":
        assert db.path is not None
        conn = sqlite3.connect(db.path)
        try:
            dump = "\n".join(conn.iterdump())
        finally:
            conn.close()
        raw = b"".join(
            Path(str(db.path) + s).read_bytes()
            for s in ("", "-wal")
            if Path(str(db.path) + s).exists()
        )
        return dump + raw.decode("latin-1")
    tables = [
        r["table_name"]
        for r in db.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "AND left(table_name, 8) = ?",
            (db.schema, "followup"),
        )
    ]
    assert "followup_tracking" in tables and "followup_audit" in tables
    out = []
    for t in tables:
        out += [str(r["j"]) for r in db.query(f"SELECT row_to_json(x)::text AS j FROM {t} x")]
    return "\n".join(out)


def _write(db: LeadDB, sql: str, params: tuple) -> None:
    """Raw SQL that writes (``LeadDB.query`` does not commit on SQLite)."""
    if db.backend != "sqlite":
        db.query(sql, params)
        return
    conn = sqlite3.connect(db.url)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _assert_no_secret(*texts: str, secret: str = TOKEN) -> None:
    for text in texts:
        assert secret not in text, text[max(0, text.find(secret) - 200) : text.find(secret) + 60]
        assert secret[8:24] not in text  # not a fragment of it either


def test_an_api_that_quotes_the_token_back__it_is_nowhere(tmp_path, db, quoting_graph):
    graph = quoting_graph
    cfg = str(graph_config(tmp_path / "sequences.yaml", graph.base_url))
    env = {"FOLLOWUP_TOKEN_A": TOKEN}
    db.insert(*(_silent(f"l{i}") for i in range(1, 6)))
    graph.fail(100, recipient_id="ig_l1")  # permanent: failed, error_message stored
    graph.fail(999, http_status=502, recipient_id="ig_l2")  # ambiguous: unknown
    graph.fail(2, http_status=500, is_transient=True, recipient_id="ig_l3")  # transient
    graph.throttle(retry_after=3600, recipient_id="ig_l4")  # throttled: deferred
    log, jlog = tmp_path / "run.log", tmp_path / "run.json.log"
    outputs: list[str] = []

    def call(*args: str, e: dict[str, str] = env) -> str:
        r = followup(*args, "--config", cfg, "--db", db.url, env=e)
        outputs.extend([r.stdout, r.stderr])
        return r.stdout

    first = followup(
        "run", "--config", cfg, "--db", db.url, "--now", NOW.isoformat(), "--json",
        "--log-file", str(log), "-v", env=env,
    )  # fmt: skip
    assert first.returncode == 3, first.stderr
    assert '"failed"' in first.stdout and '"unknown": 1' in first.stdout
    outputs += [first.stdout, first.stderr]
    assert any(c.error_code == 100 and TOKEN in c.error["message"] for c in graph.calls)
    # the second run meets a revoked token: the account stops (its line names the variable)
    graph.fail(190, times=None)
    later = (NOW + timedelta(hours=1)).isoformat()
    with PingServer() as ping:  # the end ping carries the run's line to a third party
        second = followup(
            "run", "--config", cfg, "--db", db.url, "--now", later, "--log-format", "json",
            "--log-file", str(jlog), "--ping-url", ping.url, env=env,
        )  # fmt: skip
    assert second.returncode == 3 and "FOLLOWUP_TOKEN_A" in second.stderr, second.stderr
    pinged = [body for method, _, body in ping.hits if method == "POST"]
    assert pinged, ping.hits
    outputs += pinged
    assert "***" in second.stderr  # the API's text is there, its token is not
    outputs += [second.stdout, second.stderr]
    assert "***" in call("unknown", "list") + call("unknown", "list", "--json")
    call("status", "--json", "--now", later)
    call("status", "--now", later)
    call("report", "--format", "json", "--now", later)
    call("report", "--format", "csv", "--now", later)
    call("audit", "--json", "--limit", "500")
    # tokens check: a token the API rejects, quoted back in its error; and the right one
    wrong = followup("tokens", "check", "--config", cfg, env={"FOLLOWUP_TOKEN_A": WRONG})
    wrong_json = followup(
        "tokens", "check", "--config", cfg, "--json", env={"FOLLOWUP_TOKEN_A": WRONG}
    )
    assert wrong.returncode == 2 and "rejects the token" in wrong_json.stdout
    assert "***" in wrong_json.stdout
    _assert_no_secret(
        wrong.stdout, wrong.stderr, wrong_json.stdout, wrong_json.stderr, secret=WRONG
    )
    right = followup("tokens", "check", "--config", cfg, "--json", env=env)
    outputs += [right.stdout, right.stderr]

    assert len(graph.calls) >= 6
    _assert_no_secret(*outputs, log.read_text(), jlog.read_text())
    assert "***" in jlog.read_text()  # the account stop line, with the API text
    stored = _database_text(db)
    _assert_no_secret(stored)
    assert "(#100) Invalid parameter (token ***" in stored  # the rest stays readable
    assert (
        db.query("SELECT COUNT(*) AS n FROM followup_tracking WHERE error_message IS NOT NULL")[0][
            "n"
        ]
        >= 2
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cretPW@127.0.0.1:1/x",
        "postgres://u:s3cretPW@127.0.0.1:1/x",
        "postgresql://u@127.0.0.1:1/x?password=s3cretPW",
        "postgresql://u:s3cretPW@127.0.0.1:1/x?bogus",
        "postgresql://u:s3cretPW@[::1/x",
        "host=127.0.0.1 port=1 user=u password=s3cretPW dbname=x",
        "host=127.0.0.1 password='s3cretPW' dbname=x",
    ],
)
def test_a_bad_database_url__exit_2_one_line_no_password(tmp_path, url):
    cfg = graph_config(tmp_path / "sequences.yaml", "http://127.0.0.1:9")
    for args in (("report",), ("run",), ("status",), ("sequences", "check")):
        r = followup(*args, "--config", str(cfg), "--db", url, env={"FOLLOWUP_TOKEN_A": "t"})
        assert r.returncode == 2, (args, r.stderr)
        if args[0] != "sequences":  # the checker lists its findings, one a line
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "s3cretPW" not in r.stdout + r.stderr


def test_the_debug_traceback_is_redacted_too(tmp_path):
    cfg = graph_config(tmp_path / "sequences.yaml", "http://127.0.0.1:9")
    url = "postgresql://u:s3cretPW@127.0.0.1:1/x?password=s3cretPW"
    r = followup("report", "--config", str(cfg), "--db", url, "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert "s3cretPW" not in r.stdout + r.stderr


# ------------------------------------------------------------------ private files


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_the_tool_creates_are_0600(tmp_path, graph):
    """On SQLite: the database leads init creates, its -wal and -shm, the run lock, the log,
    the metrics file, a report written with -o and an opt-out export."""
    old = os.umask(0o022)  # a usual umask: files would be 0644 without the tool's care
    try:
        cfg = str(graph_config(tmp_path / "sequences.yaml", graph.base_url))
        path = tmp_path / "new.db"
        r = followup("leads", "init", "--config", cfg, "--db", str(path))
        assert r.returncode == 0, r.stderr
        db = LeadDB("sqlite", str(path), path=path)
        db.insert(_silent("l1"), _silent("l2"))
        files = {
            "log": tmp_path / "run.log",
            "metrics": tmp_path / "followup.prom",
            "report": tmp_path / "report.html",
            "export": tmp_path / "optouts.csv",
        }
        r = followup(
            "run", "--config", cfg, "--db", str(path), "--now", NOW.isoformat(),
            "--log-file", str(files["log"]), "--metrics-file", str(files["metrics"]),
            env={"FOLLOWUP_TOKEN_A": "tok-a"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert len(graph.deliveries) == 2
        conn = sqlite3.connect(path)  # keep the WAL and SHM files while the mode is read
        try:
            conn.execute("SELECT COUNT(*) FROM followup_tracking").fetchall()
            for suffix in ("", "-wal", "-shm", ".lock"):
                f = Path(str(path) + suffix)
                assert f.exists(), suffix
                assert _mode(f) == 0o600, (suffix, oct(_mode(f)))
        finally:
            conn.close()
        r = followup(
            "report", "--config", cfg, "--db", str(path), "--now", NOW.isoformat(),
            "--format", "html", "-o", str(files["report"]),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert followup("optout", "l1", "--config", cfg, "--db", str(path)).returncode == 0
        r = followup("optout", "--export", str(files["export"]), "--config", cfg, "--db", str(path))
        assert r.returncode == 0, r.stderr
        for name, f in files.items():
            assert f.exists(), name
            assert _mode(f) == 0o600, (name, oct(_mode(f)))
        # a file that was there before keeps the mode its owner gave it
        os.chmod(files["metrics"], 0o644)
        r = followup(
            "run", "--config", cfg, "--db", str(path), "--now", NOW.isoformat(),
            "--metrics-file", str(files["metrics"]),
        )  # fmt: skip
        assert _mode(files["metrics"]) == 0o644
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    finally:
        os.umask(old)


def test_an_existing_user_database_keeps_its_mode(tmp_path, graph):
    old = os.umask(0o022)
    try:
        cfg = str(graph_config(tmp_path / "sequences.yaml", graph.base_url))
        db = LeadDB.sqlite(tmp_path)  # the host app's own file
        assert db.path is not None
        os.chmod(db.path, 0o640)
        db.insert(_silent("l1"))
        r = followup(
            "run", "--config", cfg, "--db", db.url, "--now", NOW.isoformat(),
            env={"FOLLOWUP_TOKEN_A": "tok-a"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert _mode(db.path) == 0o640
    finally:
        os.umask(old)


def test_the_demo_database_is_0600(tmp_path):
    from followup_cli.demo import run_demo

    class Quiet:
        def print(self, *args: object, **kwargs: object) -> None:
            pass

    old = os.umask(0o022)
    try:
        run_demo(tmp_path / "demo", n_leads=12, days=1, out=Quiet(), quiet=True)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "demo" / "followup.db") == 0o600


def test_rows_stored_before_redaction_existed__still_never_printed(tmp_path, db, quoting_graph):
    """Output has its own choke points: a token already in the database (written by an
    older version) is redacted on the way out of `unknown list`, `report` and `status`."""
    cfg = str(graph_config(tmp_path / "sequences.yaml", quoting_graph.base_url))
    env = {"FOLLOWUP_TOKEN_A": TOKEN}
    db.insert(_silent("l1"))
    quoting_graph.fail(999, http_status=502, recipient_id="ig_l1")  # unknown
    r = followup("run", "--config", cfg, "--db", db.url, "--now", NOW.isoformat(), env=env)
    assert r.returncode == 3, r.stderr
    legacy = f"upstream said Bearer {TOKEN} via https://x/?access_token={TOKEN}"
    _write(db, "UPDATE followup_tracking SET error_message = ?, reason = ?", (legacy, legacy))
    _write(db, "UPDATE followup_runs SET summary = ?", ('{"error": "' + legacy + '"}',))
    assert TOKEN in _database_text(db)  # the old rows do hold it
    printed = []
    for args in (
        ("unknown", "list"),
        ("unknown", "list", "--json"),
        ("report", "--format", "json", "--now", NOW.isoformat()),
        ("report", "--format", "csv", "--now", NOW.isoformat()),
        ("status", "--json", "--now", NOW.isoformat()),
        ("status", "--now", NOW.isoformat()),
    ):
        r = followup(*args, "--config", cfg, "--db", db.url, env=env)
        printed += [r.stdout, r.stderr]
    _assert_no_secret(*printed)
    assert any("upstream said Bearer ***" in p for p in printed)
