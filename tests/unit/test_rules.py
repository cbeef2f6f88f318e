"""The decision function, table-driven: a row per rule and per edge."""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS, Condition, Config
from followup_cli.models import EnrollmentRecord, FollowupRecord, Lead, LeadState
from followup_cli.rules import (
    APOSTROPHES,
    KEYWORD_SEPARATOR,
    choose_variant,
    combining_marks,
    condition_holds,
    decide,
    fold_text,
    has_optout_keyword,
    keyword_like_pattern,
    keyword_like_patterns,
    keyword_optout,
    normalize_text,
    quiet_until,
    trigger_holds,
)
from followup_cli.rules.keywords import keyword_like_gates
from tests.helpers import base_config

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MADRID).astimezone(UTC)  # Monday 10:00 Madrid
H = timedelta(hours=1)


def cfg(**over: Any) -> Config:
    raw = base_config()
    for key, value in over.items():
        if key in ("settings", "channel"):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return Config.model_validate(raw)


def mk_lead(**over: Any) -> Lead:
    base: dict[str, Any] = {
        "id": "L1",
        "account_id": "acct_a",
        "recipient_id": "ig_1",
        "first_name": "Ana",
        "score": 4,
        "status": "qualified",
        "last_inbound_at": NOW - 5 * H,
        "last_outbound_at": NOW - 4 * H,  # silence started 4h ago: m1 (+3h) is due
        "last_inbound_text": "how much?",
        "timezone": "Europe/Madrid",
        "attributes": {"interest": "pricing"},
    }
    base.update(over)
    return Lead(**base)


def sent(msg: str, at: datetime, seq: str = "s1", status: str = "sent") -> FollowupRecord:
    return FollowupRecord(sequence_id=seq, message_id=msg, status=status, at=at)


def enrolled(anchor: datetime, seq: str = "s1", ended: str | None = None) -> EnrollmentRecord:
    return EnrollmentRecord(
        sequence_id=seq,
        anchor_at=anchor,
        started_at=anchor,
        ended_at=anchor + H if ended else None,
        ended_reason=ended,
    )


def two_sequences() -> dict[str, Any]:
    raw = base_config()
    low = copy.deepcopy(raw["sequences"][0])
    low.update(id="low", priority=0)
    high = copy.deepcopy(raw["sequences"][0])
    high.update(id="high", priority=5)
    return {"sequences": [low, high]}


# (name, lead overrides, state, config overrides, now, expected action, expected reason, step)
CASES: list[tuple[str, dict, LeadState, dict, datetime, str, str, str | None]] = [
    ("due step is sent", {}, LeadState(), {}, NOW, "send", "due", "m1"),
    (
        "due exactly now (inclusive)",
        {"last_outbound_at": NOW - 3 * H},
        LeadState(),
        {},
        NOW,
        "send",
        "due",
        "m1",
    ),
    (
        "a second before due waits",
        {"last_outbound_at": NOW - 3 * H + timedelta(seconds=1)},
        LeadState(),
        {},
        NOW,
        "wait",
        "not_due",
        "m1",
    ),
    ("score below range", {"score": 1}, LeadState(), {}, NOW, "none", "score_out_of_range", None),
    ("score at min edge", {"score": 2}, LeadState(), {}, NOW, "send", "due", "m1"),
    ("score at max edge", {"score": 6}, LeadState(), {}, NOW, "send", "due", "m1"),
    ("score above range", {"score": 7}, LeadState(), {}, NOW, "none", "score_out_of_range", None),
    ("score missing", {"score": None}, LeadState(), {}, NOW, "none", "score_out_of_range", None),
    (
        "account override of score range",
        {"score": 7},
        LeadState(),
        {
            "accounts": [{"id": "acct_a", "settings": {"max_score": 8}}],
            "sequences": [{**base_config()["sequences"][0], "trigger": []}],
        },
        NOW,
        "send",
        "due",
        "m1",
    ),
    (
        "converted_at set",
        {"converted_at": NOW - 10 * H},
        LeadState(),
        {},
        NOW,
        "none",
        "converted",
        None,
    ),
    ("status converted", {"status": "Converted"}, LeadState(), {}, NOW, "none", "converted", None),
    (
        "opted out",
        {},
        LeadState(opted_out=True, optout_reason="asked"),
        {},
        NOW,
        "none",
        "opted_out",
        None,
    ),
    (
        "opt-out keyword",
        {"last_inbound_text": "Please STOP."},
        LeadState(),
        {},
        NOW,
        "none",
        "opted_out",
        None,
    ),
    (
        "opt-out phrase",
        {"last_inbound_text": "no more messages, thanks"},
        LeadState(),
        {},
        NOW,
        "none",
        "opted_out",
        None,
    ),
    (
        "keyword inside a word is not an opt-out",
        {"last_inbound_text": "nonstop deals?"},
        LeadState(),
        {},
        NOW,
        "send",
        "due",
        "m1",
    ),
    (
        "lead wrote last waits for a human",
        {"last_inbound_at": NOW - 3 * H},
        LeadState(),
        {},
        NOW,
        "none",
        "waiting_for_human",
        None,
    ),
    (
        "never contacted",
        {"last_outbound_at": None},
        LeadState(),
        {},
        NOW,
        "none",
        "never_contacted",
        None,
    ),
    (
        "not silent for no_response_hours",
        {
            "last_inbound_at": NOW - 90 * timedelta(minutes=1),
            "last_outbound_at": NOW - 80 * timedelta(minutes=1),
        },
        LeadState(),
        {
            "sequences": [
                {"id": "s0", "messages": [{"id": "now", "delay_hours": 0, "template": "x"}]}
            ]
        },
        NOW,
        "wait",
        "not_silent_long_enough",
        "now",
    ),
    (
        "outside the window",
        {"last_inbound_at": NOW - 25 * H, "last_outbound_at": NOW - 24.5 * H},
        LeadState(),
        {},
        NOW,
        "skip",
        "outside_window",
        "m1",
    ),
    (
        "window closes exactly now",
        {"last_inbound_at": NOW - 24 * H, "last_outbound_at": NOW - 23 * H},
        LeadState(),
        {},
        NOW,
        "skip",
        "outside_window",
        "m1",
    ),
    (
        "a minute inside the window",
        {"last_inbound_at": NOW - 24 * H + timedelta(minutes=1), "last_outbound_at": NOW - 23 * H},
        LeadState(),
        {},
        NOW,
        "send",
        "due",
        "m1",
    ),
    (
        "never wrote to us: no window",
        {"last_inbound_at": None},
        LeadState(),
        {},
        NOW,
        "skip",
        "outside_window",
        "m1",
    ),
    (
        "no window on the channel",
        {"last_inbound_at": None},
        LeadState(),
        {"channel": {"window_hours": None}},
        NOW,
        "send",
        "due",
        "m1",
    ),
    (
        "quiet hours at 22:00",
        {"last_inbound_at": NOW + 6 * H, "last_outbound_at": NOW + 7 * H},
        LeadState(),
        {},
        NOW + 12 * H,
        "wait",
        "quiet_hours",
        "m1",
    ),
    (
        "quiet hours end at 09:00 (exclusive)",
        {"last_inbound_at": NOW - 6 * H, "last_outbound_at": NOW - 5 * H},
        LeadState(),
        {},
        NOW - H,
        "send",
        "due",
        "m1",
    ),
    (
        "quiet hours in the lead's own zone",
        {"timezone": "America/Mexico_City"},
        LeadState(),
        {},
        NOW,
        "wait",
        "quiet_hours",
        "m1",
    ),
    (
        "min interval not yet",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(followups=(sent("m1", NOW - 3 * H),), enrollments=(enrolled(NOW - 21 * H),)),
        {},
        NOW,
        "wait",
        "min_interval",
        "m2",
    ),
    (
        "min interval exactly reached",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(followups=(sent("m1", NOW - 4 * H),), enrollments=(enrolled(NOW - 21 * H),)),
        {},
        NOW,
        "send",
        "due",
        "m2",
    ),
    (
        "a pending claim of another sequence counts for the interval",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(
            followups=(sent("m1", NOW - 3 * H, seq="old", status="pending"),),
            enrollments=(enrolled(NOW - 21 * H),),
        ),
        {},
        NOW,
        "wait",
        "min_interval",
        "m1",
    ),
    (
        "daily cap",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(followups=(sent("m1", NOW - 5 * H),), enrollments=(enrolled(NOW - 21 * H),)),
        {"settings": {"max_per_lead_per_day": 1}},
        NOW,
        "wait",
        "daily_cap",
        "m2",
    ),
    (
        "daily cap resets on the operator's next day",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(followups=(sent("m1", NOW - 11 * H),), enrollments=(enrolled(NOW - 21 * H),)),
        {"settings": {"max_per_lead_per_day": 1}},
        NOW,
        "send",
        "due",
        "m2",
    ),
    (
        "lead limit",
        {},
        LeadState(
            followups=tuple(sent(f"x{i}", NOW - 100 * H, seq="old") for i in range(5)),
            enrollments=(enrolled(NOW - 200 * H, seq="old", ended="completed"),),
        ),
        {},
        NOW,
        "none",
        "lead_limit",
        None,
    ),
    (
        "sequence limit ends the enrollment",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(followups=(sent("m1", NOW - 10 * H),), enrollments=(enrolled(NOW - 21 * H),)),
        {"sequences": [{**base_config()["sequences"][0], "max_followups": 1}]},
        NOW,
        "end",
        "sequence_limit",
        None,
    ),
    (
        "all steps done completes",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(
            followups=(sent("m1", NOW - 15 * H), sent("m2", NOW - 5 * H)),
            enrollments=(enrolled(NOW - 21 * H),),
        ),
        {},
        NOW,
        "end",
        "completed",
        None,
    ),
    (
        "a reply ends the enrollment",
        {"last_inbound_at": NOW - H, "last_outbound_at": NOW - 30 * timedelta(minutes=1)},
        LeadState(followups=(sent("m1", NOW - 3 * H),), enrollments=(enrolled(NOW - 10 * H),)),
        {},
        NOW,
        "end",
        "replied",
        None,
    ),
    (
        "trigger no longer matches",
        {"score": 4},
        LeadState(enrollments=(enrolled(NOW - 4 * H),)),
        {
            "sequences": [
                {
                    **base_config()["sequences"][0],
                    "trigger": [{"field": "score", "op": "gte", "value": 5}],
                }
            ]
        },
        NOW,
        "end",
        "trigger_mismatch",
        None,
    ),
    (
        "permanent failure ends the enrollment",
        {},
        LeadState(
            followups=(sent("m1", NOW - H, status="failed"),), enrollments=(enrolled(NOW - 4 * H),)
        ),
        {},
        NOW,
        "end",
        "failed",
        None,
    ),
    (
        "an unknown step holds the sequence: the next step does not jump ahead",
        {"last_inbound_at": NOW - 21 * H, "last_outbound_at": NOW - 20 * H},
        LeadState(
            followups=(sent("m1", NOW - 17 * H, status="unknown"),),
            enrollments=(enrolled(NOW - 20 * H),),
        ),
        {},
        NOW,
        "wait",
        "unknown_outcome",
        None,
    ),
    (
        "a step another run is sending holds the sequence",
        {"last_inbound_at": NOW - 21 * H, "last_outbound_at": NOW - 20 * H},
        LeadState(
            followups=(sent("m1", NOW - 17 * H, status="pending"),),
            enrollments=(enrolled(NOW - 20 * H),),
        ),
        {},
        NOW,
        "wait",
        "in_flight",
        None,
    ),
    (
        "once resolved as sent, the next step goes out",
        {"last_inbound_at": NOW - 21 * H, "last_outbound_at": NOW - 20 * H},
        LeadState(
            followups=(sent("m1", NOW - 17 * H),),
            enrollments=(enrolled(NOW - 20 * H),),
        ),
        {},
        NOW,
        "send",
        "due",
        "m2",
    ),
    (
        "inactive step is passed over",
        {"last_inbound_at": NOW - 22 * H, "last_outbound_at": NOW - 21 * H},
        LeadState(),
        {
            "sequences": [
                {
                    **base_config()["sequences"][0],
                    "messages": [
                        {"id": "m1", "delay_hours": 3, "template": "a", "active": False},
                        {"id": "m2", "delay_hours": 20, "template": "b"},
                    ],
                }
            ]
        },
        NOW,
        "send",
        "due",
        "m2",
    ),
    (
        "inactive sequence is not entered",
        {},
        LeadState(),
        {"sequences": [{**base_config()["sequences"][0], "active": False}]},
        NOW,
        "none",
        "no_sequence",
        None,
    ),
    (
        "inactive sequence pauses an enrollment",
        {},
        LeadState(enrollments=(enrolled(NOW - 4 * H),)),
        {"sequences": [{**base_config()["sequences"][0], "active": False}]},
        NOW,
        "none",
        "sequence_inactive",
        None,
    ),
    (
        "no trigger matches",
        {"attributes": {}},
        LeadState(),
        {
            "sequences": [
                {
                    **base_config()["sequences"][0],
                    "trigger": [{"field": "attributes.interest", "op": "exists"}],
                }
            ]
        },
        NOW,
        "none",
        "no_sequence",
        None,
    ),
    (
        "disabled account",
        {},
        LeadState(),
        {"accounts": [{"id": "acct_a", "enabled": False}]},
        NOW,
        "none",
        "account_disabled",
        None,
    ),
    (
        "unknown account",
        {"account_id": "nobody"},
        LeadState(),
        {},
        NOW,
        "none",
        "unknown_account",
        None,
    ),
    (
        "ended sequence is not re-entered in the same round",
        {},
        LeadState(enrollments=(enrolled(NOW - 4 * H, ended="replied"),)),
        {},
        NOW,
        "none",
        "sequence_done",
        None,
    ),
]


@pytest.mark.parametrize(
    ("overrides", "state", "config", "now", "action", "reason", "step"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    overrides: dict,
    state: LeadState,
    config: dict,
    now: datetime,
    action: str,
    reason: str,
    step: str | None,
) -> None:
    d = decide(mk_lead(**overrides), state, cfg(**config), now)
    assert (d.action, d.reason) == (action, reason), d.detail
    assert d.message_id == step
    # every verdict is explained, and a failing rule is marked
    assert d.checks
    if action != "send":
        assert d.detail


@pytest.mark.parametrize(
    ("overrides", "state", "config", "now"),
    [c[1:5] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide__without_explaining_decides_the_same_with_no_checks(
    overrides: dict, state: LeadState, config: dict, now: datetime
) -> None:
    lead, conf = mk_lead(**overrides), cfg(**config)
    explained = decide(lead, state, conf, now)
    quiet = decide(lead, state, conf, now, explain=False)
    assert quiet.checks == []
    assert quiet == dataclasses.replace(explained, checks=[])


def test_decide__highest_priority_matching_sequence_wins() -> None:
    d = decide(mk_lead(), LeadState(), cfg(**two_sequences()), NOW)
    assert (d.action, d.sequence_id) == ("send", "high")


def test_decide__enrollment_keeps_its_sequence_and_silence_start() -> None:
    anchor = NOW - 21 * H
    state = LeadState(
        followups=(sent("m1", NOW - 10 * H, seq="low"),), enrollments=(enrolled(anchor, seq="low"),)
    )
    # the host app moved last_outbound_at to our follow-up: the anchor must not move
    lead = mk_lead(last_inbound_at=NOW - 22 * H, last_outbound_at=NOW - 10 * H)
    d = decide(lead, state, cfg(**two_sequences()), NOW)
    assert (d.action, d.sequence_id, d.message_id) == ("send", "low", "m2")
    assert d.due_at == anchor + 20 * H


def test_decide__new_round_after_a_reply_enters_another_sequence() -> None:
    state = LeadState(enrollments=(enrolled(NOW - 30 * H, seq="high", ended="replied"),))
    d = decide(mk_lead(), state, cfg(**two_sequences()), NOW)
    assert (d.action, d.sequence_id) == ("send", "low")


def test_decide__pull_forward_sends_at_the_last_slot_before_the_window_closes() -> None:
    # m2 due at anchor+20h = 19:00 tomorrow-ish; the window closes before the next slot.
    now = datetime(2026, 3, 2, 18, 0, tzinfo=MADRID).astimezone(UTC)
    lead = mk_lead(last_inbound_at=now - 5 * H, last_outbound_at=now - 4 * H)
    state = LeadState(followups=(sent("m1", now - 4 * H),), enrollments=(enrolled(now - 4 * H),))
    raw_seq = {**base_config()["sequences"][0]}
    raw_seq["messages"] = [
        {"id": "m1", "delay_hours": 0, "template": "a"},
        {"id": "m2", "delay_hours": 19.5, "template": "b"},
    ]
    plain = decide(
        lead, state, cfg(sequences=[raw_seq], settings={"min_interval_hours": 0}), now + 15 * H
    )
    assert (plain.action, plain.reason) == ("wait", "not_due")  # 09:00 next day: not due yet
    pulled = decide(
        lead,
        state,
        cfg(sequences=[raw_seq], settings={"min_interval_hours": 0, "pull_forward": True}),
        now + 15 * H,
    )
    assert (pulled.action, pulled.reason, pulled.message_id) == ("send", "pulled_forward", "m2")


def test_decide__holdout_share_is_stable_and_close_to_configured() -> None:
    seq = {**base_config()["sequences"][0], "holdout": 0.3}
    config = cfg(sequences=[seq])
    actions = Counter(
        decide(mk_lead(id=f"L{i}"), LeadState(), config, NOW).action for i in range(2000)
    )
    assert 0.26 < actions["holdout"] / 2000 < 0.34
    assert actions["holdout"] + actions["send"] == 2000
    again = Counter(
        decide(mk_lead(id=f"L{i}"), LeadState(), config, NOW).action for i in range(2000)
    )
    assert again == actions


def test_variants__deterministic_and_weighted() -> None:
    seq = {**base_config()["sequences"][0]}
    seq["messages"] = [
        {
            "id": "m1",
            "delay_hours": 3,
            "variants": [
                {"id": "a", "weight": 3, "template": "A"},
                {"id": "b", "weight": 1, "template": "B"},
            ],
        }
    ]
    config = cfg(sequences=[seq])
    msg = config.sequences[0].messages[0]
    picks = Counter(choose_variant(f"lead{i}", "s1", msg) for i in range(8000))
    assert 0.72 < picks["a"] / 8000 < 0.78
    assert all(
        choose_variant(f"lead{i}", "s1", msg) == choose_variant(f"lead{i}", "s1", msg)
        for i in range(50)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        ("please unsubscribe me", "unsubscribe"),
        ("Stop!", "stop"),
        ("unstoppable", None),
        (None, None),
        ("", None),
    ],
)
def test_keyword_optout(text: str | None, expected: str | None) -> None:
    assert keyword_optout(text, ("stop", "unsubscribe", "no more messages")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＳＴＯＰ", "stop"),  # full-width letters (NFKC)
        ("no more  messages", "no more messages"),  # two spaces
        ("No more\nmessages please", "no more messages"),
        ("No mas mensajes", "no más mensajes"),  # typed without the accent
        ("NO MÁS MENSAJES", "no más mensajes"),
        ("BAJA", "baja"),
        ("quero parar de receber", "parar"),
        ("Pare!", "pare"),
        ("Arrêtez, merci", "arrêtez"),
        ("ne m’écrivez plus", "ne m'écrivez plus"),  # a typographic apostrophe
        ("Bitte abmelden", "abmelden"),
        ("STOPP", "stopp"),
        ("disiscrivimi grazie", "disiscrivimi"),
        ("non scrivermi piu", "non scrivermi più"),
        # ordinary questions from interested leads are not opt-outs
        ("posso cancelar a qualquer momento?", None),
        ("basta clicar no link?", None),
        ("quiero más información", None),
        ("can you send more messages about pricing?", None),
        ("unstoppable deal", None),
        ("bajamos el precio?", None),
    ],
)
def test_keyword_optout__normalised_text_and_the_default_languages(
    text: str, expected: str | None
) -> None:
    from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS

    assert keyword_optout(text, DEFAULT_OPTOUT_KEYWORDS) == expected


def test_keyword_like_pattern__keeps_every_text_the_rule_matches() -> None:
    """The store's coarse prefilter is a superset of the rule (as far as SQL lower() goes)."""
    import re as _re

    from followup_cli.config import DEFAULT_OPTOUT_KEYWORDS
    from followup_cli.rules import keyword_like_pattern

    def like(pattern: str, text: str) -> bool:
        rx = ""
        i = 0
        while i < len(pattern):
            c = pattern[i]
            if c == "\\":
                rx += _re.escape(pattern[i + 1])
                i += 2
                continue
            rx += ".*" if c == "%" else "." if c == "_" else _re.escape(c)
            i += 1
        return _re.fullmatch(rx, text, _re.S) is not None

    for text in ("No  más mensajes", "no mas mensajes", "ne m’écrivez plus", "Quero PARAR"):
        kw = keyword_optout(text, DEFAULT_OPTOUT_KEYWORDS)
        assert kw is not None
        pattern = keyword_like_pattern(kw)
        assert pattern is not None and like(pattern, text.lower()), (kw, pattern)
    assert keyword_like_pattern("100%_off") == "%100\\%\\__ff%"


def test_quiet_until__wraps_midnight() -> None:
    config = cfg()
    late = datetime(2026, 3, 2, 23, 30, tzinfo=MADRID)
    until = quiet_until(late, config.settings, None)
    assert until == datetime(2026, 3, 3, 9, 0, tzinfo=MADRID)
    assert quiet_until(datetime(2026, 3, 2, 9, 0, tzinfo=MADRID), config.settings, None) is None
    assert quiet_until(datetime(2026, 3, 2, 20, 59, tzinfo=MADRID), config.settings, None) is None


# ------------------------------------------------ the person, not the row (issue 9)


def _person(**kw: Any) -> LeadState:
    """A fresh lead row (nothing recorded under it) of a person with a history elsewhere."""
    return LeadState(**kw)


@pytest.mark.parametrize(
    ("name", "state", "over", "action", "reason"),
    [
        ("nothing elsewhere", _person(), {}, "send", "due"),
        (
            "the person was erased",
            _person(suppression="erasure"),
            {},
            "none",
            "opted_out",
        ),
        (
            "the person opted out under another row",
            _person(suppression="optout", suppression_reason="keyword: stop"),
            {},
            "none",
            "opted_out",
        ),
        (
            "the person's daily allowance is used under another row",
            _person(person_followups=(sent("m1", NOW - 5 * H, seq="s_other"),)),
            {"settings": {"max_per_lead_per_day": 1, "min_interval_hours": 1}},
            "wait",
            "daily_cap",
        ),
        (
            "the person's interval runs under another row",
            _person(person_followups=(sent("m1", NOW - 2 * H, seq="s_other"),)),
            {},
            "wait",
            "min_interval",
        ),
        (
            "the person's lifetime count is used under other rows",
            _person(
                person_followups=tuple(
                    sent(f"m{i}", NOW - (48 + i) * H, seq=f"old{i}") for i in range(5)
                )
            ),
            {},
            "none",
            "lead_limit",
        ),
        (
            "a failed or skipped step elsewhere is not counted",
            _person(person_followups=(sent("m1", NOW - 2 * H, status="skipped"),)),
            {},
            "send",
            "due",
        ),
    ],
)
def test_decide__caps_and_suppressions_belong_to_the_person(
    name: str, state: LeadState, over: dict, action: str, reason: str
) -> None:
    d = decide(mk_lead(), state, cfg(**over), NOW)
    assert (d.action, d.reason) == (action, reason), (name, d.detail)


def test_decide__the_person_in_a_sequence_under_another_row_is_not_enrolled_again() -> None:
    from followup_cli.models import PersonEnrollment

    active = _person(person_enrollments=(PersonEnrollment("L0", "s1"),))
    d = decide(mk_lead(), active, cfg(), NOW)
    assert (d.action, d.reason) == ("none", "person_in_sequence")
    assert "as lead L0" in d.detail
    # a sequence the person went through under another row is never entered again
    done = _person(person_enrollments=(PersonEnrollment("L0", "s1", ended_at=NOW - 48 * H),))
    d = decide(mk_lead(), done, cfg(), NOW)
    assert (d.action, d.reason) == ("none", "no_sequence")


def test_decide__the_sequence_limit_counts_the_persons_steps() -> None:
    """Sends in the sequence under another row count toward the sequence's limit."""
    raw = base_config()
    raw["sequences"][0]["max_followups"] = 1
    config = Config.model_validate(raw)
    state = LeadState(
        enrollments=(enrolled(NOW - 30 * H),),
        followups=(),
        person_followups=(sent("m1", NOW - 27 * H),),
    )
    d = decide(mk_lead(last_inbound_at=NOW - 31 * H), state, config, NOW)
    assert (d.action, d.reason) == ("end", "sequence_limit")


_SOME = [
    "ＳＴＯＰ",
    "S\u0301TOP",
    "\ufb06op",
    "Ｂａｊａ",
    "no  MÁS mensajes",
    "Don\u2019t message me",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from([*_SOME, " ", "x", "stopper"]), st.text(max_size=8)),
        max_size=4,
    ).map("".join)
)
def test_the_prefilters_one_pass_keyword_check_agrees_with_keyword_optout(text: str) -> None:
    """SQLite's prefilter calls ``has_optout_keyword`` for text its ``lower()`` cannot fold."""
    joined = KEYWORD_SEPARATOR.join(DEFAULT_OPTOUT_KEYWORDS)
    found = keyword_optout(text, DEFAULT_OPTOUT_KEYWORDS)
    assert has_optout_keyword(text, joined) == (found is not None), (text, found)


def test_sqlites_keyword_function__in_doubt_a_candidate() -> None:
    """``followup_keyword`` (SQLite's prefilter, for non-ASCII text and blobs) answers as the
    rules do for what it can read, never raises, and keeps a value it cannot read."""
    from followup_cli.store.sqlite_candidates import _keyword

    class Unreadable:
        def __str__(self) -> str:
            raise ValueError("no")

    joined = KEYWORD_SEPARATOR.join(DEFAULT_OPTOUT_KEYWORDS)
    assert _keyword("ＳＴＯＰ".encode(), joined) == 1
    assert _keyword(b"\xff\xfe please stop", joined) == 1  # invalid UTF-8 around it
    assert _keyword("¿cuánto cuesta el envío? 😊".encode(), joined) == 0
    assert _keyword(None, joined) == 0
    assert _keyword(Unreadable(), joined) == 1


def _fold_by_the_book(text: str) -> str:
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return "".join("'" if c in APOSTROPHES else c for c in t)


def test_combining_marks_are_every_combining_character() -> None:
    every = "".join(filter(unicodedata.combining, map(chr, range(0x110000))))
    assert combining_marks() == every


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*_SOME, "Ab`c", "\U0001e944", " ", "ß", "İ"]), st.text(max_size=8)
        ),
        max_size=4,
    ).map("".join)
)
def test_fold_text_folds_as_its_definition_says(text: str) -> None:
    """ASCII text takes a shortcut, other text a table filled as characters are met."""
    assert fold_text(text) == _fold_by_the_book(text)


def _like(pattern: str, text: str) -> bool:
    """SQL LIKE with ESCAPE '\\', case-sensitive (the patterns are lower case)."""
    rx, chars = "", iter(pattern)
    for c in chars:
        rx += (
            re.escape(next(chars))
            if c == "\\"
            else ".*"
            if c == "%"
            else "."
            if c == "_"
            else re.escape(c)
        )
    return re.fullmatch(rx, text, re.S) is not None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*DEFAULT_OPTOUT_KEYWORDS, "stopp", "para", "no", " ", "%", "_"]),
            st.text(alphabet="abcdeimnoprstuxz _%\\", max_size=6),
        ),
        max_size=5,
    ).map(" ".join)
)
def test_keyword_like_patterns__drops_only_patterns_another_one_covers(text: str) -> None:
    """The prefilter's LIKE patterns, pruned, keep exactly the texts all of them keep."""
    keywords = (*DEFAULT_OPTOUT_KEYWORDS, "100%_off", "a\\b")
    every = {keyword_like_pattern(k) for k in keywords} - {None}
    kept = keyword_like_patterns(keywords)
    assert set(kept) <= every and len(kept) < len(every)
    lowered = normalize_text(text)
    assert any(_like(p, lowered) for p in kept) == any(_like(p, lowered) for p in every)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*DEFAULT_OPTOUT_KEYWORDS, "100% of", "scri", "mensa", "plus", " "]),
            st.text(alphabet="abcdeimnoprstuxz _%\\", max_size=6),
        ),
        max_size=5,
    ).map(" ".join),
    st.booleans(),
)
def test_keyword_like_gates__keep_exactly_the_texts_the_patterns_keep(
    text: str, exact: bool
) -> None:
    """The SQLite prefilter asks the patterns that share a literal behind it: every pattern
    is in one group, and "gate AND (one of its patterns)" keeps what the patterns keep."""
    keywords = (*DEFAULT_OPTOUT_KEYWORDS, "100%_off", "100% offer", "a\\b")
    patterns = keyword_like_patterns(keywords, exact)
    groups = keyword_like_gates(patterns)
    assert sorted(i for _, members in groups for i in members) == list(range(len(patterns)))
    assert len(groups) < len(patterns) / 2 if exact else len(groups) < len(patterns)
    lowered = normalize_text(text)
    gated = any(
        (gate is None or _like(gate, lowered)) and any(_like(patterns[i], lowered) for i in m)
        for gate, m in groups
    )
    assert gated == any(_like(p, lowered) for p in patterns)
    assert ("%100\\%%", (0, 1)) in keyword_like_gates(("%100\\%%off%", "%100\\%%of_er%"))


_ASCII_WORDS = sorted({w for k in DEFAULT_OPTOUT_KEYWORDS for w in normalize_text(k).split()})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*_ASCII_WORDS, "PARA", "Trabajo", "price", "don`t", " ", "\t", "."]),
            st.text(alphabet="abcdeijmnoprstuyABEIOSTU `'.,!?\n", max_size=6),
        ),
        max_size=6,
    ).map(lambda parts: " ".join(p.encode("ascii", "ignore").decode() for p in parts)),
    st.booleans(),
)
def test_exact_keyword_patterns__keep_every_ascii_text_the_rule_stops(
    text: str, accented_keywords: bool
) -> None:
    """On a store whose LIKE folds ASCII case alone and that hands every non-ASCII text to
    the rules (SQLite), the patterns keep their vowels: an ASCII text the rule reads as an
    opt-out still matches one (LIKE ignores ASCII case, so compare lower case)."""
    keywords = DEFAULT_OPTOUT_KEYWORDS if accented_keywords else ("stop", "don't message me")
    if keyword_optout(text, keywords) is not None:
        assert any(_like(p, text.lower()) for p in keyword_like_patterns(keywords, exact=True))


def test_exact_keyword_patterns__leave_ordinary_words_out() -> None:
    """``%b_j_%`` and ``%p_r_%`` (from "baja", "pare") kept "trabajo", "para" and "paper"; the
    exact patterns keep only what holds the keyword's letters."""
    exact = keyword_like_patterns(DEFAULT_OPTOUT_KEYWORDS, exact=True)
    for text in ("para el trabajo", "paper", "support please", "how much?"):
        assert not any(_like(p, text) for p in exact), text
    coarse = keyword_like_patterns(DEFAULT_OPTOUT_KEYWORDS)
    assert any(_like(p, "para el trabajo") for p in coarse)
    for text in ("baja", "quiero parar", "no mas mensajes", "DON`T message me"):
        assert keyword_optout(text, DEFAULT_OPTOUT_KEYWORDS) is not None, text
        assert any(_like(p, text.lower()) for p in exact), text


_VALUES = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.sampled_from([1.0, 2.5, "2", "1.0", "x", "", "qualified", True, False]),
)


@settings(max_examples=1000, deadline=None)
@given(
    field=st.sampled_from(["score", "status", "nope", ""]),
    op=st.sampled_from(["between", "eq", "in", "ne", "gt", "exists"]),
    value=st.one_of(st.lists(_VALUES, min_size=2, max_size=3), _VALUES, st.lists(_VALUES)),
    score=_VALUES,
    status=_VALUES,
)
def test_trigger_holds__compiled_conditions_answer_as_the_condition_walk(
    field: str, op: str, value: Any, score: Any, status: Any
) -> None:
    """A run compiles each trigger condition once; it must hold exactly where
    ``condition_holds`` holds, for any operand (odd ones raise as before, lead by lead)."""
    cond = Condition.model_construct(field=field, op=op, value=value, any=None, all=None)
    lead = Lead(id="L1", account_id="a", recipient_id="r", score=score, status=status)
    seq = types.SimpleNamespace(trigger=(cond,))

    def answer(f: Any) -> Any:
        try:
            return bool(f())
        except Exception as exc:  # noqa: BLE001 - the same error, the same way
            return type(exc)

    assert answer(lambda: trigger_holds(seq, lead)) == answer(lambda: condition_holds(cond, lead))


@pytest.mark.parametrize(
    ("op", "value", "holds"),
    [
        ("gt", "2026-03-01", True),
        ("gte", "2026-03-02T08:00:00Z", True),
        ("gte", "2026-03-02T09:00:00+01:00", True),  # the same instant
        ("lt", "2026-03-05", True),
        ("lte", "2026-03-02T08:00:00", True),  # no offset: UTC
        ("between", ["2026-03-01", "2026-03-05"], True),
        ("gt", "2026-03-05", False),
        ("lt", "2026-03-01", False),
        ("between", ["2026-03-03", "2026-03-05"], False),
        ("gt", "not a time", False),
        ("lt", 5, False),
    ],
)
def test_condition__a_time_column_compares_with_an_iso_time(
    op: str, value: Any, holds: bool
) -> None:
    """`last_inbound_at gte 2026-03-01` compares times (before, only `gt` held, by the text
    of the time; gte, lt, lte and between never held on a time column)."""
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    # (the config refuses a value that is no time; the rules hold none either way)
    cond = Condition.model_construct(
        field="last_inbound_at", op=op, value=value, any=None, all=None
    )
    lead = Lead(id="L1", account_id="a", recipient_id="r", score=4, last_inbound_at=at)
    seq = types.SimpleNamespace(trigger=(cond,))
    assert condition_holds(cond, lead) is holds
    assert trigger_holds(seq, lead) is holds


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_condition__a_text_and_a_number_do_not_compare(op: str) -> None:
    """`attributes.x gt 2` on "abc" or on a list is no match, for every ordering operator
    (before, `gt` alone compared their texts: "abc" > "2")."""
    for x in ("abc", [1, 2], {"a": 1}):
        lead = Lead(id="L1", account_id="a", recipient_id="r", score=4, attributes={"x": x})
        assert condition_holds(Condition(field="attributes.x", op=op, value=2), lead) is False
