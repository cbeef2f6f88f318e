"""What a run decided and did: its options, each planned or sent message, each account's
counts and the run's summary (what ``followup run --json`` prints)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import Config
from .models import Lead, printable
from .rules import Decision, decide


@dataclass
class RunOptions:
    now: datetime | None = None
    dry_run: bool = False
    account: str | None = None
    limit: int | None = None
    budget_seconds: float | None = None
    run_id: str | None = None  # chosen by the caller, so that its logs carry it from the start


@dataclass(frozen=True)
class RunContext:
    """What every account of one run shares, resolved once by ``Engine.run``: the run's
    instant and id, its options, its time budget in seconds, and the ``--limit`` left (one
    list for the whole run, changed under the engine's lock)."""

    now: datetime
    run_id: str
    options: RunOptions
    budget: float
    remaining: list[int | None]


@dataclass
class PlannedSend:
    lead_id: str
    account_id: str
    recipient_id: str
    username: str | None
    sequence_id: str
    message_id: str
    step: int
    variant_id: str | None
    text: str | None
    media_url: str | None
    due_at: datetime | None
    reason: str
    outcome: str = "planned"
    error_code: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["due_at"] = self.due_at.isoformat() if self.due_at else None
        return d

    @classmethod
    def of(
        cls,
        lead: Lead,
        account_id: str,
        d: Decision,
        text: str | None,
        media: str | None,
        **outcome: Any,
    ) -> PlannedSend:
        """The send a decision makes (``outcome``, ``error_code``, ``error`` once known)."""
        assert d.sequence is not None and d.message is not None
        return cls(
            lead.id,
            account_id,
            lead.recipient_id,
            lead.username,
            d.sequence.id,
            d.message.id,
            d.step or 0,
            d.variant_id,
            text,
            media,
            d.due_at,
            d.reason,
            **outcome,
        )


@dataclass
class AccountResult:
    account_id: str
    sent: int = 0
    failed: Counter = field(default_factory=Counter)  # by error code
    unknown: int = 0
    skipped: Counter = field(default_factory=Counter)  # by reason
    deferred: Counter = field(default_factory=Counter)  # by reason
    ended: Counter = field(default_factory=Counter)  # enrollments ended, by reason
    waiting: Counter = field(default_factory=Counter)  # not due yet, by reason
    holdout: int = 0
    optouts: int = 0
    bad_leads: list[str] = field(default_factory=list)
    bad_lead_ids: list[str] = field(default_factory=list)  # the lead of each bad_leads line
    stopped: str | None = None
    planned: list[PlannedSend] = field(default_factory=list)
    would_send: int = 0  # a dry run's planned sends (streamed to ``on_planned`` when set)
    attempts: int = 0
    breaker_failures: int = 0
    left_to_another_run: bool = False  # another live run held its lease (``leases.py``)
    reached: bool = False  # some attempt of this run got an answer from the API
    unreachable_streak: int = 0  # sends in a row whose every attempt found no API

    def bad(self, lead_id: str, problem: str) -> None:
        """A lead row skipped for a problem in it (named, counted, reported once)."""
        self.bad_leads.append(problem)
        self.bad_lead_ids.append(lead_id)


@dataclass
class RunSummary:
    run_id: str
    now: datetime
    dry_run: bool
    accounts: list[AccountResult] = field(default_factory=list)
    stale_marked_unknown: int = 0
    stale_released: int = 0  # a dead run's claims it never handed to the API: freed
    unknown_open: int = 0
    bad_leads_new: list[str] = field(default_factory=list)  # first seen by this run
    elapsed_seconds: float = 0.0

    def total(self, attr: str) -> int:
        out = 0
        for a in self.accounts:
            v = getattr(a, attr)
            out += (
                sum(v.values())
                if isinstance(v, Counter)
                else (len(v) if isinstance(v, list) else v)
            )
        return out

    def merged(self, attr: str) -> dict[str, int]:
        c: Counter = Counter()
        for a in self.accounts:
            c.update(getattr(a, attr))
        return {str(k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}

    @property
    def planned(self) -> list[PlannedSend]:
        return [p for a in self.accounts for p in a.planned]

    @property
    def stopped_accounts(self) -> dict[str, str]:
        return {a.account_id: a.stopped for a in self.accounts if a.stopped}

    @property
    def left_to_other_runs(self) -> list[str]:
        return [a.account_id for a in self.accounts if a.left_to_another_run]

    @property
    def exit_code(self) -> int:
        if self.dry_run:
            return 0
        # A dead run's claims this run found and marked unknown are news for the operator
        # too (someone has to resolve them): the same exit 3 and one line as its own.
        if (
            self.total("failed")
            or self.total("unknown")
            or self.stale_marked_unknown
            or self.stopped_accounts
        ):
            return 3
        return 0

    def as_dict(self, messages: bool = True) -> dict[str, Any]:
        """The summary as JSON prints it; ``messages=False``: without the list of every
        planned or sent message ("messages" then empty; ``message_dicts`` gives them)."""
        return {
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "sent": self.total("sent"),
            "would_send": self.total("would_send") if self.dry_run else None,
            "failed": self.merged("failed"),
            "unknown": self.total("unknown"),
            "skipped": self.merged("skipped"),
            "deferred": self.merged("deferred"),
            "ended": self.merged("ended"),
            "waiting": self.merged("waiting"),
            "holdout": self.total("holdout"),
            "optouts": self.total("optouts"),
            "bad_leads": [b for a in self.accounts for b in a.bad_leads],
            "bad_leads_new": list(self.bad_leads_new),
            "stopped_accounts": self.stopped_accounts,
            "left_to_other_runs": self.left_to_other_runs,
            "stale_claims_marked_unknown": self.stale_marked_unknown,
            "stale_claims_released": self.stale_released,
            "unknown_open": self.unknown_open,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "exit_code": self.exit_code,
            "accounts": {
                a.account_id: {
                    "sent": a.sent,
                    "failed": dict(a.failed),
                    "unknown": a.unknown,
                    "skipped": dict(a.skipped),
                    "deferred": dict(a.deferred),
                    "stopped": a.stopped,
                    "left_to_another_run": a.left_to_another_run,
                }
                for a in self.accounts
            },
            "messages": list(self.message_dicts()) if messages else [],
        }

    def message_dicts(self) -> Iterator[dict[str, Any]]:
        """Each planned or sent message as "messages" lists it, one at a time."""
        for a in self.accounts:
            for p in a.planned:
                yield p.as_dict()


def decide_or_name(
    lead: Lead, state: Any, config: Config, now: datetime, result: AccountResult | None
) -> Decision | None:
    """``decide`` for one lead, isolated: a value in the row that the rules cannot compute
    with (a date that overflows once hours are added, a structure too deep to compare) skips
    that lead, named, instead of ending the run for everyone (None)."""
    try:
        return decide(lead, state, config, now, explain=False)
    except Exception as exc:  # noqa: BLE001 - one row must not stop the run for the others
        if result is not None:
            what = f"{type(exc).__name__}: {printable(str(exc), 120)}"
            result.bad(lead.id, f"lead {printable(lead.id, 200)}: cannot be decided ({what})")
        return None
