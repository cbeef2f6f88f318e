"""The candidate census (census.py) keeps exactly the leads each account's own candidate
query keeps: on generated leads of three accounts with different score ranges, none, one or
two enrollments each (active or ended, anchored before or after the lead's last message,
a stored next-due time absent, past, from another config or ahead), opt-outs, keywords and
garbage times. Asked whole and cut into id ranges. Postgres (SQLite has no census: each
account keeps its own pass there)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.helpers import LeadDB, lead, pg_available

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DIGEST = "this-config"
ACCOUNTS = [  # id, score range, when a lead in no sequence can be due
    ("acct_a", 2, 6, NOW - timedelta(hours=3)),
    ("acct_b", 3, 5, NOW - timedelta(hours=1)),
    ("acct_c", 1, 7, NOW - timedelta(hours=20)),
]
KEYWORDS = (*DEFAULT_OPTOUT_KEYWORDS, "quit")
HOURS = [None, 0.5, 2, 3, 5, 30, 200]
ANCHORS = [1, 2, 4, 30, 40]  # hours before NOW; 2 and 30 also a lead's times (equal ones)
TEXTS = ["how much?", "please STOP", "ok", None, "ＳＴＯＰ", "quıt", "sí, gracias", "Quit now"]
GARBAGE = datetime(3500, 1, 1, tzinfo=UTC)


@pytest.fixture
def pg() -> Iterator[tuple[LeadDB, SqlStore]]:
    if why := pg_available():
        pytest.skip(why)
    db = LeadDB.postgres()
    store = open_store(db.url, "leads")
    store.migrate()
    try:
        yield db, store
    finally:
        store.close()
        db.close()


def _ago(hours: float | None) -> datetime | None:
    return None if hours is None else NOW - timedelta(hours=hours)


def _seed(db: LeadDB, store: SqlStore, n: int, rng: random.Random) -> list[str]:
    rows, ids = [], []
    for i in range(n):
        lid = f"C{i:05d}"
        ids.append(lid)
        rows.append(
            lead(
                lid,
                account_id=rng.choice([a[0] for a in ACCOUNTS] + ["acct_other"]),
                score=rng.choice([None, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
                status=rng.choice(["qualified", "converted", "CONVERTED", None]),
                converted_at=rng.choice([None, None, None, _ago(1), GARBAGE]),
                last_inbound_at=_ago(rng.choice([*HOURS, 2, 30])),
                last_outbound_at=rng.choice([_ago(rng.choice(HOURS)), GARBAGE]),
                last_inbound_text=rng.choice(TEXTS),
                timezone="UTC",
            )
        )
    # D0 spoke between its two active enrollments' anchors (not quiet: a candidate); D1 is
    # opted out (a candidate, to end it); D2 spoke at its enrollment's anchor (quiet: not)
    rows += [
        lead("D0", account_id="acct_a", last_inbound_at=_ago(5), last_outbound_at=_ago(3)),
        lead("D1", account_id="acct_a", last_inbound_at=_ago(40), last_outbound_at=_ago(3)),
        lead("D2", account_id="acct_a", last_inbound_at=_ago(30), last_outbound_at=_ago(3)),
    ]
    db.insert(*rows)
    for lid, seq, hours in (("D0", "s1", 30), ("D0", "s2", 2), ("D1", "s1", 30), ("D2", "s1", 30)):
        store.start_enrollment(lid, seq, "acct_a", _ago(hours), _ago(hours))
    store.execute(
        "UPDATE followup_enrollments SET next_due_at = :d, next_due_config = :c "
        "WHERE lead_id IN ('D0', 'D1', 'D2')",
        {"d": NOW + timedelta(hours=5), "c": DIGEST},
    )
    store.execute(
        "INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at) "
        "VALUES ('D1', 'test', 'cli', 'me', :t)",
        {"t": NOW},
    )
    for lid in ids:
        if rng.random() < 0.1:
            store.execute(
                "INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at) "
                "VALUES (:l, 'test', 'cli', 'me', :t)",
                {"l": lid, "t": NOW},
            )
        for seq in rng.sample(["s1", "s2"], rng.choice([0, 0, 1, 1, 2])):
            anchor = NOW - timedelta(
                hours=rng.choice([1, 2, 4, 10, 30, 40])
            )  # 2, 30: a lead's times
            store.start_enrollment(lid, seq, rng.choice(["acct_a", "acct_b", None]), anchor, anchor)
            due, config = rng.choice(
                [
                    (None, None),
                    (NOW - timedelta(minutes=1), DIGEST),
                    (NOW, DIGEST),
                    (NOW + timedelta(hours=5), "another-config"),
                    (NOW + timedelta(hours=5), DIGEST),
                ]
            )
            ended = rng.random() < 0.5
            store.execute(
                "UPDATE followup_enrollments SET next_due_at = :d, next_due_config = :c, "
                "ended_at = :e, ended_reason = :r WHERE lead_id = :l AND sequence_id = :s",
                {
                    "d": due,
                    "c": config,
                    "e": anchor + timedelta(minutes=5) if ended else None,
                    "r": "completed" if ended else None,
                    "l": lid,
                    "s": seq,
                },
            )
    return ids


def _own_passes(store: SqlStore, n: int) -> dict[str, set[str]]:
    return {
        account: {
            str(r["id"])
            for r in store.candidate_leads(
                account,
                low,
                high,
                None,
                n + 1,
                keywords=KEYWORDS,
                now=NOW,
                config=DIGEST,
                new_due_before=new_due,
            )
        }
        for account, low, high, new_due in ACCOUNTS
    }


def test_census__the_same_leads_as_each_accounts_own_query(pg: tuple[LeadDB, SqlStore]) -> None:
    db, store = pg
    assert store.has_census
    ids = _seed(db, store, 2000, random.Random(5))
    expected = _own_passes(store, len(ids))
    assert {"D0", "D1"} <= expected["acct_a"] and "D2" not in expected["acct_a"]
    assert all(expected.values()) and any(len(v) < 600 for v in expected.values())

    whole = store.candidate_census(ACCOUNTS, KEYWORDS, NOW, DIGEST)
    # its plan settings end with its transaction
    assert store.query("SHOW enable_hashjoin")[0]["enable_hashjoin"] == "on"
    assert {a: set(v) for a, v in whole.items()} == expected
    assert all(v == sorted(v) for v in whole.values())  # in id order, pages as before

    cut = [None, ids[800], ids[801], ids[1500], None]  # ranges, one of them a single id
    parts: dict[str, list[str]] = {}
    for lo, hi in zip(cut[:-1], cut[1:], strict=True):
        for account, found in store.candidate_census(
            ACCOUNTS, KEYWORDS, NOW, DIGEST, (lo, hi)
        ).items():
            parts.setdefault(account, []).extend(found)
    assert {a: set(v) for a, v in parts.items()} == expected
    assert sum(map(len, parts.values())) == sum(map(len, expected.values()))  # no id twice

    # the accounts' pages read through the census's ids: the same rows
    for account, low, high, new_due in ACCOUNTS:
        rows = store.candidate_leads(
            account,
            low,
            high,
            None,
            len(ids) + 1,
            keywords=KEYWORDS,
            now=NOW,
            config=DIGEST,
            new_due_before=new_due,
            among=whole[account],
        )
        assert {str(r["id"]) for r in rows} == expected[account]


def test_census__ranges_from_the_planners_histogram(pg: tuple[LeadDB, SqlStore]) -> None:
    db, store = pg
    assert store.census_ranges(2) == [(None, None)]  # no statistics yet: one range
    _seed(db, store, 300, random.Random(6))
    store.execute("ANALYZE leads")
    ranges = store.census_ranges(2)
    assert len(ranges) == 2 and ranges[0][0] is None and ranges[-1][1] is None
    assert ranges[0][1] == ranges[1][0] and "C00100" < ranges[0][1] < "C00200"
