"""An audit you can believe (issue 9): who acted, and whether the log changed since.

Who. The actor is the OS account of the process's *real* uid, looked up in the password
database (the number when it has no name). ``$USER``, ``$LOGNAME`` and ``$SUDO_USER`` are
anyone's to set and are never taken for the actor. When the real uid is 0 and sudo's
variables are set, the caller sudo names is added, marked as unverified::

    root (sudo from alice, uid 1000, per $SUDO_USER/$SUDO_UID: unverified)

On Postgres each row also records the database role (``db_role``: ``session_user``, and
``current_user`` after ``as`` when a ``SET ROLE`` changed it).

The chain. Every row of ``followup_audit`` carries its place in the chain (``chain_seq``:
1, 2, 3 ... with no gaps), the previous row's hash (``prev_hash``; 64 zeros for the first)
and its own: ``row_hash = SHA-256`` over a canonical encoding (:func:`row_hash`) of
chain_seq, at, actor, action, run_id, lead_id, account_id, sequence_id, message_id,
detail_digest, db_role and prev_hash. The detail text is covered through
``detail_digest = SHA-256(detail_salt || detail)``, with a random salt per row, so that
an erasure can remove the detail *and* its salt while the chain stays verifiable, and the
digest left behind cannot be used to confirm a guess of what the detail said.
``followup_audit_head`` holds each chain's last chain_seq and row_hash: deleting the
newest rows is found too.

The chains (0014). The main chain (``chain`` = "") holds every row but the engine's
account turns'; each account the engine writes to has a chain of its own
(``account:<id>``, :func:`account_chain`), so that the accounts' attempts, each appending
under its chain's head lock held through the commit's disk flush, do not wait for each
other's flush. A chain other than the main one is opened by a row of the main chain
(action ``audit_chain_open``, its detail naming the chain), in the transaction that
creates its head (:func:`open_chain`); its first row links to that opening row's hash
instead of the genesis. So every chain hangs off the main one: deleting a whole chain, its
head with it, still leaves the opening row that names it, and a chain nobody opened is
rows added by hand. Rows written before 0014 are the main chain's and verify as before.

Writers of a chain are serialised: its head row is updated (or read ``FOR UPDATE``) on
Postgres inside the transaction that inserts the row, so its lock is held until the
commit; on SQLite every write transaction is ``BEGIN IMMEDIATE``. A transaction appends to
one chain (the engine's account transactions to the account's, every other writer to the
main one), except the opening of a chain (the main chain's head, then the new head: no
one holds the new one). A writer that remembers the head it left writes its next row with
one conditional statement (``append``). A unique index on ``(chain, chain_seq)`` is the
last guard: two rows can never take one place in a chain.

What this proves, and what not: ``followup audit verify`` finds, in every chain, a row
whose content was changed, rows deleted from the middle or the end, rows inserted by hand,
and details removed by anything but an erasure. Someone who can write the database *and* recompute
every hash after the change (the code is public, the hash is not keyed) can rewrite the
chain consistently: keep the heads that ``verify`` prints somewhere else (a ticket, a log
shipped off the host) and pass them back with ``--head`` to prove the rows up to each are
the ones you saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .models import format_time, parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import SqlStore
    from .store.queries import Sql

GENESIS = "0" * 64
VERSION = "followup-audit-v1"
# The migration that adds the chain (matched by suffix: renumbering keeps it working).
MIGRATION_SUFFIX = "_audit_chain"
# Actions whose detail holds no personal data and records an erasure: never scrubbed.
KEPT_DETAIL_ACTIONS = ("erase", "erase_lift")
HASHED_FIELDS = (
    "chain_seq",
    "at",
    "actor",
    "action",
    "run_id",
    "lead_id",
    "account_id",
    "sequence_id",
    "message_id",
    "detail_digest",
    "db_role",
    "prev_hash",
)
PAGE = 5000
MAIN = ""  # the main chain's name
OPEN_ACTION = "audit_chain_open"  # the main chain's row that opens another chain
# (dialect, url, chain) -> (chain_seq, row_hash) of the last row this process appended there
_SEEN: dict[tuple[str, str, str], tuple[int, str]] = {}


def account_chain(account_id: str) -> str:
    """The chain of the engine's rows about one account."""
    return f"account:{account_id}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row as its writer gives it: what happened (``action``), when (``at``), who
    (``who``: ``actor()``), and what it is about; ``detail`` is stored as JSON text. The
    chain gives it the rest (``append``). ``SqlStore.audit`` takes these fields in this
    order, by position or by name."""

    action: str
    at: datetime
    who: str
    run_id: str | None = None
    lead_id: str | None = None
    account_id: str | None = None
    sequence_id: str | None = None
    message_id: str | None = None
    detail: Mapping[str, Any] | None = None
    chain: str = MAIN  # the chain it is appended to (``account_chain``; "" the main one)


# ---------------------------------------------------------------------- who


def _real_uid() -> int | None:
    getuid = getattr(os, "getuid", None)  # none on Windows
    return getuid() if getuid is not None else None


def os_account(uid: int | None = None) -> str:
    """The name of an OS account (the real uid's by default), or its number."""
    uid = _real_uid() if uid is None else uid
    if uid is None:  # no uids (Windows): the logon session's user, not an env variable
        try:
            return os.getlogin()
        except OSError:
            return "unknown"
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def actor(environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """The acting OS user for the audit log: the real uid's account; under sudo (real uid
    0) the caller sudo names, marked unverified. $USER and $LOGNAME are ignored."""
    env = os.environ if environ is None else environ
    uid = _real_uid() if uid is None else uid
    who = os_account(uid)
    if uid != 0:
        return who
    sudo_user = (env.get("SUDO_USER") or "").strip()
    sudo_uid = (env.get("SUDO_UID") or "").strip()
    if not sudo_user and not sudo_uid:
        return who
    parts = [f"sudo from {sudo_user or '?'}"]
    if sudo_uid:
        parts.append(f"uid {sudo_uid}")
    return f"{who} ({', '.join(parts)}, per $SUDO_USER/$SUDO_UID: unverified)"


# -------------------------------------------------------------------- hashes


def detail_text(detail: Mapping[str, Any] | None) -> str | None:
    """The stored form of a detail: sorted JSON, or None."""
    return json.dumps(detail, default=str, sort_keys=True) if detail else None


def detail_digest(salt: str, text: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + text.encode("utf-8", "surrogatepass")).hexdigest()


def _canon(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "chain_seq":
        return int(value)
    if name == "at":
        return format_time(value if isinstance(value, datetime) else parse_time(value))
    return str(value)


def row_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a row's canonical encoding: a JSON array of the version tag and
    the hashed fields in a fixed order (times as UTC ISO text with microseconds)."""
    payload = json.dumps(
        [VERSION, *(_canon(f, row.get(f)) for f in HASHED_FIELDS)], separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


# -------------------------------------------------------------------- write


def _role(head: Mapping[str, Any]) -> str | None:
    s, c = head.get("s_role"), head.get("c_role")
    if s is None:
        return None
    return str(s) if c in (None, s) else f"{s} as {c}"


def _head(store: SqlStore, chain: str = MAIN) -> dict[str, Any]:
    """The chain's head, locked until the commit (Postgres); put back when it is gone, or
    made when the chain was never opened (``_open``)."""
    rows = store.query(store.q("audit_head"), {"chain": chain})
    if rows:
        return dict(rows[0])
    # The head row is gone (by hand): go on from the last chained row; verify says so.
    last = store.query(store.q("audit_last_chained"), {"chain": chain})
    if not last and chain != MAIN:
        return _open(store, chain)
    head = {"chain_seq": 0, "row_hash": GENESIS} if not last else dict(last[0])
    _insert_head(store, chain, head)
    return {**dict(store.query(store.q("audit_head"), {"chain": chain})[0]), **head}


def _insert_head(store: SqlStore, chain: str, head: Mapping[str, Any]) -> None:
    params = {"chain": chain, "s": head["chain_seq"], "h": head["row_hash"]}
    store.execute(store.q("audit_head_insert"), params)


def _open(store: SqlStore, chain: str) -> dict[str, Any]:
    """Inside a transaction: open ``chain`` (it has no head and no rows): a row of the main
    chain names it, and its head starts at that row's hash. The main chain's head is locked
    first, so two openers of one chain take turns and the second finds it open."""
    _head(store, MAIN)  # (locked until the commit)
    again = store.query(store.q("audit_head"), {"chain": chain})
    if again:
        return dict(again[0])
    at = datetime.now().astimezone()
    entry = AuditEntry(OPEN_ACTION, at, actor(), detail={"chain": chain})
    key = (store.dialect, store.url, MAIN)
    _append_now(store, _row_fields(entry), key)
    _insert_head(store, chain, {"chain_seq": 0, "row_hash": _SEEN[key][1]})
    return dict(store.query(store.q("audit_head"), {"chain": chain})[0])


def open_chain(store: SqlStore, chain: str) -> None:
    """Make sure ``chain`` is open (in a transaction of its own, before any transaction
    appends to it: the main chain's head is then never taken inside one of those). One
    read when it is (each account's first turn of a run), no process-wide memory of it. A
    conflict with another writer (40P01, 40001) rolled it back whole: it runs again."""
    from .store.base import nothing_to_put_back, retried

    if chain == MAIN or store.query(store.q("audit_head_exists"), {"chain": chain}):
        return

    def tx() -> None:
        with store.transaction():
            if not store.query(store.q("audit_head"), {"chain": chain}):
                _head(store, chain)

    retried(tx, nothing_to_put_back, "audit chain open")


def append(store: SqlStore, entry: AuditEntry) -> int:
    """Add one row at the end of the chain; returns its chain_seq.

    Each connection reads the head, locked, at its first append, and its database role
    with it (the tool never changes it). From then on, on Postgres 11+, one statement
    locks the head, chains the row to it, hashes it (``_payload_parts``) and moves the
    head, whoever wrote last. Elsewhere the process remembers the head its last append to
    this database left (``_SEEN``, by URL: the run's connections share it): the row is
    chained to it and written together with a head update conditional on the head still
    being that one. When another writer moved the head since (another process, or a
    transaction that rolled back), nothing is written and the head is read, locked, as
    before: a row is only ever chained to the head as it really is. (A pipelined
    transaction: ``append_later``.)"""
    with store.transaction():
        return append_later(store, entry)()


def append_later(store: SqlStore, entry: AuditEntry) -> Callable[[], int]:
    """``append`` inside the caller's transaction; the returned function, called before the
    transaction ends and before any other append of this connection, completes it and
    gives the row's chain_seq. Inside ``SqlStore.pipelined`` (Postgres) nothing is waited
    for: the row goes out with the commit, chained by the database (0 is returned then),
    or, at a connection's first append, the head is read, locked, with the caller's
    statements and the row chained to it goes out with the commit; elsewhere the row is
    written at once as ``append`` writes it."""
    fields = _row_fields(entry)
    key = (store.dialect, store.url, entry.chain)
    if store.pipelining:
        return _append_pipelined(store, fields, key)
    seq = _append_now(store, fields, key)
    return lambda: seq


def _row_fields(entry: AuditEntry) -> dict[str, Any]:
    """The row's own fields, before the chain gives it a place: an aware time, the detail as
    stored text with its salted digest."""
    at = entry.at
    if at.tzinfo is None:  # the store would read a naive time in its own zone: fix it here
        at = at.astimezone()
    text = detail_text(entry.detail)
    salt = secrets.token_hex(16) if text is not None else None
    return {
        "at": at,
        "actor": entry.who,
        "action": entry.action,
        "run_id": entry.run_id,
        "lead_id": entry.lead_id,
        "account_id": entry.account_id,
        "sequence_id": entry.sequence_id,
        "message_id": entry.message_id,
        "detail": text,
        "detail_salt": salt,
        "detail_digest": detail_digest(salt, text) if salt and text is not None else None,
        "chain": entry.chain,
    }


def _append_pipelined(
    store: SqlStore, fields: dict[str, Any], key: tuple[str, str, str]
) -> Callable[[], int]:
    """``append_later`` inside ``SqlStore.pipelined``: nothing waited for now."""
    if store.audit_role is not None and store.hashes_in_sql:
        # The row goes out with the COMMIT as one statement that locks the head, chains
        # the row to it and hashes it (``_payload_parts``), or fails the transaction when
        # there is no head row: the head's lock is held while the server runs that
        # statement and the commit, never across a round trip to this process.
        role = store.audit_role[0]

        def at_head() -> int:
            p1, p2 = _payload_parts(fields, role)
            params = {**fields, "db_role": role, "p1": p1, "p2": p2}
            store.execute_later(store.q("audit_append_at_head_or_fail"), params)
            return 0  # (its place is the database's to choose, at the commit)

        return at_head
    # Statements go out together: the head is read (locked) with them, and the row
    # chained to it goes out with the COMMIT (a row that could not be chained fails
    # the transaction), so that no write of another run's head costs a round trip.
    chain = fields["chain"]
    head_rows = store.query_later(store.q("audit_head"), {"chain": chain})

    def locked() -> int:
        rows = head_rows()
        head = dict(rows[0]) if rows else _head(store, chain)
        store.audit_role = (_role(head),)
        seen = (int(head["chain_seq"]), str(head["row_hash"]))
        row = _chained(fields, (*seen, store.audit_role[0]))
        params = {**row, "prev_seq": seen[0], "prev_hash": seen[1]}
        store.execute_later(store.q("audit_append_locked"), params)
        _SEEN[key] = (row["chain_seq"], row["row_hash"])
        return int(row["chain_seq"])

    return locked


def _append_now(store: SqlStore, fields: dict[str, Any], key: tuple[str, str, str]) -> int:
    """``append_later`` outside a pipeline: the row written at once; its chain_seq."""
    seen, known = _SEEN.get(key), store.audit_role
    if known is not None and store.hashes_in_sql:
        # One statement, whoever wrote last: the head locked, the row chained and hashed
        # by the database (``_payload_parts``), the head moved.
        p1, p2 = _payload_parts(fields, known[0])
        params = {**fields, "db_role": known[0], "p1": p1, "p2": p2}
        done = store.query(store.q("audit_append_at_head"), params)
        if done:  # (else the head row is gone: the way below puts it back)
            _SEEN[key] = (int(done[0]["chain_seq"]), str(done[0]["row_hash"]))
            return int(done[0]["chain_seq"])
    row = None
    if seen is not None and known is not None:  # (the role: this connection's own)
        row = _chained(fields, (*seen, known[0]))
    if row is None or seen is None or not _write(store, row, seen):
        head = _head(store, fields["chain"])  # locked until the commit
        store.audit_role = (_role(head),)
        seen = (int(head["chain_seq"]), str(head["row_hash"]))
        row = _chained(fields, (*seen, store.audit_role[0]))
        if not _write(store, row, seen):  # pragma: no cover - locked: ours
            raise RuntimeError("the audit chain's head moved while locked")
    _SEEN[key] = (row["chain_seq"], row["row_hash"])
    return int(row["chain_seq"])


def _payload_parts(fields: Mapping[str, Any], role: str | None) -> tuple[str, str]:
    """The canonical encoding of ``row_hash`` for a row of ``fields``, around the two
    values only the head gives (chain_seq first, prev_hash last): the database puts them in
    and hashes it (``audit_append_at_head``), byte for byte what ``row_hash`` hashes."""
    assert HASHED_FIELDS[0] == "chain_seq" and HASHED_FIELDS[-1] == "prev_hash"
    row = {**fields, "db_role": role}
    inner = [_canon(f, row.get(f)) for f in HASHED_FIELDS[1:-1]]
    middle = json.dumps(inner, separators=(",", ":"))[1:-1]
    return json.dumps([VERSION], separators=(",", ":"))[:-1] + ",", "," + middle + ',"'


def _chained(fields: Mapping[str, Any], head: tuple[int, str, str | None]) -> dict[str, Any]:
    """The row after ``head`` (its chain_seq, row_hash and the connection's role)."""
    seq, prev, role = head
    row = {**fields, "chain_seq": seq + 1, "db_role": role, "prev_hash": prev}
    row["row_hash"] = row_hash(row)
    return row


def _write(store: SqlStore, row: dict[str, Any], head: tuple[int, str]) -> bool:
    """Insert ``row`` and move the head to it, only if the head is still ``head``."""
    params = {**row, "prev_seq": head[0], "prev_hash": head[1]}
    if store.dialect == "postgres":  # one statement: the head's update, then the insert
        return store.execute(store.q("audit_append"), params) == 1
    if store.execute(store.q("audit_advance"), params) != 1:
        return False
    store.execute(store.q("audit_insert"), row)
    return True


def backfill(store: SqlStore) -> int:
    """Chain the rows written before the chain existed, in id order (the migration 0007:
    the main chain, before 0014 gave rows a chain)."""
    head = store.query(store.q("audit_backfill_head"))[0]
    seq, prev = int(head["chain_seq"]), str(head["row_hash"])
    after, done = -1, 0
    while True:
        rows = store.rows(store.q("audit_unchained_page"), {"a": after, "n": PAGE})
        if not rows:
            break
        for r in rows:
            seq += 1
            text = r.get("detail")
            salt = secrets.token_hex(16) if text is not None else None
            r.update(
                chain_seq=seq,
                detail_salt=salt,
                detail_digest=detail_digest(salt, text) if salt and text is not None else None,
                db_role=None,
                prev_hash=prev,
            )
            prev = r["row_hash"] = row_hash(r)
            store.execute(store.q("audit_chain_row"), r)
            after = r["id"]
            done += 1
    store.execute(store.q("audit_head_set"), {"s": seq, "h": prev})
    return done


def scrub(store: SqlStore, where: Sql, params: dict[str, Any]) -> dict[str, list[int]]:
    """Erasure: remove the detail (and its salt) of the audit rows ``where`` selects (an
    ``SqlStore._in_list`` of lead ids); the chains stay verifiable. Returns their places,
    chain -> chain_seqs, for the erasure's own row to record (``scrubbed_detail``: ``verify``
    then knows these rows were scrubbed, not tampered with)."""
    kept, names = store._in_list("action", KEPT_DETAIL_ACTIONS, param="kept")
    params = {**params, **names}
    places: dict[str, list[int]] = {}
    for r in store.query(store.q("audit_scrubbed_places", ids=where, kept=kept), params):
        if r["chain_seq"] is not None:
            places.setdefault(r["chain"] or MAIN, []).append(int(r["chain_seq"]))
    store.execute(store.q("audit_scrub", ids=where, kept=kept), params)
    return {c: sorted(seqs) for c, seqs in places.items()}


def scrubbed_detail(places: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """How an erasure's row records the places it scrubbed: ``audit_scrubbed``, the main
    chain's (as before 0014), and ``audit_scrubbed_chains``, the other chains', when any."""
    detail: dict[str, Any] = {"audit_scrubbed": sorted(places.get(MAIN, []))}
    others = {c: sorted(s) for c, s in sorted(places.items()) if c != MAIN and s}
    if others:
        detail["audit_scrubbed_chains"] = others
    return detail
