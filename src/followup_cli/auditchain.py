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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


# ------------------------------------------------------------------- verify


@dataclass
class Problem:
    """One finding: what kind, the rows it names, and a line for a person."""

    kind: str  # changed | deleted | truncated | relinked | unchained | scrubbed_unrecorded | head
    ids: list[int]
    message: str


@dataclass
class ChainReport:
    rows: int = 0
    scrubbed: int = 0  # rows whose detail an erasure removed (recorded as such)
    head_seq: int = 0  # the main chain's head
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    anchor: str | None = None  # --head: the hash that was expected in the chain
    anchor_found: bool | None = None
    # the other chains: name -> (rows, head chain_seq, head row_hash)
    chains: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # --head given more than once: every hash, and whether it was found
    anchors: dict[str, bool] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems and all(self.anchors.values()) and self.anchor_found is not False

    def as_dict(self) -> dict[str, Any]:
        out = {
            "intact": self.intact,
            "rows": self.rows,
            "scrubbed_by_erasure": self.scrubbed,
            "head": {"chain_seq": self.head_seq, "row_hash": self.head_hash},
            "chains": {
                name: {"rows": n, "head": {"chain_seq": seq, "row_hash": h}}
                for name, (n, seq, h) in self.chains.items()
            },
            "anchor": None
            if self.anchor is None
            else {"row_hash": self.anchor, "found": self.anchor_found},
            "problems": [
                {"kind": p.kind, "ids": p.ids, "message": p.message} for p in self.problems
            ],
        }
        if len(self.anchors) > 1:
            out["anchors"] = [{"row_hash": h, "found": f} for h, f in self.anchors.items()]
        return out


def verify(store: SqlStore, anchor: str | Sequence[str] | None = None) -> ChainReport:
    """Walk every chain in order (the main one first) and report every place it does not
    hold. ``anchor``: row_hashes noted earlier (heads ``verify`` printed) that must still be
    in a chain."""
    hashes = [anchor] if isinstance(anchor, str) else list(anchor or [])
    hashes = [h.strip().lower() for h in hashes if h and h.strip()]
    rep = ChainReport(anchor=hashes[0] if hashes else None)
    rep.anchors = {h: h == GENESIS for h in hashes}
    scrubs = _Scrubs()
    opened: dict[str, str] = {}  # chain -> the hash of the main chain's row that opened it
    walks: dict[str, _Walk] = {}
    for r in _chain_rows(store):
        chain = r.get("chain") or MAIN
        walk = walks.get(chain)
        if walk is None:
            walk = walks[chain] = _Walk(rep, scrubs, chain, _genesis(rep, chain, opened))
        walk.row(r)
        if chain == MAIN and r.get("action") == OPEN_ACTION:
            named = _opened_chain(r.get("detail"))
            if named is not None and named not in opened:
                opened[named] = str(r.get("row_hash") or "")
    rep.problems.extend(scrubs.problems())
    rep.scrubbed = scrubs.count
    rep.problems.extend(_unchained(store))
    rep.problems.extend(_head_problems(store, rep, walks, opened))
    if rep.anchor is not None:
        rep.anchor_found = rep.anchors[rep.anchor]
    return rep


def _genesis(rep: ChainReport, chain: str, opened: Mapping[str, str]) -> str | None:
    """What a chain's first row links to: the genesis (the main chain), else the hash of
    the main chain's row that opened it (None, and a problem, when none did)."""
    if chain == MAIN:
        return GENESIS
    if chain in opened:
        return opened[chain]
    rep.problems.append(
        Problem(
            "unopened",
            [],
            f"chain {chain!r} was never opened in the main chain: its rows were added by hand",
        )
    )
    return None


def _opened_chain(detail: Any) -> str | None:
    try:
        data = json.loads(detail) if detail else None
    except ValueError:
        return None
    name = data.get("chain") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def _chain_rows(store: SqlStore) -> Iterator[dict[str, Any]]:
    """The chained audit rows, chain by chain (the main one first), each in its order, a
    page at a time."""
    chain, after = MAIN, 0
    while True:
        rows = store.rows(store.q("audit_chain_page"), {"c": chain, "a": after, "n": PAGE})
        if not rows:
            return
        for r in rows:
            chain, after = r.get("chain") or MAIN, int(r["chain_seq"])
            yield r


class _Scrubs:
    """The rows whose detail was removed, and the places erasures say they scrubbed."""

    def __init__(self) -> None:
        self.scrubbed: dict[tuple[str, int], int] = {}  # (chain, chain_seq) -> id
        self.recorded: set[tuple[str, int]] = set()
        self.count = 0

    def problems(self) -> list[Problem]:
        """Details removed by an erasure that records it count; any other is a problem."""
        self.count = sum(1 for s in self.scrubbed if s in self.recorded)
        lost = sorted(rid for s, rid in self.scrubbed.items() if s not in self.recorded)
        if not lost:
            return []
        return [
            Problem(
                "scrubbed_unrecorded",
                lost,
                f"the detail of {len(lost)} row(s) was removed, but no erasure records "
                f"it: id {_ids(lost)}",
            )
        ]


class _Walk:
    """The walk along one chain: each row checked against the one before it and against
    its own hash and digest; the rows whose detail was removed, kept for ``_Scrubs``."""

    def __init__(self, rep: ChainReport, scrubs: _Scrubs, chain: str, genesis: str | None):
        self.rep, self.scrubs, self.chain = rep, scrubs, chain
        self.genesis = genesis
        self.rows = 0
        self.prev_seq, self.prev_id = 0, None
        self.prev_hash: str | None = genesis

    def row(self, r: dict[str, Any]) -> None:
        seq, rid = int(r["chain_seq"]), int(r["id"])
        self.rep.rows += 1
        self.rows += 1
        self._link(r, seq, rid)
        changed = self._changes(r, seq, rid)
        if changed:
            self.rep.problems.append(
                Problem(
                    "changed",
                    [rid],
                    f"row id {rid} ({r.get('action')}, {format_time(r['at'])}){_of(self.chain)} "
                    "was changed: " + "; ".join(changed),
                )
            )
        if r.get("row_hash") in self.rep.anchors:
            self.rep.anchors[str(r["row_hash"])] = True
        self.prev_seq, self.prev_hash, self.prev_id = seq, r.get("row_hash") or "", rid

    def _link(self, r: dict[str, Any], seq: int, rid: int) -> None:
        """The row follows the one before it: the next chain place, and its hash."""
        prev_seq, prev_id = self.prev_seq, self.prev_id
        where = f"after id {prev_id}" if prev_id is not None else "at the start"
        where += _of(self.chain)
        ids = [rid] if prev_id is None else [prev_id, rid]
        if seq != prev_seq + 1:
            n = seq - prev_seq - 1
            self.rep.problems.append(
                Problem(
                    "deleted",
                    ids,
                    f"{n} row(s) deleted {where}, before id {rid} "
                    f"(chain places {prev_seq + 1}..{seq - 1})",
                )
            )
        elif self.prev_hash is not None and r.get("prev_hash") != self.prev_hash:
            self.rep.problems.append(
                Problem(
                    "relinked",
                    ids,
                    f"row id {rid} does not follow the row before it ({where}): that row "
                    "was rewritten with a new hash, or rows were replaced",
                )
            )

    def _changes(self, r: dict[str, Any], seq: int, rid: int) -> list[str]:
        """How the row differs from what was hashed; notes a removed detail."""
        changed = []
        if row_hash(r) != r.get("row_hash"):
            changed.append("its content does not match its hash")
        text, salt, digest = r.get("detail"), r.get("detail_salt"), r.get("detail_digest")
        if text is not None:
            if salt is None or digest is None or detail_digest(salt, text) != digest:
                changed.append("its detail does not match its digest")
            elif r.get("action") == "erase":
                self.scrubs.recorded |= _recorded_scrubs(text)
        elif digest is not None:
            self.scrubs.scrubbed[(self.chain, seq)] = rid
        elif salt is not None:
            changed.append("it has a salt but no detail digest")
        return changed


def _of(chain: str) -> str:
    return "" if chain == MAIN else f" in chain {chain!r}"


def _unchained(store: SqlStore) -> list[Problem]:
    """Rows outside the chain (no chain place)."""
    outside = [int(r["id"]) for r in store.query(store.q("audit_unchained_ids"))]
    if not outside:
        return []
    return [
        Problem(
            "unchained",
            outside,
            f"{len(outside)} row(s) are not in the chain (inserted by hand, or by a tool "
            f"that bypassed it): id {_ids(outside)}",
        )
    ]


def _head_problems(
    store: SqlStore, rep: ChainReport, walks: Mapping[str, _Walk], opened: Mapping[str, str]
) -> list[Problem]:
    """Each chain's head record names the last row its walk found: nothing cut off the
    end, added past it or replaced; every chain the main one opened has its head."""
    heads = {
        (h.get("chain") or MAIN): (int(h["chain_seq"]), str(h["row_hash"]))
        for h in store.query(store.q("audit_head_read"))
    }
    main = walks.get(MAIN) or _Walk(rep, _Scrubs(), MAIN, GENESIS)
    rep.head_seq, rep.head_hash = main.prev_seq, main.prev_hash or GENESIS
    problems: list[Problem] = []
    for chain in sorted({MAIN, *walks, *opened, *heads}):
        walk = walks.get(chain) or _Walk(rep, _Scrubs(), chain, opened.get(chain))
        if chain != MAIN:
            rep.chains[chain] = (walk.rows, walk.prev_seq, walk.prev_hash or "")
            if chain not in opened and chain not in walks:  # (else reported by the walk)
                problems.append(
                    Problem("unopened", [], f"chain {chain!r} has a head but was never opened")
                )
        if chain not in heads:
            what = "the chain's" if chain == MAIN else f"chain {chain!r}'s"
            problems.append(
                Problem("head", [], f"{what} head record (followup_audit_head) was deleted")
            )
            continue
        problems.extend(_head_problem(walk, *heads[chain]))
    return problems


def _head_problem(walk: _Walk, h_seq: int, h_hash: str) -> list[Problem]:
    prev_seq, prev_id = walk.prev_seq, walk.prev_id
    ids = [] if prev_id is None else [prev_id]
    of = _of(walk.chain)
    last = f"after id {prev_id}" if prev_id is not None else "(the log is empty now)"
    if h_seq > prev_seq:
        return [
            Problem(
                "truncated",
                ids,
                f"the newest {h_seq - prev_seq} row(s){of} were deleted {last} "
                f"(chain places {prev_seq + 1}..{h_seq})",
            )
        ]
    if h_seq < prev_seq:
        return [
            Problem(
                "head",
                ids,
                f"the head record{of} names chain place {h_seq}, but rows go on to {prev_seq}: "
                "rows were added past it by hand",
            )
        ]
    if h_hash != (walk.prev_hash or ""):
        return [
            Problem(
                "head",
                ids,
                f"the newest row{of} (id {prev_id}) is not the one the head record names: it "
                "was replaced",
            )
        ]
    return []


def _recorded_scrubs(text: str) -> set[tuple[str, int]]:
    """The places an erasure's row records: ``audit_scrubbed`` (the main chain's) and
    ``audit_scrubbed_chains`` (the others', by chain)."""
    try:
        data = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    places: set[tuple[str, int]] = set()
    main = data.get("audit_scrubbed")
    if isinstance(main, list):
        places |= {(MAIN, int(s)) for s in main if isinstance(s, int)}
    others = data.get("audit_scrubbed_chains")
    if isinstance(others, dict):
        for chain, seqs in others.items():
            if isinstance(chain, str) and isinstance(seqs, list):
                places |= {(chain, int(s)) for s in seqs if isinstance(s, int)}
    return places


def _ids(ids: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
