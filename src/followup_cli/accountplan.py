"""An account's plan (``AccountPlanner``, part of ``engine.Engine``): select, then decide.

The SQL prefilter (``SqlStore.candidate_leads``) pages through the account's leads that may
be due, ``CANDIDATE_PAGE`` at a time; each page is parsed and decided (``rules.decide``, pure)
on its leads' states read at once. A live run stores, for each enrollment not due yet, the
earliest time it can be due (``next_due_hint``), so the next runs leave it out until then.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from .config import Account, Config, LoadedConfig, Settings
from .models import BadLead, Lead, parse_lead
from .person_inbound import PersonRows
from .results import AccountResult, decide_or_name
from .rules import Decision
from .store.base import SqlStore

CANDIDATE_PAGE = 1000


class AccountPlanner:
    """The planning half of ``Engine``: for an account, the leads that may be due, decided.
    Uses the engine's ``config`` and ``loaded`` (the config's digest)."""

    config: Config
    loaded: LoadedConfig
    _census: dict[str, list[str]] | None = None  # each account's candidate ids (census.py)

    def plan_account(
        self,
        account: Account,
        store: SqlStore,
        now: datetime,
        result: AccountResult,
        live: bool = False,
    ) -> tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]:
        """All decisions for an account: (actions to execute in order, bookkeeping actions).

        Only leads that may be due are read (see ``SqlStore.candidate_leads``), each decided
        on its person's latest inbound message, under any of its lead rows
        (``person_inbound``: one query, once the account has a candidate); a ``live`` run
        stores, for each active enrollment it finds not due yet, when it can be due at
        the earliest, so the next runs leave it out until then."""
        st = self.config.settings_for(account)
        actionable: list[tuple[Lead, Decision]] = []
        bookkeeping: list[tuple[Lead, Decision]] = []
        digest = self.loaded.digest
        nameless = store.leads_without_id(account.id)
        if nameless:
            result.bad("?", f"lead rows of account {account.id} without an id: {nameless}")
        persons: PersonRows | None = None  # read once the account has a candidate
        for page in self._candidate_pages(account, store, now, st, digest):
            leads: list[Lead] = []
            for row in page:
                try:
                    leads.append(parse_lead(row))
                except BadLead as exc:
                    result.bad(exc.lead_id, str(exc))
            if leads:
                # the silence is the person's: the latest inbound of any of its rows
                if persons is None:
                    persons = PersonRows.load(store, account.id)
                leads = persons.apply_all(leads)
            acts, books = self._decide_page(leads, store, now, st, digest, result, live)
            actionable += acts
            bookkeeping += books
        far = datetime.max.replace(tzinfo=now.tzinfo)
        # Windows closing soonest first, then the longest-overdue step, then lead id.
        actionable.sort(
            key=lambda ld: (ld[1].window_closes_at or far, ld[1].due_at or far, ld[0].id)
        )
        return actionable, bookkeeping

    def _candidate_pages(
        self, account: Account, store: SqlStore, now: datetime, st: Settings, digest: str
    ) -> Iterator[list[dict[str, Any]]]:
        """The account's lead rows that may be due (``SqlStore.candidate_leads``), a page at
        a time in id order; the next page is read once the caller is done with this one.
        With the run's census, the ids it found, a page at a time."""
        census = self._census.get(account.id) if self._census is not None else None
        ask = partial(
            store.candidate_leads,
            account.id,
            st.min_score,
            st.max_score,
            keywords=st.all_optout_keywords,
            now=now,
            config=digest,
            new_due_before=self.new_leads_due_before(account, now),
        )
        if census is not None:
            for i in range(0, len(census), CANDIDATE_PAGE):
                page = ask(None, CANDIDATE_PAGE, among=census[i : i + CANDIDATE_PAGE])
                if page:
                    yield page
            return
        after: Any = None
        while True:
            page = ask(after, CANDIDATE_PAGE)
            if not page:
                return
            last = store.page_key(page[-1]["id"])
            if last == after:
                return  # a page of rows without an id: none past it (``plan_account`` names them)
            after = last
            yield page
            if len(page) < CANDIDATE_PAGE:
                return

    def _decide_page(
        self,
        leads: list[Lead],
        store: SqlStore,
        now: datetime,
        st: Settings,
        digest: str,
        result: AccountResult,
        live: bool,
    ) -> tuple[list[tuple[Lead, Decision]], list[tuple[Lead, Decision]]]:
        """A page of leads decided on their states (read for the page at once): (actions to
        execute, bookkeeping actions), in the page's order. A ``live`` run stores, for each
        active enrollment not due yet, when it can be due at the earliest."""
        actionable: list[tuple[Lead, Decision]] = []
        bookkeeping: list[tuple[Lead, Decision]] = []
        ids = [lead.id for lead in leads]
        versions = store.enrollment_versions(ids) if live else {}  # before the state
        states = store.lead_states(
            ids,
            {lead.id: store.person_key(lead.account_id, lead.recipient_id) for lead in leads},
        )
        hints: list[tuple[str, str, int, datetime]] = []
        for lead in leads:
            d = decide_or_name(lead, states[lead.id], self.config, now, result)
            if d is None:
                continue
            if d.action in ("send", "skip"):
                actionable.append((lead, d))
            elif d.action in ("end", "holdout") or d.keyword_optout:
                bookkeeping.append((lead, d))
            elif d.action == "wait":
                result.waiting[d.reason] += 1
            version = versions.get((lead.id, d.sequence_id or ""))
            if version is not None:
                hint = self.next_due_hint(d, st)
                if hint is not None and hint > now:
                    hints.append((lead.id, d.sequence_id or "", version, hint))
        if hints:
            store.set_next_due(hints, digest)
        return actionable, bookkeeping

    def new_leads_due_before(self, account: Account, now: datetime) -> datetime:
        """A lead not in a sequence can be due only if we wrote to it before this time: the
        shortest delay of any active step of any active sequence (less the pull-forward
        allowance) before ``now``."""
        delays = [
            m.delay_hours for s in self.config.sequences if s.active for m in s.messages if m.active
        ]
        if not delays:
            return now - timedelta(days=365 * 100)
        st = self.config.settings_for(account)
        earliest = min(delays) - (st.pull_forward_hours if st.pull_forward else 0)
        return now - timedelta(hours=earliest)

    def next_due_hint(self, d: Decision, st: Any) -> datetime | None:
        """For an enrolled lead that is not due: the earliest time a run can act on it
        (send, skip or end a holdout), as long as its tracking rows and the config stay
        the same; None when a run must look again every time (a step in flight or unknown,
        a cap, quiet hours...). A terminal change (reply, conversion, score, opt-out) is
        caught by the candidate query itself."""
        if d.action == "wait" and d.reason == "not_due" and d.due_at is not None:
            pull = st.pull_forward_hours if st.pull_forward else 0
            return d.due_at - timedelta(hours=pull)
        if d.action == "none" and d.reason == "holdout" and d.anchor_at and d.sequence:
            last = max((m.delay_hours for m in d.sequence.messages), default=0)
            return d.anchor_at + timedelta(hours=last)
        return None
