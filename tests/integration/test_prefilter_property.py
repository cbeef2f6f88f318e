"""The candidate prefilter is conservative: on generated leads and tool rows, every lead the
decision function would act on (send, skip, end, hold out, record a keyword opt-out) is a
candidate. SQLite and Postgres.

Each example is a handful of leads of one account with random columns (score, status,
conversion, who wrote last and when, the last text), and for each maybe an opt-out and an
enrollment: active or ended, anchored before or after the lead's last message, with a
stored next-due time that is absent, past, from another config, or ahead under this one.
A time ahead under this config is what a run stores only when the lead cannot be due
before then; the prefilter may then leave the lead out unless something terminal happened
to it (a reply, a conversion, a score out of range, an opt-out, a keyword), so for those
leads only the terminal decisions are required.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS, parse_config
from followup_cli.engine import Engine
from followup_cli.models import BadLead, parse_lead
from followup_cli.results import decide_or_name
from followup_cli.rules import keyword_optout
from followup_cli.store import open_store
from followup_cli.store.base import SqlStore
from tests.helpers import LeadDB, base_config, lead, pg_available

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DIGEST = "this-config"
HOURS = st.sampled_from([None, 0.5, 2, 3, 5, 30, 200])  # hours before NOW (None: no value)
# last messages: ASCII, and non-ASCII ones (the SQLite store matches these by the rules in
# Python, Postgres folds them in SQL) that stop the lead or not
TEXTS = ["how much?", "please STOP", "ok", None, "parar ya"]
NON_ASCII = [
    "¿cuánto cuesta el envío? 😊",
    "ＳＴＯＰ",  # full-width
    "Stóp",  # the accent is dropped: "stop"
    "sto\u0301p por favor",  # a combining mark inside the word
    "s\u0336t\u0336o\u0336p\u0336",  # struck through
    "NO MÁS MENSAJES",
    "não quero mais mensagens!",
    "QUİT",  # Turkish dotted capital I (the config adds "quit")
    "quıt",  # dotless i: not "quit"
    "Schluß, ARRÊTEZ",
    "STRAẞE",  # capital sharp s (the config adds "straße")
    "🛑stop🛑",
    "شكرا stop",  # right to left, then the keyword
    "\u202estop\u202c",  # a right-to-left override around it
    "stopp😊bitte",
    "ａｂｍｅｌｄｅｎ bitte",
    "baja\u200b",  # a zero-width space after it
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew, no keyword
    "stopé",  # the accent makes another word
    "ﬆop",  # the st ligature
    "sí, gracias",
]
NON_ASCII_WORDS = ["stop", "baja", "parar", "ß", "İ", "ı", "é", "\u0301", "😊", "Ｓ", " ", "'"]
TEXT = st.one_of(
    st.sampled_from(TEXTS + NON_ASCII),
    st.lists(
        st.one_of(
            st.sampled_from(NON_ASCII_WORDS),
            st.text(
                st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=3
            ),
        ),
        max_size=5,
    ).map("".join),
)

LEAD = st.fixed_dictionaries(
    {
        "score": st.sampled_from([1, 2, 4, 6, 7]),
        "status": st.sampled_from(["qualified", "converted", None]),
        "converted": st.sampled_from([None, None, None, 1]),
        "inbound": HOURS,
        "outbound": HOURS,
        "text": TEXT,
        "optout": st.booleans(),
        "enrollment": st.sampled_from([None, "active", "ended"]),
        "anchor": st.sampled_from([1, 4, 10, 40]),
        "next_due": st.sampled_from([None, "past", "other_config", "ahead"]),
    }
)


def _ago(hours: float | None) -> datetime | None:
    return None if hours is None else NOW - timedelta(hours=hours)


@pytest.fixture(params=["sqlite", "postgres"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LeadDB, SqlStore]]:
    if request.param == "postgres" and (why := pg_available()):
        pytest.skip(why)
    db = LeadDB.sqlite(tmp_path) if request.param == "sqlite" else LeadDB.postgres()
    store = open_store(db.url, "leads")
    store.migrate()
    try:
        yield db, store
    finally:
        store.close()
        db.close()


COUNTER = itertools.count()


def _seed(db: LeadDB, store: SqlStore, leads: list[dict[str, Any]]) -> dict[str, dict]:
    for table in ("leads", "followup_enrollments", "followup_optouts", "followup_tracking"):
        store.execute(f"DELETE FROM {table}")
    by_id: dict[str, dict[str, Any]] = {}
    rows = []
    for spec in leads:
        lid = f"P{next(COUNTER):06d}"
        by_id[lid] = spec
        rows.append(
            lead(
                lid,
                score=spec["score"],
                status=spec["status"],
                converted_at=_ago(spec["converted"]),
                last_inbound_at=_ago(spec["inbound"]),
                last_outbound_at=_ago(spec["outbound"]),
                last_inbound_text=spec["text"],
                timezone="UTC",
            )
        )
    db.insert(*rows)
    for lid, spec in by_id.items():
        if spec["optout"]:
            store.execute(
                "INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at) "
                "VALUES (:l, 'test', 'cli', 'me', :t)",
                {"l": lid, "t": NOW},
            )
        if spec["enrollment"] is None:
            continue
        anchor = NOW - timedelta(hours=spec["anchor"])
        store.start_enrollment(lid, "s1", "acct_a", anchor, anchor)
        due = {
            None: (None, None),
            "past": (NOW - timedelta(minutes=1), DIGEST),
            "other_config": (NOW + timedelta(hours=5), "another-config"),
            "ahead": (NOW + timedelta(hours=5), DIGEST),
        }[spec["next_due"]]
        store.execute(
            "UPDATE followup_enrollments SET next_due_at = :d, next_due_config = :c, "
            "ended_at = :e, ended_reason = :r WHERE lead_id = :l",
            {
                "d": due[0],
                "c": due[1],
                "e": anchor + timedelta(minutes=5) if spec["enrollment"] == "ended" else None,
                "r": "completed" if spec["enrollment"] == "ended" else None,
                "l": lid,
            },
        )
    return by_id


EXTRA_KEYWORDS = ["quit", "straße", "ｓｃｈｌｕß"]


def _stops(text: str | None) -> bool:
    return keyword_optout(text, (*DEFAULT_OPTOUT_KEYWORDS, *EXTRA_KEYWORDS)) is not None


def _terminal(spec: dict[str, Any]) -> bool:
    """Something that ends an enrollment now, whatever its stored next-due time."""
    replied = spec["inbound"] is not None and spec["inbound"] < spec["anchor"]
    return (
        not 2 <= spec["score"] <= 6
        or spec["status"] == "converted"
        or spec["converted"] is not None
        or replied
        or spec["optout"]
        or _stops(spec["text"])
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(leads=st.lists(LEAD, min_size=1, max_size=12))
def test_every_lead_the_rules_act_on_is_a_candidate(
    host: tuple[LeadDB, SqlStore], leads: list[dict[str, Any]]
) -> None:
    check(*host, leads)


def test_every_lead_the_rules_act_on_is_a_candidate__3000_at_once(
    host: tuple[LeadDB, SqlStore],
) -> None:
    """The same over 3,000 leads drawn uniformly (hypothesis favours the first value of each
    choice; this covers the rare combinations, e.g. a converted status on an enrollment
    whose stored time is ahead)."""
    rng = random.Random(11)
    choices = {
        "score": [1, 2, 4, 6, 7],
        "status": ["qualified", "converted", None],
        "converted": [None, None, None, 1],
        "inbound": [None, 0.5, 2, 3, 5, 30, 200],
        "outbound": [None, 0.5, 2, 3, 5, 30, 200],
        "text": TEXTS + NON_ASCII,
        "optout": [False, True],
        "enrollment": [None, "active", "ended"],
        "anchor": [1, 4, 10, 40],
        "next_due": [None, "past", "other_config", "ahead"],
    }
    leads = [{k: rng.choice(v) for k, v in choices.items()} for _ in range(3000)]
    check(*host, leads)


def check(db: LeadDB, store: SqlStore, leads: list[dict[str, Any]]) -> None:
    loaded = parse_config(_yaml())
    config = loaded.config
    account = config.accounts[0]
    st_ = config.settings_for(account)
    by_id = _seed(db, store, leads)
    engine = Engine.__new__(Engine)
    engine.config = config
    candidates = {
        str(r["id"])
        for r in store.candidate_leads(
            "acct_a",
            st_.min_score,
            st_.max_score,
            None,
            len(by_id) + 1,
            keywords=st_.all_optout_keywords,
            now=NOW,
            config=DIGEST,
            new_due_before=Engine.new_leads_due_before(engine, account, NOW),
        )
    }
    rows = store.lead_rows(list(by_id))
    parsed = []
    for row in rows:
        try:
            parsed.append(parse_lead(row))
        except BadLead:
            assert str(row["id"]) in candidates, "a row the run must name was left out"
    states = store.lead_states(
        [x.id for x in parsed],
        {x.id: store.person_key(x.account_id, x.recipient_id) for x in parsed},
    )
    for x in parsed:
        d = decide_or_name(x, states[x.id], config, NOW, None)
        if d is None:
            continue
        acts = d.action in ("send", "skip", "end", "holdout") or bool(d.keyword_optout)
        spec = by_id[x.id]
        if spec["next_due"] == "ahead" and spec["enrollment"] == "active":
            acts = acts and _terminal(spec)
        assert not acts or x.id in candidates, (x.id, spec, d.action, d.reason)


def _yaml() -> str:
    import yaml

    cfg = base_config(
        settings={
            "quiet_hours": None,
            "timezone": "UTC",
            "optout_keywords_extra": EXTRA_KEYWORDS,
        }
    )
    # a second sequence: a lead whose enrollment in s1 ended can start s2 after a reply
    second = {**cfg["sequences"][0], "id": "s2", "name": "Again", "priority": 2}
    cfg["sequences"].append(second)
    return yaml.safe_dump(cfg, sort_keys=False)
