"""Claiming (``Claiming``): the account's next leads in one transaction under its lock,
each read again and decided again on its fresh row, the rate window counted once, a
``pending`` row inserted for each (attempted_at NULL: not handed to the API yet); what a
decision other than a send asks for (an opt-out, an end, a holdout, a skip) is written in
the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from ..crypto import stored_body
from ..models import PENDING, SKIPPED, BadLead, Lead, LeadState, parse_lead
from ..person_inbound import from_rows, inbound_snapshot
from ..results import decide_or_name
from ..rules import Decision
from ..store.base import put_back, retried
from .transactions import LiveTransactions

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
    # the person's other rows as the claim read them: (id, last inbound), compared at the
    # attempt too (a reply under any of them since the claim stops the send)
    others: tuple[tuple[str, Any], ...] = ()


class Claiming(LiveTransactions):
    """``LiveExecutor``'s claims: ``execute`` (claim, then attempt), the claim batch, and the
    bookkeeping of decisions that send nothing."""

    # ------------------------------------------------------------- bookkeeping
    def bookkeep(self, lead: Lead, d: Decision) -> None:
        # One whole transaction and nothing outside it (no API call): a conflict with
        # another writer (40P01, 40001) rolled it back whole, so it runs again, deciding
        # again on the lead's fresh row, its counts put back first (``retried``: the three
        # ``_bookkeep_locked`` changes).
        retried(
            partial(self._bookkeep_tx, lead),
            put_back(self.result, only=("optouts", "ended", "holdout")),
            "bookkeeping",
        )

    def _bookkeep_tx(self, lead: Lead) -> None:
        store, now = self.store, self.now
        with store.lead_tx(lead.id, None) as got:
            if not got:
                return
            # the lead's rows first, in the one order (``SqlStore.lock_lead_rows``): its
            # enrollments before its opt-out row (``followup optout`` takes them so too)
            store.lock_lead_rows([lead.id])
            row = store.lead_row(lead.id)
            if row is None:
                return
            try:
                fresh = parse_lead(row)
            except BadLead:
                return
            if lead.other_rows:  # the person's reply under another row (``person_inbound``)
                fresh = from_rows(fresh, self._person_rows([lead]).values())
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
        plan = run.actionable
        for j in range(run.i - 1, len(plan)):  # (a slice would copy the rest of the plan)
            entry = plan[j]
            assert entry is not None  # (only the leads before the current one are dropped)
            lead, d = entry
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
        store, now = self.store, self.now
        batch: dict[str, Claim] = {}
        todo: list[_ToInsert] = []
        settled: set[str] = set()
        verdict: str | None = None
        with self._write_tx(self.account.id, mine), self._audits_last():
            if stale:
                store.release_unattempted(followup_ids=stale)
            locked, rows, fresh_leads, others = self._reread(leads, settled)
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
                send = self._decided_send(lead, locked, fresh_leads, persons, states)
                if send is None:
                    settled.add(lead.id)
                    continue
                fresh, d, person = send
                full = window.full()
                if full is not None:
                    if n == 0:
                        verdict = full  # the current lead waits (or is deferred) unclaimed
                    break  # the leads after it: decided again when their turn comes
                claim = self._claim_locked(fresh, d, person, at, rows[lead.id], todo)
                settled.add(lead.id)
                if claim is not None and fresh.other_rows:
                    claim.others = inbound_snapshot(others[i] for i in fresh.other_rows)
                if claim is not None:
                    window.take()  # (a step another run claimed first: room left unused)
                    batch[lead.id] = claim
            self._insert_claims(todo, batch)
        return batch, settled, verdict

    def _decided_send(
        self,
        lead: Lead,
        locked: set[str],
        fresh_leads: dict[str, Lead],
        persons: dict[str, str | None],
        states: dict[str, LeadState],
    ) -> tuple[Lead, Decision, str | None] | None:
        """In the claim transaction: ``lead`` decided again on its fresh row and state, and
        (its fresh lead, the decision, its person) when that is a send to claim. Anything
        else is handled here and None returned: another run holds the lead, its row is gone,
        or the decision asks for no send (an opt-out, an end, a holdout, a wait: obeyed and
        counted; a skip: its row written)."""
        res = self.result
        if lead.id not in locked:
            res.skipped["claimed_by_another_run"] += 1
            return None
        fresh = fresh_leads.get(lead.id)
        if fresh is None:
            res.skipped["lead_gone"] += 1
            return None
        person = persons[lead.id]
        d = decide_or_name(fresh, states[lead.id], self.config, self.now, res)
        if d is None:
            return None
        if d.action not in ("send", "skip"):
            # Something changed since planning (opt-out, reply, another run): obey it.
            self._bookkeep_locked(fresh, d)
            if d.action == "wait":
                res.waiting[d.reason] += 1
            return None
        if d.action == "skip":
            self._skip_locked(fresh, d, person)
            return None
        return fresh, d, person

    def _reread(
        self, leads: list[Lead], settled: set[str]
    ) -> tuple[set[str], dict[str, dict[str, Any]], dict[str, Lead], dict[str, dict[str, Any]]]:
        """In the claim transaction: the leads this run may take (``try_lock_leads``), their
        rows read again and parsed, each merged with its person's other rows, read again too
        (returned last, by id); a row that no longer parses is reported and settled."""
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
        others = self._person_rows([lead for lead in leads if lead.id in fresh])
        if others:
            for lead in leads:
                if lead.other_rows and lead.id in fresh:
                    fresh[lead.id] = from_rows(
                        fresh[lead.id], (others[i] for i in lead.other_rows if i in others)
                    )
        return locked, rows, fresh, others

    def _person_rows(self, leads: list[Lead]) -> dict[str, dict[str, Any]]:
        """In the claim transaction: the other lead rows of these leads' persons, as the plan
        found them (``Lead.other_rows``), read again by id: a reply under any of them since
        the plan is the person's (``person_inbound``)."""
        ids = sorted({i for lead in leads for i in lead.other_rows})
        if not ids:
            return {}
        return {str(row["id"]): row for row in self.store.lead_rows(ids)}

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


def _body(text: str | None, media: str | None) -> str | None:
    if media and text:
        return f"{text}\n[{media}]"
    return text or (f"[{media}]" if media else None)
