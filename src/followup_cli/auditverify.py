"""``followup audit verify``: every audit chain walked (``verify``), from its genesis or the
row that opened it, each row's link and hash checked, the scrubs an erasure recorded told
apart from changes, and the heads compared (``auditchain.py`` holds how rows are appended).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .auditchain import GENESIS, MAIN, OPEN_ACTION, PAGE, detail_digest, row_hash
from .models import format_time

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import SqlStore


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
