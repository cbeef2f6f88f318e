"""Claim -> send -> record for one account's leads, as ``accountrun.AccountRun`` walks
them; an executor does the work for each lead:

* ``LiveExecutor``: claims the account's next leads in a batch (one transaction under the
  account's lock: their rows and states re-read in a few set queries, each decided again,
  the rate window counted once, a ``pending`` row inserted for each with attempted_at
  NULL); then, per message, one small transaction writes the previous message's outcome
  and marks this claim attempted in one conditional UPDATE that re-checks the opt-outs
  (0 rows: no send, the claim is released); then the API call, outside any transaction.
  Claims a run never attempted are released when the account's turn ends, whatever ends
  it; a run that dies leaves them for the next run to release (``claims.py``).
* ``DryExecutor``: the same walk, claims simulated in memory; writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from .channels.base import SendResult
from .config import Account, Settings
from .crypto import stored_body
from .models import FAILED, PENDING, SENT, SKIPPED, UNKNOWN, BadLead, Lead, parse_lead
from .ratewindow import RateWindow
from .render import TemplateProblem
from .results import AccountResult, PlannedSend, decide_or_name
from .rules import Decision, local_midnight
from .store.base import SqlStore, put_back, retried

if TYPE_CHECKING:  # pragma: no cover
    from .accountrun import AccountRun
    from .engine import Engine

UNREACHABLE_STREAK = 3  # sends in a row that found no API stop an account that it once reached
# Leads claimed in one transaction at most. Each batch re-reads its leads once, so a lead's
# row is at most this many sends old when its message goes out (its opt-outs are checked
# again at the attempt itself); the per-batch queries (about a dozen) cost under one per
# message from here on; and an account that stops early releases fewer than this.
CLAIM_BATCH = 16
# Claims older than this (seconds of the run) are released and the leads claimed again,
# re-read, before their message goes out: slow sends (latency, Retry-After waits) do not
# send on a lead row read long ago.
CLAIM_FRESH_SECONDS = 10.0
# A claim to insert: the claim, its tracking row, and its new enrollment (lead, sequence,
# account, anchor, person key) if it starts one (``_insert_claims``).
_ToInsert = tuple["Claim", dict[str, Any], tuple[str, str, str | None, datetime, str | None] | None]
# An audit row issued and not yet waited for (``SqlStore.audit_later``): call it to check it.
Audited = Callable[[], int]


def _nothing() -> int:
    return 0


class Executor:
    def __init__(
        self,
        engine: Engine,
        store: SqlStore,
        run: AccountRun,
        result: AccountResult,
        real_time: bool = False,
    ) -> None:
        self.engine = engine
        self.real_time = real_time  # refresh ``now`` from the clock before each claim
        self.store = store
        self.run = run
        self.account = run.account
        self.now = run.now
        self.run_id = run.run_id
        self.result = result
        self.config = engine.config
        self.rate_limit, self.day_limit = engine.config.rate_limits(self.account)
        self.day_tz = engine.config.settings_for(self.account).timezone
        self.calls = 0  # messages handed to the channel (the scheduler's unit of a turn)

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write what is still held in memory (a live run's last outcome, its claims)."""
        return None

    def execute(self, lead: Lead, d: Decision) -> str | None:
        """Handle one due lead; returns "rate_limit" when the account's hourly window is full,
        "daily_cap" when its day is (nothing was claimed: the caller waits or defers)."""
        raise NotImplementedError

    def window(self, store: SqlStore, now: datetime) -> RateWindow:
        """The account's hourly and daily windows, counted now."""
        day_start = local_midnight(now, self.day_tz)
        return RateWindow.count(
            store, self.account.id, now, day_start, self.rate_limit, self.day_limit
        )

    def render(self, lead: Lead, d: Decision) -> tuple[str | None, str | None] | None:
        assert d.sequence is not None and d.message is not None
        try:
            r = self.engine.renderer.render(
                d.sequence, d.message, d.variant_id, lead.context(), self.account, self.now
            )
        except TemplateProblem as tp:  # template_error, too_long, missing_attribute:<key>
            self.result.skipped[tp.reason] += 1
            self.result.bad(lead.id, f"lead {lead.id}: {d.sequence.id}/{d.message.id}: {tp.what}")
            return None
        if not r.text and not r.media_url:
            self.result.skipped["empty_message"] += 1
            return None
        return r.text, r.media_url


class DryExecutor(Executor):
    """Plans what a live run would do, simulating claims in memory; writes nothing."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rate = self.window(self.store, self.now)

    def bookkeep(self, lead: Lead, d: Decision) -> None:
        if d.keyword_optout:
            self.result.optouts += 1
        if d.action == "end":
            self.result.ended[d.reason] += 1
        elif d.action == "holdout":
            self.result.holdout += 1

    def execute(self, lead: Lead, d: Decision) -> str | None:
        assert d.sequence is not None and d.message is not None
        if d.action == "skip":
            self.result.skipped[d.reason] += 1
            return None
        full = self.rate.full()
        if full is not None:
            return full
        rendered = self.render(lead, d)
        if rendered is None:
            return None
        self.rate.take()
        self.result.would_send += 1
        planned = PlannedSend.of(lead, self.account.id, d, *rendered)
        if self.engine.on_planned is not None:
            self.engine.on_planned(planned)
        else:
            self.result.planned.append(planned)
        return None


@dataclass
class Claim:
    """A lead claimed in a batch: its ``pending`` row, and what its message says."""

    fid: int
    lead: Lead
    d: Decision
    person: str | None
    text: str | None
    media: str | None
    now: datetime  # the claim's instant (its rows' times)
    at: float  # when it was claimed, in seconds of the run (``Clock.elapsed``)
    row: dict[str, Any]  # the lead's row as the claim read it (compared at the attempt)


class LiveExecutor(Executor):
    """Claims in batches, then per message: one transaction (the previous outcome, this
    claim marked attempted if nobody opted out), the API call, and the outcome held for the
    next transaction of the account (or one of its own when the account's turn ends). Until
    written, the claim stays ``pending``, attempted: a run that dies in between leaves it
    for the next run to mark ``unknown``, never to resend."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # the last send's rows to write, and its line for ``on_sent``
        self._unrecorded: tuple[Callable[[], Callable[[], Audited]], PlannedSend] | None = None
        self._unrecorded_fid = 0  # its claim's tracking row
        self._announce: list[PlannedSend] = []
        self._audit_due: Callable[[], Audited] | None = None
        self.claimed: dict[str, Claim] = {}  # lead id -> its claim, not yet attempted
        self.settled: set[str] = set()  # leads a batch handled without a claim
        # inside ``_audits_last``: the audit rows of the transaction, written at its end
        self._held_audits: list[tuple[Any, ...]] | None = None

    # ---------------------------------------------------------------- outcomes
    def _record_locked(self) -> None:
        """Inside a transaction: the last send's outcome rows; its audit row waits for
        ``_audit_recorded``, as late in the transaction as its order allows (appending to
        the audit chain holds the chain's head until the commit)."""
        if self._unrecorded is not None:
            record, planned = self._unrecorded
            self._unrecorded = None
            self._audit_due = record()
            self._announce.append(planned)

    def _audit(
        self,
        action: str,
        lead: Lead,
        sequence_id: str | None = None,
        message_id: str | None = None,
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """An audit row of this run about ``lead``, after the last outcome's own row (the
        chain in the order things happened; a no-op when that row is the one written);
        inside ``_audits_last``, held until the transaction's other writes are done."""
        if self._held_audits is not None:
            self._held_audits.append((action, lead, sequence_id, message_id, detail, at))
            return
        self._audit_recorded()
        self.store.audit(
            action,
            at or self.now,
            self.engine.actor,
            self.run_id,
            lead.id,
            lead.account_id,
            sequence_id,
            message_id,
            detail,
        )

    @contextmanager
    def _audits_last(self) -> Iterator[None]:
        """Inside a write transaction: its audit rows (``_audit``) are written when the
        body is done, after the last outcome's own row. Appending to the audit chain
        locks its head until the commit: taken last, the head is never held while this
        transaction waits for a lead's rows that another writer holds while it waits for
        the head (an opt-out, an event, another run's outcome): Postgres would abort one
        of the two ("deadlock detected")."""
        self._held_audits = []
        try:
            yield
            held = self._held_audits
        finally:
            self._held_audits = None
        self._audit_recorded()
        for action, lead, sequence_id, message_id, detail, at in held:
            self._audit(action, lead, sequence_id, message_id, detail, at)

    def _audit_recorded(self) -> None:
        self._audit_issued()()

    def _audit_issued(self) -> Audited:
        """The last outcome's audit row issued (not waited for: ``SqlStore.audit_later``);
        call the result before the transaction ends and before any other audit row."""
        audit, self._audit_due = self._audit_due, None
        return audit() if audit is not None else _nothing

    @contextmanager
    def _write_tx(self, account_id: str | None = None, leads: Sequence[str] = ()) -> Iterator[None]:
        """A write transaction (holding the account's rate window when ``account_id``) that
        also writes the account's last outcome: rows first, audit row last (or where the
        caller issues it, ``_audit_issued``). ``leads``: the leads whose rows it may write;
        their rows (and the last outcome's lead's, after the run's own claims it writes) are
        locked first, in lead id order (``SqlStore.lock_lead_rows``)."""
        held = self._unrecorded
        tx = self.store.claim_tx(account_id) if account_id else self.store.transaction()
        with tx:
            try:
                if leads:
                    mine, fids = set(leads), [c.fid for c in self.claimed.values()]
                    if held is not None:
                        mine.add(held[1].lead_id)
                        fids.append(self._unrecorded_fid)
                    self.store.lock_lead_rows(sorted(mine), sorted(fids))
                self._record_locked()
                yield
            except BaseException:
                # rolled back: the outcome is held again, for ``flush`` to try on its own
                # (else its claim stays pending, for the next run to mark unknown, as after
                # a crash)
                self._unrecorded, self._audit_due, self._announce = held, None, []
                raise
            self._audit_recorded()

    def _announced(self) -> None:
        """After the commit: tell ``on_sent`` about the outcomes it wrote."""
        done, self._announce = self._announce, []
        if self.engine.on_sent:
            for planned in done:
                self.engine.on_sent(planned)

    def flush(self) -> None:
        unattempted = [c.fid for c in self.claimed.values()]
        if self._unrecorded is not None or unattempted:
            with self.store.transaction():
                # the rows it writes first, in the one order (``_write_tx``)
                leads, fids = set(self.claimed), list(unattempted)
                if self._unrecorded is not None:
                    leads.add(self._unrecorded[1].lead_id)
                    fids.append(self._unrecorded_fid)
                self.store.lock_lead_rows(sorted(leads), sorted(fids))
                self._record_locked()
                if unattempted:
                    self.store.release_unattempted(followup_ids=unattempted)
                self._audit_recorded()
            self.claimed.clear()
        self._announced()

    # ------------------------------------------------------------- bookkeeping
    def bookkeep(self, lead: Lead, d: Decision) -> None:
        store, now = self.store, self.now
        with store.lead_tx(lead.id, None) as got:
            if not got:
                return
            row = store.lead_row(lead.id)
            if row is None:
                return
            try:
                fresh = parse_lead(row)
            except BadLead:
                return
            person = store.person_key(fresh.account_id, fresh.recipient_id)
            d = decide_or_name(fresh, store.lead_state(lead.id, person), self.config, now, None)
            if d is not None:
                with self._audits_last():
                    self._bookkeep_locked(fresh, d)

    def _bookkeep_locked(self, lead: Lead, d: Decision) -> None:
        store, now = self.store, self.now
        if d.keyword_optout and store.add_optout(
            lead.id,
            f"keyword: {d.keyword_optout}",
            "keyword",
            self.engine.actor,
            now,
            person=(lead.account_id, lead.recipient_id),
        ):
            self._audit("optout", lead, detail={"source": "keyword", "keyword": d.keyword_optout})
            self.result.optouts += 1
        if d.action == "end" and d.sequence is not None:
            if store.end_enrollment(lead.id, d.sequence.id, d.reason, now):
                self.result.ended[d.reason] += 1
                self._audit("enrollment_end", lead, d.sequence.id, detail={"reason": d.reason})
        elif d.action == "holdout" and d.sequence is not None and d.anchor_at is not None:
            if store.start_enrollment(
                lead.id,
                d.sequence.id,
                lead.account_id,
                d.anchor_at,
                now,
                holdout=True,
                person_key=store.person_key(lead.account_id, lead.recipient_id),
            ):
                self.result.holdout += 1
                self._audit("holdout", lead, d.sequence.id)

    # ------------------------------------------------------------------ claims
    def execute(self, lead: Lead, d: Decision) -> str | None:
        verdict = None
        claim = self.claimed.get(lead.id)
        if claim is not None and self.engine.clock.elapsed() - claim.at > CLAIM_FRESH_SECONDS:
            claim = None  # read too long ago: released and claimed again, below
        if claim is None and lead.id not in self.settled:
            verdict = self._claim_batch()
            self._announced()
            claim = self.claimed.get(lead.id)
        if claim is not None and self._attempt(claim) == "changed":
            # The host changed the lead's row since the claim (a reply, STOP): the claim is
            # released and the lead decided again on its fresh row, once.
            verdict = self._claim_batch()
            self._announced()
            claim = self.claimed.get(lead.id)
            if claim is not None and self._attempt(claim) == "changed":
                self.result.skipped["lead_changed_during_send"] += 1
        self._announced()
        return verdict

    def _batch(self) -> list[Lead]:
        """The leads of the next batch, from the current one on in the account's order: up
        to ``CLAIM_BATCH`` planned sends (fewer when the run's --limit has less room), the
        skips among them, and never two rows of one person (the second is decided in the
        next batch, against the first one's claim)."""
        run, store = self.run, self.store
        left = run.limit_left()
        sends_wanted = min(CLAIM_BATCH, run.batch_size, CLAIM_BATCH if left is None else left + 1)
        out: list[Lead] = []
        persons: set[str] = set()
        sends = 0
        for lead, d in run.actionable[run.i - 1 :]:
            if lead.id in self.settled:
                continue
            if d.action == "send":
                if sends >= sends_wanted:
                    break
                sends += 1
            key = store.person_key(lead.account_id, lead.recipient_id)
            if key is not None:
                if key in persons:
                    break
                persons.add(key)
            out.append(lead)
            if len(out) >= 4 * CLAIM_BATCH:
                break
        return out

    def _claim_batch(self) -> str | None:
        """Claim the next leads in one transaction under the account's lock. Returns
        "rate_limit" or "daily_cap" when the current lead cannot be claimed for the
        account's windows (the caller waits or defers); the batch then claims nothing."""
        if self.real_time:
            self.now = self.engine.clock.now()
        res = self.result
        leads = self._batch()
        stale = [c.fid for c in self.claimed.values()]  # too old, or never reached
        at = self.engine.clock.elapsed()
        mine = [lead.id for lead in leads] + list(self.claimed)
        # one whole transaction, run again (its counts put back) if the database aborts it
        # for a conflict with another writer: nothing was claimed, nothing sent
        batch, settled, verdict = retried(
            partial(self._claim_in_tx, leads, stale, mine, at),
            put_back(res, skip=("planned",)),
            "claim batch",
        )
        # committed: each claim exists before its API call
        self.claimed = batch
        self.settled |= settled - set(batch)
        return verdict

    def _claim_in_tx(
        self, leads: list[Lead], stale: list[int], mine: list[str], at: float
    ) -> tuple[dict[str, Claim], set[str], str | None]:
        """``_claim_batch``'s transaction: the claims made, the leads settled without one,
        and the verdict on the current lead."""
        store, now, res = self.store, self.now, self.result
        batch: dict[str, Claim] = {}
        todo: list[_ToInsert] = []
        settled: set[str] = set()
        verdict: str | None = None
        with self._write_tx(self.account.id, mine), self._audits_last():
            if stale:
                store.release_unattempted(followup_ids=stale)
            locked, rows, fresh_leads = self._reread(leads, settled)
            persons = {
                lid: store.person_key(f.account_id, f.recipient_id)
                for lid, f in fresh_leads.items()
            }
            # The person's state too, inside the claim transaction: the account lock
            # serialises every claim of the account, and a batch never holds two rows of
            # one person, so two lead rows of one person cannot both pass the person's caps.
            states = store.lead_states(list(fresh_leads), persons)
            window = self.window(store, now)
            for n, lead in enumerate(leads):
                if lead.id in settled:
                    continue
                if lead.id not in locked:
                    res.skipped["claimed_by_another_run"] += 1
                    settled.add(lead.id)
                    continue
                fresh = fresh_leads.get(lead.id)
                if fresh is None:
                    res.skipped["lead_gone"] += 1
                    settled.add(lead.id)
                    continue
                person = persons[lead.id]
                d = decide_or_name(fresh, states[lead.id], self.config, now, res)
                if d is None:
                    settled.add(lead.id)
                    continue
                if d.action not in ("send", "skip"):
                    # Something changed since planning (opt-out, reply, another run): obey it.
                    self._bookkeep_locked(fresh, d)
                    if d.action == "wait":
                        res.waiting[d.reason] += 1
                    settled.add(lead.id)
                    continue
                if d.action == "skip":
                    self._skip_locked(fresh, d, person)
                    settled.add(lead.id)
                    continue
                full = window.full()
                if full is not None:
                    if n == 0:
                        verdict = full  # the current lead waits (or is deferred) unclaimed
                    break  # the leads after it: decided again when their turn comes
                claim = self._claim_locked(fresh, d, person, at, rows[lead.id], todo)
                settled.add(lead.id)
                if claim is not None:
                    window.take()  # (a step another run claimed first: room left unused)
                    batch[lead.id] = claim
            self._insert_claims(todo, batch)
        return batch, settled, verdict

    def _reread(
        self, leads: list[Lead], settled: set[str]
    ) -> tuple[set[str], dict[str, dict[str, Any]], dict[str, Lead]]:
        """In the claim transaction: the leads this run may take (``try_lock_leads``), their
        rows read again and parsed; a row that no longer parses is reported and settled."""
        store = self.store
        locked = store.try_lock_leads([lead.id for lead in leads])
        rows = {str(row["id"]): row for row in store.lead_rows(sorted(locked))}
        fresh: dict[str, Lead] = {}
        for lead in leads:
            row = rows.get(lead.id)
            if row is None:
                continue
            try:
                fresh[lead.id] = parse_lead(row)
            except BadLead as exc:
                self.result.bad(exc.lead_id, str(exc))
                settled.add(lead.id)
        return locked, rows, fresh

    def _skip_locked(self, lead: Lead, d: Decision, person: str | None) -> None:
        store, now, res = self.store, self.now, self.result
        assert d.sequence is not None and d.message is not None
        if d.new_enrollment and d.anchor_at is not None:
            store.start_enrollment(
                lead.id, d.sequence.id, lead.account_id, d.anchor_at, now, person_key=person
            )
        row = self._row(lead, d, SKIPPED, reason=d.reason, person_key=person)
        if store.insert_followup(row) is None:
            return
        res.skipped[d.reason] += 1
        store.end_enrollment(lead.id, d.sequence.id, "window_closed", now)
        self._audit(
            "skip", lead, d.sequence.id, d.message.id, {"reason": d.reason, "detail": d.detail}
        )

    def _claim_locked(
        self,
        lead: Lead,
        d: Decision,
        person: str | None,
        at: float,
        raw: dict[str, Any],
        todo: list[_ToInsert],
    ) -> Claim | None:
        """Render the lead's message and add its ``pending`` row (attempted_at NULL: not
        handed to the API yet) to ``todo``, for ``_insert_claims``; None when it cannot be
        sent (named)."""
        store, now = self.store, self.now
        assert d.sequence is not None and d.message is not None
        rendered = self.render(lead, d)
        if rendered is None:
            return None
        text, media = rendered
        enrollment = None
        if d.new_enrollment and d.anchor_at is not None:
            enrollment = (lead.id, d.sequence.id, lead.account_id, d.anchor_at, person)
        body, encrypted = stored_body(
            store.cipher,
            _body(text, media),
            self.engine.config.settings.store_bodies,
            store.person_secret(),
        )
        row = self._row(
            lead,
            d,
            PENDING,
            body=body,
            body_encrypted=encrypted,
            person_key=person,
            attempted_at=None,
        )
        claim = Claim(0, lead, d, person, text, media, now, at, raw)
        todo.append((claim, row, enrollment))
        return claim

    def _insert_claims(self, todo: list[_ToInsert], batch: dict[str, Claim]) -> None:
        """In the claim transaction: the batch's new enrollments, then its ``pending`` rows,
        one statement each; a step another run claimed first is dropped from ``batch``."""
        if not todo:
            return
        enrollments = [e for _, _, e in todo if e is not None]
        if enrollments:
            self.store.start_enrollments(enrollments, self.now)
        ids = self.store.insert_followups([row for _, row, _ in todo])
        for (claim, _, _), fid in zip(todo, ids, strict=True):
            if fid is None:
                self.result.skipped["already_claimed"] += 1
                del batch[claim.lead.id]
            else:
                claim.fid = fid

    def _row(self, lead: Lead, d: Decision, status: str, **extra: Any) -> dict[str, Any]:
        assert d.sequence is not None and d.message is not None
        return {
            "lead_id": lead.id,
            "sequence_id": d.sequence.id,
            "message_id": d.message.id,
            "step": d.step,
            "variant_id": d.variant_id,
            "account_id": lead.account_id,
            "user_id": lead.user_id or self.account.user_id,
            "conversation_id": lead.conversation_id,
            "recipient_id": lead.recipient_id,
            "status": status,
            "followup_number": d.followup_number,
            "scheduled_at": d.due_at,
            "claimed_at": self.now,
            "last_followup_at": d.last_followup_at,
            "next_followup_at": self.engine.next_followup_at(d),
            "run_id": self.run_id,
            "updated_at": self.now,
            **extra,
        }

    # -------------------------------------------------------------------- send
    def _attempt(self, claim: Claim) -> str | None:
        """One transaction (the last outcome; this claim marked attempted unless the lead or
        its person opted out since the claim; the lead's row read again), then the API
        call. "changed" (nothing sent, the claim released) when the lead's row is not the
        one the claim decided on. On Postgres the transaction is two round trips
        (``SqlStore.pipelined``): its statements up to the row's read, then the rest with
        the commit."""
        store = self.store
        at = self.engine.clock.now() if self.real_time else self.now
        with store.pipelined(), self._write_tx():
            marked = store.mark_attempted_later(claim.fid, claim.lead.id, claim.person, at)
            audited = self._audit_issued()  # the last outcome's row: locks the chain last
            row = store.lead_row(claim.lead.id)  # (waits for the answers of all the above)
            same = row == claim.row
            ok = same and marked()
            if marked() and not same:  # never handed to the API: released as unattempted
                store.delete_followup(claim.fid, PENDING)
            elif not ok:  # changed, or opted out (or erased) since the claim: the step is free
                store.release_unattempted(followup_ids=[claim.fid])
            audited()
        del self.claimed[claim.lead.id]  # (until committed, ``flush`` would release it)
        self._announced()
        if row is None:
            self.result.skipped["lead_gone"] += 1
            return None
        if not same:
            return "changed"
        if not ok:
            self.result.skipped["opted_out_during_send"] += 1
            return None
        self._send(claim)
        return None

    def _send(self, claim: Claim) -> None:
        """The API call for a claim marked attempted, then what its answer means: counted at
        once (the account's next lead depends on it), written by the account's next
        transaction (``_unrecorded``)."""
        result = self._call(claim)
        planned = PlannedSend.of(
            claim.lead,
            self.account.id,
            claim.d,
            claim.text,
            claim.media,
            outcome=result.outcome,
            error_code=result.error_code,
            error=result.error_message,
        )
        count_outcome(self.result, self.account, result)
        self._unrecorded = (self._recorder(claim, result), planned)
        self._unrecorded_fid = claim.fid
        self.result.planned.append(planned)
        trip_breaker(self.result, self.account, self.config.settings_for(self.account))

    def _call(self, claim: Claim) -> SendResult:
        store, lead, person = self.store, claim.lead, claim.person

        def still_wanted() -> bool:
            # asked again right before each attempt (the first too: the mark committed a
            # moment ago, this is closer still to the request), and before each retry after
            # a Retry-After wait: a later opt-out still stops the message
            return not store.is_opted_out(lead.id, person)

        msg = replace(
            self.engine.outgoing(self.account, lead, claim.d, claim.text, claim.media),
            still_wanted=still_wanted,
        )
        self.calls += 1
        try:
            return self.engine.channel.send(msg)
        except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the claim
            return SendResult(
                "unknown", error_message=f"channel error: {type(exc).__name__}: {exc}"
            )

    def _recorder(self, claim: Claim, result: SendResult) -> Callable[[], Callable[[], Audited]]:
        """The writing of a send's outcome rows, for the account's next transaction (not
        waited for); it returns the writing of the outcome's audit row (last in that
        transaction), which returns its check."""
        now, res, fid, lead, d = claim.now, self.result, claim.fid, claim.lead, claim.d
        assert d.sequence is not None and d.message is not None
        common = {
            "attempts": result.attempts,
            "error_code": result.error_code,
            "error_subcode": result.error_subcode,
            "error_message": result.error_message,
            "updated_at": now,
        }
        audit_detail = {
            "followup_id": fid,
            "outcome": result.outcome,
            "code": result.error_code,
            "subcode": result.error_subcode,
            "attempts": result.attempts,
            "variant": d.variant_id,
        }

        def record() -> Callable[[], Audited]:
            """The outcome's rows, inside the caller's transaction (on the store of the
            account's current step); returns the writing of its audit row."""
            store = self.store
            ended: Callable[[], int] = _nothing
            if result.outcome == "sent":
                sent = {"status": SENT, "sent_at": now, "external_id": result.message_id}
                store.record_outcome_later(fid, {**common, **sent})
                if _last_active_step(d):
                    ended = store.end_enrollment_later(lead.id, d.sequence.id, "completed", now)
            elif result.outcome == "failed":
                failed = {"status": FAILED, "reason": result.kind or "permanent"}
                store.record_outcome_later(fid, {**common, **failed})
                store.end_enrollment_later(lead.id, d.sequence.id, "failed", now)
            elif result.outcome == "unknown":
                store.record_outcome_later(
                    fid, {**common, "status": UNKNOWN, "reason": result.error_message}
                )
            else:  # deferred, cancelled, account_fatal: surely not sent
                store.release_claim_later(fid)

            def audit() -> Audited:
                issued = self.store.audit_later(
                    "send",
                    now,
                    self.engine.actor,
                    self.run_id,
                    lead.id,
                    lead.account_id,
                    d.sequence.id,
                    d.message.id,
                    audit_detail,
                )

                def check() -> int:
                    if ended():
                        res.ended["completed"] += 1  # now, not at the next run
                    return issued()

                return check

            return audit

        return record


def count_outcome(res: AccountResult, account: Account, result: SendResult) -> None:
    """What an API answer means for the rest of the account's run: its counters, and the
    account stopped when the answer says nothing more can go out in this run."""
    if result.kind != "unreachable" and result.outcome != "cancelled" and result.attempts:
        res.reached, res.unreachable_streak = True, 0
    if result.outcome == "sent":
        res.sent += 1
        res.attempts += 1
    elif result.outcome == "failed":
        res.failed[str(result.error_code or result.http_status or "error")] += 1
        res.attempts += 1
        res.breaker_failures += 1
    elif result.outcome == "unknown":
        res.unknown += 1
        res.attempts += 1
    elif result.outcome == "deferred" and result.kind == "unreachable":
        res.deferred["unreachable"] += 1
        res.unreachable_streak += 1
        if not res.reached or res.unreachable_streak >= UNREACHABLE_STREAK:
            res.stopped = res.stopped or _unreachable_line(account, res, result)
    elif result.outcome == "deferred":
        res.deferred["throttled" if result.kind == "throttle" else "transient"] += 1
        if result.kind == "throttle":
            res.stopped = res.stopped or (
                f"throttled by the API (code {result.error_code or result.http_status}); "
                "the rest waits for the next run"
            )
    elif result.outcome == "cancelled":
        res.skipped["opted_out_during_send"] += 1
    else:  # account_fatal
        res.deferred["account_stopped"] += 1
        res.stopped = _account_stop_line(account, result)


def trip_breaker(res: AccountResult, account: Account, st: Settings) -> None:
    """Stop the account for this run once too many of its sends failed."""
    if (
        not res.stopped
        and res.attempts >= st.breaker_min_sends
        and res.breaker_failures / res.attempts > st.breaker_failure_rate
    ):
        res.stopped = (
            f"circuit breaker: {res.breaker_failures} of {res.attempts} sends failed "
            f"(over {st.breaker_failure_rate:.0%}); "
            f"account {account.id} stopped for this run"
        )


def _unreachable_line(account: Account, res: AccountResult, result: SendResult) -> str:
    """One line naming the account and the URL nothing answered at."""
    what = result.error_message or "no connection"
    if res.reached:
        return (
            f"account {account.id} stopped: the API became unreachable ({what}) for "
            f"{res.unreachable_streak} sends in a row; the rest waits for the next run"
        )
    return (
        f"account {account.id} stopped: the API was unreachable on every attempt of this run "
        f"({what}); check channel.api_base and the network; its due follow-ups wait"
    )


def _account_stop_line(account: Account, result: SendResult) -> str:
    """One line naming the account, what the API said, and the token variable to look at."""
    code = result.error_code
    what = result.error_message or "account error"
    if code is not None:
        what += f" (code {code})"
    var = f"${account.token_env}" if account.token_env else "its token (no token_env configured)"
    if code == 368:
        hint = f"Meta blocked the account for policy reasons; sending resumes when lifted ({var})"
    elif code == 10 or code == 3 or (code is not None and 200 <= code <= 299):
        hint = f"the token in {var} lacks a messaging permission"
    else:
        hint = f"check its token in {var}"
    return f"account {account.id} stopped: {what}; {hint}"


def _last_active_step(d: Decision) -> bool:
    """Whether ``d``'s message is the last active one of its sequence."""
    assert d.sequence is not None and d.message is not None
    active = [m.id for m in d.sequence.messages if m.active]
    return bool(active) and active[-1] == d.message.id


def _body(text: str | None, media: str | None) -> str | None:
    if media and text:
        return f"{text}\n[{media}]"
    return text or (f"[{media}]" if media else None)
