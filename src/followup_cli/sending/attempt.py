"""The attempt and the send (``Attempting``): one transaction marks a claim attempted (unless
the lead or its person opted out since, or its row changed), then the API call outside any
transaction; its outcome is counted at once and its rows written by the account's next
transaction (``LiveTransactions``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from ..channels.base import SendResult
from ..models import FAILED, PENDING, SENT, UNKNOWN
from ..person_inbound import inbound_snapshot
from ..results import AccountResult, PlannedSend
from ..rules import Decision
from ..store.base import put_back, retried
from .answers import count_outcome, trip_breaker
from .transactions import Audited, LiveTransactions, _nothing

if TYPE_CHECKING:  # pragma: no cover
    from .claiming import Claim


class Attempting(LiveTransactions):
    """``LiveExecutor``'s attempts: mark, call, and the writing of the outcome."""

    def _attempt(self, claim: Claim) -> str | None:
        """One transaction (the last outcome; this claim marked attempted unless the lead or
        its person opted out since the claim; the lead's row read again), then the API
        call. "changed" (nothing sent, the claim released) when the lead's row is not the
        one the claim decided on, or another row of its person has a new inbound time. On
        Postgres the transaction is two round trips (``SqlStore.pipelined``): its
        statements up to the row's read, then the rest with the commit (and one more for a
        person with other rows)."""
        at = self.engine.clock.now() if self.real_time else self.now
        # The transaction runs before the API call: a conflict with another writer (40P01,
        # 40001, in pipeline mode too: raised at the wait for an answer or at the COMMIT)
        # rolled it back whole, before anything was sent: no mark, no outcome written
        # (``_write_tx`` holds it again), nothing committed. So it runs again, deciding
        # again on the lead's row read again, its counts put back first (``retried``).
        row, same, ok = retried(
            partial(self._attempt_tx, claim, at),
            # (the one count it changes: an enrollment the last outcome ended)
            put_back(self.result, only=("ended",)),
            "attempt",
        )
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

    def _attempt_tx(self, claim: Claim, at: datetime) -> tuple[dict[str, Any] | None, bool, bool]:
        """``_attempt``'s transaction: the lead's row read again, whether it is the one the
        claim decided on, whether the claim was marked attempted (to send). The one order:
        the claim and the last outcome's tracking rows, then their leads' enrollments
        (``_write_tx``), the audit row last."""
        store = self.store
        with store.pipelined(), self._write_tx(leads=[claim.lead.id], claims=[claim.fid]):
            marked = store.mark_attempted_later(claim.fid, claim.lead.id, claim.person, at)
            audited = self._audit_issued()  # the last outcome's row: locks the chain last
            row = store.lead_row(claim.lead.id)  # (waits for the answers of all the above)
            same = row == claim.row
            if same and claim.others:  # a reply under another row of the person since
                again = store.lead_rows([i for i, _ in claim.others])
                same = inbound_snapshot(again) == claim.others
            ok = same and marked()
            if marked() and not same:  # never handed to the API: released as unattempted
                store.delete_followup(claim.fid, PENDING)
            elif not ok:  # changed, or opted out (or erased) since the claim: the step is free
                store.release_unattempted(followup_ids=[claim.fid])
            audited()
        return row, same, ok

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
        res = self.result
        common, audit_detail = _outcome_fields(claim, result)

        def record() -> Callable[[], Audited]:
            """The outcome's rows, inside the caller's transaction (on the store of the
            account's current step); returns the writing of its audit row."""
            ended = self._write_outcome(claim, result, common)
            return self._outcome_audit(claim, audit_detail, ended, res)

        return record

    def _write_outcome(
        self, claim: Claim, result: SendResult, common: dict[str, Any]
    ) -> Callable[[], int]:
        """The outcome's tracking row (sent, failed, unknown; or the claim released when
        surely not sent) and the enrollment it ends, not waited for; returns the check of
        a completed enrollment's end."""
        now, fid, lead, d = claim.now, claim.fid, claim.lead, claim.d
        assert d.sequence is not None
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
        return ended

    def _outcome_audit(
        self,
        claim: Claim,
        audit_detail: dict[str, Any],
        ended: Callable[[], int],
        res: AccountResult,
    ) -> Callable[[], Audited]:
        """The writing of the outcome's "send" audit row; it returns its check, which also
        counts an enrollment the send completed."""
        now, lead, d = claim.now, claim.lead, claim.d
        assert d.sequence is not None and d.message is not None

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
                chain=self.audit_chain,
            )

            def check() -> int:
                if ended():
                    res.ended["completed"] += 1  # now, not at the next run
                return issued()

            return check

        return audit


def _outcome_fields(claim: Claim, result: SendResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every outcome's tracking row gets (its attempts, error, time), and its audit
    row's detail."""
    d = claim.d
    assert d.sequence is not None and d.message is not None
    common = {
        "attempts": result.attempts,
        "error_code": result.error_code,
        "error_subcode": result.error_subcode,
        "error_message": result.error_message,
        "updated_at": claim.now,
    }
    audit_detail = {
        "followup_id": claim.fid,
        "outcome": result.outcome,
        "code": result.error_code,
        "subcode": result.error_subcode,
        "attempts": result.attempts,
        "variant": d.variant_id,
    }
    return common, audit_detail


def _last_active_step(d: Decision) -> bool:
    """Whether ``d``'s message is the last active one of its sequence."""
    assert d.sequence is not None and d.message is not None
    active = [m.id for m in d.sequence.messages if m.active]
    return bool(active) and active[-1] == d.message.id
