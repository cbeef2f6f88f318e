"""An audit you can believe (issue 9): the actor is the real uid's account, not $USER; the
audit rows form a hash chain that ``followup audit verify`` walks, naming rows changed,
deleted or added by hand; an erasure removes details and the chain still verifies. Both
stores."""

from __future__ import annotations

import json
import pwd
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from followup_cli import auditchain, auditverify
from followup_cli.cli import app
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore, actor
from followup_cli.store.erasure import erase_lead
from followup_cli.store.migrations import MIGRATIONS
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, graph_config, lead
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ME = pwd.getpwuid(__import__("os").getuid()).pw_name
POSTGRES_ONLY = pytest.mark.parametrize("db", ["postgres"], indirect=True)


@pytest.fixture
def store(db: LeadDB) -> Iterator[SqlStore]:
    s = open_store(db.url)
    try:
        yield s
    finally:
        s.close()


def tamper(db: LeadDB, sql: str, params: tuple = ()) -> None:
    """Raw SQL from outside the tool, committed (what someone with the file or a role does)."""
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.execute(sql, params)
        conn.commit()
        conn.close()
    else:
        db.query(sql, params)


def write_rows(store: SqlStore, n: int = 5, lead_id: str = "l1") -> list[int]:
    for i in range(n):
        store.audit(
            ["claim", "send", "optout", "bad_lead", "enrollment_end"][i % 5],
            NOW + timedelta(seconds=i),
            "ops",
            "run1",
            lead_id if i % 2 == 0 else f"other{i}",
            "acct_a",
            "s1",
            "m1",
            detail={"i": i, "note": f"detail {i}"} if i != 3 else None,
        )
    return [r["id"] for r in store.rows("SELECT id FROM followup_audit ORDER BY chain_seq")]


def verify(db: LeadDB, *extra: str) -> tuple[int, dict[str, Any]]:
    """``followup audit verify --json`` in this process (the installed command is run too,
    by the tests that read its text)."""
    r = CliRunner().invoke(app, ["audit", "verify", "--db", db.url, "--json", *extra])
    return r.exit_code, json.loads(r.stdout)


def kinds(report: dict[str, Any]) -> list[tuple[str, list[int]]]:
    return [(p["kind"], p["ids"]) for p in report["problems"]]


# ------------------------------------------------------------------ the chain


def test_audit_verify__a_clean_log_is_intact_and_names_its_head(
    db: LeadDB, store: SqlStore
) -> None:
    ids = write_rows(store, 6)
    rows = store.rows("SELECT * FROM followup_audit ORDER BY chain_seq")
    assert [r["chain_seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["prev_hash"] == auditchain.GENESIS
    assert all(b["prev_hash"] == a["row_hash"] for a, b in zip(rows, rows[1:], strict=False))
    code, rep = verify(db)
    assert code == 0 and rep["intact"] and rep["problems"] == [], rep
    assert rep["rows"] == len(ids) == 6
    assert rep["head"] == {"chain_seq": 6, "row_hash": rows[-1]["row_hash"]}
    text = followup("audit", "verify", "--db", db.url)
    assert text.returncode == 0 and "audit log intact: 6 row(s)" in text.stdout
    # the log itself reads as before, with or without `show`
    shown = followup("audit", "l1", "--db", db.url, "--json")
    assert shown.returncode == 0 and {r["lead_id"] for r in json.loads(shown.stdout)} == {"l1"}
    assert followup("audit", "show", "l1", "--db", db.url).returncode == 0


@pytest.mark.parametrize(
    "column,value", [("detail", '{"i": 1, "note": "nothing to see"}'), ("actor", "nobody"),
                     ("action", "skip"), ("at", "2026-03-01T00:00:00.000000Z")],
)  # fmt: skip
def test_audit_verify__names_the_row_whose_content_was_changed(
    db: LeadDB, store: SqlStore, column: str, value: str
) -> None:
    ids = write_rows(store, 5)
    if column == "at" and db.backend == "postgres":
        value = "2026-03-01 00:00:00+00"
    tamper(db, f"UPDATE followup_audit SET {column} = ? WHERE id = ?", (value, ids[1]))
    code, rep = verify(db)
    assert code == 3 and not rep["intact"]
    assert kinds(rep) == [("changed", [ids[1]])], rep
    assert f"row id {ids[1]}" in rep["problems"][0]["message"]
    if column == "detail":  # the installed command's text, once
        text = followup("audit", "verify", "--db", db.url)
        assert text.returncode == 3 and "BROKEN" in text.stdout
        assert f"row id {ids[1]}" in text.stdout


def test_audit_verify__a_row_rewritten_with_a_new_hash_breaks_the_next_link(
    db: LeadDB, store: SqlStore
) -> None:
    ids = write_rows(store, 4)
    row = store.rows("SELECT * FROM followup_audit WHERE id = :i", {"i": ids[1]})[0]
    row["actor"] = "nobody"
    tamper(
        db,
        "UPDATE followup_audit SET actor = ?, row_hash = ? WHERE id = ?",
        ("nobody", auditchain.row_hash(row), ids[1]),
    )
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("relinked", [ids[1], ids[2]])], rep


def test_audit_verify__finds_a_deleted_middle_row(db: LeadDB, store: SqlStore) -> None:
    ids = write_rows(store, 5)
    tamper(db, "DELETE FROM followup_audit WHERE id = ?", (ids[2],))
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("deleted", [ids[1], ids[3]])], rep
    assert "1 row(s) deleted" in rep["problems"][0]["message"]


def test_audit_verify__finds_deleted_newest_rows_by_the_head(db: LeadDB, store: SqlStore) -> None:
    ids = write_rows(store, 5)
    tamper(db, "DELETE FROM followup_audit WHERE id >= ?", (ids[3],))
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("truncated", [ids[2]])], rep
    assert "newest 2 row(s) were deleted" in rep["problems"][0]["message"]
    tamper(db, "DELETE FROM followup_audit")
    code, rep = verify(db)
    assert code == 3 and [k for k, _ in kinds(rep)] == ["truncated"], rep


def test_audit_verify__a_deleted_head_record_is_reported_and_writing_goes_on(
    db: LeadDB, store: SqlStore
) -> None:
    write_rows(store, 2)
    tamper(db, "DELETE FROM followup_audit_head")
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("head", [])], rep
    store.audit("send", NOW, "ops", lead_id="after")  # the chain goes on from its last row
    code, rep = verify(db)
    assert code == 0 and rep["rows"] == 3, rep


def test_audit_verify__finds_a_row_added_by_hand(db: LeadDB, store: SqlStore) -> None:
    write_rows(store, 2)
    tamper(
        db,
        "INSERT INTO followup_audit (at, actor, action) VALUES (?, ?, ?)",
        ("2026-03-02T09:00:00.000000Z" if db.backend == "sqlite" else NOW, "ops", "send"),
    )
    added = db.query("SELECT id FROM followup_audit WHERE chain_seq IS NULL")[0]["id"]
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("unchained", [added])], rep


def test_audit_verify__a_whole_rewritten_chain_misses_the_head_noted_before(
    db: LeadDB, store: SqlStore
) -> None:
    write_rows(store, 3)
    code, rep = verify(db)
    noted = rep["head"]["row_hash"]
    assert code == 0 and verify(db, "--head", noted)[0] == 0
    # someone rewrites the actor of every row and recomputes the whole chain and the head
    prev = auditchain.GENESIS
    for r in store.rows("SELECT * FROM followup_audit ORDER BY chain_seq"):
        r.update(actor="nobody", prev_hash=prev)
        prev = auditchain.row_hash(r)
        tamper(
            db,
            "UPDATE followup_audit SET actor = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
            ("nobody", r["prev_hash"], prev, r["id"]),
        )
    tamper(db, "UPDATE followup_audit_head SET row_hash = ?", (prev,))
    assert verify(db)[0] == 0  # consistent: only an anchor kept elsewhere shows it
    code, rep = verify(db, "--head", noted)
    assert code == 3 and rep["anchor"] == {"row_hash": noted, "found": False}, rep


def test_audit_chain__concurrent_writers_leave_one_valid_chain(db: LeadDB) -> None:
    first = open_store(db.url)
    stores = [first, first.clone(), first.clone()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def write(s: SqlStore, k: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(25):
                with s.transaction():  # as the engine does: the audit row in a wider transaction
                    s.audit("send", NOW, "ops", f"run{k}", f"lead{k}_{i}", detail={"i": i})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        seqs = [r["chain_seq"] for r in first.rows("SELECT chain_seq FROM followup_audit")]
        assert sorted(seqs) == list(range(1, 76))
        rep = auditverify.verify(first)
        assert rep.intact and rep.rows == 75, rep.problems
    finally:
        for s in stores:
            s.close()


def test_audit_chain__pipelined_and_plain_writers_leave_one_valid_chain(db: LeadDB) -> None:
    """The send path's attempt transaction appends inside ``pipelined`` (on Postgres the
    head is read, locked, with its other statements and the row goes out with the COMMIT);
    other writers append as before; one of each rolls back now and then. One chain."""
    first = open_store(db.url)
    stores = [first, first.clone(), first.clone(), first.clone()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def write(s: SqlStore, k: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(20):
                try:
                    with s.pipelined() if k % 2 else nullcontext(), s.transaction():
                        s.execute(
                            "UPDATE followup_audit_head SET chain_seq = chain_seq WHERE id = 0"
                        )
                        done = s.audit_later("send", NOW, "ops", f"run{k}", f"lead{k}_{i}")
                        s.query("SELECT 1 AS x")
                        done()
                        if i % 7 == 3:
                            raise LookupError("rolled back")
                except LookupError:
                    pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        rows = first.rows("SELECT chain_seq, lead_id FROM followup_audit ORDER BY chain_seq")
        kept = 4 * (20 - 3)  # i = 3, 10, 17 rolled back
        assert [r["chain_seq"] for r in rows] == list(range(1, kept + 1))
        assert not any(r["lead_id"].endswith(("_3", "_10", "_17")) for r in rows)
        rep = auditverify.verify(first)
        assert rep.intact and rep.rows == kept, rep.problems
    finally:
        for s in stores:
            s.close()


def test_audit_chain__a_head_remembered_wrongly_is_never_chained_to(
    db: LeadDB, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer chains its next row to the head its last append left, in one conditional
    statement (two on SQLite); when that head is stale (its transaction rolled back,
    another process appended since) the head is read again and nothing else changes."""
    calls: list[str] = []
    for name in ("query", "execute"):
        real = getattr(store, name)

        def counted(sql: str, params: Any = None, _real: Any = real) -> Any:
            calls.append(sql)
            return _real(sql, params)

        monkeypatch.setattr(store, name, counted)
    write_rows(store, 2)
    calls.clear()
    store.audit("send", NOW, "ops", "run1", "l1")
    assert len(calls) == (1 if db.backend == "postgres" else 2)

    with pytest.raises(RuntimeError), store.transaction():  # remembered, then rolled back
        store.audit("send", NOW, "ops", "run1", "l2", detail={"x": 1})
        raise RuntimeError("rolled back")
    store.audit("send", NOW, "ops", "run1", "l3")

    key = (store.dialect, store.url, auditchain.MAIN)
    stale = auditchain._SEEN[key]
    other = open_store(db.url)  # another process: it does not know this one's head
    try:
        del auditchain._SEEN[key]
        other.audit("send", NOW, "ops", "run2", "l4", detail={"y": 2})
    finally:
        other.close()
    auditchain._SEEN[key] = stale
    store.audit("send", NOW, "ops", "run1", "l5")

    rows = store.rows("SELECT chain_seq, lead_id FROM followup_audit ORDER BY chain_seq")
    assert [(r["chain_seq"], r["lead_id"]) for r in rows] == [
        (1, "l1"), (2, "other1"), (3, "l1"), (4, "l3"), (5, "l4"), (6, "l5"),
    ]  # fmt: skip
    rep = auditverify.verify(store)
    assert rep.intact and rep.rows == 6, rep.problems
    assert verify(db)[0] == 0


def test_migration_0007__chains_the_rows_written_before_it(
    db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    import followup_cli.store.migrating as migrating

    monkeypatch.setattr(migrating, "MIGRATIONS", MIGRATIONS[:6])  # before 0007_audit_chain
    old = open_store(db.url)
    try:
        for i in range(4):
            old.execute(
                "INSERT INTO followup_audit (at, actor, action, lead_id, detail) "
                "VALUES (:at, 'ops', 'send', :l, :d)",
                {"at": NOW + timedelta(minutes=i), "l": f"o{i}", "d": None if i else '{"x": 1}'},
            )
    finally:
        old.close()
    monkeypatch.setattr(migrating, "MIGRATIONS", MIGRATIONS)
    new = open_store(db.url)
    try:
        rep = auditverify.verify(new)
        assert rep.intact and rep.rows == 4 and rep.head_seq == 4, rep.problems
        new.audit("send", NOW, "ops", lead_id="n1", detail={"y": 2})
        rep = auditverify.verify(new)
        assert rep.intact and rep.rows == 5, rep.problems
    finally:
        new.close()
    tamper(db, "UPDATE followup_audit SET detail = ? WHERE lead_id = ?", ('{"x": 2}', "o0"))
    assert [k for k, _ in kinds(verify(db)[1])] == ["changed"]


# -------------------------------------------------------------------- erasure


def test_erase__removes_the_persons_audit_details_and_the_chain_still_verifies(
    db: LeadDB, store: SqlStore
) -> None:
    db.insert(lead("z1", recipient_id="ig_ZOLT"), lead("k1", recipient_id="ig_keep"))
    for lid, who in (("z1", "Zoltana"), ("k1", "Kept")):
        store.audit("optout", NOW, "ops", lead_id=lid, detail={"reason": f"{who} phoned"})
        store.audit("bad_lead", NOW, "ops", lead_id=lid, detail={"problem": f"name {who}!"})
    counts = erase_lead(store, "z1", "ops", NOW, purge=False)
    assert counts["audit_rows_scrubbed"] == 2
    dump = json.dumps(db.query("SELECT * FROM followup_audit"), default=str)
    assert "Zoltana" not in dump and "Kept phoned" in dump
    scrubbed = db.query(
        "SELECT detail, detail_salt, detail_digest FROM followup_audit WHERE lead_id = 'z1' "
        "AND action <> 'erase'"
    )
    assert all(r["detail"] is None and r["detail_salt"] is None for r in scrubbed)
    assert all(r["detail_digest"] for r in scrubbed)  # the chain keeps its links
    code, rep = verify(db)
    assert code == 0 and rep["intact"] and rep["scrubbed_by_erasure"] == 2, rep
    # a second erasure of the same person keeps the first one's record
    erase_lead(store, "z1", "ops", NOW, purge=False)
    code, rep = verify(db)
    assert code == 0 and rep["scrubbed_by_erasure"] == 2, rep


def test_audit_verify__a_detail_removed_without_an_erasure_is_tampering(
    db: LeadDB, store: SqlStore
) -> None:
    ids = write_rows(store, 3)
    tamper(
        db, "UPDATE followup_audit SET detail = NULL, detail_salt = NULL WHERE id = ?", (ids[0],)
    )
    code, rep = verify(db)
    assert code == 3 and kinds(rep) == [("scrubbed_unrecorded", [ids[0]])], rep


# ---------------------------------------------------------------------- who


def test_actor__is_the_real_uid_account_whatever_USER_says(
    db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("SUDO_USER", "SUDO_UID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert actor() == ME
    db.insert(lead("a1"))
    env = {"USER": "mallory", "LOGNAME": "mallory", "SUDO_USER": "", "SUDO_UID": ""}
    r = followup("optout", "a1", "--db", db.url, env=env)
    assert r.returncode == 0, r.stderr
    rows = db.query("SELECT actor FROM followup_audit WHERE lead_id = 'a1'")
    assert [x["actor"] for x in rows] == [ME]


def test_actor__sudo_caller_is_recorded_as_unverified() -> None:
    root = auditchain.os_account(0)
    env = {"SUDO_USER": "alice", "SUDO_UID": "1000", "USER": "mallory"}
    assert (
        auditchain.actor(env, uid=0)
        == f"{root} (sudo from alice, uid 1000, per $SUDO_USER/$SUDO_UID: unverified)"
    )
    assert auditchain.actor({"USER": "mallory"}, uid=0) == root
    # not root: sudo's variables are somebody's text, not the actor
    assert auditchain.actor(env, uid=4242424) == "4242424"


@POSTGRES_ONLY
def test_postgres_records_the_database_role(db: LeadDB, store: SqlStore) -> None:
    store.audit("send", NOW, "ops", lead_id="r1")
    role = db.query("SELECT session_user::text AS r")[0]["r"]
    assert db.query("SELECT db_role FROM followup_audit")[0]["db_role"] == role
    rep = auditverify.verify(store)
    assert rep.intact, rep.problems
    tamper(db, "UPDATE followup_audit SET db_role = 'intruder'")
    assert [k for k, _ in kinds(verify(db)[1])] == ["changed"]


def test_chain__rows_hashed_by_the_database_verify_like_the_others(store: SqlStore) -> None:
    """After a connection's first append, Postgres chains, hashes and writes a row in one
    statement: its hash is the one ``row_hash`` computes, for texts outside ASCII, quotes,
    backslashes, empty and missing fields, a time with microseconds, and another writer in
    between (SQLite: the same rows through the conditional update)."""
    other = store.clone()
    try:
        odd = ['Zoë "ops" \\ 東京', "", "l\u2028é", None]
        for i, text in enumerate(odd * 3):
            writer = other if i == 3 else store
            args = (
                "send",
                NOW + timedelta(microseconds=7 * i + 1),
                text or "ops",
                text,
                text,
                text,
                None,
                "m1" if i % 2 else None,
                {"note": text, "i": i} if i % 3 else None,
            )
            if i < 8:
                writer.audit(*args)
            else:  # the send path's way: with the COMMIT of a pipelined transaction
                with writer.pipelined(), writer.transaction():
                    writer.audit_later(*args)()
    finally:
        other.close()
    report = auditverify.verify(store)
    assert report.intact, [p.message for p in report.problems]
    assert report.rows == 12


@POSTGRES_ONLY
def test_chain__a_pipelined_row_with_no_head_to_chain_to_fails_its_transaction(
    db: LeadDB, store: SqlStore
) -> None:
    """The row the database chains with a pipelined COMMIT, when the head row was deleted
    in the meantime: the transaction fails (nothing it wrote is kept) instead of committing
    without its audit row; the next plain append puts the head back."""
    from followup_cli.errors import StoreError

    store.audit("send", NOW, "ops", "run1", "l1")  # the connection's first: its role read
    tamper(db, "DELETE FROM followup_audit_head")
    with pytest.raises(StoreError), store.pipelined(), store.transaction():
        store.execute(store.q("config_seen"), {"d": "x", "p": "p", "a": "ops", "now": NOW})
        store.audit_later("send", NOW, "ops", "run1", "l2")()
    assert store.query("SELECT COUNT(*) AS n FROM followup_config_seen WHERE digest = 'x'") == [
        {"n": 0}
    ]
    assert [r["lead_id"] for r in store.query("SELECT lead_id FROM followup_audit")] == ["l1"]
    store.audit("send", NOW, "ops", "run1", "l3")
    assert store.query("SELECT chain_seq FROM followup_audit_head") == [{"chain_seq": 2}]


# ---------------------------------------------------------- one chain per account (0014)

ACCT = auditchain.account_chain("acct_a")


def write_chain(store: SqlStore, chain: str, n: int, lead_id: str = "c1") -> list[int]:
    """``n`` rows appended to ``chain`` (opened first, as the engine does), the way the send
    path appends them (pipelined on Postgres, with the COMMIT); their ids in chain order."""
    auditchain.open_chain(store, chain)
    for i in range(n):
        with store.pipelined(), store.transaction():
            store.audit_later(
                "send", NOW + timedelta(seconds=i), "ops", "run1", lead_id if i % 2 else f"x{i}",
                "acct_a", "s1", "m1", {"i": i}, chain=chain,
            )()  # fmt: skip
    rows = store.rows(
        "SELECT id FROM followup_audit WHERE chain = :c ORDER BY chain_seq", {"c": chain}
    )
    return [r["id"] for r in rows]


def test_account_chain__hangs_off_the_main_chain_and_verifies(db: LeadDB, store: SqlStore) -> None:
    write_rows(store, 2)
    ids = write_chain(store, ACCT, 4)
    write_rows(store, 1, lead_id="l2")  # the main chain goes on beside it
    opening = store.rows("SELECT * FROM followup_audit WHERE action = 'audit_chain_open'")
    assert len(opening) == 1 and opening[0]["chain"] == "" and opening[0]["chain_seq"] == 3
    assert json.loads(opening[0]["detail"]) == {"chain": ACCT}
    rows = store.rows(
        "SELECT * FROM followup_audit WHERE chain = :c ORDER BY chain_seq", {"c": ACCT}
    )
    assert [r["chain_seq"] for r in rows] == [1, 2, 3, 4] and [r["id"] for r in rows] == ids
    assert rows[0]["prev_hash"] == opening[0]["row_hash"]  # linked to its opening
    code, rep = verify(db)
    assert code == 0 and rep["intact"] and rep["rows"] == 8, rep
    assert rep["head"]["chain_seq"] == 4
    assert rep["chains"] == {
        ACCT: {"rows": 4, "head": {"chain_seq": 4, "row_hash": rows[-1]["row_hash"]}}
    }
    text = followup("audit", "verify", "--db", db.url)
    assert text.returncode == 0 and f"head of {ACCT}: 4 {rows[-1]['row_hash']}" in text.stdout
    other = store.clone()
    try:
        auditchain.open_chain(other, ACCT)  # opened once, whoever asks again
    finally:
        other.close()
    assert len(store.rows("SELECT id FROM followup_audit WHERE action = 'audit_chain_open'")) == 1


@pytest.mark.parametrize(
    "tampering",
    ["changed", "deleted", "inserted", "reordered", "truncated", "whole_chain", "head", "forged"],
)
def test_account_chain__verify_finds_every_kind_of_tampering(
    db: LeadDB, store: SqlStore, tampering: str
) -> None:
    write_rows(store, 2)
    ids = write_chain(store, ACCT, 5)
    assert verify(db)[0] == 0
    if tampering == "changed":
        tamper(db, "UPDATE followup_audit SET actor = 'nobody' WHERE id = ?", (ids[1],))
        expected = [("changed", [ids[1]])]
    elif tampering == "deleted":
        tamper(db, "DELETE FROM followup_audit WHERE id = ?", (ids[2],))
        expected = [("deleted", [ids[1], ids[3]])]
    elif tampering == "inserted":  # a row given the next place of the chain by hand
        tamper(
            db,
            "INSERT INTO followup_audit (chain, chain_seq, at, actor, action, prev_hash, row_hash)"
            " VALUES (?, 6, ?, 'ops', 'send', ?, ?)",
            (
                ACCT,
                "2026-03-02T09:00:00.000000Z" if db.backend == "sqlite" else NOW,
                "0" * 64,
                "1" * 64,
            ),
        )
        added = db.query("SELECT id FROM followup_audit WHERE chain_seq = 6 AND chain <> ''")[0][
            "id"
        ]
        expected = [("relinked", [ids[4], added]), ("changed", [added]), ("head", [added])]
    elif tampering == "reordered":  # two rows swap places
        tamper(
            db,
            "UPDATE followup_audit SET chain_seq = -chain_seq WHERE id IN (?, ?)",
            (ids[1], ids[2]),
        )
        tamper(db, "UPDATE followup_audit SET chain_seq = 3 WHERE id = ?", (ids[1],))
        tamper(db, "UPDATE followup_audit SET chain_seq = 2 WHERE id = ?", (ids[2],))
        expected = [("relinked", [ids[0], ids[2]]), ("changed", [ids[2]]),
                    ("relinked", [ids[2], ids[1]]), ("changed", [ids[1]]),
                    ("relinked", [ids[1], ids[3]])]  # fmt: skip
    elif tampering == "truncated":
        tamper(db, "DELETE FROM followup_audit WHERE id >= ?", (ids[3],))
        expected = [("truncated", [ids[2]])]
    elif tampering == "whole_chain":  # its rows and its head: its opening still names it
        tamper(db, "DELETE FROM followup_audit WHERE chain = ?", (ACCT,))
        tamper(db, "DELETE FROM followup_audit_head WHERE chain = ?", (ACCT,))
        expected = [("head", [])]
    elif tampering == "head":
        tamper(db, "DELETE FROM followup_audit_head WHERE chain = ?", (ACCT,))
        expected = [("head", [])]
    else:  # rows moved to a chain nobody opened
        tamper(db, "UPDATE followup_audit SET chain = 'account:evil' WHERE chain = ?", (ACCT,))
        tamper(db, "UPDATE followup_audit_head SET chain = 'account:evil' WHERE chain = ?", (ACCT,))
        expected = [("unopened", []), ("head", [])]
    code, rep = verify(db)
    assert code == 3 and not rep["intact"]
    assert kinds(rep) == expected, rep
    if tampering != "forged":
        assert ACCT in " ".join(p["message"] for p in rep["problems"])
    if tampering == "head":  # the next run's opening puts the head back from the last row
        write_chain(store, ACCT, 1)
        code, rep = verify(db)
        assert code == 0 and rep["chains"][ACCT]["rows"] == 6, rep
        assert len(db.query("SELECT id FROM followup_audit WHERE action = 'audit_chain_open'")) == 1


def test_account_chain__the_head_noted_before_finds_a_rewritten_chain(
    db: LeadDB, store: SqlStore
) -> None:
    write_chain(store, ACCT, 3)
    code, rep = verify(db)
    main, acct = rep["head"]["row_hash"], rep["chains"][ACCT]["head"]["row_hash"]
    assert verify(db, "--head", main, "--head", acct)[0] == 0
    opening = store.rows("SELECT row_hash FROM followup_audit WHERE chain = ''")[-1]["row_hash"]
    prev = opening  # the account chain rewritten whole, hashes and head recomputed
    for r in store.rows(
        "SELECT * FROM followup_audit WHERE chain = :c ORDER BY chain_seq", {"c": ACCT}
    ):
        r.update(actor="nobody", prev_hash=prev)
        prev = auditchain.row_hash(r)
        tamper(
            db,
            "UPDATE followup_audit SET actor = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
            ("nobody", r["prev_hash"], prev, r["id"]),
        )
    tamper(db, "UPDATE followup_audit_head SET row_hash = ? WHERE chain = ?", (prev, ACCT))
    assert verify(db)[0] == 0  # consistent: only the heads kept elsewhere show it
    code, rep = verify(db, "--head", main, "--head", acct)
    assert code == 3 and rep["anchors"] == [
        {"row_hash": main, "found": True},
        {"row_hash": acct, "found": False},
    ], rep
    text = followup("audit", "verify", "--db", db.url, "--head", main, "--head", acct)
    assert text.returncode == 3 and f"--head {acct}: NOT found" in text.stdout


def test_account_chain__writers_of_several_chains_at_once_leave_every_chain_valid(
    db: LeadDB,
) -> None:
    """Four connections: two append to their accounts' chains the send path's way (one of
    them opening its chain while the others write), two to the main chain; one in seven
    transactions rolls back. Every chain is whole."""
    first = open_store(db.url)
    stores = [first, first.clone(), first.clone(), first.clone()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))
    auditchain.open_chain(first, "account:k1")

    def write(s: SqlStore, k: int) -> None:
        try:
            barrier.wait(timeout=30)
            chain = auditchain.account_chain(f"k{k}") if k % 2 else ""
            auditchain.open_chain(s, chain)
            for i in range(20):
                try:
                    with s.pipelined() if k % 2 else nullcontext(), s.transaction():
                        s.audit_later("send", NOW, "ops", f"run{k}", f"lead{k}_{i}", chain=chain)()
                        if i % 7 == 3:
                            raise LookupError("rolled back")
                except LookupError:
                    pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        rows = first.rows("SELECT chain, chain_seq FROM followup_audit ORDER BY chain, chain_seq")
        by: dict[str, list[int]] = {}
        for r in rows:
            by.setdefault(r["chain"], []).append(r["chain_seq"])
        assert by["account:k1"] == by["account:k3"] == list(range(1, 18))
        assert by[""] == list(range(1, 2 * 17 + 3))  # and the two openings
        rep = auditverify.verify(first)
        assert rep.intact and rep.rows == 4 * 17 + 2, rep.problems
    finally:
        for s in stores:
            s.close()


def test_erase__scrubs_the_persons_rows_in_account_chains_and_records_where(
    db: LeadDB, store: SqlStore
) -> None:
    db.insert(lead("z1", recipient_id="ig_ZOLT"))
    write_chain(store, ACCT, 4, lead_id="z1")  # z1 is the lead of rows 2 and 4
    store.audit("optout", NOW, "ops", lead_id="z1", detail={"reason": "Zoltana phoned"})
    counts = erase_lead(store, "z1", "ops", NOW, purge=False)
    assert counts["audit_rows_scrubbed"] == 3
    erased = db.query("SELECT detail FROM followup_audit WHERE action = 'erase'")[0]["detail"]
    assert json.loads(erased)["audit_scrubbed_chains"] == {ACCT: [2, 4]}
    code, rep = verify(db)
    assert code == 0 and rep["scrubbed_by_erasure"] == 3, rep
    # a detail of an account chain removed by hand is still tampering
    ids = db.query("SELECT id FROM followup_audit WHERE chain = ? AND chain_seq = 1", (ACCT,))
    tamper(
        db,
        "UPDATE followup_audit SET detail = NULL, detail_salt = NULL WHERE id = ?",
        (ids[0]["id"],),
    )
    assert kinds(verify(db)[1]) == [("scrubbed_unrecorded", [ids[0]["id"]])]


def test_migration_0014__a_single_chain_store_verifies_and_grows_chains(
    db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store the version before 0014 wrote (one chain, its head id 1): after the upgrade
    its rows verify as they are, new rows go to the main chain and to account chains, and
    an old row changed by hand is still found."""
    import followup_cli.store.migrating as migrating

    before = [m for m in MIGRATIONS if m[0] < "0014"]
    monkeypatch.setattr(migrating, "MIGRATIONS", before)
    old = open_store(db.url)
    prev = auditchain.GENESIS
    try:
        for i in range(1, 5):  # as 0013's writers chained them
            row = {
                "chain_seq": i, "at": NOW + timedelta(minutes=i), "actor": "ops", "action": "send",
                "run_id": "r0", "lead_id": f"o{i}", "account_id": "acct_a", "sequence_id": "s1",
                "message_id": "m1", "detail": None, "detail_salt": None, "detail_digest": None,
                "db_role": None, "prev_hash": prev,
            }  # fmt: skip
            prev = row["row_hash"] = auditchain.row_hash(row)
            old.execute(
                "INSERT INTO followup_audit (chain_seq, at, actor, action, run_id, lead_id, "
                "account_id, sequence_id, message_id, detail, detail_salt, detail_digest, "
                "db_role, prev_hash, row_hash) VALUES (:chain_seq, :at, :actor, :action, "
                ":run_id, :lead_id, :account_id, :sequence_id, :message_id, :detail, "
                ":detail_salt, :detail_digest, :db_role, :prev_hash, :row_hash)",
                row,
            )
        old.execute(
            "UPDATE followup_audit_head SET chain_seq = 4, row_hash = :h WHERE id = 1", {"h": prev}
        )
    finally:
        old.close()
    monkeypatch.setattr(migrating, "MIGRATIONS", MIGRATIONS)
    auditchain._SEEN.clear()
    new = open_store(db.url)
    try:
        rep = auditverify.verify(new)
        assert rep.intact and rep.rows == 4 and rep.head_seq == 4, rep.problems
        new.audit("optout", NOW, "ops", lead_id="n1", detail={"y": 2})
        write_chain(new, ACCT, 2)
        rep = auditverify.verify(new)
        assert rep.intact and rep.rows == 8 and rep.head_seq == 6, rep.problems
        assert rep.chains == {ACCT: (2, 2, rep.chains[ACCT][2])}
    finally:
        new.close()
    tamper(db, "UPDATE followup_audit SET actor = 'nobody' WHERE lead_id = 'o2'")
    assert [k for k, _ in kinds(verify(db)[1])] == ["changed"]


def test_a_run__writes_each_accounts_rows_to_its_own_chain(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    """The engine's account transactions (claims, attempts, outcomes) append to the account's
    chain, opened once in the main chain; the run's other rows (config seen) to the main one;
    a second run goes on in the same chain."""
    cfg = graph_config(tmp_path / "sequences.yaml", graph.base_url)
    silent = {
        "last_inbound_at": NOW - timedelta(hours=5),
        "last_outbound_at": NOW - timedelta(hours=4),
    }
    db.insert(lead("e1", **silent), lead("e2", **silent))
    env = {"FOLLOWUP_TOKEN_A": "tok-a"}
    for at in (NOW, NOW + timedelta(hours=1)):
        db.insert(lead(f"e{at.hour}", **{k: v + (at - NOW) for k, v in silent.items()}))
        r = followup("run", "--config", str(cfg), "--db", db.url, "--now", at.isoformat(), env=env)
        assert r.returncode == 0, r.stderr
    rows = db.query("SELECT chain, action, lead_id FROM followup_audit ORDER BY chain, chain_seq")
    sends = [(r["chain"], r["lead_id"]) for r in rows if r["action"] == "send"]
    assert sorted(sends) == [(ACCT, "e1"), (ACCT, "e2"), (ACCT, "e8"), (ACCT, "e9")]
    assert [r["action"] for r in rows if r["chain"] == ""].count("audit_chain_open") == 1
    assert {r["chain"] for r in rows if r["action"] == "config_seen"} == {""}
    code, rep = verify(db)
    assert code == 0 and rep["chains"][ACCT]["rows"] == 4, rep
