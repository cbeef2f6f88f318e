"""The keys of the tool's sealed values (see ``crypto.py``): which keys wrote rows, whether
the keys at hand can read them, and ``followup keys rotate``.

Which keys wrote rows is recorded in ``followup_meta`` (``encryption_key:<key id>``, one
row a key, added in the transaction that first seals a value with it). A full rotation
leaves only the first key there. ``check_keys`` compares those records (and the newest rows'
values, for rows of the first release, which recorded nothing) with the keys at hand before
a run sends anything.

The platform's message ids are sealed too (``external_id`` of tracking rows, ``message_id``
of events); what the tool looks them up by is a keyed hash under the person-key secret
(``suppress.lookup_token``: ``external_key`` of tracking rows, and the event key itself),
which does not depend on the Fernet keys, so rotating keys changes no lookup. ``keys rotate``
converts the rows written before a key was set: it seals their message ids, adds the hash,
and replaces a clear event key by its hash (until then lookups fall back to the clear id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import suppress
from ..crypto import KEY_ENV, Cipher, UnreadableValue, is_sealed, sealed_key_id
from ..errors import ConfigError
from .base import SEALED_EVENTS, SEALED_TRACKING, SqlStore, actor
from .queries import ALWAYS, Sql, columns, equals, ident

REGISTRY = "encryption_key:"
SAMPLE_ROWS = 50  # newest tracking rows looked at by check_keys (a primary-key range: cheap)
BATCH = 500


def recorded_key_ids(store: SqlStore) -> list[str]:
    """Ids of the keys that sealed values in this database (and were not rotated away)."""
    if store._table_columns("followup_meta") is None:
        return []
    return sorted(
        str(r["name"])[len(REGISTRY) :]
        for r in store.query(store.q("key_records"), {"p": REGISTRY + "%"})
    )


def _sample(store: SqlStore) -> tuple[set[str], list[str]]:
    """(key ids named by the newest tracking rows' sealed values, their first-release
    encrypted bodies). Every other sealed value is in the key records."""
    if store._table_columns("followup_tracking") is None:
        return set(), []
    ids: set[str] = set()
    legacy: list[str] = []
    sample = store.q("key_sample_tracking", sealed=columns(SEALED_TRACKING))
    for r in store.query(sample, {"n": SAMPLE_ROWS}):
        for v in r.values():
            if is_sealed(v):
                ids.add(str(sealed_key_id(v)))
        if r["body_encrypted"] and isinstance(r["body"], str) and not is_sealed(r["body"]):
            legacy.append(r["body"])
    return ids, legacy


def check_keys(store: SqlStore, cipher: Cipher | None = None) -> None:
    """Raise ConfigError (exit 2, one line) when the database holds values sealed with a key
    that ``FOLLOWUP_ENCRYPTION_KEY`` does not hold, or sealed values and no key at all.
    Cheap: the key records and the newest rows."""
    cipher = cipher or store.cipher
    recorded = set(recorded_key_ids(store))
    sampled, legacy = _sample(store)
    written = recorded | sampled
    if not cipher.enabled:
        if written or legacy:
            named = f" (key id {', '.join(sorted(written))})" if written else ""
            raise ConfigError(
                f"{store.describe()}: rows are encrypted{named} but FOLLOWUP_ENCRYPTION_KEY is not "
                "set; set it to the key they were written with (`followup keys status` lists key "
                "ids)"
            )
        return
    missing = sorted(written - set(cipher.key_ids))
    if missing:
        raise ConfigError(
            f"{store.describe()}: rows were written with key id {', '.join(missing)}, which "
            f"FOLLOWUP_ENCRYPTION_KEY does not hold (it holds {', '.join(cipher.key_ids)}); put "
            "the old key after the new one, then `followup keys rotate`"
        )
    for body in legacy[:1]:
        try:
            cipher.open(body, encrypted=True, strict=True)
        except UnreadableValue:
            raise ConfigError(
                f"{store.describe()}: rows were written with a key that {KEY_ENV} does not hold; "
                "put the old key after the new one, then `followup keys rotate`"
            ) from None


def note_key(store: SqlStore, cipher: Cipher) -> None:
    """Record that ``cipher``'s first key seals values here (in the caller's transaction)."""
    if cipher.primary_id is None:
        return
    store.execute(
        store.q("key_record_add"),
        {"n": REGISTRY + cipher.primary_id, "v": datetime.now(UTC).isoformat()},
    )


@dataclass
class RotateResult:
    key_id: str
    dry_run: bool = False
    rows: Counter = field(default_factory=Counter)  # rows changed (or to change), by table
    sealed: int = 0  # values stored in clear, now sealed (or, event keys, hashed)
    rotated: int = 0  # values sealed with another key, now with the first
    dropped: int = 0  # unreadable values removed (--drop-unreadable)
    unreadable: Counter = field(default_factory=Counter)  # by key id ("?" when unnamed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "dry_run": self.dry_run,
            "rows": dict(sorted(self.rows.items())),
            "sealed": self.sealed,
            "rotated": self.rotated,
            "dropped": self.dropped,
            "unreadable": dict(sorted(self.unreadable.items())),
        }


def rotate_keys(
    store: SqlStore,
    cipher: Cipher,
    now: datetime,
    dry_run: bool = False,
    drop_unreadable: bool = False,
    batch: int = BATCH,
) -> RotateResult:
    """Re-seal every sealed value of the tool's tables with the first key, and seal the
    values stored in clear before a key was set (bodies, recipient and conversation ids,
    error texts; a body kept only as a hash stays a hash). In batches, one transaction each,
    each row changed only if no one changed it meanwhile: safe beside a run, idempotent,
    resumable (run it again after an interruption). ``drop_unreadable``: values no key
    opens (a lost key) are removed; the person keys stay, so opt-outs and caps still hold."""
    if not cipher.enabled or cipher.primary_id is None:
        raise ConfigError(
            f"{KEY_ENV} is not set; set it to the new key first, then the old ones "
            "(comma-separated), and run `followup keys rotate` again"
        )
    res = RotateResult(cipher.primary_id, dry_run)
    secret = store.person_secret()
    page = store.q("rotate_page_tracking", sealed=columns(SEALED_TRACKING))
    for rows in _batches(store, page, "id", batch, -1):
        with store.transaction():
            for r in rows:
                changes = _tracking_changes(r, cipher, res, drop_unreadable, secret)
                if changes:
                    res.rows["followup_tracking"] += 1
                    if not dry_run:
                        _update(store, "followup_tracking", "id", r, changes)
    _rotate_events(store, cipher, res, dry_run, drop_unreadable, batch, secret)
    suppressions = _batches(store, store.q("rotate_page_suppressions"), "person_key", batch, "")
    has_suppressions = store._table_columns("followup_suppressions") is not None
    for rows in suppressions if has_suppressions else ():
        with store.transaction():
            for r in rows:
                changes = {}
                new = _rotate_one(cipher, r["recipient_id"], False, res, drop_unreadable)
                if new is not _SAME:
                    changes["recipient_id"] = new
                if changes:
                    res.rows["followup_suppressions"] += 1
                    if not dry_run:
                        _update(store, "followup_suppressions", "person_key", r, changes)
    if not dry_run:
        with store.transaction():
            keep = {cipher.primary_id} | {k for k in res.unreadable if k != "?"}
            for kid in recorded_key_ids(store):
                if kid not in keep:
                    store.execute(store.q("key_record_remove"), {"n": REGISTRY + kid})
            note_key(store, cipher)
            store.audit("keys_rotate", now, actor(), detail=res.as_dict())
    return res


_SAME = object()


def _batches(
    store: SqlStore, page: Sql, key: str, size: int, start: Any
) -> Iterator[list[dict[str, Any]]]:
    """The rows of one of the tool's tables in ``key`` order, ``size`` at a time (``page``:
    a ``rotate_page_*`` query), each page read after the previous one was handled (keyset
    paging: rows changed meanwhile are read as they are then)."""
    after = start
    while True:
        rows = store.query(page, {"after": after, "n": size})
        if not rows:
            return
        after = rows[-1][key]
        yield rows


def _rotate_one(cipher: Cipher, value: Any, encrypted: bool, res: RotateResult, drop: bool) -> Any:
    """The new stored value, or _SAME."""
    if value is None:
        return _SAME
    try:
        new = cipher.rotate(value, encrypted=encrypted)
    except UnreadableValue as exc:
        if drop:
            res.dropped += 1
            return None
        res.unreadable[exc.key_id or "?"] += 1
        return _SAME
    if new is None:
        return _SAME
    if is_sealed(value) or encrypted:
        res.rotated += 1
    else:
        res.sealed += 1
    return new


def _rotate_events(
    store: SqlStore,
    cipher: Cipher,
    res: RotateResult,
    dry_run: bool,
    drop: bool,
    batch: int,
    secret: str | None,
) -> None:
    """Events: message ids sealed with the first key, clear event keys replaced by their
    keyed hash (an event stored under both forms keeps the hashed one's row; the clear one
    becomes its erased token, still a duplicate and naming nothing)."""
    for rows in _batches(store, store.q("rotate_page_events"), "id", batch, -1):
        with store.transaction():
            for r in rows:
                changes: dict[str, Any] = {}
                for c in SEALED_EVENTS:
                    new = _rotate_one(cipher, r[c], False, res, drop)
                    if new is not _SAME:
                        changes[c] = new
                key = str(r["event_key"])
                if secret and not key.startswith((suppress.LOOKUP_PREFIX, "erased:")):
                    hashed = suppress.lookup_token(secret, key)
                    taken = store.query(store.q("event_key_taken"), {"k": hashed})
                    changes["event_key"] = suppress.erased_token(secret, key) if taken else hashed
                    res.sealed += 1
                if changes:
                    res.rows["followup_events"] += 1
                    if not dry_run:
                        _update(store, "followup_events", "id", r, changes)


def _tracking_changes(
    r: dict[str, Any], cipher: Cipher, res: RotateResult, drop: bool, secret: str | None
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    legacy = bool(r["body_encrypted"]) and not is_sealed(r["body"])
    new = _rotate_one(cipher, r["body"], legacy, res, drop)
    if new is not _SAME:
        changes["body"] = new
        changes["body_encrypted"] = new is not None
    for c in SEALED_TRACKING:
        new = _rotate_one(cipher, r[c], False, res, drop)
        if new is not _SAME:
            changes[c] = new
    # A message id stored before the key was set: its lookup hash, as a send writes it now.
    if secret and r["external_key"] is None and r["external_id"] is not None:
        try:
            mid = cipher.open(r["external_id"], strict=True)
        except UnreadableValue:
            mid = None
        if mid is not None:
            changes["external_key"] = suppress.lookup_token(secret, str(mid))
    # An unknown outcome's reason is its error text (see SqlStore.update_followup).
    reason = r["reason"]
    if is_sealed(reason) or (
        r["status"] == "unknown" and reason is not None and reason == r["error_message"]
    ):
        new = _rotate_one(cipher, reason, False, res, drop)
        if new is not _SAME:
            changes["reason"] = new
    return changes


def _update(
    store: SqlStore, table: str, key: str, row: dict[str, Any], changes: dict[str, Any]
) -> None:
    """Change ``changes`` of a row only where its values are still the ones read."""
    read = [c for c in changes if row[c] is not None]
    params: dict[str, Any] = {f"new_{c}": v for c, v in changes.items()}
    params.update({f"old_{c}": row[c] for c in read})
    params["_k"] = row[key]
    sql = store.q(
        "rotate_update",
        table=ident(table),
        sets=equals(list(changes), "new_"),
        key=ident(key),
        unchanged=equals(read, "old_", " AND ") if read else ALWAYS,
    )
    store.execute(sql, params)
