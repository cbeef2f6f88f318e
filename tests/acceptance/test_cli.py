"""The installed command, end to end, the way operators and admins use it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import LeadDB, base_config, followup, lead, write_config

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, LeadDB]:
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    db = LeadDB.sqlite(tmp_path)
    t = NOW - timedelta(hours=5)
    db.insert(
        lead("due1", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)),
        lead(
            "due2",
            last_inbound_at=t,
            last_outbound_at=t + timedelta(hours=1),
            first_name=None,
            username="bob",
        ),
        lead("waiting", last_inbound_at=NOW - timedelta(hours=1), last_outbound_at=t),
        lead("garbage", last_inbound_at="last tuesday", last_outbound_at=t),
        lead(
            "norecipient",
            recipient_id=None,
            last_inbound_at=t,
            last_outbound_at=t + timedelta(hours=1),
        ),
    )
    return cfg, db


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_help_lists_every_command() -> None:
    r = followup("--help")
    assert r.returncode == 0
    for cmd in ("run", "report", "explain", "optout", "sequences", "demo", "unknown"):
        assert cmd in r.stdout, cmd


def test_run__console_channel_sends_due_leads_and_names_bad_rows(
    setup: tuple[Path, LeadDB],
) -> None:
    cfg, db = setup
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 0, r.stderr
    # the console channel prints the messages; nothing else on stdout under cron
    assert "Hi Ana, step one" in r.stdout and "due2" in r.stdout
    assert "garbage" in r.stderr and "last_inbound_at" in r.stderr
    assert "norecipient" in r.stderr and "recipient" in r.stderr
    rows = db.tracking()
    assert [(x["lead_id"], x["message_id"], x["status"]) for x in rows] == [
        ("due1", "m1", "sent"),
        ("due2", "m1", "sent"),
    ]
    again = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert again.returncode == 0 and "step one" not in again.stdout
    # under cron a row that stays bad is reported once, not at every run
    assert again.stderr == ""
    summary = json.loads(
        followup(
            "run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--json"
        ).stdout
    )
    assert len(summary["bad_leads"]) == 2 and summary["bad_leads_new"] == []
    db.update("garbage", last_inbound_at="next friday")  # a new problem: reported
    third = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert "garbage" in third.stderr and "norecipient" not in third.stderr


def test_run__dry_run_sends_nothing_and_writes_nothing(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    assert followup("migrate", "--config", str(cfg), "--db", db.url).returncode == 0
    before = digest(Path(db.url))
    r = followup("run", "--dry-run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 0, r.stderr
    assert "due1" in r.stdout and "2 message(s) would be sent" in r.stdout
    assert "Nothing was sent or written" in r.stdout
    assert digest(Path(db.url)) == before
    assert db.tracking() == []
    js = followup(
        "run", "--dry-run", "--json", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat()
    )
    data = json.loads(js.stdout)
    assert data["would_send"] == 2 and data["dry_run"] is True
    assert {m["lead_id"] for m in data["messages"]} == {"due1", "due2"}


def test_run__dry_run_on_a_fresh_store_writes_nothing(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    before = digest(Path(db.url))
    r = followup("run", "--dry-run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 0, r.stderr
    assert "2 message(s) would be sent" in r.stdout
    assert digest(Path(db.url)) == before
    assert not _has_tracking(db)
    assert not Path(db.url + "-wal").exists()


def test_read_commands_leave_no_journal_files_beside_a_wal_store(
    setup: tuple[Path, LeadDB],
) -> None:
    """A store a live run has used is in WAL mode; with no run going, its folder holds the
    file alone. A dry run and the read commands "write nothing": they leave no -wal or -shm
    behind either (a reader creates them; they were left there, owned by whoever ran it)."""
    cfg, db = setup
    common = ("--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert followup("run", *common).returncode == 0
    folder = Path(db.url).parent
    before = sorted(p.name for p in folder.iterdir())
    assert not any(n.endswith(("-wal", "-shm")) for n in before), before
    conn = sqlite3.connect(db.url)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()  # (an open connection keeps them, rightly)
    later = ("--now", (NOW + timedelta(hours=4)).isoformat())
    for cmd in (
        ["run", "--dry-run", *common[:4], *later],
        ["explain", "due1", *common],
        ["report", *common],
        ["leads", *common],
        ["status", *common[:4]],
        ["unknown", "list", *common[:4]],
    ):
        r = followup(*cmd)
        assert r.returncode in (0, 3), (cmd, r.stderr)
        assert sorted(p.name for p in folder.iterdir()) == before, cmd


def test_run__limit_and_account_filter(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    r = followup(
        "run",
        "--config",
        str(cfg),
        "--db",
        db.url,
        "--now",
        NOW.isoformat(),
        "--limit",
        "1",
        "--json",
    )
    data = json.loads(r.stdout)
    assert data["sent"] == 1 and data["deferred"] == {"limit": 1}
    bad = followup("run", "--config", str(cfg), "--db", db.url, "--account", "nope")
    assert bad.returncode == 2 and "no such account" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "mysql://x/y"], "unsupported database scheme"),
        (["--db", "memory:"], "is a database in memory, only for tests"),
        (["--db", "/no/such/dir/x.db"], "does not exist"),
        (["--db", "postgresql://nobody@127.0.0.1:1/nope"], "cannot connect"),
        (["--now", "tomorrow"], "not an ISO 8601 time"),
        (["--config", "missing.yaml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_sent(
    setup: tuple[Path, LeadDB], args: list[str], message: str
) -> None:
    cfg, db = setup
    base = {"--config": str(cfg), "--db": db.url}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    r = followup("run", *flat)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert db.tracking() == [] if Path(db.url).exists() and _has_tracking(db) else True


def test_a_database_in_memory_is_refused_by_every_command(setup: tuple[Path, LeadDB]) -> None:
    """memory: would start empty and be gone when the command ends: one line, exit 2."""
    cfg, _ = setup
    for args in (
        ["status", "--db", "memory:"],
        ["report", "--db", "sqlite://:memory:"],
        ["migrate", "--db", "memory:"],
    ):
        r = followup(*args, "--config", str(cfg))
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"followup: --db {args[2]} is a database in memory, only for tests (it starts "
            "empty and is gone when the command ends); give a file path, sqlite:///file.db "
            "or postgresql://user@host/db"
        ], r.stderr
    r = followup("run", "--dry-run", "--config", str(cfg), env={"FOLLOWUP_DB": "memory:"})
    assert r.returncode == 2 and "only for tests" in r.stderr, r.stderr


def _has_tracking(db: LeadDB) -> bool:
    conn = sqlite3.connect(db.url)
    try:
        return bool(
            conn.execute("SELECT 1 FROM sqlite_master WHERE name='followup_tracking'").fetchall()
        )
    finally:
        conn.close()


def test_bad_template_is_caught_before_any_send(setup: tuple[Path, LeadDB], tmp_path: Path) -> None:
    _, db = setup
    cfg = base_config()
    cfg["sequences"][0]["messages"][0]["template"] = "Hi {{ lead.frist_name }}"
    path = write_config(tmp_path / "bad.yaml", cfg)
    r = followup("run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 2
    assert "bad.yaml:" in r.stderr and "frist_name" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line, for cron's mail
    assert "Hi" not in r.stdout
    check = followup("sequences", "check", "--config", str(path))
    assert check.returncode == 2 and "frist_name" in check.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("run",),
        ("optout", "lead_x"),
        ("optout", "--list"),
        ("report",),
        ("unknown", "list"),
        ("migrate",),
    ],
)
def test_a_mistyped_db_is_exit_2_and_creates_or_changes_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A --db without the lead table (a typo, another app's file) must not collect opt-outs
    or runs while the real store goes on being messaged."""
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    missing = tmp_path / "typo.db"
    r = followup(*args, "--config", str(cfg), "--db", str(missing))
    assert r.returncode == 2 and "no such database file" in r.stderr, r.stderr
    assert not missing.exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x TEXT)").connection.commit()
    r = followup(*args, "--config", str(cfg), "--db", str(other))
    assert r.returncode == 2 and "no table or view 'leads'" in r.stderr, r.stderr
    tables = {row[0] for row in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}, "nothing written to a database without the lead table"


def test_sequences_check__with_db_checks_the_lead_store_too(
    setup: tuple[Path, LeadDB], tmp_path: Path
) -> None:
    cfg, db = setup
    ok = followup("sequences", "check", "--config", str(cfg), "--db", db.url)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    missing = tmp_path / "nothere.db"
    bad = followup("sequences", "check", "--config", str(cfg), "--db", str(missing))
    assert bad.returncode == 2 and "no such database file" in bad.stderr
    assert not missing.exists()


def test_explain__says_why_in_words_and_json(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    r = followup("explain", "due1", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 0, r.stderr
    assert "DUE NOW" in r.stdout and "m1" in r.stdout and "window" in r.stdout
    w = followup(
        "explain",
        "waiting",
        "--config",
        str(cfg),
        "--db",
        db.url,
        "--now",
        NOW.isoformat(),
        "--json",
    )
    data = json.loads(w.stdout)
    assert data["action"] == "none" and data["reason"] == "waiting_for_human"
    assert any(c["rule"] == "silence" and c["ok"] is False for c in data["checks"])
    missing = followup("explain", "nobody", "--config", str(cfg), "--db", db.url)
    assert missing.returncode == 2 and "no lead 'nobody'" in missing.stderr


def test_optout__stops_a_lead_and_undo_resumes(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    r = followup(
        "optout", "due1", "--reason", "asked by phone", "--config", str(cfg), "--db", db.url
    )
    assert r.returncode == 0 and "opted out" in r.stdout
    listed = followup("optout", "--list", "--config", str(cfg), "--db", db.url)
    assert "due1" in listed.stdout and "asked by phone" in listed.stdout
    run = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert "due1" not in run.stdout and "due2" in run.stdout
    undo = followup("optout", "due1", "--undo", "--config", str(cfg), "--db", db.url)
    assert undo.returncode == 0 and "removed" in undo.stdout
    audit = db.query("SELECT action, actor FROM followup_audit WHERE lead_id = 'due1' ORDER BY id")
    assert [a["action"] for a in audit][:1] == ["optout"] and audit[-1]["action"] == "optout_undo"
    assert all(a["actor"] for a in audit)
    log = followup("audit", "due1", "--config", str(cfg), "--db", db.url)
    assert log.returncode == 0 and "optout_undo" in log.stdout and "send" not in log.stdout
    sent_log = followup("audit", "due2", "--json", "--config", str(cfg), "--db", db.url)
    actions = [e["action"] for e in json.loads(sent_log.stdout)]
    assert actions.count("send") == 1 and "claim" not in actions  # one row per event


def test_optout__a_stop_from_a_lead_who_wrote_last_is_recorded_for_good(
    setup: tuple[Path, LeadDB],
) -> None:
    """The lead writes "Stop." (so it wrote last and waits for a human): the next run
    records the opt-out; after a human answers and the lead writes again, no follow-up."""
    cfg, db = setup
    db.update("waiting", last_inbound_text="Stop.")
    r = followup("run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 0, r.stderr
    listed = followup("optout", "--list", "--config", str(cfg), "--db", db.url)
    assert "waiting" in listed.stdout and "keyword" in listed.stdout
    later = NOW + timedelta(days=1)
    db.update(
        "waiting",
        last_inbound_text="ok tell me more",
        last_inbound_at=later - timedelta(hours=6),
        last_outbound_at=later - timedelta(hours=5),
    )
    again = followup("run", "--config", str(cfg), "--db", db.url, "--now", later.isoformat())
    assert again.returncode == 0, again.stderr
    assert "waiting" not in again.stdout


def test_run__second_run_on_a_locked_sqlite_store_exits_75(setup: tuple[Path, LeadDB]) -> None:
    cfg, db = setup
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time, json;"
            f"fd = os.open({db.url + '.lock'!r}, os.O_RDWR | os.O_CREAT);"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, json.dumps({'pid': os.getpid(), 'host': 'h', 'started_at': 'x'}).encode());"
            "print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = followup(
            "run", "--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--wait", "0.2"
        )
        assert r.returncode == 75
        assert f"pid {holder.pid}" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert db.tracking() == [] if _has_tracking(db) else True


def test_sequences_show_draws_the_tree() -> None:
    root = Path(__file__).resolve().parents[2]
    r = followup("sequences", "show", "--config", str(root / "sequences.yaml"))
    assert r.returncode == 0
    assert "warm" in r.stdout and "trigger" in r.stdout and "variant a (50%)" in r.stdout


def test_demo_runs_a_full_cycle_from_a_fresh_directory(tmp_path: Path) -> None:
    r = followup("demo", "--quiet", "--dir", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Seeded 200 leads" in r.stdout and "follow-ups sent" in r.stdout
    sent = int(r.stdout.split("Totals: ")[1].split(" ")[0])
    assert sent > 50
    assert (tmp_path / "d" / "followup.db").exists()


def test_python_dash_m_works() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "followup_cli", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "followup" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--dry-run"],
        ["report", "--format", "json"],
        ["explain", "due1", "--json"],
        ["optout", "--list"],
        ["sequences", "check"],
        ["sequences", "show"],
        ["schedule"],
        ["status"],
        ["plan"],
        ["tokens", "check"],
    ],
)
def test_every_command_takes_the_common_options(
    setup: tuple[Path, LeadDB], args: list[str]
) -> None:
    """--config and --db are common options (the brief): a script or wrapper that passes
    both to every command is not refused by the one that needs no database."""
    cfg, db = setup
    r = followup(*args, "--config", str(cfg), "--db", db.url)
    assert "No such option" not in r.stderr, r.stderr
    assert r.returncode in (0, 3), (r.returncode, r.stderr)
    by_env = followup(*args, env={"FOLLOWUP_CONFIG": str(cfg), "FOLLOWUP_DB": db.url})
    assert by_env.returncode == r.returncode, by_env.stderr


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "--limt", "3"], ["run", "--limt", "--limit"]),
        (["run", "--limit", "-1"], ["run", "--limit"]),
        (["unknown", "resolve", "abc"], ["unknown resolve", "integer"]),
        (["leads", "import"], ["leads import", "file"]),
        (["rn"], ["rn"]),
    ],
)
def test_bad_usage_is_one_line_on_stderr_and_exit_2(args: list[str], names: list[str]) -> None:
    """A typo in a crontab line or a script is a failure cron mails: one line naming the
    command, the option and where the help is, like every other error; before, Click's
    framed box of five lines (Usage, Try, a box of the message)."""
    r = followup(*args)
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("followup: ") and "--help" in lines[0], lines
    for name in names:
        assert name in lines[0], (name, lines)
    assert r.stdout == ""


def test_help_and_version_still_exit_0() -> None:
    for args in (["--help"], ["run", "--help"], ["--version"]):
        r = followup(*args)
        assert r.returncode == 0 and r.stdout and r.stderr == "", (args, r)
    bare = followup()
    assert bare.returncode == 2 and "run" in bare.stdout + bare.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--now", "9999-12-31T23:00:00+00:00"],
        ["status", "--now", "0001-01-01T00:00:00+00:00"],
        ["schedule", "--now", "9999-12-31T23:00:00Z"],
        ["explain", "due1", "--now", "9999-12-31T23:00:00Z"],
        ["report", "--date", "9999-12-31"],
    ],
)
def test_a_time_beyond_the_calendar_is_exit_2_naming_it(
    setup: tuple[Path, LeadDB], args: list[str]
) -> None:
    """--now 9999-12-31 (or year 1) was "unexpected error: OverflowError: date value out of
    range" (exit 1) from report, status and schedule, which look at the days around it; as
    a lead row's times, a time outside the years 1900-2999 is refused, one line, exit 2."""
    cfg, db = setup
    r = followup(*args, "--config", str(cfg), "--db", db.url)
    assert r.returncode == 2, r
    assert "unexpected" not in r.stderr and "1900 and 2999" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_an_output_path_that_is_a_folder_is_exit_2_naming_it(
    setup: tuple[Path, LeadDB], tmp_path: Path
) -> None:
    """`report --format csv -o DIR` (and `optout --export DIR`) was "unexpected error:
    IsADirectoryError" (exit 1): one line naming the path, exit 2, as a missing folder."""
    cfg, db = setup
    common = ("--config", str(cfg), "--db", db.url)
    folder = tmp_path / "out"
    folder.mkdir()
    for args in (
        ("report", "--format", "csv", "-o", str(folder), "--now", NOW.isoformat()),
        ("optout", "--export", str(folder)),
    ):
        r = followup(*args, *common)
        assert r.returncode == 2, (args, r)
        assert "unexpected" not in r.stderr and f"{folder}: cannot write it" in r.stderr
        assert len(r.stderr.splitlines()) == 1, r.stderr


def test_tokens_refresh_takes_the_common_db_option_too(setup: tuple[Path, LeadDB]) -> None:
    """`tokens refresh ACCOUNT --db URL` was "No such option: --db" where every other command
    takes it (a wrapper passing both common options to every command was refused)."""
    cfg, db = setup
    with_db = followup("tokens", "refresh", "acct_a", "--config", str(cfg), "--db", db.url)
    without = followup("tokens", "refresh", "acct_a", "--config", str(cfg))
    assert "No such option" not in with_db.stderr, with_db.stderr
    assert (with_db.returncode, with_db.stderr) == (without.returncode, without.stderr)
