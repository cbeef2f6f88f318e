"""Reading outcome events (``followup events ingest``): input text to ``Event`` rows.

Two input shapes, mixed freely, one JSON document per line (a single pretty-printed
document, or a JSON array of documents, is read whole):

* the host app's events::

    {"type": "replied", "lead_id": "L1", "at": "2026-03-02T10:00:00Z", "text": "yes!"}

  ``type`` is one of delivered, read, replied, converted, opted_out; ``at`` is ISO 8601
  (UTC when no offset) or epoch seconds; optional ``message_id`` (or ``mid``: the platform
  id of our message, which also finds the lead), ``account_id``, ``text`` (replied: checked
  for opt-out keywords, never stored) and ``reason`` (opted_out).

* an Instagram webhook payload (``{"object": "instagram", "entry": [{"messaging": [...]}]}``):
  a ``message`` from the lead is a reply, ``read`` marks our message read, ``delivery``
  marks messages delivered, a ``postback`` is a reply; echoes of our own messages,
  reactions and deletions are ignored. The lead is found from the sender's IGSID (our
  tracking rows' ``recipient_id``, else the lead store) or from the message id
  (``external_id``).

Each event gets its key here (the platform message id, or a digest of the event);
``events.py`` applies them."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .models import parse_time

EVENT_TYPES = ("delivered", "read", "replied", "converted", "opted_out")
WEBHOOK_OBJECTS = ("instagram", "page")
# `changes` fields that carry a messaging item (the same shape as an entry of `messaging`)
CHANGE_FIELDS = ("messages", "messaging_seen", "message_reads", "messaging_postbacks")


class BadEvent(ValueError):
    """An input document that is not an event; the message says where and why."""


@dataclass
class Event:
    type: str
    at: datetime
    key: str
    source: str  # "jsonl" or "instagram"
    lead_id: str | None = None
    message_id: str | None = None  # the platform id of our message (delivered / read)
    recipient_id: str | None = None  # the lead's IGSID (webhooks)
    account_id: str | None = None
    text: str | None = None  # replied: checked for opt-out keywords, never stored
    reason: str | None = None
    where: str = ""


@dataclass
class IngestResult:
    documents: int = 0
    events: int = 0
    new: int = 0
    duplicates: int = 0
    applied: Counter = field(default_factory=Counter)  # by type
    no_change: int = 0
    unmatched: int = 0
    ignored: Counter = field(default_factory=Counter)  # webhook items that are not outcomes
    after_now: int = 0  # dated after now: not recorded (ingest again later)
    optouts: int = 0
    enrollments_ended: Counter = field(default_factory=Counter)  # by reason
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "events": self.events,
            "new": self.new,
            "duplicates": self.duplicates,
            "applied": dict(sorted(self.applied.items())),
            "no_change": self.no_change,
            "unmatched": self.unmatched,
            "ignored": dict(sorted(self.ignored.items())),
            "after_now": self.after_now,
            "optouts": self.optouts,
            "enrollments_ended": dict(sorted(self.enrollments_ended.items())),
            "problems": list(self.problems),
        }


# ------------------------------------------------------------------- parsing


def _documents(text: str, name: str) -> Iterator[tuple[str, Any]]:
    """(where, parsed JSON) for each document: the whole text when it is one JSON value,
    else one per non-blank line. A line that is not JSON yields a BadEvent."""
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
    else:
        items = whole if isinstance(whole, list) else [whole]
        for i, item in enumerate(items, 1):
            yield (f"{name}: document {i}" if isinstance(whole, list) else name), item
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            yield where, json.loads(line)
        except ValueError as exc:
            yield where, BadEvent(f"{where}: not JSON ({exc.msg})")


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, bool) or value is None or value == "":
        raise BadEvent(f"{what} is missing")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # epoch time as a string (the webhook `changes` shape)
    if isinstance(value, int | float):
        secs = value / 1000 if value > 1e11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(secs, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadEvent(f"{what} {value!r} is not a time") from None
    try:
        dt = parse_time(value)
    except (ValueError, TypeError):
        raise BadEvent(f"{what} {value!r} is not ISO 8601 (e.g. 2026-03-02T10:00:00Z)") from None
    assert dt is not None
    return dt


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise BadEvent(f"{value!r} is not a string")


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:40]


def parse_event(doc: Mapping[str, Any], where: str) -> Event:
    """One host-app event line -> Event; BadEvent naming the problem."""
    kind = doc.get("type")
    if kind not in EVENT_TYPES:
        raise BadEvent(f"{where}: type {kind!r}: use one of {', '.join(EVENT_TYPES)}")
    try:
        lead_id = _str(doc.get("lead_id"))
        mid = _str(doc.get("message_id") if doc.get("message_id") is not None else doc.get("mid"))
        account = _str(doc.get("account_id"))
        text = doc.get("text") if isinstance(doc.get("text"), str) else None
        reason = doc.get("reason") if isinstance(doc.get("reason"), str) else None
        at = _time(doc.get("at"), "at")
    except BadEvent as exc:
        raise BadEvent(f"{where}: {exc}") from None
    if lead_id is None and mid is None:
        raise BadEvent(f"{where}: give lead_id (or message_id, the id of our message)")
    key = "jl:" + _digest(kind, lead_id, at.isoformat(), mid)
    return Event(kind, at, key, "jsonl", lead_id, mid, None, account, text, reason, where)


def parse_webhook(
    doc: Mapping[str, Any], where: str, accounts_by_ig: Mapping[str, str], ignored: Counter
) -> list[Event]:
    """An Instagram (or Messenger) webhook payload -> the outcome events in it."""
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise BadEvent(f"{where}: a webhook payload needs an `entry` list")
    out: list[Event] = []
    for e_i, entry in enumerate(entries, 1):
        if not isinstance(entry, Mapping):
            raise BadEvent(f"{where}: entry {e_i} is not an object")
        for at_, item in _entry_items(entry, f"{where}: entry {e_i}", ignored):
            out.extend(_item_events(item, entry, at_, accounts_by_ig, ignored))
    return out


def _entry_items(entry: Mapping[str, Any], where: str, ignored: Counter) -> list[tuple[str, Any]]:
    """An entry's messaging items, each with its location, in either shape: ``messaging``,
    or ``changes`` (the App Dashboard's test button, some subscriptions):
    {"field": "messages", "value": {sender, recipient, timestamp, message}}."""
    messaging = entry.get("messaging") or []
    if not isinstance(messaging, list):
        raise BadEvent(f"{where}: `messaging` is not a list")
    items = [(f"{where} messaging {m_i}", m) for m, m_i in _numbered(messaging)]
    changes = entry.get("changes") or []
    if not isinstance(changes, list):
        raise BadEvent(f"{where}: `changes` is not a list")
    for change, c_i in _numbered(changes):
        value = change.get("value") if isinstance(change, Mapping) else None
        field_ = change.get("field") if isinstance(change, Mapping) else None
        if field_ in CHANGE_FIELDS and isinstance(value, Mapping):
            items.append((f"{where} changes {c_i}", value))
        else:
            ignored[f"change:{field_}"] += 1
    if not items:
        ignored["no_messaging"] += 1
    return items


def _item_events(
    item: Any,
    entry: Mapping[str, Any],
    where: str,
    accounts_by_ig: Mapping[str, str],
    ignored: Counter,
) -> list[Event]:
    """One messaging item -> its events: a reply (message or postback), a read, the
    deliveries; what is none of these is counted in ``ignored`` by kind."""
    if not isinstance(item, Mapping):
        raise BadEvent(f"{where}: not an object")
    sender = _id(item.get("sender"))
    business = _id(item.get("recipient")) or _str(entry.get("id"))
    account = accounts_by_ig.get(business or "")
    try:
        at = _time(item.get("timestamp") or entry.get("time"), "timestamp")
    except BadEvent as exc:
        raise BadEvent(f"{where}: {exc}") from None

    def event(kind: str, key: str, mid: str | None = None, text: str | None = None) -> Event:
        return Event(kind, at, key, "instagram", None, mid, sender, account, text, None, where)

    message, read, delivery = item.get("message"), item.get("read"), item.get("delivery")
    postback = item.get("postback")
    if isinstance(message, Mapping):
        if message.get("is_echo"):
            ignored["echo"] += 1
            return []
        if message.get("is_deleted") or message.get("is_unsupported"):
            ignored["deleted_or_unsupported"] += 1
            return []
        mid = _str(message.get("mid")) or _digest(sender, at.isoformat())
        text = message.get("text") if isinstance(message.get("text"), str) else None
        return [event("replied", f"ig:message:{mid}", text=text)]
    if isinstance(postback, Mapping):
        pid = _str(postback.get("mid")) or _digest(sender, at.isoformat())
        title = postback.get("title") if isinstance(postback.get("title"), str) else None
        return [event("replied", f"ig:postback:{pid}", text=title)]
    if isinstance(read, Mapping):
        mid = _str(read.get("mid"))
        if mid is None:
            ignored["read_without_mid"] += 1
            return []
        return [event("read", f"ig:read:{sender}:{mid}", mid)]
    if isinstance(delivery, Mapping) and isinstance(delivery.get("mids"), list):
        mids = [m for m in (_str(mid) for mid in delivery["mids"]) if m]
        return [event("delivered", f"ig:delivery:{m}", m) for m in mids]
    kinds = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
    ignored[kinds[0] if kinds else "empty"] += 1
    return []


def _numbered(items: list[Any]) -> list[tuple[Any, int]]:
    return [(item, i) for i, item in enumerate(items, 1)]


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        try:
            return _str(value.get("id"))
        except BadEvent:
            return None
    return None


def parse(text: str, name: str, config: Config, result: IngestResult) -> list[Event]:
    """Every event in an input text; problems are collected in ``result.problems``."""
    accounts_by_ig = {a.ig_user_id: a.id for a in config.accounts if a.ig_user_id}
    events: list[Event] = []
    for where, doc in _documents(text, name):
        result.documents += 1
        try:
            if isinstance(doc, BadEvent):
                raise doc
            if not isinstance(doc, Mapping):
                raise BadEvent(f"{where}: not a JSON object")
            if doc.get("object") in WEBHOOK_OBJECTS or "entry" in doc:
                events.extend(parse_webhook(doc, where, accounts_by_ig, result.ignored))
            else:
                events.append(parse_event(doc, where))
        except BadEvent as exc:
            result.problems.append(str(exc))
    return events
