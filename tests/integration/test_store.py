"""The store on both backends: migrations, the claim key, lead locks, the rate window,
enrollments, opt-outs, the candidate prefilter and the lead table as a host app keeps it.

Every test runs on SQLite and on Postgres through the ``db`` fixture; the few that test a
backend-specific mechanism (advisory locks, garbage in untyped SQLite columns) say so.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS
from followup_cli.errors import StoreConfigError, StoreError
from followup_cli.models import PENDING, SENT, UNKNOWN, parse_lead
from followup_cli.rules import keyword_optout
from followup_cli.store import SqlStore, open_store
from followup_cli.store.migrations import MIGRATIONS
from tests.helpers import LeadDB, lead

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# Tests of one backend's own mechanism (the ``db`` fixture, narrowed to one backend).
POSTGRES_ONLY = pytest.mark.parametrize("db", ["postgres"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
TOOL_TABLES = {
    "followup_migrations",
    "followup_runs",
    "followup_enrollments",
    "followup_tracking",
    "followup_optouts",
    "followup_audit",
    "followup_config_seen",
}


@pytest.fixture
def store(db: LeadDB) -> Iterator[SqlStore]:
    s = open_store(db.url)
    try:
        yield s
    finally:
        s.close()


def claim_row(lead_id: str, message_id: str = "m1", **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "lead_id": lead_id,
        "sequence_id": "s1",
        "message_id": message_id,
        "step": 1,
        "account_id": "acct_a",
        "recipient_id": f"ig_{lead_id}",
        "status": PENDING,
        "claimed_at": NOW,
        "run_id": "r1",
        "updated_at": NOW,
    }
    row.update(over)
    return row


def tables(db: LeadDB) -> set[str]:
    if db.backend == "sqlite":
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r["name"] for r in rows}
    rows = db.query(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ?",
        (db.schema,),
    )
    return {r["name"] for r in rows}


# ------------------------------------------------------------------ migrations


def test_migrate__records_every_step_and_a_second_run_applies_nothing(db: LeadDB) -> None:
    first = open_store(db.url, migrate=False)
    try:
        assert first.migrate() == [name for name, _ in MIGRATIONS]
        assert first.migrate() == []
    finally:
        first.close()
    second = open_store(db.url)  # migrates again on open: nothing to do, no error
    try:
        assert second.migrate() == []
        assert second.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    finally:
        second.close()
    assert TOOL_TABLES <= tables(db)
    recorded = db.query("SELECT name, applied_at FROM followup_migrations ORDER BY name")
    assert [r["name"] for r in recorded] == sorted(name for name, _ in MIGRATIONS)
    assert all(r["applied_at"] is not None for r in recorded)


def test_migrate__names_are_numbered_unique_and_in_order() -> None:
    names = [name for name, _ in MIGRATIONS]
    assert all(name[:4].isdigit() and name[4] == "_" for name in names)
    numbers = [int(name[:4]) for name in names]
    # applied in list order, listed by name: one number per step, in order, no gaps
    assert numbers == list(range(1, len(names) + 1)), names


# ---------------------------------------------------------------------- claims


def test_claim__the_same_step_cannot_be_claimed_twice(store: SqlStore) -> None:
    first = store.insert_followup(claim_row("a1"))
    assert first is not None
    assert store.insert_followup(claim_row("a1", run_id="r2")) is None
    # another step, another lead: free
    assert store.insert_followup(claim_row("a1", "m2")) not in (None, first)
    assert store.insert_followup(claim_row("a2")) is not None
    row = store.followup(first)
    assert row is not None
    assert (row["status"], row["run_id"], row["claimed_at"]) == (PENDING, "r1", NOW)


def test_claim__a_batch_insert_gives_each_new_step_its_id_and_none_to_a_taken_one(
    store: SqlStore,
) -> None:
    """The claim batch's one INSERT (``insert_followups``): a step another run claimed first
    gets None (the batch drops it), the others the id ``followup`` reads back; the batch's
    enrollments are started by one statement too, an existing one left as it was."""
    taken = store.insert_followup(claim_row("a2", run_id="r0"))
    rows = [claim_row("a1"), claim_row("a2"), claim_row("a3", "m2", recipient_id="ig_a3")]
    store.start_enrollment("a2", "s1", "acct_a", NOW - timedelta(hours=9), NOW)
    store.start_enrollments(
        [
            ("a1", "s1", "acct_a", NOW - timedelta(hours=5), None),
            ("a2", "s1", "acct_a", NOW - timedelta(hours=5), None),
        ],
        NOW,
    )

    ids = store.insert_followups(rows)

    assert ids[1] is None and None not in (ids[0], ids[2]) and taken not in ids
    for fid, row in ((ids[0], rows[0]), (ids[2], rows[2])):
        got = store.followup(fid)
        assert got is not None
        assert (got["lead_id"], got["message_id"], got["run_id"]) == (
            row["lead_id"],
            row["message_id"],
            "r1",
        )
    assert store.followup(ids[2])["recipient_id"] == "ig_a3"
    anchors = {e["lead_id"]: e["anchor_at"] for e in store.enrollments()}
    assert anchors == {"a1": NOW - timedelta(hours=5), "a2": NOW - timedelta(hours=9)}


def test_claim__completion_only_touches_a_row_in_the_expected_status(store: SqlStore) -> None:
    fid = store.insert_followup(claim_row("a1"))
    assert fid is not None
    assert store.mark_unknown(fid, "its run died", NOW)
    assert not store.mark_unknown(fid, "again", NOW)
    assert store.update_followup(fid, {"status": SENT}, only_status=PENDING) == 0
    assert store.delete_followup(fid, PENDING) == 0
    row = store.followup(fid)
    assert row is not None and (row["status"], row["reason"]) == (UNKNOWN, "its run died")


def test_open_claims__lists_pending_rows_with_their_run(store: SqlStore) -> None:
    store.start_run("r1", "host-1", 4242, "cron", NOW, NOW)
    pending = store.insert_followup(claim_row("a1"))
    done = store.insert_followup(claim_row("a2", status=SENT))
    orphan = store.insert_followup(claim_row("a3", run_id="never-started"))
    claims = {c["id"]: c for c in store.open_claims()}
    assert set(claims) == {pending, orphan}
    assert done not in claims
    assert (claims[pending]["host"], claims[pending]["pid"]) == ("host-1", 4242)
    assert claims[pending]["heartbeat_at"] == NOW and claims[pending]["finished_at"] is None
    assert claims[orphan]["host"] is None and claims[orphan]["heartbeat_at"] is None


# --------------------------------------------------------------------- lead_tx


@POSTGRES_ONLY
def test_lead_tx__postgres_skips_a_lead_another_worker_holds_and_takes_another(db: LeadDB) -> None:
    a, b = open_store(db.url), open_store(db.url)
    try:
        with a.lead_tx("L1", "acct_a") as got_a:
            assert got_a
            with b.lead_tx("L1", None) as got_b:
                assert got_b is False
            with b.lead_tx("L2", None) as got_b2:
                assert got_b2 is True
                b.insert_followup(claim_row("L2"))
            a.insert_followup(claim_row("L1"))
        # released at commit: the lead is free again, and both claims were committed
        with b.lead_tx("L1", "acct_a") as got_again:
            assert got_again is True
        assert {r["lead_id"] for r in b.followups()} == {"L1", "L2"}
    finally:
        a.close()
        b.close()


@POSTGRES_ONLY
def test_lead_tx__postgres_account_lock_serialises_the_rate_window(db: LeadDB) -> None:
    import threading

    a, b = open_store(db.url), open_store(db.url)
    order: list[str] = []
    entered = threading.Event()
    try:

        def second() -> None:
            entered.set()
            with b.lead_tx("L2", "acct_a") as got:
                assert got
                order.append(f"b saw {b.recent_sends('acct_a', NOW - timedelta(hours=1))}")

        with a.lead_tx("L1", "acct_a") as got:
            assert got
            t = threading.Thread(target=second)
            t.start()
            entered.wait(5)
            t.join(0.5)  # b blocks on the account lock while a holds it
            assert t.is_alive()
            a.insert_followup(claim_row("L1"))
            order.append("a claimed")
        t.join(10)
        assert not t.is_alive()
        assert order == ["a claimed", "b saw 1"]
    finally:
        a.close()
        b.close()


def test_lead_tx__a_failure_inside_rolls_the_claim_back(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.lead_tx("a1", "acct_a") as got:
        assert got
        store.insert_followup(claim_row("a1"))
        raise RuntimeError("boom")
    assert store.followups(lead_id="a1") == []
    with store.lead_tx("a1", "acct_a") as got:
        assert got
        assert store.insert_followup(claim_row("a1")) is not None
    assert len(store.followups(lead_id="a1")) == 1


@SQLITE_ONLY
def test_lead_tx__sqlite_serialises_writers_with_begin_immediate(db: LeadDB) -> None:
    a, b = open_store(db.url), open_store(db.url)
    try:
        b.conn.execute("PRAGMA busy_timeout=100")
        with a.lead_tx("L1", "acct_a") as got:
            assert got
            a.insert_followup(claim_row("L1"))
            with pytest.raises(StoreError, match="write transaction"), b.lead_tx("L2", None):
                pass
        with b.lead_tx("L2", None) as got:
            assert got
        journal = a.conn.execute("PRAGMA journal_mode").fetchone()
        assert next(iter(journal.values())) == "wal"
    finally:
        a.close()
        b.close()


# ----------------------------------------------------------------- rate window


def test_recent_sends__counts_claims_of_the_account_inside_the_sliding_window(
    store: SqlStore,
) -> None:
    since = NOW - timedelta(hours=1)
    inside = NOW - timedelta(minutes=59)
    rows = [
        claim_row("in_pending", claimed_at=inside),
        claim_row("in_sent", claimed_at=NOW, status=SENT),
        claim_row("in_unknown", claimed_at=inside, status=UNKNOWN),
        claim_row("in_failed", claimed_at=inside, status="failed"),
        claim_row("in_skipped", claimed_at=inside, status="skipped"),
        claim_row("edge", claimed_at=since, status=SENT),  # exactly one hour ago: out
        claim_row("old", claimed_at=NOW - timedelta(hours=2), status=SENT),
        claim_row("other", claimed_at=inside, status=SENT, account_id="acct_b"),
    ]
    for r in rows:
        assert store.insert_followup(r) is not None
    assert store.recent_sends("acct_a", since) == 3
    assert store.recent_sends("acct_b", since) == 1
    assert store.recent_sends("acct_c", since) == 0
    assert store.oldest_recent_send("acct_a", since) == inside
    # the window slides: half an hour later only the claim made at NOW is inside
    assert store.recent_sends("acct_a", since + timedelta(minutes=30)) == 1


# ----------------------------------------------------------------- enrollments


def test_enrollments__start_and_end_are_idempotent(store: SqlStore) -> None:
    anchor = NOW - timedelta(hours=5)
    assert store.start_enrollment("a1", "s1", "acct_a", anchor, NOW)
    assert not store.start_enrollment("a1", "s1", "acct_a", anchor + timedelta(hours=1), NOW)
    assert store.start_enrollment("a1", "s2", "acct_a", anchor, NOW, holdout=True)
    active = store.enrollments()
    assert [(e["lead_id"], e["sequence_id"], e["anchor_at"]) for e in active] == [
        ("a1", "s1", anchor),
        ("a1", "s2", anchor),
    ]
    assert store.end_enrollment("a1", "s1", "replied", NOW)
    assert not store.end_enrollment("a1", "s1", "converted", NOW + timedelta(hours=1))
    assert not store.end_enrollment("nobody", "s1", "replied", NOW)
    assert [e["sequence_id"] for e in store.enrollments()] == ["s2"]
    ended = [e for e in store.enrollments(active=False) if e["sequence_id"] == "s1"]
    assert (ended[0]["ended_at"], ended[0]["ended_reason"]) == (NOW, "replied")
    state = store.lead_state("a1")
    assert {(e.sequence_id, e.holdout, e.ended_reason) for e in state.enrollments} == {
        ("s1", False, "replied"),
        ("s2", True, None),
    }


# ---------------------------------------------------------------------- optouts


def test_optouts__add_is_idempotent_and_visible_in_the_lead_state(store: SqlStore) -> None:
    assert store.add_optout("a1", "asked by phone", "cli", "ops", NOW)
    assert not store.add_optout("a1", "again", "keyword", "ops", NOW)
    assert store.is_opted_out("a1") and not store.is_opted_out("a2")
    [row] = store.optouts()
    assert (row["lead_id"], row["reason"], row["source"], row["created_at"]) == (
        "a1",
        "asked by phone",
        "cli",
        NOW,
    )
    state = store.lead_states(["a1", "a2"])
    assert state["a1"].opted_out and state["a1"].optout_reason == "asked by phone"
    assert not state["a2"].opted_out
    assert store.remove_optout("a1") and not store.remove_optout("a1")
    assert not store.is_opted_out("a1")


def test_lead_states__gathers_tracking_enrollments_and_optouts_per_lead(store: SqlStore) -> None:
    ids = [f"x{i:04d}" for i in range(1203)]  # more than two IN-list chunks
    for i in (0, 600, 1202):
        store.insert_followup(claim_row(ids[i], status=SENT, sent_at=NOW))
    store.start_enrollment(ids[1202], "s1", "acct_a", NOW - timedelta(hours=4), NOW)
    store.add_optout(ids[601], None, "cli", "ops", NOW)
    states = store.lead_states(ids)
    assert set(states) == set(ids)
    assert [len(states[i].followups) for i in (ids[0], ids[1], ids[600], ids[1202])] == [1, 0, 1, 1]
    assert states[ids[600]].followups[0].at == NOW
    assert states[ids[1202]].active_enrollment() is not None
    assert states[ids[601]].opted_out and not states[ids[602]].opted_out


# ------------------------------------------------------------ candidate prefilter


def test_candidates__keep_what_the_rules_could_act_on_and_drop_the_rest(
    db: LeadDB, store: SqlStore
) -> None:
    t = NOW - timedelta(hours=6)
    db.insert(
        lead("due", last_inbound_at=t, last_outbound_at=t + timedelta(minutes=5)),
        lead("never_wrote", last_inbound_at=None, last_outbound_at=t),
        lead("same_instant", last_inbound_at=t, last_outbound_at=t),
        lead("lead_wrote_last", last_inbound_at=t + timedelta(hours=1), last_outbound_at=t),
        lead("converted_at", converted_at=t, last_inbound_at=t, last_outbound_at=t),
        lead("converted_status", status="Converted", last_inbound_at=t, last_outbound_at=t),
        lead("opted_out", last_inbound_at=t, last_outbound_at=t),
        lead("score_high", score=9, last_inbound_at=t, last_outbound_at=t),
        lead("score_low", score=1, last_inbound_at=t, last_outbound_at=t),
        lead("no_outbound", last_inbound_at=t, last_outbound_at=None),
        lead("other_account", account_id="acct_b", last_inbound_at=t, last_outbound_at=t),
        # An enrollment that ended during the current silence covers it: nothing to do.
        lead("ended_this_silence", last_inbound_at=t, last_outbound_at=t),
        # It ended in an earlier silence; the lead wrote since: a new silence, a candidate.
        lead("ended_before_reply", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)),
        # An active enrollment keeps the lead even when it left the score range (to end it).
        lead("active_out_of_range", score=9, last_inbound_at=t, last_outbound_at=t),
        lead("active_other_account", account_id="acct_b", last_inbound_at=t, last_outbound_at=t),
    )
    store.add_optout("opted_out", None, "cli", "ops", NOW)
    store.start_enrollment("ended_this_silence", "s1", "acct_a", t, NOW)
    store.end_enrollment("ended_this_silence", "s1", "completed", NOW)
    store.start_enrollment("ended_before_reply", "s1", "acct_a", t - timedelta(days=2), NOW)
    store.end_enrollment("ended_before_reply", "s1", "replied", NOW - timedelta(days=1))
    store.start_enrollment("active_out_of_range", "s1", "acct_a", t, NOW)
    store.start_enrollment("active_other_account", "s1", "acct_b", t, NOW)

    got = [r["id"] for r in store.candidate_leads("acct_a", 2, 6)]
    assert got == sorted(
        ["due", "never_wrote", "same_instant", "ended_before_reply", "active_out_of_range"]
    )
    assert [r["id"] for r in store.candidate_leads("acct_b", 2, 6)] == [
        "active_other_account",
        "other_account",
    ]


def test_candidates__a_stop_is_kept_even_when_the_lead_wrote_last(
    db: LeadDB, store: SqlStore
) -> None:
    """The opt-out keyword must be seen at once, also from a lead who wrote last (who is
    otherwise waiting for a human and filtered out), and only until it is recorded."""
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    db.insert(
        lead("said_stop", last_inbound_text="Stop.", **wrote_last),
        lead("said_unsubscribe", last_inbound_text="pls UNSUBSCRIBE me", score=9, **wrote_last),
        lead("said_no_more", last_inbound_text="No more messages!", **wrote_last),
        lead("said_hello", last_inbound_text="hello, price?", **wrote_last),
        lead("percent_is_not_a_wildcard", last_inbound_text="50% off?", **wrote_last),
        lead("already_out", last_inbound_text="stop", **wrote_last),
    )
    store.add_optout("already_out", "keyword: stop", "keyword", "ops", NOW)
    keywords = ("stop", "unsubscribe", "no more messages", "100%")
    got = [r["id"] for r in store.candidate_leads("acct_a", 2, 6, keywords=keywords)]
    assert got == ["said_no_more", "said_stop", "said_unsubscribe"]
    assert store.candidate_leads("acct_a", 2, 6) == [], "without keywords: waiting for a human"


def test_candidates__a_stop_in_any_unicode_form_is_kept_when_the_lead_wrote_last(
    db: LeadDB, store: SqlStore
) -> None:
    """The prefilter sees what ``keyword_optout`` sees (NFKC, case-folded, accents dropped),
    not only what SQL's ``lower()`` folds: full-width letters, accents on consonants, a
    ligature, a typographic apostrophe."""
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    texts = {
        "full_width": "ＳＴＯＰ",
        "full_width_lower": "ｓｔｏｐ please",
        "accented": "\u015cTOP",  # a precomposed accent on a consonant
        "combining": "S\u0301TOP",  # a combining one
        "ligature": "\ufb06op",
        "phrase": "ＮＯ ＭÁＳ ＭＥＮＳＡＪＥＳ",
        "apostrophe": "Don\u2019t text me",
        "not_a_stop": "¿ＳＴＯＰＰＥＲ? ＳＴＡＹ 😊",
    }
    db.insert(*(lead(k, last_inbound_text=v, **wrote_last) for k, v in texts.items()))
    keywords = ("stop", "no más mensajes", "don't text me")
    caught = {k for k, v in texts.items() if keyword_optout(v, keywords)}
    assert caught == set(texts) - {"not_a_stop"}  # the rules' own verdict
    got = {r["id"] for r in store.candidate_leads("acct_a", 2, 6, keywords=keywords)}
    assert caught <= got, sorted(caught - got)


def test_candidates__every_default_keyword_is_kept_and_ordinary_words_are_not_on_sqlite(
    db: LeadDB, store: SqlStore
) -> None:
    """Every default keyword, in capitals, with an accent or as the rule reads it, keeps a
    lead who wrote last a candidate; where the patterns are exact (SQLite; Postgres 13+ on a
    UTF-8 database) words that only share a keyword's consonants ("para", "trabajo") do
    not."""
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    keywords = (*DEFAULT_OPTOUT_KEYWORDS, "schluß")  # ß: a fold NFKD does not give
    texts = {f"kw{i}": f"ok, {k.upper()}!" for i, k in enumerate(keywords)}
    texts.update(backtick="DON`T MESSAGE ME", accent="Quiero PARÁR ya", sharp_s="SCHLUẞ!")
    ordinary = {"para": "para el trabajo, gracias", "paper": "send the paper"}
    db.insert(
        *(lead(k, last_inbound_text=v, **wrote_last) for k, v in {**texts, **ordinary}.items())
    )
    assert all(keyword_optout(v, keywords) for v in texts.values())
    assert not any(keyword_optout(v, keywords) for v in ordinary.values())
    got = set()
    after = ""
    while page := store.candidate_leads("acct_a", 2, 6, after, 500, keywords=keywords):
        got |= {r["id"] for r in page}
        after = store.page_key(page[-1]["id"])
    assert set(texts) <= got, sorted(set(texts) - got)
    if store.keyword_like_exact:
        assert not got & set(ordinary)


@pytest.mark.parametrize("extra", [(), ("50%_off", "back\\slash")])
def test_candidates__keywords_with_like_wildcards_or_backslashes_match_as_written(
    db: LeadDB, store: SqlStore, extra: tuple[str, ...]
) -> None:
    """The patterns' ESCAPE is written only when a keyword holds %, _ or a backslash (SQLite:
    a two-argument LIKE costs less); with or without it a text holding a keyword is kept,
    a backslash in a text is a plain character, and the wildcards of such a keyword match
    themselves only."""
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    keywords = (*DEFAULT_OPTOUT_KEYWORDS, *extra)
    texts = {"stop": "C:\\temp\\ STOP please", "slash_stop": "\\stop\\"}
    if extra:
        texts.update(pct="GET 50%_OFF now", slash="a back\\slash b")
    ordinary = {"plain": "how much? C:\\temp", "pct_like": "get 50x off now"}
    db.insert(
        *(lead(k, last_inbound_text=v, **wrote_last) for k, v in {**texts, **ordinary}.items())
    )
    assert all(keyword_optout(v, keywords) for v in texts.values())
    assert not any(keyword_optout(v, keywords) for v in ordinary.values())
    got = {r["id"] for r in store.candidate_leads("acct_a", 2, 6, keywords=keywords)}
    assert set(texts) <= got, sorted(set(texts) - got)
    if store.keyword_like_exact:
        assert not got & set(ordinary), sorted(got & set(ordinary))


def test_candidates__without_exact_patterns_every_non_ascii_stop_is_kept(
    db: LeadDB, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the store cannot fold non-ASCII text in SQL (Postgres before 13, or not UTF-8:
    the coarse patterns), a lead who wrote last "ＳＴＯＰ", "sto\u0301p" or "SCHLUẞ" is
    still a candidate (forced here on a server that could)."""
    monkeypatch.setattr(type(store), "keyword_like_exact", False)
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    keywords = (*DEFAULT_OPTOUT_KEYWORDS, "schluß", "quit")
    texts = {
        "wide": "ＳＴＯＰ",
        "mark": "sto\u0301p por favor",
        "struck": "s\u0336t\u0336o\u0336p\u0336",
        "sharp": "SCHLUẞ!",
        "dotted": "QUİT",
        "ligature": "ﬆop",
        "emoji": "🛑stop🛑",
        "wide_phrase": "ｎｏ ｍáｓ ｍｅｎｓａｊｅｓ",
    }
    db.insert(*(lead(k, last_inbound_text=v, **wrote_last) for k, v in texts.items()))
    assert all(keyword_optout(v, keywords) for v in texts.values())
    got = {r["id"] for r in store.candidate_leads("acct_a", 2, 6, keywords=keywords)}
    assert set(texts) <= got, sorted(set(texts) - got)


def test_candidates__a_keyword_in_a_blob_or_after_a_nul_is_kept(
    db: LeadDB, store: SqlStore
) -> None:
    """A last message SQLite holds as a blob of UTF-8 (the lead parser decodes it; length()
    counts its bytes, so it looked like ASCII text to the LIKEs) or with a NUL before the
    keyword (length() and LIKE stop there) is matched by the rules themselves; Postgres
    holds neither: the same texts as plain text there. Ordinary non-ASCII text is not kept."""
    t = NOW - timedelta(hours=6)
    wrote_last = {"last_inbound_at": t + timedelta(hours=1), "last_outbound_at": t}
    texts = {
        "blob_wide": "ＳＴＯＰ",
        "blob_accent": "Quiero PARÁR ya",
        "blob_ascii": "please stop",
        "nul": "ok\x00 STOP",
        "blob_nul": "ok\x00 ＳＴＯＰ",
    }
    ordinary = {"accented": "¿cuánto cuesta el envío? 😊", "blob_plain": "sí, gracias"}
    sqlite = db.backend == "sqlite"

    def stored(k: str, v: str) -> object:
        if not sqlite:
            return v.replace("\x00", " ")
        return v.encode() if k.startswith("blob") else v

    db.insert(
        *(
            lead(k, last_inbound_text=stored(k, v), **wrote_last)
            for k, v in {**texts, **ordinary}.items()
        )
    )
    assert all(keyword_optout(v, DEFAULT_OPTOUT_KEYWORDS) for v in texts.values())
    assert not any(keyword_optout(v, DEFAULT_OPTOUT_KEYWORDS) for v in ordinary.values())
    got = {r["id"] for r in store.candidate_leads("acct_a", 2, 6, keywords=DEFAULT_OPTOUT_KEYWORDS)}
    assert set(texts) <= got, sorted(set(texts) - got)
    if store.keyword_like_exact:
        assert not got & set(ordinary)


def _ascii(text: str) -> str:
    return "".join(ch if ch.isascii() else "?" for ch in text)


def test_candidates__postgres_folds_every_character_as_the_rules_do(
    db: LeadDB, store: SqlStore
) -> None:
    """Exact keyword patterns are safe on Postgres only if its fold of a non-ASCII text
    gives the ASCII the rules' ``fold_text`` gives: checked for every assigned character
    (NFKD, lower() in "C", ß and ẞ to "ss", marks dropped, apostrophes plain)."""
    if db.backend != "postgres":
        pytest.skip("SQLite hands every non-ASCII text to the rules themselves")
    from followup_cli.rules import APOSTROPHES, fold_text
    from followup_cli.store.postgres_candidates import _combining_class, pg_fold_lower

    chars = [
        chr(c)
        for c in range(0x80, 0x110000)
        if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"
    ]
    sql = (
        f"SELECT t, translate(regexp_replace({pg_fold_lower('t')}, :marks, '', 'g'), "
        ":fa, :ta) AS f FROM unnest(CAST(:chars AS text[])) AS t"
    )
    params = {"marks": _combining_class(), "fa": APOSTROPHES, "ta": "'" * len(APOSTROPHES)}
    differ = []
    for at in range(0, len(chars), 50_000):
        for r in store.query(sql, {**params, "chars": chars[at : at + 50_000]}):
            rules = fold_text(r["t"])
            # a pattern matches a non-ASCII letter with "_": only the ASCII must agree
            if any(ch.isascii() for ch in rules) and _ascii(r["f"]) != _ascii(rules):
                differ.append((hex(ord(r["t"])), rules, r["f"]))
    # U+037A (ypogegrammeni): " ι" by the rules, " " here: a Greek keyword's iota only
    assert [d for d in differ if d[0] != "0x37a"] == []
    assert store.keyword_like_exact  # this server (13+, UTF-8) uses the exact patterns


def test_candidates__page_through_by_id(db: LeadDB, store: SqlStore) -> None:
    t = NOW - timedelta(hours=6)
    ids = [f"p{i:03d}" for i in range(25)]
    db.insert(*(lead(i, last_inbound_at=t, last_outbound_at=t) for i in ids))
    seen: list[str] = []
    after = ""
    while True:
        page = store.candidate_leads("acct_a", 2, 6, after, 7)
        if not page:
            break
        assert len(page) <= 7
        seen.extend(r["id"] for r in page)
        after = page[-1]["id"]
    assert seen == ids


@SQLITE_ONLY  # typed Postgres columns cannot hold garbage
def test_candidates__sqlite_keeps_garbage_rows_so_the_run_reports_them(
    db: LeadDB, store: SqlStore
) -> None:
    t = NOW - timedelta(hours=6)
    db.insert(
        lead("ok", last_inbound_at=t, last_outbound_at=t),
        lead("bad_score", score="four", last_inbound_at=t, last_outbound_at=t),
        lead("bad_outbound", last_inbound_at=t, last_outbound_at="yesterday"),
        lead("bad_inbound", last_inbound_at="last week", last_outbound_at=t),
        lead("bad_json", attributes="{not json", last_inbound_at=t, last_outbound_at=t),
        lead("no_recipient", recipient_id=None, last_inbound_at=t, last_outbound_at=t),
    )
    rows = {r["id"]: r for r in store.candidate_leads("acct_a", 2, 6)}
    assert set(rows) == {
        "ok",
        "bad_score",
        "bad_outbound",
        "bad_inbound",
        "bad_json",
        "no_recipient",
    }
    problems = {}
    for lead_id, row in rows.items():
        try:
            parse_lead(row)
        except Exception as exc:  # noqa: BLE001 - BadLead, named below
            problems[lead_id] = type(exc).__name__
    assert problems == {
        "bad_score": "BadLead",
        "bad_outbound": "BadLead",
        "bad_inbound": "BadLead",
        "bad_json": "BadLead",
        "no_recipient": "BadLead",
    }


@SQLITE_ONLY  # text timestamps with mixed offsets exist only on SQLite
def test_candidates__sqlite_compares_instants_not_text_across_offsets(
    db: LeadDB, store: SqlStore
) -> None:
    db.insert(
        # 10:30+02:00 is 08:30Z: after the 08:00Z outbound, the lead wrote last.
        lead(
            "wrote_last",
            last_inbound_at="2026-03-02T10:30:00+02:00",
            last_outbound_at="2026-03-02T08:00:00Z",
        ),
        # 09:30+02:00 is 07:30Z: before the 08:00Z outbound, we spoke last.
        lead(
            "we_spoke_last",
            last_inbound_at="2026-03-02T09:30:00+02:00",
            last_outbound_at="2026-03-02 08:00:00",
        ),
        lead(
            "micro",
            last_inbound_at="2026-03-02T07:59:59.999999Z",
            last_outbound_at="2026-03-02T08:00:00.000001+00:00",
        ),
    )
    assert [r["id"] for r in store.candidate_leads("acct_a", 2, 6)] == ["micro", "we_spoke_last"]


# ------------------------------------------------------------------ lead table


def test_lead_table__read_as_the_host_keeps_it(db: LeadDB, store: SqlStore) -> None:
    t = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    db.insert(
        lead(
            "h1",
            last_inbound_at=t,
            last_outbound_at=t + timedelta(minutes=5),
            converted_at=None,
            attributes={"interest": "pricing", "tier": {"level": 2}},
        )
    )
    types = column_types(db)
    if db.backend == "postgres":
        assert types["last_outbound_at"] == "timestamp with time zone"
        assert types["attributes"] == "jsonb"
    else:
        assert types["last_outbound_at"] == "TEXT" and types["attributes"] == "TEXT"
    row = store.lead_row("h1")
    assert row is not None
    parsed = parse_lead(row)
    assert parsed.last_inbound_at == t
    assert parsed.last_outbound_at == t + timedelta(minutes=5)
    assert parsed.attributes == {"interest": "pricing", "tier": {"level": 2}}
    assert parsed.value("attributes.tier.level") == 2
    assert [parse_lead(r).id for r in store.lead_rows(["h1", "nobody"])] == ["h1"]
    assert store.lead_row("nobody") is None


def column_types(db: LeadDB) -> dict[str, str]:
    if db.backend == "sqlite":
        return {r["name"]: r["type"] for r in db.query("PRAGMA table_info(leads)")}
    rows = db.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = 'leads'",
        (db.schema,),
    )
    return {r["column_name"]: r["data_type"] for r in rows}


def create_table(db: LeadDB, ddl: str) -> None:
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.execute(ddl)
        conn.commit()
        conn.close()
    else:
        db.query(ddl)


def test_lead_table__a_missing_required_column_is_named(db: LeadDB) -> None:
    create_table(db, "CREATE TABLE crm_leads (id TEXT PRIMARY KEY, account_id TEXT, score INTEGER)")
    with pytest.raises(StoreConfigError) as info:
        open_store(db.url, lead_table="crm_leads")  # before any of the tool's tables exist
    msg = str(info.value)
    assert "crm_leads" in msg and "recipient_id" in msg and "last_outbound_at" in msg


def test_lead_table__a_missing_table_says_how_to_fix_it(db: LeadDB) -> None:
    with pytest.raises(StoreConfigError, match="'prospects'.*lead_table"):
        open_store(db.url, lead_table="prospects")


def test_lead_table__optional_columns_may_be_absent(db: LeadDB) -> None:
    ts = "TIMESTAMPTZ" if db.backend == "postgres" else "TEXT"
    create_table(
        db,
        "CREATE TABLE slim (id TEXT PRIMARY KEY, account_id TEXT, recipient_id TEXT, "
        f"score INTEGER, last_outbound_at {ts})",
    )
    at = NOW - timedelta(hours=5)
    value = at.isoformat()
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.execute("INSERT INTO slim VALUES ('s1', 'acct_a', 'ig_s1', 3, ?)", (value,))
        conn.commit()
        conn.close()
    else:
        db.query("INSERT INTO slim VALUES ('s1', 'acct_a', 'ig_s1', 3, ?)", (value,))
    s = open_store(db.url, lead_table="slim")
    try:
        assert "attributes" not in s.lead_columns()
        [row] = s.candidate_leads("acct_a", 2, 6)
        parsed = parse_lead(row)
        assert (parsed.id, parsed.last_outbound_at, parsed.attributes) == ("s1", at, {})
    finally:
        s.close()


@pytest.mark.parametrize("id_type", ["BIGINT", "INTEGER"])
def test_lead_table__an_integer_id_column_works_like_a_text_one(
    db: LeadDB, tmp_path: Any, id_type: str
) -> None:
    """A host app whose leads.id is an integer (bigint on Postgres): selection, paging,
    claims, opt-outs and the run all work, comparing the id as text."""
    from tests.helpers import base_config, followup, write_config

    ts = "TIMESTAMPTZ" if db.backend == "postgres" else "TEXT"
    create_table(
        db,
        f"CREATE TABLE crm_int (id {id_type} PRIMARY KEY, account_id TEXT, recipient_id TEXT, "
        f"first_name TEXT, score INTEGER, last_inbound_at {ts}, last_outbound_at {ts})",
    )
    inbound, outbound = (NOW - timedelta(hours=5)).isoformat(), (NOW - timedelta(hours=4))
    for lead_id in (7, 42, 1001):
        args = (lead_id, f"ig_{lead_id}", inbound, outbound.isoformat())
        sql = "INSERT INTO crm_int VALUES (?, 'acct_a', ?, 'Ana', 4, ?, ?)"
        if db.backend == "sqlite":
            conn = sqlite3.connect(db.url)
            conn.execute(sql, args)
            conn.commit()
            conn.close()
        else:
            db.query(sql, args)
    s = open_store(db.url, lead_table="crm_int")
    try:
        s.add_optout("1001", None, "cli", "ops", NOW)
        seen, after = [], ""
        while page := s.candidate_leads("acct_a", 2, 6, after, 1):
            seen += [str(r["id"]) for r in page]
            after = str(page[-1]["id"])
        assert sorted(seen) == ["42", "7"], "each lead once, the opted-out one dropped"
    finally:
        s.close()
    raw = base_config()
    raw["settings"]["lead_table"] = "crm_int"
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    common = ("--config", str(cfg), "--db", db.url, "--now", NOW.isoformat(), "--json")
    r = followup("run", *common)
    assert r.returncode == 0, r.stderr
    rows = db.query("SELECT lead_id, status FROM followup_tracking ORDER BY lead_id")
    assert rows == [{"lead_id": "42", "status": "sent"}, {"lead_id": "7", "status": "sent"}]
    again = followup("run", *common)
    assert again.returncode == 0 and '"sent": 0' in again.stdout, again.stdout


# ------------------------------------------------ the person, not the row (issue 9)


def test_person_key__per_account_and_recipient_and_keyed(
    db: LeadDB, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = store.person_key("acct_a", "ig_1")
    assert a and len(a) == 64 and "ig_1" not in a
    assert a == store.person_key("acct_a", " ig_1 ")
    assert a != store.person_key("acct_b", "ig_1")  # an IGSID is per account
    assert store.person_key("acct_a", None) is None and store.person_key("acct_a", "") is None
    monkeypatch.setenv("FOLLOWUP_SUPPRESSION_KEY", "x" * 40)
    other = open_store(db.url)
    try:
        assert other.person_key("acct_a", "ig_1") not in (None, a)
    finally:
        other.close()


def test_suppressions__an_erasure_replaces_an_optout_and_nothing_downgrades_it(
    db: LeadDB, store: SqlStore
) -> None:
    db.insert(lead("a1", recipient_id="ig_x"), lead("a2", recipient_id="ig_x"))
    assert store.add_optout("a1", "keyword: stop", "keyword", "ops", NOW)
    key = store.person_key("acct_a", "ig_x")
    row = store.suppression(key)
    assert row is not None
    assert (row["kind"], row["recipient_id"], row["lead_id"]) == ("optout", "ig_x", "a1")
    state = store.lead_states(["a2"], {"a2": key})["a2"]
    assert (state.opted_out, state.suppression) == (False, "optout")  # the person, not a2
    assert store.add_suppression(key, "acct_a", "erasure", "erasure", "ops", NOW)
    row = store.suppression(key)
    assert row is not None and (row["kind"], row["recipient_id"], row["lead_id"]) == (
        "erasure",
        None,
        None,
    )
    assert store.add_optout("a2", "again", "cli", "ops", NOW)  # a2's own row is new
    assert store.suppression(key)["kind"] == "erasure"  # type: ignore[index]
    assert store.remove_optout("a1")  # a1's own opt-out goes
    assert store.suppression(key)["kind"] == "erasure"  # type: ignore[index]  # not this
    assert store.is_opted_out("a2", key) and store.is_erased("a2")


def test_lead_states__the_persons_other_rows(db: LeadDB, store: SqlStore) -> None:
    key = store.person_key("acct_a", "ig_p")
    other = store.person_key("acct_a", "ig_q")
    store.insert_followup(claim_row("old", status=SENT, sent_at=NOW, person_key=key))
    store.insert_followup(claim_row("new", "m2", status=SENT, sent_at=NOW, person_key=key))
    store.insert_followup(claim_row("q", status=SENT, sent_at=NOW, person_key=other))
    store.start_enrollment("old", "s1", "acct_a", NOW, NOW, person_key=key)
    states = store.lead_states(["new", "q"], {"new": key, "q": other})
    new, q = states["new"], states["q"]
    assert [f.message_id for f in new.followups] == ["m2"]
    assert [f.message_id for f in new.person_followups] == ["m1"]  # under "old"
    assert [f.message_id for f in new.counted()] == ["m2", "m1"]
    assert [(e.lead_id, e.sequence_id) for e in new.person_enrollments] == [("old", "s1")]
    assert q.person_followups == () and q.person_enrollments == ()


def test_migration_0004__backfills_person_keys_and_per_lead_optouts(
    db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store used before people were tracked: its opt-outs and erasures hold for the
    person from the upgrade on, and its rows count toward the person's caps."""
    import followup_cli.store.migrating as migrating

    db.insert(lead("o1", recipient_id="ig_o"), lead("e1", recipient_id="ig_e"))
    monkeypatch.setattr(migrating, "MIGRATIONS", MIGRATIONS[:5])  # before 0006_person
    old = open_store(db.url)
    try:
        old.insert_followup(claim_row("o1", status=SENT, sent_at=NOW, recipient_id="ig_o"))
        old.add_optout("o1", "keyword: stop", "keyword", "ops", NOW)
        old.add_optout("e1", "erased on request", "erasure", "ops", NOW)
    finally:
        old.close()
    monkeypatch.setattr(migrating, "MIGRATIONS", MIGRATIONS)
    new = open_store(db.url)
    try:
        key_o = new.person_key("acct_a", "ig_o")
        key_e = new.person_key("acct_a", "ig_e")
        assert new.suppression(key_o)["kind"] == "optout"  # type: ignore[index]
        assert new.suppression(key_e)["kind"] == "erasure"  # type: ignore[index]
        assert new.suppression(key_e)["recipient_id"] is None  # type: ignore[index]
        rows = db.query("SELECT person_key FROM followup_tracking WHERE lead_id = 'o1'")
        assert rows == [{"person_key": key_o}]
    finally:
        new.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sqlite_write_transactions_of_one_process_queue_on_one_lock(db: LeadDB) -> None:
    """A run's connections to one file take its write lock in turn in the process (handed
    over at once, not in SQLite's sleeping busy handler); a rollback releases it too."""
    import threading

    a = open_store(db.url)
    b = a.clone()
    try:
        assert a._writer is not None and a._writer is b._writer
        with pytest.raises(RuntimeError), a.transaction():
            raise RuntimeError("rolled back")
        order: list[str] = []
        inside = threading.Event()

        def other() -> None:
            inside.wait(10)
            with b.transaction():
                order.append("b")

        t = threading.Thread(target=other)
        t.start()
        with a.transaction():
            inside.set()
            t.join(0.2)  # b waits for a's commit
            order.append("a")
        t.join(10)
        assert order == ["a", "b"]
        assert a._writer.acquire(timeout=1)
        a._writer.release()
    finally:
        a.close()
        b.close()


def test_lead_table__a_uuid_id_column_works_like_a_text_one(db: LeadDB, tmp_path: Any) -> None:
    """A host app whose leads.id is a uuid (the README: "an integer or uuid key works too,
    compared as text"): the run sends once, explain and optout take the id as text. Before,
    Postgres handed the rows over as uuid objects and every lead was skipped as 'not text'."""
    import json
    import uuid

    from tests.helpers import base_config, followup, write_config

    ts = "TIMESTAMPTZ" if db.backend == "postgres" else "TEXT"
    create_table(
        db,
        f"CREATE TABLE crm_uuid (id UUID PRIMARY KEY, account_id TEXT, recipient_id TEXT, "
        f"first_name TEXT, score INTEGER, last_inbound_at {ts}, last_outbound_at {ts})",
    )
    inbound, outbound = (NOW - timedelta(hours=5)).isoformat(), (NOW - timedelta(hours=4))
    ids = [str(uuid.UUID(int=n)) for n in (7, 42, 1001)]
    _insert_host_rows(
        db,
        "INSERT INTO crm_uuid VALUES (?, 'acct_a', ?, 'Ana', 4, ?, ?)",
        [(lead_id, f"ig_{lead_id}", inbound, outbound.isoformat()) for lead_id in ids],
    )
    raw = base_config()
    raw["settings"]["lead_table"] = "crm_uuid"
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    opts = ("--config", str(cfg), "--db", db.url)
    assert followup("optout", ids[2], *opts).returncode == 0
    common = (*opts, "--now", NOW.isoformat(), "--json")
    explained = followup("explain", ids[0], *common)
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["action"] == "send"
    r = followup("run", *common)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bad_leads"] == []
    rows = db.query("SELECT lead_id, status FROM followup_tracking ORDER BY lead_id")
    assert rows == [{"lead_id": ids[0], "status": "sent"}, {"lead_id": ids[1], "status": "sent"}]
    again = followup("run", *common)
    assert again.returncode == 0 and '"sent": 0' in again.stdout, again.stdout


def test_lead_table__a_status_column_of_an_enum_type_works_like_a_text_one(
    db: LeadDB, tmp_path: Any
) -> None:
    """A host app whose leads.status is a Postgres ENUM (CREATE TYPE lead_status AS ENUM
    ...), as many keep it: every command reads the status as its text. Before, each query
    that folds it (``lower(status)``) failed on Postgres: the run, report, plan and status
    ended in exit 1 with "function lower(lead_status) does not exist"."""
    import json

    from tests.helpers import base_config, followup, write_config

    if db.backend == "postgres":
        db.query("CREATE TYPE lead_status AS ENUM ('new', 'qualified', 'converted', 'lost')")
        ts, status = "TIMESTAMPTZ", "lead_status"
    else:
        ts, status = "TEXT", "TEXT CHECK (status IN ('new', 'qualified', 'converted', 'lost'))"
    create_table(
        db,
        f"CREATE TABLE crm_enum (id TEXT PRIMARY KEY, account_id TEXT, recipient_id TEXT, "
        f"first_name TEXT, score INTEGER, status {status}, last_inbound_at {ts}, "
        f"last_outbound_at {ts})",
    )
    inbound, outbound = (NOW - timedelta(hours=5)).isoformat(), (NOW - timedelta(hours=4))
    for lead_id, st in (("e1", "qualified"), ("e2", "converted"), ("e3", "new")):
        sql = "INSERT INTO crm_enum VALUES (?, 'acct_a', ?, 'Ana', 4, ?, ?, ?)"
        args = (lead_id, f"ig_{lead_id}", st, inbound, outbound.isoformat())
        if db.backend == "sqlite":
            conn = sqlite3.connect(db.url)
            conn.execute(sql, args)
            conn.commit()
            conn.close()
        else:
            db.query(sql.replace("?, ?, ?)", "CAST(? AS lead_status), ?, ?)"), args)
    raw = base_config()
    raw["settings"]["lead_table"] = "crm_enum"
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    opts = ("--config", str(cfg), "--db", db.url)
    common = (*opts, "--now", NOW.isoformat())
    dry = followup("run", "--dry-run", "--json", *common)
    assert dry.returncode == 0, dry.stderr
    assert sorted(m["lead_id"] for m in json.loads(dry.stdout)["messages"]) == ["e1", "e3"]
    r = followup("run", "--json", *common)
    assert r.returncode == 0, r.stderr
    rows = db.query("SELECT lead_id, status FROM followup_tracking ORDER BY lead_id")
    assert rows == [{"lead_id": "e1", "status": "sent"}, {"lead_id": "e3", "status": "sent"}]
    for command in (("report", "--format", "json"), ("plan",), ("leads",), ("handoff",)):
        done = followup(*command, *common)
        assert done.returncode == 0, (command, done.stderr)
    assert followup("status", *opts).returncode in (0, 3)  # healthy or not: it answers
    assert "unexpected" not in followup("status", *opts).stderr


def test_lead_table__blank_padded_char_columns_read_as_their_text(
    db: LeadDB, tmp_path: Any
) -> None:
    """A host app that keeps ids, accounts and recipients in fixed-width CHAR(n) columns:
    Postgres pads the value with blanks ('acct_a    '), which are not part of it (Postgres
    itself compares CHAR values without them). Every command reads the value without the
    padding. Before, the run and the dry run sent nothing and said nothing: the rows came
    back as account 'acct_a    ', which no configured account is (explain: "account
    'acct_a    ' is not configured")."""
    import json

    from tests.helpers import base_config, followup, write_config

    text = "CHAR(12)" if db.backend == "postgres" else "TEXT"
    ts = "TIMESTAMPTZ" if db.backend == "postgres" else "TEXT"
    create_table(
        db,
        f"CREATE TABLE crm_char (id {text} PRIMARY KEY, account_id {text}, "
        f"recipient_id {text}, first_name TEXT, score INTEGER, status {text}, "
        f"last_inbound_at {ts}, last_outbound_at {ts})",
    )
    inbound, outbound = (NOW - timedelta(hours=5)).isoformat(), (NOW - timedelta(hours=4))
    _insert_host_rows(
        db,
        "INSERT INTO crm_char VALUES (?, 'acct_a', ?, 'Ana', 4, 'qualified', ?, ?)",
        [(lead_id, f"ig_{lead_id}", inbound, outbound.isoformat()) for lead_id in ("c1", "c2")],
    )
    raw = base_config()
    raw["settings"]["lead_table"] = "crm_char"
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    common = ("--config", str(cfg), "--db", db.url, "--now", NOW.isoformat())
    dry = followup("run", "--dry-run", "--json", *common)
    assert dry.returncode == 0, dry.stderr
    assert sorted(m["lead_id"] for m in json.loads(dry.stdout)["messages"]) == ["c1", "c2"]
    explained = followup("explain", "c1", *common)
    assert explained.returncode == 0, explained.stderr
    assert "not configured" not in explained.stdout
    r = followup("run", "--json", *common)
    assert r.returncode == 0, r.stderr
    rows = db.query("SELECT lead_id, account_id, status FROM followup_tracking ORDER BY lead_id")
    assert rows == [
        {"lead_id": "c1", "account_id": "acct_a", "status": "sent"},
        {"lead_id": "c2", "account_id": "acct_a", "status": "sent"},
    ]
    again = followup("run", "--json", *common)  # the claims found the rows again by id
    assert again.returncode == 0, again.stderr
    assert len(db.query("SELECT id FROM followup_tracking")) == 2


def _insert_host_rows(db: LeadDB, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows into a host table the test created (``?`` placeholders on both stores)."""
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.url)
        conn.executemany(sql, rows)
        conn.commit()
        conn.close()
        return
    for args in rows:
        db.query(sql, args)


def test_lead_table__times_without_a_zone_are_utc_whatever_the_servers_time_zone(
    db: LeadDB, tmp_path: Any
) -> None:
    """A host table with `timestamp without time zone` columns, on a Postgres server whose
    TimeZone is not UTC (Debian's initdb takes the host's zone): the rules read such a time
    as UTC (as SQLite text without an offset), and so must the SQL that picks candidates.
    Before, the server compared them in its own zone (America/Los_Angeles: 8 hours later),
    so the run sent nothing while step 1 was due and a lead's window closed unserved."""
    import json

    from tests.helpers import base_config, followup, write_config

    ts = "TIMESTAMP" if db.backend == "postgres" else "TEXT"
    create_table(
        db,
        f"CREATE TABLE crm_naive (id TEXT PRIMARY KEY, account_id TEXT, recipient_id TEXT, "
        f"first_name TEXT, score INTEGER, status TEXT, last_inbound_at {ts}, "
        f"last_outbound_at {ts})",
    )
    naive = "%Y-%m-%d %H:%M:%S"
    inbound = (NOW - timedelta(hours=5)).astimezone(UTC).strftime(naive)
    outbound = (NOW - timedelta(hours=4)).astimezone(UTC).strftime(naive)
    _insert_host_rows(
        db,
        "INSERT INTO crm_naive VALUES (?, 'acct_a', ?, 'Ana', 4, 'qualified', ?, ?)",
        [(lead_id, f"ig_{lead_id}", inbound, outbound) for lead_id in ("n1", "n2")],
    )
    raw = base_config()
    raw["settings"]["lead_table"] = "crm_naive"
    cfg = write_config(tmp_path / "sequences.yaml", raw)
    url = db.url.replace("options=-c", "options=-cTimeZone%3DAmerica/Los_Angeles%20-c")
    assert db.backend == "sqlite" or url != db.url
    common = ("--config", str(cfg), "--db", url, "--now", NOW.isoformat())
    dry = followup("run", "--dry-run", "--json", *common)
    assert dry.returncode == 0, dry.stderr
    assert sorted(m["lead_id"] for m in json.loads(dry.stdout)["messages"]) == ["n1", "n2"]
    r = followup("run", "--json", *common)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 2
