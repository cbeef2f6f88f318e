"""``followup plan``: replay the next N days of cron slots against the lead store as it is
now, sending nothing and writing nothing.

Each slot runs the engine's own selection (``Engine.plan_account``: the SQL prefilter, then
the pure ``rules.decide`` per lead) over an overlay of the store that remembers what the
earlier slots of the plan would have written: the follow-ups they sent (so a step is not
due again, and the daily cap, interval and lifetime count hold), the enrollments they
started and ended, the keyword opt-outs, the window losses, and the sends counted by the
sliding hourly rate window; all of them for the person too (the other lead rows of the same
account and recipient), as the runs' per-person caps count them.

What it cannot know, it assumes: no lead replies, converts or opts out during the
period, every send succeeds, and no new lead arrives. It is therefore an upper bound on
sends and a lower bound on the backlog's life.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .channels.console import ConsoleChannel
from .config import Account, LoadedConfig
from .engine import AccountResult, Engine, decide_or_name
from .models import (
    SENT,
    SKIPPED,
    EnrollmentRecord,
    FollowupRecord,
    Lead,
    LeadState,
    PersonEnrollment,
)
from .render import TemplateProblem
from .rules import Decision, local_midnight, next_run_slot
from .store.base import SqlStore

ASSUMPTIONS = (
    "no lead replies, converts or opts out during the period; every send succeeds; "
    "no new leads arrive"
)


@dataclass
class SlotAccount:
    """One account at one slot."""

    due: int = 0  # steps due at this slot (sendable or lost to the window)
    sent: int = 0  # would go out
    window_lost: int = 0  # due but outside the messaging window: never sent
    deferred: int = 0  # left for a later slot by the account's hourly (or daily) cap
    unsendable: int = 0  # a template that cannot render for the lead, an empty message
    ended: int = 0  # enrollments that would end (completed, limits, ...)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Plan:
    now: datetime
    days: int
    timezone: str
    messages_per_hour: int
    slots: list[datetime] = field(default_factory=list)
    rows: dict[datetime, dict[str, SlotAccount]] = field(default_factory=dict)
    bad_leads: list[str] = field(default_factory=list)

    def accounts(self) -> list[str]:
        seen: dict[str, None] = {}
        for slot in self.slots:
            for acct in self.rows[slot]:
                seen[acct] = None
        return list(seen)

    def totals(self, account: str) -> SlotAccount:
        t = SlotAccount()
        for slot in self.slots:
            r = self.rows[slot].get(account)
            if r is None:
                continue
            t.due += r.due
            t.sent += r.sent
            t.window_lost += r.window_lost
            t.unsendable += r.unsendable
            t.ended += r.ended
        last = self.rows[self.slots[-1]].get(account) if self.slots else None
        t.deferred = last.deferred if last else 0  # what is still waiting at the end
        return t

    def backlog_clears_at(self, account: str) -> datetime | None:
        """The slot from which nothing due waits for the hourly limit any more, to the end
        of the plan: the first slot after the last one that left steps for later (the
        first slot when none did; None when the last slot still leaves some)."""
        clears = self.slots[0] if self.slots else None
        for i, slot in enumerate(self.slots):
            r = self.rows[slot].get(account)
            if r is not None and r.deferred:
                clears = self.slots[i + 1] if i + 1 < len(self.slots) else None
        return clears

    def ever_deferred(self, account: str) -> bool:
        return any(self.rows[s].get(account, SlotAccount()).deferred for s in self.slots)

    def as_dict(self) -> dict[str, Any]:
        accounts = self.accounts()
        return {
            "now": self.now.isoformat(),
            "days": self.days,
            "timezone": self.timezone,
            "messages_per_hour": self.messages_per_hour,
            "assumptions": ASSUMPTIONS,
            "slots": [
                {
                    "at": slot.isoformat(),
                    "accounts": {a: r.as_dict() for a, r in self.rows[slot].items()},
                }
                for slot in self.slots
            ],
            "accounts": {
                a: {
                    "sent": (t := self.totals(a)).sent,
                    "window_lost": t.window_lost,
                    "unsendable": t.unsendable,
                    "ended": t.ended,
                    "waiting_at_end": t.deferred,
                    "backlog_clears_at": _iso(self.backlog_clears_at(a)),
                }
                for a in accounts
            },
            "bad_leads": list(self.bad_leads),
        }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def plan_slots(now: datetime, days: int, settings: Any) -> list[datetime]:
    """The cron slots (settings.run_times in settings.timezone) from ``now`` (included)
    to ``now + days`` (excluded)."""
    end = now + timedelta(days=days)
    out: list[datetime] = []
    at = next_run_slot(now - timedelta(microseconds=1), settings)
    while at < end:
        out.append(at)
        at = next_run_slot(at, settings)
    return out


class _Overlay:
    """The store for reads, plus what the plan's earlier slots would have written.

    What a lead row is planned to receive counts for the person behind it too (same
    account and recipient, ``person_key``): the person's other rows see those follow-ups,
    enrollments and keyword opt-outs, as the runs' per-person caps would."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.followups: dict[str, list[FollowupRecord]] = {}
        self.new_enrollments: dict[str, list[EnrollmentRecord]] = {}
        self.ends: dict[tuple[str, str], tuple[datetime, str]] = {}
        self.ended_leads: set[str] = set()
        self.optouts: set[str] = set()
        self.sends: dict[str, list[datetime]] = {}
        self.person: dict[str, str] = {}  # lead id -> person key, of the rows written to
        self.p_followups: dict[str, list[tuple[str, FollowupRecord]]] = {}
        self.p_enrollments: dict[str, list[PersonEnrollment]] = {}
        self.p_optouts: set[str] = set()
        self.touched: set[str] = set()  # persons written to in the current slot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    # what the engine reads
    def lead_states(
        self, lead_ids: list[str], persons: dict[str, str | None] | None = None
    ) -> dict[str, LeadState]:
        base = self._store.lead_states(lead_ids, persons)
        keys = persons or {}
        return {lid: self._merge(lid, keys.get(lid), state) for lid, state in base.items()}

    def recent_sends(self, account_id: str, since: datetime) -> int:
        mine = sum(1 for t in self.sends.get(account_id, ()) if t > since)
        return self._store.recent_sends(account_id, since) + mine

    def _merge(self, lead_id: str, key: str | None, state: LeadState) -> LeadState:
        extra = self.followups.get(lead_id)
        new = self.new_enrollments.get(lead_id)
        ended = lead_id in self.ended_leads
        p_extra = (
            [f for other, f in self.p_followups.get(key, ()) if other != lead_id] if key else []
        )
        p_new = [e for e in self.p_enrollments.get(key, ()) if e.lead_id != lead_id] if key else []
        p_optout = key is not None and key in self.p_optouts
        if (
            not extra
            and not new
            and not ended
            and lead_id not in self.optouts
            and not p_extra
            and not p_new
            and not p_optout
            and not (self.ends and state.person_enrollments)
        ):
            return state
        enrollments = [self._ended(lead_id, e) for e in (*state.enrollments, *(new or ()))]
        person_enrollments = [self._person_ended(e) for e in (*state.person_enrollments, *p_new)]
        return replace(
            state,
            followups=(*state.followups, *(extra or ())),
            enrollments=tuple(enrollments),
            opted_out=state.opted_out or lead_id in self.optouts,
            suppression=state.suppression or ("optout" if p_optout else None),
            person_followups=(*state.person_followups, *p_extra),
            person_enrollments=tuple(person_enrollments),
        )

    def _ended(self, lead_id: str, e: EnrollmentRecord) -> EnrollmentRecord:
        end = self.ends.get((lead_id, e.sequence_id))
        if e.ended_at is None and end is not None and end[0] >= e.started_at:
            return replace(e, ended_at=end[0], ended_reason=end[1])
        return e

    def _person_ended(self, e: PersonEnrollment) -> PersonEnrollment:
        end = self.ends.get((e.lead_id, e.sequence_id))
        return replace(e, ended_at=end[0]) if e.ended_at is None and end is not None else e

    # what the plan writes, in memory
    def of_person(self, lead: Lead) -> str | None:
        """The lead's person key, remembered for the person's other rows to see."""
        key = self._store.person_key(lead.account_id, lead.recipient_id)
        if key is not None:
            self.person[lead.id] = key
        return key

    def enroll(
        self, lead: Lead, sequence_id: str, anchor: datetime, at: datetime, **kw: Any
    ) -> None:
        self.ends.pop((lead.id, sequence_id), None)
        self.new_enrollments.setdefault(lead.id, []).append(
            EnrollmentRecord(sequence_id, anchor, at, **kw)
        )
        key = self.of_person(lead)
        if key is not None:
            self.touched.add(key)
            self.p_enrollments.setdefault(key, []).append(PersonEnrollment(lead.id, sequence_id))

    def end(self, lead_id: str, sequence_id: str, reason: str, at: datetime) -> None:
        self.ends.setdefault((lead_id, sequence_id), (at, reason))
        self.ended_leads.add(lead_id)
        if lead_id in self.person:
            self.touched.add(self.person[lead_id])

    def record(self, lead: Lead, rec: FollowupRecord) -> None:
        self.followups.setdefault(lead.id, []).append(rec)
        key = self.of_person(lead)
        if key is not None:
            self.touched.add(key)
            self.p_followups.setdefault(key, []).append((lead.id, rec))

    def optout(self, lead: Lead) -> None:
        self.optouts.add(lead.id)
        key = self.of_person(lead)
        if key is not None:
            self.touched.add(key)
            self.p_optouts.add(key)

    def redecide(self, engine: Engine, lead: Lead, d: Decision, at: datetime) -> Decision | None:
        """The decision again when the slot has since planned something for the lead's person
        under another row, as a run decides again inside each claim; else ``d``."""
        key = self._store.person_key(lead.account_id, lead.recipient_id)
        if key is None or key not in self.touched:
            return d
        state = self.lead_states([lead.id], {lead.id: key})[lead.id]
        return decide_or_name(lead, state, engine.config, at, None)


def build_plan(
    loaded: LoadedConfig,
    store: SqlStore,
    now: datetime,
    days: int,
    account: str | None = None,
) -> Plan:
    """Replay ``days`` of cron slots from ``now``; nothing is sent or written."""
    config = loaded.config
    st = config.settings
    plan = Plan(now, days, st.timezone, config.channel.messages_per_hour)
    plan.slots = plan_slots(now, days, st)
    engine = Engine(loaded, store, ConsoleChannel(stream=io.StringIO(), quiet=True))
    overlay = _Overlay(store)
    accounts = [a for a in config.accounts if a.enabled and account in (None, a.id)]
    bad_seen: set[str] = set()
    for slot in plan.slots:
        plan.rows[slot] = {}
        for acct in accounts:
            plan.rows[slot][acct.id] = _plan_slot(engine, overlay, acct, slot, plan, bad_seen)
    return plan


@dataclass
class _Room:
    """The account's sends in the last hour and since local midnight, against its caps."""

    used: int
    used_today: int
    limit: int
    day_limit: int | None

    def full(self) -> bool:
        return self.used >= self.limit or (
            self.day_limit is not None and self.used_today >= self.day_limit
        )

    def take(self) -> None:
        self.used += 1
        self.used_today += 1


def _plan_slot(
    engine: Engine,
    overlay: _Overlay,
    acct: Account,
    slot: datetime,
    plan: Plan,
    bad_seen: set[str],
) -> SlotAccount:
    """One account at one slot: the engine's selection over the overlay, then each due
    step sent, lost to the window, deferred by a cap or found unsendable."""
    config = engine.config
    overlay.touched.clear()
    result = AccountResult(acct.id)
    actionable, bookkeeping = engine.plan_account(acct, overlay, slot, result)  # type: ignore[arg-type]
    for line in result.bad_leads:
        if line not in bad_seen:
            bad_seen.add(line)
            plan.bad_leads.append(line)
    row = SlotAccount()
    for lead, d in bookkeeping:
        _bookkeep(overlay, row, lead, d, slot)
    limit, day_limit = config.rate_limits(acct)
    day_start = local_midnight(slot, config.settings_for(acct).timezone)
    room = _Room(
        used=overlay.recent_sends(acct.id, slot - timedelta(hours=1)),
        used_today=overlay.recent_sends(acct.id, day_start - timedelta(microseconds=1)),
        limit=limit,
        day_limit=day_limit,
    )
    for lead, planned in actionable:
        # another row of the person may have been served in this slot: as a run
        # decides again inside each claim
        d = overlay.redecide(engine, lead, planned, slot)
        if d is None:
            continue
        if d.action not in ("send", "skip"):
            _bookkeep(overlay, row, lead, d, slot)
            continue
        assert d.sequence is not None and d.message is not None
        row.due += 1
        if d.action == "skip":
            _lose_to_window(overlay, row, lead, d, slot)
        elif room.full():
            row.deferred += 1  # the account's hourly or daily cap: a later slot
        elif not _renders(engine, lead, d, acct, slot):
            row.unsendable += 1
        else:
            room.take()
            _send(overlay, row, lead, d, acct, slot)
    return row


def _lose_to_window(
    overlay: _Overlay, row: SlotAccount, lead: Lead, d: Decision, slot: datetime
) -> None:
    """A due step outside the messaging window: recorded skipped, the enrollment ended."""
    assert d.sequence is not None and d.message is not None
    row.window_lost += 1
    if d.new_enrollment and d.anchor_at is not None:
        overlay.enroll(lead, d.sequence.id, d.anchor_at, slot)
    overlay.record(lead, FollowupRecord(d.sequence.id, d.message.id, SKIPPED, slot, d.variant_id))
    overlay.end(lead.id, d.sequence.id, "window_closed", slot)


def _renders(engine: Engine, lead: Lead, d: Decision, acct: Account, slot: datetime) -> bool:
    """Whether the step renders for the lead to a text or a media url."""
    assert d.sequence is not None and d.message is not None
    try:
        rendered = engine.renderer.render(
            d.sequence, d.message, d.variant_id, lead.context(), acct, slot
        )
    except TemplateProblem:
        return False
    return bool(rendered.text or rendered.media_url)


def _send(
    overlay: _Overlay, row: SlotAccount, lead: Lead, d: Decision, acct: Account, slot: datetime
) -> None:
    """A step that would go out: recorded sent and counted against the account; the
    enrollment ends with the sequence's last active step."""
    assert d.sequence is not None and d.message is not None
    row.sent += 1
    if d.new_enrollment and d.anchor_at is not None:
        overlay.enroll(lead, d.sequence.id, d.anchor_at, slot)
    overlay.record(lead, FollowupRecord(d.sequence.id, d.message.id, SENT, slot, d.variant_id))
    overlay.sends.setdefault(acct.id, []).append(slot)
    active = [m.id for m in d.sequence.messages if m.active]
    if active and active[-1] == d.message.id:
        overlay.end(lead.id, d.sequence.id, "completed", slot)
        row.ended += 1


def _bookkeep(overlay: _Overlay, row: SlotAccount, lead: Lead, d: Decision, at: datetime) -> None:
    """What a run's bookkeeping would write: a keyword opt-out, an ended or held-out
    enrollment."""
    if d.keyword_optout:
        overlay.optout(lead)
    if d.action == "end" and d.sequence is not None:
        overlay.end(lead.id, d.sequence.id, d.reason, at)
        row.ended += 1
    elif d.action == "holdout" and d.sequence is not None and d.anchor_at:
        overlay.enroll(lead, d.sequence.id, d.anchor_at, at, holdout=True)


def local(dt: datetime, tz: str) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")


def summary_lines(plan: Plan) -> list[str]:
    """One line per account: totals and when its backlog clears."""
    lines = []
    days = f"{plan.days} day{'s' if plan.days != 1 else ''}"
    for a in plan.accounts():
        t = plan.totals(a)
        clears = plan.backlog_clears_at(a)
        if clears is None:
            when = (
                f"the backlog does not clear within {days} ({t.deferred} still waiting at "
                f"{plan.messages_per_hour}/h): raise channel.messages_per_hour or plan longer"
            )
        elif not plan.ever_deferred(a):
            when = "no backlog: every due step fits the hourly limit"
        else:
            when = f"the backlog clears at {local(clears, plan.timezone)}"
        lines.append(
            f"{a}: {t.sent} would go out, {t.window_lost} lost to the window"
            + (f", {t.unsendable} cannot render" if t.unsendable else "")
            + f"; {when}"
        )
    return lines


def counters(plan: Plan) -> Counter:
    c: Counter = Counter()
    for slot in plan.slots:
        for r in plan.rows[slot].values():
            c["sent"] += r.sent
            c["window_lost"] += r.window_lost
    return c
