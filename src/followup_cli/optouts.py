"""Opt-outs in and out of files: ``followup optout --import FILE.csv`` and ``--export``.

A line names a lead (``lead_id``) or a person (``recipient_id`` with its ``account_id``; an
Instagram-scoped id is per account), with an optional ``reason``. A file with a header row
uses these column names (``id`` means "a lead id, else a recipient id"); a file without one
is ``id,reason``. The whole file is checked first: a problem is reported with its line and
nothing is recorded. Importing the same file twice records nothing new. ``--export`` writes
the same format, so an export imports back unchanged.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import LoadedConfig
from .errors import ConfigError
from .store.base import SqlStore, nothing_to_put_back, retried

COLUMNS = ("lead_id", "recipient_id", "account_id", "reason")
KNOWN = set(COLUMNS) | {"id", "source", "created_at"}


@dataclass
class ImportResult:
    path: str
    lines: int = 0
    new: int = 0
    already: int = 0
    by: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.path}: {self.lines} line(s): {self.new} new opt-out(s), "
            f"{self.already} already recorded"
        )


@dataclass
class _Entry:
    line: int
    lead_id: str | None
    recipient_id: str | None
    account_id: str | None
    reason: str | None


def _read(path: str) -> list[_Entry]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    has_header = bool(header) and ({"lead_id", "recipient_id", "id"} & set(header))
    entries: list[_Entry] = []
    if has_header:
        unknown = [c for c in header if c and c not in KNOWN]
        if unknown:
            raise ConfigError(
                f"{path}:1: unknown column(s) {', '.join(unknown)}; use "
                "lead_id, recipient_id (or id), account_id, reason"
            )
        body = list(enumerate(rows[1:], start=2))
    else:
        header = ["id", "reason"]
        body = list(enumerate(rows, start=1))
    for n, row in body:
        if not any(c.strip() for c in row):
            continue
        if not has_header and len(row) > 2:
            raise ConfigError(
                f"{path}:{n}: {len(row)} columns; without a header row a line is id,reason "
                "(add a header: lead_id,recipient_id,account_id,reason)"
            )
        values = {
            h: (row[i].strip() or None) if i < len(row) else None for i, h in enumerate(header)
        }
        entry = _Entry(
            n,
            values.get("lead_id"),
            values.get("recipient_id"),
            values.get("account_id"),
            values.get("reason"),
        )
        generic = values.get("id")
        if generic and not (entry.lead_id or entry.recipient_id):
            entry.lead_id = generic  # resolved below: a lead id, else a recipient id
            entry.recipient_id = "?"
        if not (entry.lead_id or entry.recipient_id):
            raise ConfigError(f"{path}:{n}: no lead_id or recipient_id on this line")
        entries.append(entry)
    return entries


def import_optouts(
    store: SqlStore,
    loaded: LoadedConfig | None,
    path: str,
    account: str | None,
    who: str,
    now: datetime,
) -> ImportResult:
    """Record every opt-out of a CSV file (idempotent); ConfigError naming the line when one
    cannot be resolved, and then nothing is recorded."""
    entries = _read(path)
    accounts = [a.id for a in loaded.config.accounts] if loaded else []
    default_account = account or (accounts[0] if len(accounts) == 1 else None)
    plan = _resolve(store, entries, path, accounts, default_account)
    result = ImportResult(path, lines=len(entries))

    def record() -> None:
        with store.transaction():
            # the leads' rows first, in one order (``SqlStore.lock_lead_rows``), not the file's
            store.lock_lead_rows([item[0] for _, kind, item in plan if kind == "lead"])
            new_lines = {line for line, kind, item in plan if _record(store, kind, item, who, now)}
            result.new = len(new_lines)
            result.already = result.lines - result.new
            store.audit(
                "optout_import",
                now,
                who,
                detail={"file": path, "lines": result.lines, "new": result.new},
            )

    # One whole transaction (idempotent opt-outs, counted anew each time) and nothing
    # outside it: a conflict with a busy run (40P01, 40001) rolled it back whole, so it
    # runs again (``retried``) instead of failing.
    retried(record, nothing_to_put_back, "optout --import")
    return result


def _resolve(
    store: SqlStore,
    entries: list[_Entry],
    path: str,
    accounts: list[str],
    default_account: str | None,
) -> list[tuple[int, str, Any]]:
    """(line, "lead" | "person", what) for every entry: a bare id is a lead the lead table
    knows, else a recipient; a recipient needs its account (ConfigError naming the line)."""
    has_leads = True
    try:
        store.lead_columns()
    except ConfigError:
        has_leads = False
    plan: list[tuple[int, str, Any]] = []
    for e in entries:
        if e.recipient_id == "?":  # a bare id: a lead the lead table knows, else a recipient
            assert e.lead_id is not None
            if has_leads and store.lead_row(e.lead_id) is not None:
                e.recipient_id = None
            else:
                e.recipient_id, e.lead_id = e.lead_id, None
        if e.lead_id:
            plan.append((e.line, "lead", (e.lead_id, e.reason)))
        if e.recipient_id:
            acct = e.account_id or default_account
            if acct is None:
                raise ConfigError(
                    f"{path}:{e.line}: recipient {e.recipient_id}: which account? add an "
                    "account_id column or pass --account (a recipient id is per account); "
                    "nothing was imported"
                )
            if accounts and acct not in accounts:
                raise ConfigError(
                    f"{path}:{e.line}: account {acct!r} is not in the config; nothing was imported"
                )
            plan.append((e.line, "person", (acct, e.recipient_id, e.reason)))
    return plan


def _record(store: SqlStore, kind: str, item: Any, who: str, now: datetime) -> bool:
    """One opt-out written (a lead's, its enrollments ended; or a person's suppression);
    whether it is new."""
    if kind == "lead":
        lead_id, reason = item
        added = store.add_optout(lead_id, reason, "import", who, now)
        for e in store.enrollments(lead_id=lead_id):
            store.end_enrollment(lead_id, e["sequence_id"], "opted_out", now)
        return bool(added)
    acct, recipient, reason = item
    key = store.person_key(acct, recipient)
    assert key is not None
    return bool(
        store.add_suppression(
            key, acct, "optout", "import", who, now, recipient_id=recipient, reason=reason
        )
    )


def export_optouts(store: SqlStore) -> tuple[str, int, int]:
    """Every opt-out as CSV (lead_id, recipient_id, account_id, reason, source, created_at):
    (text, rows written, erasures left out: they hold no identifier)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((*COLUMNS, "source", "created_at"))
    n = 0
    seen_leads: set[str] = set()
    erased_leads = set()
    for p in store.suppressions():
        if p["kind"] != "optout":
            continue
        w.writerow(
            (
                p["lead_id"] or "",
                p["recipient_id"] or "",
                p["account_id"] or "",
                p["reason"] or "",
                p["source"],
                _iso(p["created_at"]),
            )
        )
        n += 1
        if p["lead_id"]:
            seen_leads.add(p["lead_id"])
    for o in store.optouts():
        if o["source"] == "erasure":
            erased_leads.add(o["lead_id"])
            continue
        if o["lead_id"] in seen_leads:
            continue
        w.writerow((o["lead_id"], "", "", o["reason"] or "", o["source"], _iso(o["created_at"])))
        n += 1
    erasures = sum(1 for p in store.suppressions() if p["kind"] == "erasure")
    return buf.getvalue(), n, erasures or len(erased_leads)


def _iso(dt: object) -> str:
    return dt.isoformat() if isinstance(dt, datetime) else str(dt or "")


def refuse_undo_of_a_keyword(store: SqlStore, loaded: LoadedConfig | None, lead_id: str) -> None:
    """``optout LEAD --undo`` of a lead whose last message holds an opt-out keyword: that
    message stops it whatever is recorded (the next run records the opt-out again), so
    lifting the record would tell the operator the lead resumes when it never does. Refused,
    nothing changed; the lead resumes once it writes again without the keyword."""
    from .config import Settings
    from .models import BadLead, parse_lead
    from .rules import keyword_optout

    row = store.lead_row(lead_id)
    if row is None:
        return
    try:
        lead = parse_lead(row)
    except BadLead:
        return
    config = loaded.config if loaded is not None else None
    account = config.account(lead.account_id) if config is not None else None
    settings = (
        config.settings_for(account)
        if config is not None and account is not None
        else config.settings
        if config is not None
        else Settings()
    )
    kw = keyword_optout(lead.last_inbound_text, settings.all_optout_keywords)
    if kw:
        raise ConfigError(
            f"{lead_id}: its last message holds the opt-out keyword {kw!r}, which stops it "
            "whatever is recorded (the next run would record the opt-out again); it resumes "
            "once it writes again without it; nothing was changed"
        )
