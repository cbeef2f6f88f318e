"""Encryption at rest (issue 9, point 5), on both stores: with FOLLOWUP_ENCRYPTION_KEY no
message text, recipient id, conversation id or error text is in clear in the tool's tables
(not in a dump, not in the database file or its WAL), yet the tool reads them; several keys
read, the first writes; `keys rotate` moves everything to the first key; a key that cannot
read the rows stops `run` (exit 2) before anything is sent; without a key texts are not
stored unless `settings.store_bodies`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import parse_config
from followup_cli.crypto import DIGEST_PREFIX, Cipher, key_id, new_key
from followup_cli.engine import Engine, RunOptions
from followup_cli.errors import ConfigError
from followup_cli.events import ingest
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from followup_cli.store.sealing import check_keys, recorded_key_ids, rotate_keys
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
SILENT = NOW - timedelta(hours=5)
IG = "17841000000000001"
# What must never be found in clear in the tool's tables: a text, ids, an error text.
RECIPIENT, CONVERSATION, TEXT = "IGSID-SECRET-4711", "CONV-SECRET-0815", "Hi Zebulon, step one"
FAILING, ERROR = "IGSID-SECRET-9999", "ERRTEXT-SECRET-42"
SECRETS = (RECIPIENT, CONVERSATION, TEXT, FAILING, ERROR)


def secret_lead(lead_id: str = "k1", **over: Any) -> dict[str, Any]:
    row = {
        "recipient_id": RECIPIENT,
        "conversation_id": CONVERSATION,
        "first_name": "Zebulon",
        "last_inbound_at": SILENT,
        "last_outbound_at": SILENT + timedelta(hours=1),
    }
    return lead(lead_id, **{**row, **over})


def due(lead_id: str, **over: Any) -> dict[str, Any]:
    return lead(
        lead_id, last_inbound_at=SILENT, last_outbound_at=SILENT + timedelta(hours=1), **over
    )


def cfg_dict(graph: FakeGraphAPI, **settings: Any) -> dict[str, Any]:
    cfg = base_config(channel={"type": "instagram", "api_base": graph.base_url, "window_hours": 24})
    cfg["settings"].update(settings)
    return cfg


def run_engine(
    db: LeadDB, graph: FakeGraphAPI, keys: str | None, keep_open: bool = False, **settings: Any
) -> Any:
    """One run in this process (the store's cipher from ``keys``); returns the open store
    with ``keep_open`` (the SQLite WAL is still there), else the summary."""
    loaded = parse_config(yaml.safe_dump(cfg_dict(graph, **settings)), "sequences.yaml")
    store = open_store(db.url)
    engine = Engine(
        loaded, store, make_channel(loaded.config), Clock(fixed=NOW), cipher=Cipher(keys)
    )
    summary = engine.run(RunOptions(now=NOW))
    if keep_open:
        return store
    store.close()
    return summary


def config_file(tmp_path: Path, graph: FakeGraphAPI | None = None, **settings: Any) -> Path:
    """sequences.yaml: on the fake Graph API (``cfg_dict``), or ``base_config`` without it."""
    cfg = cfg_dict(graph, **settings) if graph is not None else base_config()
    return write_config(tmp_path / "sequences.yaml", cfg)


def tool(path: Path, db: LeadDB, *args: str, keys: str | None = None, **env: str) -> Any:
    """``followup ARGS --config PATH --db DB``, with ``keys`` in FOLLOWUP_ENCRYPTION_KEY."""
    if keys is not None:
        env["FOLLOWUP_ENCRYPTION_KEY"] = keys
    return followup(*args, "--config", str(path), "--db", db.url, env=env)


def cli_run(path: Path, db: LeadDB, keys: str | None) -> Any:
    return tool(path, db, "run", "--now", NOW.isoformat(), keys=keys, FOLLOWUP_TOKEN_A="tok-a")


@contextmanager
def opened(db: LeadDB, keys: str | None = None, migrate: bool = True) -> Iterator[SqlStore]:
    """The tool's store in this process, reading with ``keys`` when given."""
    store = open_store(db.url, migrate=migrate)
    if keys is not None:
        store.cipher = Cipher(keys)
    try:
        yield store
    finally:
        store.close()


def report_json(path: Path, db: LeadDB, keys: str) -> dict[str, Any]:
    rep = tool(path, db, "report", "--date", "2026-03-02", "--format", "json", keys=keys)
    assert rep.returncode == 0, rep.stderr
    return json.loads(rep.stdout)


def tool_text(db: LeadDB, tables: str = "followup_") -> str:
    """Every value the database holds in the named tables, as text: SQLite's dump (INSERT
    lines), Postgres's every text and JSON column."""
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        try:
            return "\n".join(
                line for line in conn.iterdump() if line.startswith(f'INSERT INTO "{tables}')
            )
        finally:
            conn.close()
    cols = db.query(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? "
        "AND data_type IN ('text', 'character varying', 'jsonb', 'json')",
        (db.schema,),
    )
    values = []
    for c in cols:
        if c["table_name"].startswith(tables):
            values += [
                r["v"]
                for r in db.query(f"SELECT {c['column_name']}::text AS v FROM {c['table_name']}")
            ]
    return "\n".join(str(v) for v in values)


def execute(db: LeadDB, sql: str) -> None:
    """A write the host (or a test) makes, committed on both backends."""
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        db.query(sql)


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWUP_TOKEN_A", "tok-a")


def test_with_a_key__nothing_personal_in_clear_in_a_dump_or_the_file_yet_the_tool_reads_it(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    key = new_key()
    db.insert(
        secret_lead(),
        due("k2", recipient_id=FAILING, conversation_id="conv_k2", first_name="Zebulon"),
    )
    graph.fail(551, message=f"user gone ({ERROR})", recipient_id=FAILING)
    store = run_engine(db, graph, key, keep_open=True)
    try:
        assert [c.recipient_id for c in graph.deliveries] == [RECIPIENT]
        if db.backend == "sqlite":  # the WAL, while the run's connection still holds it
            wal = Path(db.url + "-wal")
            assert wal.exists() and wal.stat().st_size > 0
            raw = wal.read_bytes()
            assert not [s for s in SECRETS if s.encode() in raw]
        # The tool reads its rows back, decrypted.
        rows = {r["lead_id"]: r for r in store.followups()}
        assert (rows["k1"]["recipient_id"], rows["k1"]["conversation_id"]) == (
            RECIPIENT,
            CONVERSATION,
        )
        assert rows["k1"]["body"] == TEXT and rows["k1"]["status"] == "sent"
        assert rows["k2"]["status"] == "failed" and ERROR in rows["k2"]["error_message"]
        check_keys(store)  # the key at hand reads them: no error
    finally:
        store.close()
    dump = tool_text(db)
    assert "followup_tracking" in dump or db.backend == "postgres"
    assert not [s for s in SECRETS if s in dump], "found in clear in the tool's tables"
    assert RECIPIENT in tool_text(db, "leads"), "the check can see clear values"
    # The commands that read the rows still work with the key.
    path = config_file(tmp_path, graph)
    assert report_json(path, db, key)["summary"]["followups_sent"] == 1
    exp = tool(path, db, "explain", "k1", "--json", keys=key)
    assert exp.returncode == 0, exp.stderr
    assert json.loads(exp.stdout)["history"][0]["recipient_id"] == RECIPIENT
    execute(db, "UPDATE followup_tracking SET status = 'unknown' WHERE lead_id = 'k1'")
    listed = tool(path, db, "unknown", "list", keys=key)
    assert listed.returncode == 0 and TEXT in listed.stdout, listed.stdout + listed.stderr
    if db.backend == "sqlite":
        # The host deletes its own rows (zeroed): what is left in the file is the tool's.
        conn = sqlite3.connect(db.url)
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("DELETE FROM leads")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        raw = file_bytes(db)
        assert b"followup_tracking" in raw
        assert not [s for s in SECRETS if s.encode() in raw]


def test_webhook_ingest_matches_a_sealed_recipient_by_its_keyed_hash(
    db: LeadDB, graph: FakeGraphAPI
) -> None:
    key = new_key()
    db.insert(secret_lead())
    run_engine(db, graph, key)
    # The host deletes the lead row: only the tool's (sealed) rows know the recipient now.
    execute(db, "DELETE FROM leads")
    assert not db.query("SELECT 1 FROM followup_tracking WHERE recipient_id = ?", (RECIPIENT,))
    loaded = parse_config(yaml.safe_dump(cfg_dict(graph)), "sequences.yaml")
    at = NOW + timedelta(minutes=30)
    payload = webhook_line(RECIPIENT, at, message={"mid": "m_reply", "text": "tell me more"})
    with opened(db, key, migrate=False) as store:
        res = ingest(store, loaded.config, payload, "hook.json", NOW + timedelta(hours=1), "t")
    assert res.unmatched == 0 and res.applied == {"replied": 1}, res.as_dict()
    assert db.query("SELECT status FROM followup_tracking") == [{"status": "responded"}]


def test_two_keys__old_rows_read_new_rows_use_the_first__rotate_then_drop_the_old(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    old, new = new_key(), new_key()
    db.insert(secret_lead("k1"))
    run_engine(db, graph, old)
    db.insert(due("k2"))
    run_engine(db, graph, f"{new}, {old}")  # comma and space: both separators
    first = {r["lead_id"]: r for r in db.query("SELECT * FROM followup_tracking")}
    assert first["k1"]["recipient_id"].startswith(f"enc1:{key_id(old)}:")
    assert first["k2"]["recipient_id"].startswith(f"enc1:{key_id(new)}:")
    assert first["k2"]["body"].startswith(f"enc1:{key_id(new)}:")
    with opened(db, f"{new},{old}") as store:
        assert {r["lead_id"]: r["recipient_id"] for r in store.followups()} == {
            "k1": RECIPIENT,
            "k2": "ig_k2",
        }
        check_keys(store)
        assert recorded_key_ids(store) == sorted([key_id(old), key_id(new)])
        # Dropping the old key before rotating is caught, naming it.
        with pytest.raises(ConfigError, match=key_id(old)):
            check_keys(store, Cipher(new))
        dry = rotate_keys(store, store.cipher, NOW, dry_run=True, batch=1)
        assert dry.rows == {"followup_tracking": 1} and dry.rotated == 4  # body, 3 ids
        assert db.query("SELECT * FROM followup_tracking ORDER BY id") == sorted(
            first.values(), key=lambda r: r["id"]
        )
        done = rotate_keys(store, store.cipher, NOW, batch=1)
        assert done.rows == dry.rows and done.rotated == dry.rotated and not done.unreadable
        again = rotate_keys(store, store.cipher, NOW, batch=1)
        assert sum(again.rows.values()) == 0, "idempotent"
        assert recorded_key_ids(store) == [key_id(new)]
        assert [a["action"] for a in store.audit_log() if a["action"] == "keys_rotate"] == [
            "keys_rotate",
            "keys_rotate",
        ]
        # The old key is gone: everything reads with the new one alone.
        store.cipher = Cipher(new)
        check_keys(store)
        rows = {r["lead_id"]: r for r in store.followups()}
        assert (rows["k1"]["recipient_id"], rows["k1"]["body"]) == (RECIPIENT, TEXT)


def test_a_key_that_cannot_read_the_rows__run_exits_2_in_one_line_and_sends_nothing(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    old = new_key()
    db.insert(secret_lead("k1"))
    run_engine(db, graph, old)
    sent = len(graph.calls)
    db.insert(due("k2"))
    path = config_file(tmp_path, graph)
    wrong = cli_run(path, db, new_key())
    assert wrong.returncode == 2
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and key_id(old) in lines[0] and "keys rotate" in lines[0], lines
    unset = cli_run(path, db, None)
    assert unset.returncode == 2 and "FOLLOWUP_ENCRYPTION_KEY is not set" in unset.stderr
    assert len(unset.stderr.strip().splitlines()) == 1
    assert len(graph.calls) == sent, "the Graph API received nothing"
    assert [r["lead_id"] for r in db.query("SELECT lead_id FROM followup_tracking")] == ["k1"]
    # A lost key: `keys rotate` names it; --drop-unreadable lets the store go on without it.
    lost = new_key()
    stuck = tool(path, db, "keys", "rotate", keys=lost)
    assert stuck.returncode == 2 and key_id(old) in stuck.stderr
    gone = tool(path, db, "keys", "rotate", "--drop-unreadable", keys=lost)
    assert gone.returncode == 0, gone.stderr
    assert "unreadable removed" in gone.stdout
    ok = cli_run(path, db, lost)
    assert ok.returncode == 0, ok.stderr
    assert [c.recipient_id for c in graph.deliveries][-1] == "ig_k2"
    row = db.query("SELECT recipient_id, person_key FROM followup_tracking WHERE lead_id = 'k1'")
    assert row[0]["recipient_id"] is None and row[0]["person_key"], "the person stays known"


def test_without_a_key__texts_are_not_stored_and_check_says_so_once(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    db.insert(secret_lead("k1"))
    run_engine(db, graph, None)
    row = db.query("SELECT * FROM followup_tracking")[0]
    assert row["body"].startswith(DIGEST_PREFIX) and TEXT not in json.dumps(row, default=str)
    assert (row["sequence_id"], row["message_id"], bool(row["body_encrypted"])) == (
        "s1",
        "m1",
        False,
    )
    assert "variant_id" in row
    path = config_file(tmp_path, graph)
    execute(db, "UPDATE followup_tracking SET status = 'unknown'")
    listed = tool(path, db, "unknown", "list", "--json")
    assert json.loads(listed.stdout)[0]["text"].startswith("(not stored) hmac-sha256:")
    check = followup("sequences", "check", "--config", str(path), env={"FOLLOWUP_TOKEN_A": "x"})
    assert check.returncode == 0, check.stderr
    said = [ln for ln in check.stderr.splitlines() if "FOLLOWUP_ENCRYPTION_KEY" in ln]
    assert len(said) == 1 and "not stored" in said[0] and "warning" in said[0], check.stderr
    keyed = followup(
        "sequences", "check", "--config", str(path),
        env={"FOLLOWUP_TOKEN_A": "x", "FOLLOWUP_ENCRYPTION_KEY": new_key()},
    )  # fmt: skip
    assert "FOLLOWUP_ENCRYPTION_KEY" not in keyed.stderr
    bad = followup(
        "sequences", "check", "--config", str(path),
        env={"FOLLOWUP_TOKEN_A": "x", "FOLLOWUP_ENCRYPTION_KEY": "not-a-key"},
    )  # fmt: skip
    assert bad.returncode == 2 and "not a valid Fernet key" in bad.stderr


def test_store_bodies_without_a_key__stored_in_clear__then_rotate_encrypts_them(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    db.insert(secret_lead("k1"))
    run_engine(db, graph, None, store_bodies=True)
    row = db.query("SELECT body, recipient_id, body_encrypted FROM followup_tracking")[0]
    assert (row["body"], row["recipient_id"], bool(row["body_encrypted"])) == (
        TEXT,
        RECIPIENT,
        False,
    )
    path = config_file(tmp_path, graph, store_bodies=True)
    check = followup("sequences", "check", "--config", str(path), env={"FOLLOWUP_TOKEN_A": "x"})
    said = [ln for ln in check.stderr.splitlines() if "FOLLOWUP_ENCRYPTION_KEY" in ln]
    assert len(said) == 1 and "store_bodies" in said[0] and "in clear" in said[0], check.stderr
    # A key is added later: `keys rotate` encrypts what was stored in clear.
    key = new_key()
    dry = tool(path, db, "keys", "rotate", "--dry-run", keys=key)
    assert dry.returncode == 0, dry.stderr
    assert "1 row(s) would change" in dry.stdout and TEXT in tool_text(db)
    done = tool(path, db, "keys", "rotate", keys=key)
    assert done.returncode == 0 and "1 row(s) changed" in done.stdout, done.stdout + done.stderr
    assert "4 encrypted that were in clear"  # body, 3 ids in done.stdout
    assert not [s for s in (TEXT, RECIPIENT, CONVERSATION) if s in tool_text(db)]
    with opened(db, key) as store:
        got = store.followups()[0]
    assert (got["body"], got["recipient_id"], got["conversation_id"]) == (
        TEXT,
        RECIPIENT,
        CONVERSATION,
    )


def test_optout_of_a_person_keeps_the_recipient_sealed_and_exports_it_in_clear(
    db: LeadDB, tmp_path: Path
) -> None:
    key = new_key()
    db.insert(secret_lead("k1"))
    path = config_file(tmp_path)
    r = tool(path, db, "optout", "k1", keys=key)
    assert r.returncode == 0, r.stderr
    assert RECIPIENT not in tool_text(db)
    listed = tool(path, db, "optout", "--export", keys=key)
    assert listed.returncode == 0 and RECIPIENT in listed.stdout, listed.stdout + listed.stderr


def test_a_lead_value_that_looks_sealed_never_stops_a_run(db: LeadDB, graph: FakeGraphAPI) -> None:
    odd = "enc1:deadbeef:not-a-token"
    db.insert(secret_lead("k1", conversation_id=odd))
    run_engine(db, graph, None)
    with opened(db) as store:
        check_keys(store, Cipher(None))  # no "rows are encrypted" from a host's odd value
        check_keys(store, Cipher(new_key()))
        assert store.followups()[0]["conversation_id"] == odd


def test_optout_with_a_wrong_key_still_holds_but_writes_nothing_under_that_key(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    key = new_key()
    db.insert(secret_lead("k1"), due("k2"))
    run_engine(db, graph, key)
    path = config_file(tmp_path, graph)
    r = tool(path, db, "optout", "k2", keys=new_key())
    assert r.returncode == 0 and "opted out" in r.stdout, r.stderr
    assert "warning" in r.stderr and key_id(key) in r.stderr
    sup = db.query("SELECT person_key, recipient_id FROM followup_suppressions")
    assert len(sup) == 1 and sup[0]["person_key"] and sup[0]["recipient_id"] is None
    with opened(db) as store:
        assert recorded_key_ids(store) == [key_id(key)], "the wrong key wrote nothing"
    assert cli_run(path, db, key).returncode == 0  # the right key still runs


def test_rotate_interrupted_keeps_its_finished_batches_and_resumes(
    db: LeadDB, graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from followup_cli.store import sealing

    old, new = new_key(), new_key()
    db.insert(secret_lead("k1"), due("k2"))
    run_engine(db, graph, old, max_per_lead_per_day=2)
    with opened(db, f"{new},{old}") as store:
        real, calls = sealing._update, []

        def dies_on_the_second_row(*args: Any) -> None:
            calls.append(args)
            if len(calls) == 2:
                raise RuntimeError("killed")
            real(*args)

        monkeypatch.setattr(sealing, "_update", dies_on_the_second_row)
        with pytest.raises(RuntimeError):
            rotate_keys(store, store.cipher, NOW, batch=1)
        monkeypatch.setattr(sealing, "_update", real)
        ids = [
            r["recipient_id"]
            for r in db.query("SELECT recipient_id FROM followup_tracking ORDER BY id")
        ]
        assert [sealed_key(v) for v in ids] == [key_id(new), key_id(old)], "batch 1 stayed"
        assert key_id(old) in recorded_key_ids(store), "not rotated away before the end"
        done = rotate_keys(store, store.cipher, NOW, batch=1)
        assert done.rows == {"followup_tracking": 1}, "only what was left"
        assert recorded_key_ids(store) == [key_id(new)]


def sealed_key(value: str) -> str:
    return value.split(":")[1]


def test_keys_status_names_the_keys_at_hand_and_the_ones_that_wrote_rows(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    old, new = new_key(), new_key()
    db.insert(secret_lead("k1"))
    run_engine(db, graph, old)
    path = config_file(tmp_path)
    both = tool(path, db, "keys", "status", keys=f"{new},{old}")
    assert both.returncode == 0, both.stderr
    assert f"key 1: id {key_id(new)} (writes and reads)" in both.stdout
    assert f"key 2: id {key_id(old)} (reads)" in both.stdout
    assert f"rows written with: {key_id(old)}" in both.stdout
    alone = tool(path, db, "keys", "status", keys=new)
    assert alone.returncode == 2 and key_id(old) in alone.stderr


def test_erase_with_sealed_ids_finds_every_row_of_the_person(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    key = new_key()
    db.insert(secret_lead("k1"))
    run_engine(db, graph, key)
    # The host re-created the person under a new lead id, and deleted the old row.
    execute(db, "DELETE FROM leads")
    db.insert(secret_lead("k1-new"))
    path = config_file(tmp_path, graph)
    r = tool(path, db, "erase", "k1-new", "--yes", keys=key)
    assert r.returncode == 0, r.stderr
    rows = db.query("SELECT lead_id, body, recipient_id, conversation_id FROM followup_tracking")
    assert rows == [
        {"lead_id": "k1", "body": None, "recipient_id": None, "conversation_id": None}
    ], "the old row of the same person, found by its keyed hash"


# ------------------------------------------------- message ids (the platform's, issue 9.5)

REPLY_MID = "REPLYMID-SECRET-77"  # the id of the lead's own message, in a webhook


def webhook_line(sender: str, at: datetime, **item: Any) -> str:
    """One Instagram webhook payload (one line) carrying one messaging item."""
    ms = int(at.timestamp() * 1000)
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": IG,
                "time": ms,
                "messaging": [
                    {"sender": {"id": sender}, "recipient": {"id": IG}, "timestamp": ms, **item}
                ],
            }
        ],
    }
    return json.dumps(payload)


def ingest_file(path: Path, cfg: Path, db: LeadDB, keys: str | None) -> dict[str, Any]:
    at = (NOW + timedelta(hours=2)).isoformat()
    r = tool(cfg, db, "events", "ingest", str(path), "--now", at, "--json", keys=keys or None)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def raw_event_keys(text: str, graph: FakeGraphAPI) -> list[str]:
    """The event keys (and their id parts) the tool would store in clear without a key."""
    from followup_cli.eventparse import IngestResult, parse

    loaded = parse_config(yaml.safe_dump(cfg_dict(graph)), "sequences.yaml")
    keys = [e.key for e in parse(text, "x", loaded.config, IngestResult())]
    return keys + [k.rsplit(":", 1)[-1] for k in keys]


def file_bytes(db: LeadDB) -> bytes:
    """SQLite: the database file and its WAL, as they are on disk."""
    raw = Path(db.url).read_bytes()
    wal = Path(db.url + "-wal")
    return raw + (wal.read_bytes() if wal.exists() else b"")


def responded(path: Path, db: LeadDB, keys: str) -> int:
    return int(report_json(path, db, keys)["summary"]["followups_responded"])


def test_with_a_key__message_ids_are_not_in_clear_yet_webhooks_find_their_row_and_dedupe(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    key = new_key()
    db.insert(secret_lead("k1"))
    run_engine(db, graph, key)
    mid = graph.deliveries[0].message_id
    assert mid
    cfg = config_file(tmp_path, graph)
    at = NOW + timedelta(minutes=30)
    text = "\n".join(
        [
            # Only the id of our message names the lead: found by its keyed hash, or unmatched.
            json.dumps({"type": "replied", "mid": mid, "at": at.isoformat()}),
            webhook_line(RECIPIENT, at, read={"mid": mid}),
            webhook_line(RECIPIENT, at, delivery={"mids": [mid]}),
            webhook_line(RECIPIENT, at, message={"mid": REPLY_MID, "text": "tell me more"}),
            webhook_line(RECIPIENT, at + timedelta(minutes=1), message={"text": "no mid"}),
        ]
    )
    path = tmp_path / "events.jsonl"
    path.write_text(text + "\n")
    first = ingest_file(path, cfg, db, key)
    assert (first["new"], first["unmatched"], first["problems"]) == (5, 0, []), first
    assert first["applied"]["replied"] == 1 and first["applied"]["read"] == 1, first
    row = db.query("SELECT read_at, responded_at, external_id, external_key FROM followup_tracking")
    assert row[0]["read_at"] is not None and row[0]["responded_at"] is not None
    assert row[0]["external_id"].startswith("enc1:") and row[0]["external_key"].startswith("hk1:")
    assert responded(cfg, db, key) == 1
    # The same payloads again: every event a duplicate, nothing counted twice.
    again = ingest_file(path, cfg, db, key)
    assert (again["new"], again["duplicates"]) == (0, 5), again
    assert responded(cfg, db, key) == 1
    # The tool reads the ids back (sealed, not lost).
    with opened(db, key, migrate=False) as store:
        assert store.followups()[0]["external_id"] == mid
        assert {e["message_id"] for e in store.events()} == {None, mid}
    secrets = [mid, REPLY_MID, *raw_event_keys(text, graph)]
    dump = tool_text(db)
    assert "followup_events" in dump or db.backend == "postgres"
    assert not [s for s in secrets if s in dump], "a message id or event key in clear"
    if db.backend == "sqlite":
        raw = file_bytes(db)
        assert b"followup_events" in raw
        assert not [s for s in secrets if s.encode() in raw]
    # A new key: `keys rotate` re-seals the ids; lookups by keyed hash do not change with it.
    new = new_key()
    done = tool(cfg, db, "keys", "rotate", keys=f"{new},{key}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "followup_events 3" in done.stdout, done.stdout  # the 3 naming our message
    key = new
    with opened(db, key, migrate=False) as store:
        assert {e["message_id"] for e in store.events()} == {None, mid}
        assert store.followups()[0]["external_id"] == mid
    assert ingest_file(path, cfg, db, key)["duplicates"] == 5
    # Erasure removes the sealed ids and their hashes; the events stay duplicates.
    gone = tool(cfg, db, "erase", "k1", "--yes", keys=key)
    assert gone.returncode == 0, gone.stderr
    assert db.query("SELECT external_id, external_key FROM followup_tracking") == [
        {"external_id": None, "external_key": None}
    ]
    assert all(
        e["event_key"].startswith("erased:") for e in db.query("SELECT * FROM followup_events")
    )
    after = ingest_file(path, cfg, db, key)
    assert after["new"] == 0 and after["applied"] == {}, after


def test_message_ids_stored_in_clear_before_the_key__still_match_then_rotate_hashes_them(
    db: LeadDB, graph: FakeGraphAPI, tmp_path: Path
) -> None:
    db.insert(secret_lead("k1"))
    run_engine(db, graph, None)
    mid = graph.deliveries[0].message_id
    assert mid
    cfg = config_file(tmp_path, graph)
    at = NOW + timedelta(minutes=30)
    read = webhook_line(RECIPIENT, at, read={"mid": mid})
    old = tmp_path / "old.jsonl"
    old.write_text(read + "\n")
    assert ingest_file(old, cfg, db, None)["applied"] == {"read": 1}
    # Without a key, as before: ids in clear, like the recipient ids.
    row = db.query("SELECT external_id, external_key FROM followup_tracking")[0]
    assert (row["external_id"], row["external_key"]) == (mid, None)
    assert (
        db.query("SELECT event_key FROM followup_events")[0]["event_key"]
        == raw_event_keys(read, graph)[0]
    )
    # A key is set: the old rows still match (by the clear id) and still dedupe.
    key = new_key()
    reply = tmp_path / "reply.jsonl"
    reply.write_text(json.dumps({"type": "replied", "mid": mid, "at": at.isoformat()}) + "\n")
    both = tmp_path / "both.jsonl"
    both.write_text(old.read_text() + reply.read_text())
    got = ingest_file(both, cfg, db, key)
    assert (got["new"], got["duplicates"], got["unmatched"]) == (1, 1, 0), got
    assert responded(cfg, db, key) == 1
    # `keys rotate` seals the message ids and hashes the event keys; all still match.
    done = tool(cfg, db, "keys", "rotate", keys=key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "followup_events 1" in done.stdout, done.stdout  # the clear key; the new one is hashed
    secrets = [mid, *raw_event_keys(both.read_text(), graph)]
    assert not [s for s in secrets if s in tool_text(db)]
    row = db.query("SELECT external_id, external_key FROM followup_tracking")[0]
    assert row["external_id"].startswith("enc1:") and row["external_key"].startswith("hk1:")
    again = ingest_file(both, cfg, db, key)
    assert (again["new"], again["duplicates"]) == (0, 2), again
    conv = tmp_path / "conv.jsonl"
    conv.write_text(json.dumps({"type": "converted", "mid": mid, "at": at.isoformat()}) + "\n")
    assert ingest_file(conv, cfg, db, key)["applied"] == {"converted": 1}, "found by its hash"
