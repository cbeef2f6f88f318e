"""The live executor's state and its write transactions (``LiveTransactions``): each
carries the account's last outcome (its rows first, its audit row last), locks the rows it
may write first in the one order, and writes its own audit rows when its other writes are
done; ``flush`` writes what is still held when the account's turn ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import auditchain
from ..models import Lead
from ..results import PlannedSend
from ..store.base import put_back, retried
from .executor import Executor

if TYPE_CHECKING:  # pragma: no cover
    from .claiming import Claim

# An audit row issued and not yet waited for (``SqlStore.audit_later``): call it to check it.
Audited = Callable[[], int]


def _nothing() -> int:
    return 0


class LiveTransactions(Executor):
    """What ``LiveExecutor``'s claims and attempts share: the send whose outcome is not
    written yet, the claims not attempted yet, and the write transactions that carry them."""

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
        # every audit row of the account's transactions goes to the account's own chain
        # (``auditchain``: its head locked through the commit, the other accounts' not)
        self.audit_chain = auditchain.account_chain(self.account.id)

    def open_chain(self) -> None:
        """The account's audit chain opened, before any of its transactions appends to it
        (``auditchain.open_chain``: once per account and database, in a transaction of its
        own)."""
        auditchain.open_chain(self.store, self.audit_chain)

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
            chain=self.audit_chain,
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
    def _write_tx(
        self,
        account_id: str | None = None,
        leads: Sequence[str] = (),
        claims: Sequence[int] | None = None,
    ) -> Iterator[None]:
        """A write transaction (holding the account's rate window when ``account_id``) that
        also writes the account's last outcome: rows first, audit row last (or where the
        caller issues it, ``_audit_issued``). ``leads``: the leads whose rows it may write;
        their rows (and the last outcome's lead's, after the run's own claims it writes:
        ``claims``, else every claim not attempted yet) are locked first, in lead id order
        (``SqlStore.lock_lead_rows``)."""
        held = self._unrecorded
        tx = self.store.claim_tx(account_id) if account_id else self.store.transaction()
        with tx:
            try:
                if leads:
                    mine = set(leads)
                    fids = [c.fid for c in self.claimed.values()] if claims is None else [*claims]
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
            held, counts = self._unrecorded, put_back(self.result, only=("ended",))

            def reset() -> None:
                # rolled back: the outcome held again, its count put back
                self._unrecorded, self._audit_due, self._announce = held, None, []
                counts()

            # One whole transaction (the outcome of a call made before it, and claims never
            # handed to the API) and nothing outside it: a conflict with another writer
            # (40P01, 40001) rolled it back whole, so it runs again (``retried``).
            retried(partial(self._flush_tx, unattempted), reset, "end of turn")
            self.claimed.clear()
        self._announced()

    def _flush_tx(self, unattempted: list[int]) -> None:
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
