"""Pure decisions: who is due, with which message, and why not.

``decide(lead, state, config, now)`` is a pure function of a lead row, the tool's own
tracking state for that lead, the config and the time. ``run`` calls it to choose, calls
it again inside the claim transaction with fresh rows ("at the moment of sending"), and
``explain`` prints its checks. No database, no network, no clock of its own.

Actions:
    send     a step is due and every rule holds
    wait     a step exists but is not due yet or a temporary rule blocks it (next_at says when)
    skip     a due step can never be sent (outside the messaging window): recorded, enrollment ends
    end      the lead's enrollment ends (reply, conversion, opt-out, trigger, limits, completed)
    holdout  the lead enters a sequence as a control: enrolled, never messaged
    none     nothing to do and nothing to record
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import chain
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .config import Condition, Config, Message, Sequence, Settings
from .models import FAILED, PENDING, UNKNOWN, Lead, LeadState

Action = Literal["send", "wait", "skip", "end", "holdout", "none"]

# Reasons, by kind. Terminal reasons end an active enrollment; the others just wait.
TERMINAL = {
    "opted_out",
    "converted",
    "score_out_of_range",
    "lead_limit",
    "replied",
    "trigger_mismatch",
    "sequence_limit",
    "completed",
    "failed",
    "sequence_removed",
}


@dataclass
class Check:
    rule: str
    ok: bool | None  # None: not evaluated (an earlier rule decided)
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "ok": self.ok, "detail": self.detail}


@dataclass
class Decision:
    lead_id: str
    account_id: str | None
    action: Action = "none"
    reason: str = ""
    detail: str = ""
    checks: list[Check] = field(default_factory=list)
    sequence: Sequence | None = None
    message: Message | None = None
    step: int | None = None  # 1-based position among the sequence's messages
    variant_id: str | None = None
    anchor_at: datetime | None = None
    due_at: datetime | None = None
    next_at: datetime | None = None
    window_closes_at: datetime | None = None
    new_enrollment: bool = False
    keyword_optout: str | None = None
    followup_number: int = 0
    last_followup_at: datetime | None = None

    @property
    def sequence_id(self) -> str | None:
        return self.sequence.id if self.sequence else None

    @property
    def message_id(self) -> str | None:
        return self.message.id if self.message else None

    def as_dict(self) -> dict[str, Any]:
        def iso(dt: datetime | None) -> str | None:
            return dt.isoformat() if dt else None

        return {
            "lead_id": self.lead_id,
            "account_id": self.account_id,
            "action": self.action,
            "reason": self.reason,
            "detail": self.detail,
            "sequence_id": self.sequence_id,
            "message_id": self.message_id,
            "step": self.step,
            "variant_id": self.variant_id,
            "silence_started_at": iso(self.anchor_at),
            "due_at": iso(self.due_at),
            "next_at": iso(self.next_at),
            "window_closes_at": iso(self.window_closes_at),
            "followup_number": self.followup_number,
            "checks": [c.as_dict() for c in self.checks],
        }


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _fmt(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "never"


APOSTROPHES = "\u2019\u2018\u02bc`"  # made plain "'"


# Planes 4-13 hold no character in any Unicode version (tests check this one's).
_ASSIGNED_PLANES = (range(0, 0x40000), range(0xE0000, 0x110000))


@lru_cache(maxsize=1)
def combining_marks() -> str:
    """Every combining character (what accents decompose into), in code point order."""
    return "".join(filter(unicodedata.combining, map(chr, chain(*_ASSIGNED_PLANES))))


class _FoldTable(dict):
    """For ``str.translate``: a code point -> None (a combining mark: dropped), a plain
    apostrophe (a typographic one), or itself; filled in as characters are met, instead of
    scanning every code point up front (a quarter of a second a process)."""

    def __missing__(self, code: int) -> int | None:
        out = None if unicodedata.combining(chr(code)) else code
        self[code] = out
        return out


_FOLD = _FoldTable(dict.fromkeys(map(ord, APOSTROPHES), ord("'")))


def fold_text(text: str) -> str:
    """``normalize_text`` but for the spacing: NFKC (full-width letters, ligatures),
    case-folded, accents dropped, typographic apostrophes made plain."""
    if text.isascii():  # what the steps below leave of ASCII text, without them
        return text.lower().replace("`", "'")
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return t.translate(_FOLD)


def normalize_text(text: str) -> str:
    """Text as opt-out keywords are compared: NFKC (full-width letters, ligatures), case-folded,
    accents dropped, typographic apostrophes made plain, runs of whitespace one space."""
    return " ".join(fold_text(text).split())


@lru_cache(maxsize=64)
def _keyword_patterns(keywords: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for kw in keywords:
        k = normalize_text(kw)
        if k:
            out.append((kw, re.compile(r"(?<!\w)" + re.escape(k) + r"(?!\w)")))
    return tuple(out)


def keyword_optout(text: str | None, keywords: tuple[str, ...]) -> str | None:
    """The opt-out keyword (as configured) found in an inbound text, as a whole word or
    phrase after ``normalize_text``, or None."""
    if not text:
        return None
    norm = normalize_text(text)
    joined = _joined(tuple(keywords))
    anyone = any_keyword(joined)
    if anyone is None or anyone.search(norm) is None:  # one pass finds there is none
        return None
    for kw, pattern in _keyword_patterns(tuple(keywords)):
        if pattern.search(norm):
            return kw
    return None


KEYWORD_SEPARATOR = "\x1f"  # between keywords given as one string


@lru_cache(maxsize=64)
def _joined(keywords: tuple[str, ...]) -> str:
    return KEYWORD_SEPARATOR.join(keywords)


@lru_cache(maxsize=64)
def any_keyword(joined: str) -> re.Pattern[str] | None:
    """One pattern for all the keywords (joined by ``KEYWORD_SEPARATOR``) that finds in a
    ``normalize_text`` text what ``keyword_optout`` finds, in one pass (None: no keyword)."""
    words = {normalize_text(k) for k in joined.split(KEYWORD_SEPARATOR)}
    ordered = sorted((w for w in words if w), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")


def has_optout_keyword(text: str | None, joined: str) -> bool:
    """``keyword_optout(text, keywords) is not None``, the keywords joined by
    ``KEYWORD_SEPARATOR`` (the SQLite store's keyword prefilter calls it in SQL for text
    that SQL's ``lower()`` cannot fold)."""
    pattern = any_keyword(joined)
    return bool(text) and pattern is not None and pattern.search(normalize_text(text)) is not None


def keyword_like_pattern(keyword: str, exact: bool = False) -> str | None:
    """A coarse SQL LIKE pattern (``ESCAPE '\\'``) that every text ``keyword_optout`` matches
    with this keyword matches too, as far as SQL's ``lower()`` folds the text (ASCII text;
    the stores look at other text apart, ``_keyword_beyond_lower``): words joined by ``%``
    (any spacing), vowels and non-ASCII letters as ``_`` (accents either way, and a
    locale's ``lower()`` that folds ``I`` to ``ı``). ``exact`` keeps the vowels: for a
    store whose LIKE folds ASCII case alone and that matches every non-ASCII text by the
    rules themselves (SQLite), where ``%b_j_%`` would keep every "trabajo". The store's
    prefilter uses it to keep leads whose last message may opt out."""
    words = normalize_text(keyword).split()
    if not words:
        return None
    wild = "'" if exact else "aeiouy'"  # an ASCII ` folds to '
    out = []
    for w in words:
        chars = []
        for c in w:
            if c in wild or not c.isascii():
                chars.append("_")
            elif c in "%_\\":
                chars.append("\\" + c)
            else:
                chars.append(c)
        out.append("".join(chars))
    return "%" + "%".join(out) + "%"


def _like_words(pattern: str) -> list[list[str | None]]:
    """A ``keyword_like_pattern`` as its words; a word as its characters (None: ``_``)."""
    words: list[list[str | None]] = [[]]
    chars = iter(pattern)
    for c in chars:
        if c == "%":
            words.append([])
        else:
            words[-1].append(next(chars) if c == "\\" else None if c == "_" else c)
    return [w for w in words if w]


def _within(small: list[str | None], big: list[str | None]) -> bool:
    """Every text ``big`` matches (as a LIKE word) contains what ``small`` matches."""
    return any(
        all(a is None or a == b for a, b in zip(small, big[at:], strict=False))
        for at in range(len(big) - len(small) + 1)
    )


def _implies(big: str, small: str) -> bool:
    """Every text the LIKE pattern ``big`` matches, ``small`` matches too: ``small``'s
    words, in order, each inside another of ``big``'s words."""
    left = _like_words(big)
    for word in _like_words(small):
        while left and not _within(word, left[0]):
            left.pop(0)
        if not left:
            return False
        left.pop(0)
    return True


def keyword_like_patterns(keywords: Iterable[str], exact: bool = False) -> tuple[str, ...]:
    """The ``keyword_like_pattern`` of every keyword, less those another one already
    covers (``%n_%m_s%m_ns_j_s%`` matches whatever ``no quiero más mensajes`` matches):
    a text matches one of these exactly when it matches one of all of them. Computed once
    per keyword set (the pruning compares every pair: 11 % of a dry run's samples when the
    candidate query asked for it on each page)."""
    return _like_patterns(tuple(keywords), exact)


@lru_cache(maxsize=64)
def _like_patterns(keywords: tuple[str, ...], exact: bool) -> tuple[str, ...]:
    every = sorted({p for p in (keyword_like_pattern(k, exact) for k in keywords) if p})
    return tuple(
        p
        for p in every
        if not any(q != p and _implies(p, q) and not (_implies(q, p) and q > p) for q in every)
    )


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by its inputs: the same lead always lands in the same bucket."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:15], 16) / float(16**15)


def choose_variant(lead_id: str, sequence_id: str, message: Message) -> str | None:
    if not message.variants:
        return None
    x = stable_fraction("variant", lead_id, sequence_id, message.id)
    total = sum(v.weight for v in message.variants)
    acc = 0.0
    for v in message.variants:
        acc += v.weight / total
        if x < acc:
            return v.id
    return message.variants[-1].id


def in_holdout(lead_id: str, sequence: Sequence) -> bool:
    return (
        sequence.holdout > 0 and stable_fraction("holdout", lead_id, sequence.id) < sequence.holdout
    )


# --------------------------------------------------------------------- conditions


def _num(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return v
    return v


def _cmp(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        return False
    a, b = _num(a), _num(b)
    try:
        if op == "gt":
            return a > b
        if op == "gte":
            return a >= b
        if op == "lt":
            return a < b
        if op == "lte":
            return a <= b
    except TypeError:
        return str(a) > str(b) if op == "gt" else False
    return False


def _eq(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return _num(a) == _num(b) and a is not None and b is not None


def condition_holds(cond: Condition, lead: Lead) -> bool:
    if cond.any is not None:
        return any(condition_holds(c, lead) for c in cond.any)
    if cond.all is not None:
        return all(condition_holds(c, lead) for c in cond.all)
    value = lead.value(cond.field or "")
    op, target = cond.op, cond.value
    if op == "eq":
        return _eq(value, target)
    if op == "ne":
        return not _eq(value, target)
    if op == "in":
        return any(_eq(value, t) for t in target)
    if op == "not_in":
        return not any(_eq(value, t) for t in target)
    if op == "between":
        return _cmp(value, target[0], "gte") and _cmp(value, target[1], "lte")
    if op in ("gt", "gte", "lt", "lte"):
        return _cmp(value, target, op)
    if op == "exists":
        want = True if target is None else bool(target)
        present = value is not None and value != ""
        return present == want
    if op == "contains":
        if value is None:
            return False
        if isinstance(value, list | tuple | set):
            return any(_eq(v, target) for v in value)
        return str(target).lower() in str(value).lower()
    return False


def trigger_holds(sequence: Sequence, lead: Lead) -> bool:
    return all(condition_holds(c, lead) for c in sequence.trigger)


def describe_conditions(conditions: tuple[Condition, ...]) -> list[str]:
    out = []
    for c in conditions:
        if c.any is not None or c.all is not None:
            inner = " | ".join(describe_conditions(c.any or ())) if c.any is not None else None
            out.append(
                f"any of ({inner})"
                if inner
                else f"all of ({', '.join(describe_conditions(c.all or ()))})"
            )
        else:
            value = "" if c.op == "exists" and c.value is None else f" {c.value!r}"
            out.append(f"{c.field} {c.op}{value}")
    return out


# ------------------------------------------------------------------------- time


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except Exception:  # noqa: BLE001 - parse_lead already validated; be safe
        return ZoneInfo(fallback)


def quiet_until(now: datetime, settings: Settings, lead_tz: str | None) -> datetime | None:
    """When the lead's quiet hours end, if ``now`` is inside them; else None."""
    qh = settings.quiet_hours
    if qh is None or qh.start == qh.end:
        return None
    tz = _zone(lead_tz, settings.timezone)
    local = now.astimezone(tz)
    start = time.fromisoformat(qh.start)
    end = time.fromisoformat(qh.end)
    t = local.time().replace(tzinfo=None)
    if start < end:
        quiet = start <= t < end
        end_day = local.date()
    else:
        quiet = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not quiet:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(now.tzinfo)


def local_day(dt: datetime, tz_name: str) -> date:
    return dt.astimezone(ZoneInfo(tz_name)).date()


def local_midnight(now: datetime, tz_name: str) -> datetime:
    """The start of ``now``'s day in ``tz_name``."""
    tz = ZoneInfo(tz_name)
    d = now.astimezone(tz).date()
    return datetime.combine(d, time(0, 0), tzinfo=tz).astimezone(now.tzinfo)


def next_local_midnight(now: datetime, tz_name: str) -> datetime:
    tz = ZoneInfo(tz_name)
    d = now.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(d, time(0, 0), tzinfo=tz).astimezone(now.tzinfo)


def next_run_slot(now: datetime, settings: Settings) -> datetime:
    """The first cron slot (settings.run_times, operator zone) strictly after ``now``."""
    tz = ZoneInfo(settings.timezone)
    local = now.astimezone(tz)
    candidates = []
    for offset in (0, 1, 2):
        day = local.date() + timedelta(days=offset)
        for slot in settings.run_times:
            dt = datetime.combine(day, time.fromisoformat(slot), tzinfo=tz)
            if dt > local:
                candidates.append(dt)
    return min(candidates).astimezone(now.tzinfo) if candidates else now + timedelta(days=1)


# ---------------------------------------------------------------------- decision


@dataclass
class _Gate:
    """What the gates of ``decide`` share: the inputs, and the decision being built."""

    lead: Lead
    state: LeadState
    config: Config
    now: datetime
    d: Decision
    enrollment: Any  # the active Enrollment, or None
    counted: list[Any]
    st: Settings | None = None  # the account's settings, once the account gate has passed
    seq: Sequence | None = None
    next_step: tuple[int, Message] | None = None
    pulled: bool = False
    explain: bool = True  # False: no checks (a run reads only the verdict)

    def check(self, rule: str, ok: bool, detail: str | Callable[[], str]) -> None:
        """Record a rule's outcome for ``explain``; ``detail`` is built only when explaining
        (most gates pass it as a lambda: a run decides every due lead and prints none)."""
        if self.explain:
            self.d.checks.append(Check(rule, ok, detail if isinstance(detail, str) else detail()))

    def stop(self, reason: str, detail: str) -> Decision:
        """A rule failed: end the active enrollment if the reason is terminal."""
        d = self.d
        if self.enrollment is not None and reason in TERMINAL:
            d.action = "end"
            d.sequence = config_sequence(self.config, self.enrollment.sequence_id)
            d.anchor_at = self.enrollment.anchor_at
        else:
            d.action = "none"
        d.reason, d.detail = reason, detail
        return d

    def wait(self, reason: str, detail: str, until: datetime | None) -> Decision:
        d = self.d
        d.action, d.reason, d.detail, d.next_at = "wait", reason, detail, until
        return d

    def verdict(self, action: Action, reason: str, detail: str) -> Decision:
        self.d.action, self.d.reason, self.d.detail = action, reason, detail
        return self.d

    @property
    def settings(self) -> Settings:
        assert self.st is not None  # set by the account gate, which runs first
        return self.st


def _gate_account(g: _Gate) -> Decision | None:
    """The lead's account is configured and enabled."""
    lead = g.lead
    account = g.config.account(lead.account_id)
    if account is None:
        g.check("account", False, lambda: f"account {lead.account_id!r} is not in the config")
        return g.stop("unknown_account", f"account {lead.account_id!r} is not configured")
    if not account.enabled:
        g.check("account", False, lambda: f"account {account.id} is disabled")
        return g.stop("account_disabled", f"account {account.id} is disabled in the config")
    g.check("account", True, lambda: f"{account.id} is enabled")
    g.st = g.config.settings_for(account)
    return None


def _gate_optout(g: _Gate) -> Decision | None:
    """Opt-out: an erasure, a recorded opt-out (the lead's or the person's), or a keyword."""
    state = g.state
    kw = keyword_optout(g.lead.last_inbound_text, g.settings.all_optout_keywords)
    if state.suppression == "erasure":
        g.check("opt-out", False, "the person was erased on request")
        return g.stop("opted_out", "the person was erased on request: never messaged again")
    if state.opted_out:
        g.check("opt-out", False, lambda: f"opted out ({state.optout_reason or 'no reason given'})")
        return g.stop("opted_out", "the lead opted out")
    if state.suppression is not None:
        why = state.suppression_reason or "no reason given"
        g.check("opt-out", False, lambda: f"the person opted out ({why}), under another lead row")
        return g.stop("opted_out", "the person behind this lead opted out")
    if kw:
        g.d.keyword_optout = kw
        g.check("opt-out", False, lambda: f"last message contains the opt-out keyword {kw!r}")
        return g.stop("opted_out", f"the lead wrote {kw!r}: opted out")
    g.check("opt-out", True, "not opted out")
    return None


def _gate_conversion(g: _Gate) -> Decision | None:
    lead = g.lead
    if lead.converted_at is not None or (lead.status or "").lower() == "converted":
        g.check("conversion", False, lambda: f"converted {_fmt(lead.converted_at)}")
        return g.stop("converted", "the lead converted")
    g.check("conversion", True, "not converted")
    return None


def _gate_score(g: _Gate) -> Decision | None:
    score, st = g.lead.score, g.settings
    span = f"{st.min_score}-{st.max_score}"
    if score is None or not (st.min_score <= score <= st.max_score):
        g.check("score", False, lambda: f"score {score} is outside {span}")
        return g.stop("score_out_of_range", f"score {score} is outside {span}")
    g.check("score", True, lambda: f"score {score} is within {span}")
    return None


def _gate_lead_limit(g: _Gate) -> Decision | None:
    used, limit = len(g.counted), g.settings.max_followups_per_lead
    if used >= limit:
        g.check("lead limit", False, lambda: f"{used} of {limit} follow-ups used")
        return g.stop("lead_limit", f"the lead already had {used} follow-ups (the limit)")
    g.check("lead limit", True, lambda: f"{used} of {limit} follow-ups used")
    return None


def _gate_one_sequence_per_person(g: _Gate) -> Decision | None:
    """One sequence at a time per person, whatever lead row carries it."""
    elsewhere = [e for e in g.state.person_enrollments if e.ended_at is None and not e.gone]
    if g.enrollment is None and elsewhere:
        e = elsewhere[0]
        g.check("sequence", False, lambda: f"the person is in {e.sequence_id} as lead {e.lead_id}")
        return g.stop(
            "person_in_sequence", f"the same person is in {e.sequence_id} as lead {e.lead_id}"
        )
    return None


def _gate_sequence(g: _Gate) -> Decision | None:
    """The sequence the lead is in, or enters, and the start of its silence."""
    return _enrolled_sequence(g) if g.enrollment is not None else _new_sequence(g)


def _enrolled_sequence(g: _Gate) -> Decision | None:
    lead, d, enrollment = g.lead, g.d, g.enrollment
    seq = config_sequence(g.config, enrollment.sequence_id)
    d.anchor_at = enrollment.anchor_at
    if seq is None:
        g.check("sequence", False, lambda: f"{enrollment.sequence_id} was removed")
        return g.stop(
            "sequence_removed", f"sequence {enrollment.sequence_id} is no longer configured"
        )
    d.sequence = g.seq = seq
    if lead.last_inbound_at is not None and lead.last_inbound_at > enrollment.anchor_at:
        g.check("silence", False, lambda: f"the lead replied {_fmt(lead.last_inbound_at)}")
        return g.stop("replied", f"the lead replied at {_fmt(lead.last_inbound_at)}")
    g.check("silence", True, lambda: f"silent since {_fmt(enrollment.anchor_at)}")
    if not seq.active:
        g.check("sequence", False, lambda: f"{seq.id} is inactive (paused)")
        return g.stop("sequence_inactive", f"sequence {seq.id} is inactive; the lead waits in it")
    if not trigger_holds(seq, lead):
        g.check("trigger", False, lambda: f"{seq.id}'s trigger no longer matches")
        return g.stop("trigger_mismatch", f"sequence {seq.id}'s trigger no longer matches")
    g.check("sequence", True, lambda: f"enrolled in {seq.id} since {_fmt(enrollment.started_at)}")
    if enrollment.holdout:
        g.check("holdout", False, lambda: f"in {seq.id}'s holdout group: never messaged")
        last = max((m.delay_hours for m in seq.messages), default=0)
        if g.now >= enrollment.anchor_at + _h(last):
            return g.verdict("end", "completed", "holdout period is over")
        return g.stop("holdout", "control group: enrolled but never messaged")
    return None


def _new_sequence(g: _Gate) -> Decision | None:
    lead, d, state = g.lead, g.d, g.state
    if lead.last_outbound_at is None:
        g.check("silence", False, "we never wrote to this lead")
        return g.stop("never_contacted", "no outbound message yet: nothing to follow up")
    if lead.last_inbound_at is not None and lead.last_inbound_at > lead.last_outbound_at:
        g.check("silence", False, lambda: f"the lead wrote last ({_fmt(lead.last_inbound_at)})")
        return g.stop("waiting_for_human", "the lead wrote last and waits for a human reply")
    d.anchor_at = lead.last_outbound_at
    # A new enrollment needs a new conversation round since the previous one.
    if state.enrollments:
        last_prev = max(state.enrollments, key=lambda e: e.anchor_at)
        if lead.last_inbound_at is None or lead.last_inbound_at <= last_prev.anchor_at:
            g.check(
                "silence",
                False,
                lambda: (
                    f"{last_prev.sequence_id} ended ({last_prev.ended_reason}); "
                    "no new conversation since"
                ),
            )
            return g.stop(
                "sequence_done", f"{last_prev.sequence_id} ended: {last_prev.ended_reason}"
            )
    g.check("silence", True, lambda: f"silent since {_fmt(d.anchor_at)} (we wrote last)")
    # never the same sequence twice, for the person (under any lead row)
    done = {e.sequence_id for e in state.enrollments} | {
        e.sequence_id for e in state.person_enrollments
    }
    seq = next(
        (
            c
            for c in g.config.sequences_by_priority()
            if c.active and c.id not in done and trigger_holds(c, lead)
        ),
        None,
    )
    if seq is None:
        g.check("sequence", False, "no active sequence's trigger matches")
        return g.stop("no_sequence", "no active sequence's trigger matches this lead")
    d.sequence = g.seq = seq
    d.new_enrollment = True
    g.check("sequence", True, lambda: f"enters {seq.id} (priority {seq.priority})")
    return None


def _gate_step(g: _Gate) -> Decision | None:
    """The next step of the sequence: none failed, none open, one left."""
    seq = g.seq
    assert seq is not None
    seq_rows = [f for f in g.state.followups if f.sequence_id == seq.id]
    failed = [f for f in seq_rows if f.status == FAILED]
    if failed:
        g.check("step", False, lambda: f"{failed[-1].message_id} failed permanently")
        return g.stop("failed", f"a message of {seq.id} failed permanently")
    # A step nobody knows went out (unknown), or that another run is sending right now
    # (pending), holds the sequence: no later step jumps ahead of it, and once an operator
    # resolves it the sequence goes on in order.
    open_rows = [f for f in seq_rows if f.status in (PENDING, UNKNOWN)]
    if open_rows:
        f = open_rows[-1]
        if f.status == UNKNOWN:
            g.check("step", False, lambda: f"{f.message_id}'s outcome is unknown")
            return g.wait(
                "unknown_outcome",
                f"{f.message_id}'s outcome is unknown: check the conversation, then "
                "`followup unknown resolve ID --sent` or `--release` (`followup unknown list`)",
                None,
            )
        g.check("step", False, lambda: f"{f.message_id} is being sent by a run")
        return g.wait("in_flight", f"{f.message_id} is being sent by a run right now", None)
    done_ids = {f.message_id for f in seq_rows}
    step = next(
        ((i, m) for i, m in enumerate(seq.messages, start=1) if m.active and m.id not in done_ids),
        None,
    )
    if step is None:
        g.check("step", False, lambda: f"every message of {seq.id} is done")
        return g.stop("completed", f"{seq.id} is complete")
    g.next_step = step
    return None


def _gate_sequence_limit(g: _Gate) -> Decision | None:
    seq = g.seq
    assert seq is not None
    sent = len(g.state.counted(seq.id))
    if sent >= seq.limit:
        g.check("sequence limit", False, lambda: f"{sent} of {seq.limit} sent")
        return g.stop("sequence_limit", f"{seq.id}'s limit of {seq.limit} follow-ups is reached")
    g.check("sequence limit", True, lambda: f"{sent} of {seq.limit} sent")
    return None


def _gate_due(g: _Gate) -> Decision | None:
    """The step is due, or pulled forward because the messaging window closes first."""
    d, now, st = g.d, g.now, g.settings
    assert g.seq is not None and g.next_step is not None and d.anchor_at is not None
    d.step, d.message = g.next_step
    d.variant_id = choose_variant(g.lead.id, g.seq.id, d.message)
    d.due_at = d.anchor_at + _h(d.message.delay_hours)
    window = g.config.channel.window_hours
    if window is not None and g.lead.last_inbound_at:
        d.window_closes_at = g.lead.last_inbound_at + _h(window)
    if now >= d.due_at:
        g.check("due", True, lambda: f"step {d.step} ({d.message.id}) was due {_fmt(d.due_at)}")
        return None
    if (
        st.pull_forward
        and d.window_closes_at is not None
        and now < d.window_closes_at
        and d.due_at - now <= _h(st.pull_forward_hours)
        and next_run_slot(now, st) >= d.window_closes_at
    ):
        g.pulled = True
        g.check(
            "due", True, lambda: f"due {_fmt(d.due_at)}, pulled forward: the window closes first"
        )
        return None
    g.check("due", False, lambda: f"step {d.step} ({d.message.id}) is due {_fmt(d.due_at)}")
    note = ""
    if d.window_closes_at is not None and d.window_closes_at <= d.due_at:
        note = f"; the messaging window closes earlier ({_fmt(d.window_closes_at)})"
    return g.wait("not_due", f"{d.message.id} is due {_fmt(d.due_at)}{note}", d.due_at)


def _gate_no_response(g: _Gate) -> Decision | None:
    inbound, hours = g.lead.last_inbound_at, g.settings.no_response_hours
    if inbound is not None:
        quiet_ok = inbound + _h(hours)
        if g.now < quiet_ok:
            g.check(
                "no response",
                False,
                lambda: f"the lead wrote {_fmt(inbound)}; silent {hours:g}h at {_fmt(quiet_ok)}",
            )
            return g.wait(
                "not_silent_long_enough", f"silent for {hours:g}h at {_fmt(quiet_ok)}", quiet_ok
            )
    g.check("no response", True, lambda: f"no inbound for {hours:g}h or more")
    return None


def _gate_window(g: _Gate) -> Decision | None:
    """The channel's messaging window (Instagram: 24 h after the lead's last message)."""
    window, closes = g.config.channel.window_hours, g.d.window_closes_at
    if window is None:
        g.check("window", True, "the channel has no messaging window")
        return None
    if closes is None or g.now >= closes:
        why = "the lead never wrote to us" if closes is None else f"it closed {_fmt(closes)}"
        g.check("window", False, lambda: f"outside the {window:g}h messaging window: {why}")
        return g.verdict(
            "skip",
            "outside_window",
            f"outside the {window:g}h messaging window ({why}); hand off to a human",
        )
    g.check("window", True, lambda: f"inside the messaging window until {_fmt(closes)}")
    return None


def _gate_interval(g: _Gate) -> Decision | None:
    last, hours = g.d.last_followup_at, g.settings.min_interval_hours
    if last is not None:
        ok_at = last + _h(hours)
        if g.now < ok_at:
            g.check(
                "interval",
                False,
                lambda: f"last follow-up {_fmt(last)}; next allowed {_fmt(ok_at)}",
            )
            return g.wait(
                "min_interval", f"min interval: next follow-up allowed {_fmt(ok_at)}", ok_at
            )
    g.check("interval", True, lambda: f"at least {hours:g}h since the last follow-up")
    return None


def _gate_daily_cap(g: _Gate) -> Decision | None:
    st, now = g.settings, g.now
    today = local_day(now, st.timezone)
    today_count = sum(1 for f in g.counted if local_day(f.at, st.timezone) == today)
    if today_count >= st.max_per_lead_per_day:
        until = next_local_midnight(now, st.timezone)
        g.check("daily cap", False, lambda: f"{today_count} of {st.max_per_lead_per_day} today")
        return g.wait("daily_cap", f"daily cap reached; next day starts {_fmt(until)}", until)
    g.check("daily cap", True, lambda: f"{today_count} of {st.max_per_lead_per_day} today")
    return None


def _gate_quiet_hours(g: _Gate) -> Decision | None:
    st, tz = g.settings, g.lead.timezone
    quiet_end = quiet_until(g.now, st, tz)
    if quiet_end is not None:
        g.check(
            "quiet hours",
            False,
            lambda: f"quiet hours in {tz or st.timezone} until {_fmt(quiet_end)}",
        )
        return g.wait("quiet_hours", f"quiet hours until {_fmt(quiet_end)}", quiet_end)
    g.check("quiet hours", True, "outside quiet hours")
    return None


def _gate_holdout(g: _Gate) -> Decision | None:
    # Decided only now, when step 1 would really go out, so the control group is
    # comparable with the messaged group (same silence, same timing rules).
    seq = g.seq
    assert seq is not None
    if g.d.new_enrollment and in_holdout(g.lead.id, seq):
        g.check("holdout", False, lambda: f"in {seq.id}'s holdout group: never messaged")
        return g.verdict(
            "holdout",
            "holdout",
            f"enters {seq.id} as a control (holdout {seq.holdout:.0%}): never messaged",
        )
    return None


# The rules of PRODUCT.md, in order. Each gate either lets the lead through (None, after
# recording a passed check) or returns the decision; the first that decides wins.
GATES = (
    _gate_account,
    _gate_optout,
    _gate_conversion,
    _gate_score,
    _gate_lead_limit,
    _gate_one_sequence_per_person,
    _gate_sequence,
    _gate_step,
    _gate_sequence_limit,
    _gate_due,
    _gate_no_response,
    _gate_window,
    _gate_interval,
    _gate_daily_cap,
    _gate_quiet_hours,
    _gate_holdout,
)


def decide(
    lead: Lead, state: LeadState, config: Config, now: datetime, *, explain: bool = True
) -> Decision:
    """The verdict for one lead at ``now``: the gates of PRODUCT.md, in order, with reasons.
    ``explain=False`` leaves ``checks`` empty and decides the same (what a run uses)."""
    counted = state.counted()
    d = Decision(
        lead_id=lead.id,
        account_id=lead.account_id,
        followup_number=len(counted) + 1,
        last_followup_at=max((f.at for f in counted), default=None),
    )
    g = _Gate(lead, state, config, now, d, state.active_enrollment(), counted, explain=explain)
    for gate in GATES:
        verdict = gate(g)
        if verdict is not None:
            return verdict
    assert g.seq is not None and d.message is not None
    d.action = "send"
    d.reason = "pulled_forward" if g.pulled else "due"
    variant = f"/{d.variant_id}" if d.variant_id else ""
    d.detail = f"send {g.seq.id} step {d.step} ({d.message.id}{variant})"
    return d


def config_sequence(config: Config, sequence_id: str) -> Sequence | None:
    for s in config.sequences:
        if s.id == sequence_id:
            return s
    return None
